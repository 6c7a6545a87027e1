//! Transport-stream files, mapped read-only.
//!
//! A mapped file is read without a copy: the page cache is the buffer.
//!
//! Setting up the page tables of a large mapping costs about as much as
//! scanning it. Measured on a warm 512 MiB file (perf/probe.sh): populating
//! up front with `MAP_POPULATE` made probe 1.5x slower than plain page
//! faults, which map the page cache's large folios in big steps. Faster
//! still, [`MappedFile::read_whole`] lets a second thread populate
//! (`MADV_POPULATE_READ`) the part of the file from a third of the way in,
//! while the reader faults in the first third itself and then scans on
//! into pages already mapped: the two never contend for the same page
//! tables. Starting points from 0.2 to 0.65 were tried; 0.35 was best.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

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

    /// Runs `read` over all of the file's bytes while another thread
    /// populates the mapping ahead of it (see the module doc). The helper
    /// stops when `read` returns; pages it has not reached fault in as usual.
    pub fn read_whole<R>(&self, read: impl FnOnce(&[u8]) -> R) -> R {
        const STEP: usize = 4 << 20;
        const PAGE: usize = 4096;
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let len = self.map.len();
            // Small files are mapped faster than a thread starts.
            if len >= 4 * STEP {
                let (map, done) = (&self.map, &done);
                scope.spawn(move || {
                    let mut offset = len / 100 * 35 / PAGE * PAGE;
                    while offset < len && !done.load(Ordering::Relaxed) {
                        let step = STEP.min(len - offset);
                        // Kernels before 5.14 refuse MADV_POPULATE_READ; the
                        // reader then faults every page in itself.
                        if map.advise_range(Advice::PopulateRead, offset, step).is_err() {
                            break;
                        }
                        offset += step;
                    }
                });
            }
            let result = read(&self.map);
            done.store(true, Ordering::Relaxed);
            result
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}
