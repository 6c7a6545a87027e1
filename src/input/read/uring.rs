//! Sequential file reads on io_uring: `READ_FIXED` into the pool's
//! registered buffers, on a ring of the reader's own.
//!
//! Queue depth: a regular file keeps up to `depth` reads in flight at
//! known offsets (`offset`, `offset + read_len`, ...), so the next buffers
//! are being filled while the consumer works through the current one and
//! the disk never idles. Completions may arrive in any order; they are
//! taken in offset order (the queue below), which is stream order. A pipe,
//! FIFO or character device has no offsets (the kernel ignores them for
//! `FMODE_STREAM` files and reads at the "current position", offset -1):
//! two reads in flight could take their bytes in either order, so these
//! keep exactly one read in flight.
//!
//! Short reads: a regular-file read that returns fewer bytes than asked
//! (the end of the file, usually) leaves a gap before the next read's
//! offset. The reads after it are marked stale (their buffers come back
//! when they complete, their bytes unused) and reading goes on right after
//! the bytes received. End of file is a read that returns 0 at the head of
//! the queue.
//!
//! The carry (`buffers`): copied into the headroom of the buffer whose
//! completion is taken next, so reads can be submitted before the carry is
//! known.
//!
//! The ring is set up like the UDP receiver's (`DEFER_TASKRUN` and
//! `SINGLE_ISSUER` when the kernel has them), with an eventfd registered in
//! tokio through `AsyncFd` to wait on. Unlike the receiver there is no
//! batch window: a read's completion is the next thing the consumer needs.
//!
//! Teardown: the kernel may write a buffer until the read's completion is
//! seen. Dropping the reader cancels the reads still in flight and waits
//! for every completion (bounded); if some never come, the pool memory and
//! any heap buffers are leaked, with an error logged, never freed under the
//! kernel.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use bytes::Bytes;
use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, opcode};
use tokio::io::unix::AsyncFd;

use super::buffers::{ReadBuffers, Slot};
use crate::input::udp::sys;
use crate::shard::ring;

/// user_data of cancel requests (reads use their sequence number, which
/// never gets this high).
const CANCEL: u64 = u64::MAX;
/// "Read at the current file position": the offset of stream reads.
const CURRENT_POSITION: u64 = u64::MAX;
/// Teardown: rounds of waiting for completions, each up to `TEARDOWN_WAIT`.
const TEARDOWN_ROUNDS: usize = 50;
const TEARDOWN_WAIT_NS: u32 = 100_000_000;

/// One submitted read, in stream order.
struct InFlight {
    seq: u64,
    offset: u64,
    len: usize,
    slot: Slot,
    /// The completion's result, once seen.
    result: Option<i32>,
    /// Its bytes are not wanted (a read before it came up short, or the
    /// pass ended): release the slot when it completes.
    stale: bool,
}

/// A file read through io_uring.
pub(super) struct UringReader {
    // Declared first: deregisters from the reactor before the fd closes.
    wake: AsyncFd<OwnedFd>,
    ring: IoUring,
    buffers: ReadBuffers,
    file: OwnedFd,
    /// Whether the pool's buffers are registered (`READ_FIXED`); plain
    /// `READ` into the same buffers otherwise.
    fixed: bool,
    /// Reads in flight at most (1 for streams).
    depth: usize,
    stream: bool,
    queue: VecDeque<InFlight>,
    next_seq: u64,
    /// File offset of the next read to submit (regular files).
    next_offset: u64,
    /// This pass met the end of the file: no more reads until `rewind`.
    eof: bool,
}

