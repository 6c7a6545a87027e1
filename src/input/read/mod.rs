//! Transport-stream files read sequentially into pooled buffers, for the
//! files that should not be mapped; the same chunks as `chunks::FileChunks`.
//!
//! When, and why. Mapping (`file::MappedFile`) is the default for regular
//! files: the page cache is the buffer, nothing is copied. But:
//! - a FIFO, a character device or a socket cannot be mapped at all
//!   (`mkfifo /tmp/f; ffmpeg ... -f mpegts /tmp/f` is a real source);
//! - a mapped file that another process truncates raises `SIGBUS` in the
//!   reader when it touches the lost pages: files still being written,
//!   rotated, or on network filesystems (NFS, SMB, FUSE) are safer read;
//! - setting up the page tables of a huge cold file costs about as much as
//!   reading it (see `file`), and faults take the disk's latency one page
//!   range at a time, where reads keep several requests queued.
//!
//! So `read=auto` (the default of `url::FileRead`) maps regular files and
//! reads everything else; `read=uring` reads a regular file too;
//! `read=mmap` insists on a mapping ([`resolve`]).
//!
//! How. On [`Backend::Uring`] the reader has a ring of its own with the
//! pool's buffers registered (`READ_FIXED`) and up to
//! [`ReadOptions::queue_depth`] reads in flight at known offsets
//! (`uring`); on [`Backend::Epoll`] it uses `pread(2)` / `read(2)`
//! (`plain`, which says how each kind of file waits). A filled buffer
//! becomes `Bytes` through the pool and the chunks are slices of it, so
//! consumers see no copy; 192/204-byte packets are normalised by the same
//! `framer` as mapped files. The packet cut by the end of a buffer (the
//! framer's carry, under 600 bytes) is copied into the headroom in front of
//! the next buffer's bytes (`buffers`).
//!
//! Ends: the end of the file is a clean end (`Ok(None)`); a read error is
//! [`FileError::Io`] with the path. With `looping`, a regular file starts
//! over at offset 0 and [`ReadChunks::iteration`] counts the passes, as for
//! mapped files. A FIFO or device cannot start over: it ends at its first
//! end of file (for a FIFO, when the last writer closes it), looping or
//! not.
//!
//! Invariants: the bytes of the chunks and the counters at the end equal
//! those of `FileChunks` over the same bytes (chunk boundaries may differ:
//! a chunk never spans two buffers); no buffer is recycled or freed while
//! the kernel may write it (`uring`'s teardown).
//!
//! Must be used on the thread (and inside the tokio runtime) of the shard
//! it was opened on.

mod buffers;
mod plain;
mod uring;

use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::unix::AsyncFd;

use super::chunks::{ChunkCounters, DEFAULT_CHUNK_PACKETS};
use super::file::FileError;
use super::framer::Framer;
use crate::shard::Backend;
use crate::ts::framing::PacketSize;
use crate::url::FileRead;
use buffers::ReadBuffers;
use plain::{PlainReader, Source};
use uring::UringReader;

/// Bytes a stream read asks for at most: a pipe holds 64 KiB by default,
/// so a FIFO read rarely returns more, and a smaller buffer is held for
/// less while consumers keep chunks of it.
pub const STREAM_READ_BYTES: usize = 64 * 1024;

/// How a file input is read, once `read=` is resolved against the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileMethod {
    /// Mapped (`chunks::FileChunks`).
    Mmap,
    /// Read into buffers ([`ReadChunks`]).
    Read,
}

/// Resolves `read` for `path`: `auto` maps regular files and reads the
/// rest. Looks at the path's metadata only (a FIFO is not opened, so this
/// never waits for a writer).
pub fn resolve(path: &Path, read: FileRead) -> Result<FileMethod, FileError> {
    match read {
        FileRead::Mmap => Ok(FileMethod::Mmap),
        FileRead::Uring => Ok(FileMethod::Read),
        FileRead::Auto => {
            let meta = std::fs::metadata(path).map_err(|e| open_error(path, e))?;
            if meta.is_dir() {
                return Err(FileError::IsDirectory(path.to_owned()));
            }
            Ok(if meta.is_file() { FileMethod::Mmap } else { FileMethod::Read })
        }
    }
}

