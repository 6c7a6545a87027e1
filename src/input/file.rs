//! Transport-stream files, mapped read-only.
//!
//! A mapped file is read without a copy: the page cache is the buffer.
//!
//! Setting up the page tables of a large mapping costs about as much as
//! scanning it. Measured on a warm 512 MiB file (perf/probe.sh):
//! populating up front with `MAP_POPULATE` made probe 1.5x slower than
//! plain page faults, which map the page cache's large folios in big steps;
//! a helper thread populating (`MADV_POPULATE_READ`) ahead of the reader
//! made it about 1.2x faster; two threads each scanning (and faulting in)
//! half of the file, as `probe` does now, about 1.2x faster than that.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use memmap2::{Advice, Mmap, MmapOptions};
use thiserror::Error;

/// Why a file could not be opened for reading.
#[derive(Debug, Error)]
pub enum FileError {
    /// No such file.
    #[error("no such file: {}", .0.display())]
    NotFound(PathBuf),
    /// The path names a directory.
    #[error("{} is a directory, not a transport-stream file", .0.display())]
    IsDirectory(PathBuf),
    /// The path names something that cannot be mapped (a FIFO, a device).
    #[error("{} is not a regular file", .0.display())]
    NotRegular(PathBuf),
    /// The file holds no bytes.
    #[error("{} is empty", .0.display())]
    Empty(PathBuf),
    /// Any other I/O failure.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// A read-only mapping of a whole file.
pub struct MappedFile {
    map: Mmap,
}

impl MappedFile {
    /// Maps `path` read-only, advised for sequential reading.
    pub fn open(path: &Path) -> Result<MappedFile, FileError> {
        let io_err = |source: io::Error| match source.kind() {
            io::ErrorKind::NotFound => FileError::NotFound(path.to_owned()),
            _ => FileError::Io { path: path.to_owned(), source },
        };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        if meta.is_dir() {
            return Err(FileError::IsDirectory(path.to_owned()));
        }
        if !meta.is_file() {
            return Err(FileError::NotRegular(path.to_owned()));
        }
        if meta.len() == 0 {
            return Err(FileError::Empty(path.to_owned()));
        }
        let file = File::open(path).map_err(io_err)?;
        let options = MmapOptions::new();
        // memmap2's `map` is unsafe because another process may change the
        // file underneath; the TS core treats the bytes as untrusted input
        // and never assumes they stay put, so a change yields odd counts,
        // not undefined behaviour of ours. Truncation by another process can
        // still raise SIGBUS, as it would for any mmap reader.
        #[allow(unsafe_code)]
        // SAFETY: see above; the mapping is read-only and private to us.
        let map = unsafe { options.map(&file) }.map_err(io_err)?;
        // Advice is a hint; failing to give it changes nothing.
        let _ = map.advise(Advice::Sequential);
        Ok(MappedFile { map })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The mapping as `Bytes`: slices of it are zero-copy chunks that keep
    /// the mapping alive.
    pub fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from_owner(self.map)
    }
}