impl UringReader {
    /// Sets up the ring and registers the buffers. Must run on the thread
    /// that reads (the ring may be single-issuer).
    pub(super) fn new(file: OwnedFd, buffers: ReadBuffers, stream: bool, depth: usize) -> io::Result<UringReader> {
        let depth = if stream { 1 } else { depth.clamp(1, buffers.pool().count()) };
        let entries = (depth as u32 * 2).next_power_of_two().max(8);
        let ring = match IoUring::builder().setup_single_issuer().setup_defer_taskrun().build(entries) {
            Ok(ring) => ring,
            // Older kernels (before 6.1) lack DEFER_TASKRUN: a plain ring
            // works the same, with completions posted as they happen.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::new(entries)?,
            Err(e) => return Err(e),
        };
        let pool = buffers.pool();
        let iovecs: Vec<libc::iovec> = (0..pool.count())
            .filter_map(|id| pool.buffer_ptr(u16::try_from(id).ok()?))
            .map(|ptr| libc::iovec { iov_base: ptr.as_ptr().cast(), iov_len: pool.buffer_size() })
            .collect();
        // SAFETY: the iovecs describe the pool's buffers, which live as long
        // as the pool; this reader holds a pool handle (`buffers`) declared
        // after the ring, and `drop` either sees every read complete or
        // leaks the pool, so the memory outlives the registration and every
        // read into it.
        let fixed = match unsafe { ring.submitter().register_buffers(&iovecs) } {
            Ok(()) => true,
            Err(e) => {
                // Registration pins memory against RLIMIT_MEMLOCK; plain
                // reads into the same buffers cost a page walk per read.
                tracing::info!("cannot register read buffers ({e}); using plain reads");
                false
            }
        };
        let eventfd = sys::eventfd()?;
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        let wake = super::plain::watch(eventfd).map_err(|(_, e)| e)?;
        Ok(UringReader {
            wake,
            ring,
            buffers,
            file,
            fixed,
            depth,
            stream,
            queue: VecDeque::with_capacity(depth * 2),
            next_seq: 0,
            next_offset: 0,
            eof: false,
        })
    }

    /// Reads that had to use a heap buffer.
    pub(super) fn heap_reads(&self) -> u64 {
        self.buffers.heap_reads()
    }

    /// Whether the pool's buffers are registered with the ring.
    pub(super) fn fixed(&self) -> bool {
        self.fixed
    }

    /// Starts the next pass at offset 0 (regular files).
    pub(super) fn rewind(&mut self) {
        self.mark_stale();
        self.next_offset = 0;
        self.eof = false;
    }