/// Settings of a [`ReadChunks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOptions {
    /// Start again at the end (regular files only; see the module doc).
    pub looping: bool,
    /// Packets per chunk at most.
    pub chunk_packets: usize,
    /// Buffers in the reader's pool: the reads in flight, plus those
    /// consumers still hold chunks of. When consumers hold them all, reads
    /// go to heap buffers (counted) rather than stall.
    pub buffers: usize,
    /// Bytes one read asks for (rounded up to a page; streams ask for
    /// [`STREAM_READ_BYTES`] at most).
    pub read_bytes: usize,
    /// Reads in flight on io_uring for a regular file (streams: 1).
    pub queue_depth: usize,
}

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions {
            looping: false,
            chunk_packets: DEFAULT_CHUNK_PACKETS,
            buffers: 8,
            read_bytes: 256 * 1024,
            queue_depth: 4,
        }
    }
}

enum Reader {
    // Boxed: the ring is several hundred bytes; one allocation per open.
    Uring(Box<UringReader>),
    Plain(PlainReader),
}

/// Chunks of a file read sequentially (see the module doc).
pub struct ReadChunks {
    path: PathBuf,
    reader: Reader,
    /// A FIFO read on io_uring, until its first writer shows up: reading
    /// before then would see an end of file (no writer yet). Watches a
    /// duplicate of the reader's descriptor.
    writer_wait: Option<AsyncFd<OwnedFd>>,
    /// The reader's descriptor, to make blocking once a writer is there.
    blocking_later: Option<OwnedFd>,
    framer: Framer,
    /// The undecided tail of the last window, until the next is read.
    carry: Option<Bytes>,
    /// The framer holds the last window of the pass.
    last_window: bool,
    stream: bool,
    looping: bool,
    iteration: u64,
    loops: u64,
    pass_had_packets: bool,
    done: bool,
}

