//! Sequential file reads with `read(2)` / `pread(2)`, for the epoll
//! backend, into the same buffers as the io_uring reader.
//!
//! How each kind of file waits:
//! - a FIFO (or a device epoll can watch) is non-blocking and registered
//!   with tokio (`AsyncFd`): a read happens when epoll says it is readable,
//!   so the shard never blocks on it;
//! - a regular file is always "readable" to epoll, so there is nothing to
//!   wait on: it is read with a blocking `pread` on the shard thread,
//!   yielding to the shard's other tasks between reads. From the page cache
//!   a 256 KiB read takes tens of microseconds; a cold read from a disk
//!   blocks the shard for the disk's latency. That is the epoll backend's
//!   documented cost. (`tokio::fs` would move each read to the blocking
//!   thread pool, and copy it out of a pool-owned buffer; the io_uring
//!   backend is the answer for cold files.)
//! - a device epoll refuses (`EPERM`) is read blocking, the same way.
//!
//! One read at a time; no read is ever in flight across an await, so
//! dropping the reader at any point is safe.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use bytes::Bytes;
use tokio::io::unix::AsyncFd;

use super::buffers::{ReadBuffers, Slot};

/// Where the bytes come from.
pub(super) enum Source {
    /// A regular file, read at offsets.
    Regular(OwnedFd),
    /// A non-blocking FIFO or device, read when readable.
    Pollable(AsyncFd<OwnedFd>),
    /// A device epoll cannot watch, read blocking.
    Blocking(OwnedFd),
}

/// A file read with plain syscalls.
pub(super) struct PlainReader {
    source: Source,
    buffers: ReadBuffers,
    /// The buffer the next read goes into, held across awaits.
    held: Option<Slot>,
    offset: u64,
    eof: bool,
}

impl PlainReader {
    /// A reader of `source` into `buffers`.
    pub(super) fn new(source: Source, buffers: ReadBuffers) -> PlainReader {
        PlainReader { source, buffers, held: None, offset: 0, eof: false }
    }

    /// Reads that had to use a heap buffer.
    pub(super) fn heap_reads(&self) -> u64 {
        self.buffers.heap_reads()
    }

    /// Starts the next pass at offset 0 (regular files).
    pub(super) fn rewind(&mut self) {
        self.offset = 0;
        self.eof = false;
    }

    /// The next window: `carry` followed by the next bytes of the file, or
    /// `None` at the end of the file. Cancel-safe.
    pub(super) async fn next(&mut self, carry: &[u8]) -> io::Result<Option<Bytes>> {
        if self.eof {
            return Ok(None);
        }
        if matches!(self.source, Source::Regular(_) | Source::Blocking(_)) {
            // Blocking reads: let the shard's other tasks run first.
            tokio::task::yield_now().await;
        }
        let mut slot = match self.held.take().or_else(|| self.buffers.take()) {
            Some(slot) => slot,
            None => self.buffers.take_heap(),
        };
        let (ptr, len) = match self.buffers.read_ptr(&mut slot) {
            Some(ptr) => (ptr, self.buffers.read_len()),
            None => return Err(io::Error::other("read buffer outside the pool")),
        };
        self.held = Some(slot);
        let result = loop {
            let result = match &self.source {
                Source::Regular(fd) => read_into(fd, ptr, len, Some(self.offset)),
                Source::Blocking(fd) => read_into(fd, ptr, len, None),
                Source::Pollable(fd) => {
                    let mut ready = fd.readable().await?;
                    match ready.try_io(|fd| read_into(fd, ptr, len, None)) {
                        Ok(result) => result,
                        Err(_would_block) => continue,
                    }
                }
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let Some(slot) = self.held.take() else { return Err(io::Error::other("read buffer lost")) };
        match result {
            Ok(0) => {
                self.buffers.release(slot);
                self.eof = true;
                Ok(None)
            }
            Ok(filled) => {
                self.offset += filled as u64;
                // SAFETY: the syscall has returned: nothing writes the slot.
                Ok(Some(unsafe { self.buffers.finish(slot, carry, filled) }))
            }
            Err(e) => {
                self.buffers.release(slot);
                Err(e)
            }
        }
    }
}

/// One `read` (or `pread` at `offset`) of up to `len` bytes into `ptr`.
fn read_into(fd: &impl AsRawFd, ptr: *mut u8, len: usize, offset: Option<u64>) -> io::Result<usize> {
    let done = match offset {
        Some(offset) => {
            let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
            // SAFETY: `ptr..ptr + len` is the read area of a slot the reader
            // holds (see `buffers`); nothing else reads or writes it during
            // the call.
            unsafe { libc::pread(fd.as_raw_fd(), ptr.cast(), len, offset) }
        }
        // SAFETY: as above.
        None => unsafe { libc::read(fd.as_raw_fd(), ptr.cast(), len) },
    };
    usize::try_from(done).map_err(|_| io::Error::last_os_error())
}

/// Clears `O_NONBLOCK` on `fd`'s open file.
pub(super) fn set_blocking(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; F_GETFL takes no pointer.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        // SAFETY: as above; F_SETFL takes an int.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Registers `fd` with the tokio reactor for readability; on failure (a
/// file epoll cannot watch: `EPERM`) hands the descriptor back. Must run
/// inside a tokio runtime (checked by `ReadChunks::open`).
pub(super) fn watch(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>, (OwnedFd, io::Error)> {
    // SAFETY: the `AsyncFd` owns the `OwnedFd`, so the descriptor stays
    // open and names the same file for the `AsyncFd`'s whole life.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.map_err(|e| e.into_parts())
}