    /// The next window: `carry` followed by the next bytes of the file, or
    /// `None` at the end of the file. Cancel-safe: nothing is taken from
    /// the queue across an await.
    pub(super) async fn next(&mut self, carry: &[u8]) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(window) = self.take_head(carry)? {
                return Ok(window);
            }
            if self.eof {
                // Asked again after the end, before a rewind.
                return Ok(None);
            }
            self.submit_reads()?;
            self.collect()?;
            if self.queue.front().is_some_and(|r| r.result.is_some()) {
                continue;
            }
            let mut ready = self.wake.readable().await?;
            sys::clear_eventfd(ready.get_inner());
            ready.clear_ready();
        }
    }

    /// Takes the head of the queue if its read is over: `Some(window)`,
    /// `Some(None)` at the end of the file, `None` when it is still in
    /// flight (or the queue is empty).
    fn take_head(&mut self, carry: &[u8]) -> io::Result<Option<Option<Bytes>>> {
        while let Some(head) = self.queue.front() {
            let Some(result) = head.result else { return Ok(None) };
            let Some(head) = self.queue.pop_front() else { return Ok(None) };
            if head.stale {
                self.buffers.release(head.slot);
                continue;
            }
            if result < 0 {
                self.buffers.release(head.slot);
                // Whatever follows was read after a hole: read it again.
                self.mark_stale();
                self.next_offset = head.offset;
                if result == -libc::EINTR {
                    continue;
                }
                return Err(io::Error::from_raw_os_error(-result));
            }
            let filled = result as usize;
            if filled == 0 {
                self.buffers.release(head.slot);
                self.mark_stale();
                self.eof = true;
                return Ok(Some(None));
            }
            if !self.stream && filled < head.len {
                self.mark_stale();
                self.next_offset = head.offset + filled as u64;
            }
            // SAFETY: the completion of the read into this slot was seen:
            // the kernel no longer writes it.
            let window = unsafe { self.buffers.finish(head.slot, carry, filled) };
            return Ok(Some(Some(window)));
        }
        Ok(None)
    }

    /// Marks every queued read stale (their completions are still awaited).
    fn mark_stale(&mut self) {
        for r in &mut self.queue {
            r.stale = true;
        }
    }

    /// Submits reads until `depth` are wanted and in flight.
    fn submit_reads(&mut self) -> io::Result<()> {
        let mut pushed = false;
        while !self.eof && self.queue.iter().filter(|r| !r.stale).count() < self.depth {
            let slot = match self.buffers.take() {
                Some(slot) => slot,
                // Consumers hold every buffer and no read of ours is under
                // way that would bring one back: read into the heap rather
                // than stall (counted). With reads in flight, wait for them.
                None if self.queue.iter().all(|r| r.stale) => self.buffers.take_heap(),
                None => break,
            };
            let offset = if self.stream { CURRENT_POSITION } else { self.next_offset };
            let len = self.buffers.read_len();
            if !self.push_read(slot, offset, len)? {
                break;
            }
            pushed = true;
            if !self.stream {
                self.next_offset += len as u64;
            }
        }
        if pushed {
            self.ring.submit()?;
        }
        Ok(())
    }

    /// Queues one read into `slot`; `false` (and the slot released) when
    /// the submission queue is full.
    fn push_read(&mut self, mut slot: Slot, offset: u64, len: usize) -> io::Result<bool> {
        let Some(ptr) = self.buffers.read_ptr(&mut slot) else {
            self.buffers.release(slot);
            return Err(io::Error::other("read buffer outside the pool"));
        };
        let seq = self.next_seq;
        let fd = Fd(self.file.as_raw_fd());
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        let entry = match (&slot, self.fixed) {
            (Slot::Pool(id), true) => opcode::ReadFixed::new(fd, ptr, len32, *id).offset(offset).build(),
            _ => opcode::Read::new(fd, ptr, len32).offset(offset).build(),
        };
        // SAFETY: `ptr..ptr + len` is the slot's read area, which the slot
        // (kept in `queue` until the completion is seen, or leaked by
        // `drop`) keeps alive and untouched; for READ_FIXED it lies inside
        // registered buffer `id`. The fd is owned by self and outlives the
        // request for the same reason.
        if unsafe { self.ring.submission().push(&entry.user_data(seq)) }.is_err() {
            self.buffers.release(slot);
            return Ok(false);
        }
        self.next_seq += 1;
        self.queue.push_back(InFlight { seq, offset, len, slot, result: None, stale: false });
        Ok(true)
    }

    /// Runs deferred completions without waiting and records their results.
    fn collect(&mut self) -> io::Result<()> {
        ring::run_deferred(&self.ring)?;
        self.record_completions();
        Ok(())
    }

    fn record_completions(&mut self) {
        let front = self.queue.front().map_or(0, |r| r.seq);
        for cqe in self.ring.completion() {
            let Some(index) = cqe.user_data().checked_sub(front) else { continue };
            if let Some(r) = usize::try_from(index).ok().and_then(|i| self.queue.get_mut(i)) {
                r.result = Some(cqe.result());
            }
        }
    }
}

impl Drop for UringReader {
    fn drop(&mut self) {
        let pending: Vec<u64> = self.queue.iter().filter(|r| r.result.is_none()).map(|r| r.seq).collect();
        for seq in pending {
            let cancel = opcode::AsyncCancel::new(seq).build().user_data(CANCEL);
            // SAFETY: the cancel entry holds no pointers. A full queue only
            // means this read is not cancelled and is waited for instead.
            if unsafe { self.ring.submission().push(&cancel) }.is_err() {
                let _ = self.ring.submit();
                // SAFETY: as above.
                let _ = unsafe { self.ring.submission().push(&cancel) };
            }
        }
        let wait = Timespec::new().nsec(TEARDOWN_WAIT_NS);
        let mut rounds = 0;
        while self.queue.iter().any(|r| r.result.is_none()) && rounds < TEARDOWN_ROUNDS {
            rounds += 1;
            match self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&wait)) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
                Err(_) => break,
            }
            self.record_completions();
        }
        if self.queue.iter().any(|r| r.result.is_none()) {
            // The kernel may still write into these buffers: leak them (the
            // pool's memory, and heap slots) rather than free them.
            tracing::error!("io_uring file reads did not end at teardown; leaking their buffers");
            std::mem::forget(self.buffers.pool().clone());
            std::mem::forget(std::mem::take(&mut self.queue));
        }
    }
}