impl ReadChunks {
    /// Opens `path` for reading on `backend`. Does not wait: a FIFO
    /// without a writer opens at once, and the first read waits for one.
    /// Must run on the thread, and in the runtime, that will read.
    pub fn open(path: &Path, backend: Backend, options: ReadOptions) -> Result<ReadChunks, FileError> {
        let io_err = |e: io::Error| FileError::Io { path: path.to_owned(), source: e };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io_err(io::Error::other("ReadChunks::open must run inside the shard's runtime")));
        }
        // Non-blocking, so that opening a FIFO does not wait for a writer.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| open_error(path, e))?;
        let meta = file.metadata().map_err(io_err)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            return Err(FileError::IsDirectory(path.to_owned()));
        }
        let positional = kind.is_file() || kind.is_block_device();
        let stream = kind.is_fifo() || kind.is_char_device();
        if !positional && !stream {
            return Err(FileError::NotRegular(path.to_owned()));
        }
        if kind.is_file() && meta.len() == 0 {
            return Err(FileError::Empty(path.to_owned()));
        }
        let read_bytes = if stream { options.read_bytes.min(STREAM_READ_BYTES) } else { options.read_bytes };
        let buffers = ReadBuffers::new(options.buffers.max(1), read_bytes).map_err(io_err)?;
        let fd = OwnedFd::from(file);
        let (reader, writer_wait, blocking_later) = match backend {
            Backend::Uring => {
                let (wait, later) = if kind.is_fifo() {
                    // Reads on io_uring must block (a non-blocking one
                    // fails with EAGAIN instead of waiting); the descriptor
                    // turns blocking once a writer is there.
                    match plain::watch(fd.try_clone().map_err(io_err)?) {
                        Ok(wait) => (Some(wait), Some(fd.try_clone().map_err(io_err)?)),
                        Err(_) => {
                            plain::set_blocking(&fd).map_err(io_err)?;
                            (None, None)
                        }
                    }
                } else {
                    plain::set_blocking(&fd).map_err(io_err)?;
                    (None, None)
                };
                let reader = UringReader::new(fd, buffers, stream, options.queue_depth).map_err(io_err)?;
                (Reader::Uring(Box::new(reader)), wait, later)
            }
            Backend::Epoll => {
                let source = if positional {
                    plain::set_blocking(&fd).map_err(io_err)?;
                    Source::Regular(fd)
                } else {
                    match plain::watch(fd) {
                        Ok(fd) => Source::Pollable(fd),
                        Err((fd, e)) => {
                            // epoll refuses files it cannot watch (EPERM).
                            tracing::debug!("cannot poll {} ({e}); reading it blocking", path.display());
                            plain::set_blocking(&fd).map_err(io_err)?;
                            Source::Blocking(fd)
                        }
                    }
                };
                (Reader::Plain(PlainReader::new(source, buffers)), None, None)
            }
        };
        Ok(ReadChunks {
            path: path.to_owned(),
            reader,
            writer_wait,
            blocking_later,
            framer: Framer::new(options.chunk_packets),
            carry: None,
            last_window: false,
            stream,
            looping: options.looping && positional,
            iteration: 0,
            loops: 0,
            pass_had_packets: false,
            done: false,
        })
    }

    /// The pass over the file the last chunk came from (0 for the first).
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The wire packet size found, once known.
    pub fn packet_size(&self) -> Option<PacketSize> {
        self.framer.sync().first_size()
    }

    /// Counters so far.
    pub fn counters(&self) -> ChunkCounters {
        ChunkCounters { loops: self.loops, ..self.framer.counters() }
    }

    /// Whether the file is a stream (FIFO, character device): no offsets,
    /// no looping.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Reads that went to a heap buffer because consumers held the whole
    /// pool.
    pub fn heap_reads(&self) -> u64 {
        match &self.reader {
            Reader::Uring(r) => r.heap_reads(),
            Reader::Plain(r) => r.heap_reads(),
        }
    }

    /// Whether reads use registered (fixed) buffers: io_uring, and the
    /// registration succeeded.
    pub fn fixed_buffers(&self) -> bool {
        matches!(&self.reader, Reader::Uring(r) if r.fixed())
    }

    /// The next chunk, `Ok(None)` at the end (never, when looping over a
    /// regular file that holds packets), or a read error. Cancel-safe:
    /// dropping the future loses no bytes.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, FileError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(chunk) = self.framer.next_chunk() {
                self.pass_had_packets = true;
                return Ok(Some(chunk));
            }
            if self.last_window {
                self.framer.end_pass();
                self.last_window = false;
                if !self.looping || !self.pass_had_packets {
                    self.done = true;
                    return Ok(None);
                }
                self.iteration += 1;
                self.loops += 1;
                self.pass_had_packets = false;
                if let Reader::Uring(r) = &mut self.reader {
                    r.rewind();
                } else if let Reader::Plain(r) = &mut self.reader {
                    r.rewind();
                }
                continue;
            }
            self.await_writer().await?;
            // Kept in `self` across the await, so a dropped future loses
            // nothing (a clone is a refcount).
            let carry = self.carry.get_or_insert_with(|| self.framer.take_carry()).clone();
            let read = match &mut self.reader {
                Reader::Uring(r) => r.next(&carry).await,
                Reader::Plain(r) => r.next(&carry).await,
            };
            match read {
                Ok(Some(window)) => self.framer.push(window, false),
                Ok(None) => {
                    self.framer.push(carry, true);
                    self.last_window = true;
                }
                Err(source) => return Err(FileError::Io { path: self.path.clone(), source }),
            }
            self.carry = None;
        }
    }

    /// For a FIFO on io_uring: waits until a writer has opened it (it is
    /// readable: data, or a writer came and went), then makes the
    /// descriptor blocking for io_uring.
    async fn await_writer(&mut self) -> Result<(), FileError> {
        let Some(wait) = &self.writer_wait else { return Ok(()) };
        let io_err = |source| FileError::Io { path: self.path.clone(), source };
        // Readiness is kept, not cleared: nothing reads through this fd.
        drop(wait.readable().await.map_err(io_err)?);
        if let Some(fd) = self.blocking_later.take() {
            plain::set_blocking(&fd).map_err(io_err)?;
        }
        self.writer_wait = None;
        Ok(())
    }
}

/// The error for a failed open of `path`.
fn open_error(path: &Path, e: io::Error) -> FileError {
    match e.kind() {
        io::ErrorKind::NotFound => FileError::NotFound(path.to_owned()),
        _ => FileError::Io { path: path.to_owned(), source: e },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::shard::{IoChoice, Shards, backend};
    use std::io::Write;
    use std::time::Duration;

    fn backends() -> Vec<Backend> {
        let mut out = vec![Backend::Epoll];
        if backend::detect(IoChoice::Uring).is_ok() {
            out.push(Backend::Uring);
        } else {
            eprintln!("skipping io_uring: unavailable here");
        }
        out
    }

    /// Runs `make`'s future on a one-shard set of `backend`.
    fn on_shard<T: Send + 'static, Fut: std::future::Future<Output = T> + 'static>(
        backend: Backend,
        make: impl FnOnce() -> Fut + Send + 'static,
    ) -> T {
        let shards = Shards::start(1, backend, false).unwrap();
        let value = shards.spawn(make).unwrap().blocking_recv().unwrap();
        shards.shutdown();
        value
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    #[test]
    fn consumers_holding_every_buffer_send_reads_to_the_heap() {
        let path = fixture("h264_aac.ts");
        let expected = std::fs::read(&path).unwrap();
        for backend in backends() {
            let path = path.clone();
            let (bytes, heap_reads) = on_shard(backend, move || async move {
                let options = ReadOptions { buffers: 2, read_bytes: 8192, ..ReadOptions::default() };
                let mut reader = ReadChunks::open(&path, backend, options).unwrap();
                // Every chunk is kept, so no buffer ever comes back.
                let mut held = Vec::new();
                while let Some(chunk) = reader.next_chunk().await.unwrap() {
                    held.push(chunk);
                    assert!(held.len() < 100_000);
                }
                (held.concat(), reader.heap_reads())
            });
            assert!(bytes == expected, "{backend}");
            assert!(heap_reads > 0, "{backend}: the pool never ran dry?");
        }
    }

    #[test]
    fn a_dropped_read_loses_nothing_and_a_dropped_reader_ends_its_reads() {
        let ts = std::fs::read(fixture("h264_aac.ts")).unwrap();
        for backend in backends() {
            let dir = tempfile::tempdir().unwrap();
            let fifo = dir.path().join("fifo");
            assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let writer = {
                let (fifo, ts) = (fifo.clone(), ts.clone());
                std::thread::spawn(move || {
                    let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                    // Half a packet, then nothing until told.
                    f.write_all(&ts[..1000]).unwrap();
                    let _ = go_rx.recv();
                    f.write_all(&ts[1000..]).unwrap();
                })
            };
            let reader_fifo = fifo.clone();
            let bytes = on_shard(backend, move || async move {
                let mut reader = ReadChunks::open(&reader_fifo, backend, ReadOptions::default()).unwrap();
                let mut out = Vec::new();
                // Chunks until the writer pauses: the read in flight then
                // waits, and the timeout drops the future mid-read.
                while let Ok(chunk) = tokio::time::timeout(Duration::from_millis(200), reader.next_chunk()).await {
                    out.extend_from_slice(&chunk.unwrap().unwrap());
                }
                go_tx.send(()).unwrap();
                while let Some(chunk) = reader.next_chunk().await.unwrap() {
                    out.extend_from_slice(&chunk);
                }
                out
            });
            writer.join().unwrap();
            assert!(bytes == ts, "{backend}: bytes lost or changed by a dropped read");

            // A reader dropped with a read in flight on an idle FIFO (a
            // writer that writes a little, then nothing) returns at once,
            // its read cancelled (not after the teardown's time limit).
            let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
            let idle = {
                let fifo = fifo.clone();
                std::thread::spawn(move || {
                    let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                    f.write_all(&[0x47; 100]).unwrap();
                    let _ = hold_rx.recv();
                })
            };
            let clock = SystemClock;
            let start = clock.now();
            let ended = on_shard(backend, move || async move {
                let mut reader = ReadChunks::open(&fifo, backend, ReadOptions::default()).unwrap();
                let waited = tokio::time::timeout(Duration::from_millis(100), reader.next_chunk()).await;
                drop(reader);
                waited.is_err()
            });
            assert!(ended, "{backend}: an idle FIFO produced something");
            assert!(clock.now() - start < Duration::from_secs(2), "{backend}: teardown waited out its limit");
            hold_tx.send(()).unwrap();
            idle.join().unwrap();
        }
    }
}
