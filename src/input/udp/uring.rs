//! UDP receive on io_uring: one multishot `recvmsg` selecting from a
//! provided-buffer ring, on a ring of the input's own.
//!
//! The ring is set up with `DEFER_TASKRUN`: completions gather in the
//! kernel until we ask for them, and an eventfd tells us that some are
//! waiting. After a wake-up the receiver lets a batch gather for
//! `batch_window` (1 ms by default) before collecting: picking up each
//! completion at once made io_uring no cheaper than `recvmmsg`; batching the
//! wait is what pays.
//!
//! Buffer ownership (see `shard::pool`): all pool buffers start in the
//! provided-buffer ring; a completion names the one the kernel filled, which
//! becomes `Bytes`; when its last clone drops it comes back through the
//! pool's return queue and is pushed into the ring again. When fewer than a
//! quarter of the buffers are in the ring (consumers are holding them),
//! datagrams are copied to the heap instead and their buffer recycled at
//! once; past the heap cap they are dropped. Both are counted.
//!
//! Teardown: the multishot request may write into ring buffers until its
//! final completion (no `MORE` flag). Dropping the receiver cancels it and
//! waits for that completion before the buffer ring is unregistered; the
//! pool memory itself lives until the last `Bytes` is gone.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use bytes::Bytes;
use io_uring::types::Fd;
use io_uring::{IoUring, cqueue, opcode};
use socket2::Socket;
use tokio::io::unix::AsyncFd;

use super::cmsg::{self, CONTROL_LEN};
use super::sys;
use super::{Received, RecvCounters};
use crate::shard::bufring::BufRing;
use crate::shard::pool::{BufferPool, HeapBudget};
use crate::shard::ring;

const RECV: u64 = 1;
const CANCEL: u64 = 2;
/// Size of `struct io_uring_recvmsg_out`, which leads each buffer.
const RECVMSG_OUT: usize = 16;
/// Buffer group of the ring (one ring per io_uring instance here).
const GROUP: u16 = 0;
/// Completions to wait for at teardown before giving up (the memory is then
/// leaked, never freed under the kernel).
const TEARDOWN_ROUNDS: usize = 64;

/// Receive settings.
#[derive(Clone, Copy, Debug)]
pub struct UringConfig {
    /// Buffers in the pool and the ring (a power of two).
    pub buffers: u16,
    /// Bytes per buffer, including the 16-byte header and the control area.
    pub buffer_size: usize,
    /// How long to let completions gather after a wake-up.
    pub batch_window: Duration,
    /// Bytes of heap copies alive at once before datagrams are dropped.
    pub heap_cap: usize,
    /// Buffers kept in the provided-buffer ring; the rest wait on a stack
    /// and the most recently returned go back first.
    pub ring_fill: usize,
}

/// A multishot receiver on one socket.
pub struct UringReceiver {
    // Declared first: deregisters from the reactor before the fd closes.
    wake: AsyncFd<OwnedFd>,
    ring: IoUring,
    bufring: BufRing,
    pool: BufferPool,
    heap: HeapBudget,
    socket: Socket,
    msghdr: Box<libc::msghdr>,
    config: UringConfig,
    in_ring: usize,
    /// Free buffers outside the ring, most recently returned last.
    spare: Vec<u16>,
    armed: bool,
    /// Completions taken from the queue, reused between calls.
    cqes: Vec<(u64, i32, u32)>,
}

impl UringReceiver {
    /// Sets up the ring, the pool and the buffer ring for `socket`. Must run
    /// on the thread that will receive (the ring is single-issuer).
    pub fn new(socket: Socket, config: UringConfig) -> io::Result<UringReceiver> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        if !config.buffers.is_power_of_two() {
            return Err(invalid("buffer count must be a power of two"));
        }
        if config.buffer_size <= RECVMSG_OUT + CONTROL_LEN || config.buffer_size > u32::MAX as usize {
            return Err(invalid("buffer size too small for the recvmsg header"));
        }
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(u32::from(config.buffers) * 2)
            .build(16)?;
        let pool = BufferPool::new(usize::from(config.buffers), config.buffer_size).map_err(io::Error::other)?;
        let mut bufring = BufRing::register(&ring.submitter(), config.buffers, GROUP)?;
        let fill = config.ring_fill.clamp(1, usize::from(config.buffers));
        let mut spare: Vec<u16> = (0..config.buffers).rev().collect();
        for id in spare.split_off(usize::from(config.buffers) - fill).into_iter().rev() {
            if let Some(ptr) = pool.buffer_ptr(id) {
                bufring.push(id, ptr, config.buffer_size as u32);
            }
        }
        bufring.publish();
        let eventfd = sys::eventfd()?;
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        // SAFETY: msghdr is plain data; zero is a valid value.
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_namelen = 0;
        msghdr.msg_controllen = CONTROL_LEN;
        let heap = HeapBudget::new(config.heap_cap);
        // SAFETY: the AsyncFd owns the eventfd, so it stays open and the
        // same for the AsyncFd's whole life.
        let wake = unsafe { AsyncFd::register_with_interest(eventfd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(UringReceiver {
            wake,
            ring,
            bufring,
            pool,
            heap,
            socket,
            msghdr,
            config,
            in_ring: fill,
            spare,
            armed: false,
            cqes: Vec::with_capacity(usize::from(config.buffers) * 2),
        })
    }

    /// The receive pool (for its counters).
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// Waits for datagrams and appends them to `out`.
    pub async fn recv(&mut self, out: &mut Vec<Received>, counters: &mut RecvCounters) -> io::Result<()> {
        loop {
            self.recycle();
            if !self.armed {
                self.arm()?;
            }
            ring::run_deferred(&self.ring)?;
            let before = out.len();
            self.drain(out, counters)?;
            if out.len() > before {
                return Ok(());
            }
            let mut ready = self.wake.readable().await?;
            sys::clear_eventfd(ready.get_inner());
            ready.clear_ready();
            drop(ready);
            tokio::time::sleep(self.config.batch_window).await;
        }
    }

    /// Tops the ring up to `ring_fill` buffers, the most recently returned
    /// first.
    fn recycle(&mut self) {
        let spare = &mut self.spare;
        self.pool.reclaim(|id| spare.push(id));
        let fill = self.config.ring_fill.min(usize::from(self.config.buffers));
        while self.in_ring < fill {
            let Some(id) = self.spare.pop() else { break };
            if let Some(ptr) = self.pool.buffer_ptr(id) {
                self.bufring.push(id, ptr, self.config.buffer_size as u32);
                self.in_ring += 1;
            }
        }
        self.bufring.publish();
    }

    fn arm(&mut self) -> io::Result<()> {
        let entry =
            opcode::RecvMsgMulti::new(Fd(self.socket.as_raw_fd()), &*self.msghdr, GROUP).build().user_data(RECV);
        // SAFETY: the msghdr is boxed and the socket owned by self; both
        // outlive the request, which `drop` cancels and drains.
        unsafe { self.ring.submission().push(&entry) }.map_err(|_| io::Error::other("submission queue full"))?;
        self.ring.submit()?;
        self.armed = true;
        Ok(())
    }

    fn drain(&mut self, out: &mut Vec<Received>, counters: &mut RecvCounters) -> io::Result<()> {
        let mut failure = None;
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        for &(user_data, result, flags) in &cqes {
            if user_data != RECV {
                continue;
            }
            if !cqueue::more(flags) {
                self.armed = false;
            }
            if result < 0 {
                let err = io::Error::from_raw_os_error(-result);
                match -result {
                    // The ring ran dry: datagrams wait in the socket buffer
                    // until the request is re-armed.
                    libc::ENOBUFS => counters.ring_empty += 1,
                    libc::ECANCELED => {}
                    _ => failure = Some(err),
                }
                continue;
            }
            let Some(id) = cqueue::buffer_select(flags) else { continue };
            self.in_ring = self.in_ring.saturating_sub(1);
            // SAFETY: the completion hands buffer `id` back to us; the kernel
            // is done writing it.
            let Some(buffer) = (unsafe { self.pool.lend(id, 0, result as usize) }) else { continue };
            let Some(datagram) = self.parse(&buffer, counters) else { continue };
            if (self.in_ring + self.spare.len()) * 4 < usize::from(self.config.buffers) {
                // Consumers hold most buffers: copy, and let this one go
                // back to the ring.
                match self.heap.copy(&datagram.payload) {
                    Some(copy) => {
                        counters.pool_fallbacks += 1;
                        out.push(Received { payload: copy, ..datagram });
                    }
                    None => counters.pool_drops += 1,
                }
            } else {
                out.push(datagram);
            }
        }
        self.cqes = cqes;
        match failure {
            Some(err) if out.is_empty() => Err(err),
            _ => Ok(()),
        }
    }

    /// Splits a filled buffer into payload and control (layout of
    /// `io_uring_recvmsg_out`: namelen, controllen, payloadlen, flags).
    fn parse(&self, buffer: &Bytes, counters: &mut RecvCounters) -> Option<Received> {
        let word = |at: usize| buffer.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        let control_len = (word(4)? as usize).min(CONTROL_LEN);
        let payload_len = word(8)? as usize;
        let msg_flags = word(12)? as i32;
        let control_start = RECVMSG_OUT + self.msghdr.msg_namelen as usize;
        let payload_start = control_start + CONTROL_LEN;
        let payload_end = payload_start.checked_add(payload_len)?.min(buffer.len());
        if payload_start > payload_end {
            return None;
        }
        if msg_flags & libc::MSG_TRUNC != 0 {
            counters.truncated += 1;
        }
        let control = cmsg::parse(buffer.get(control_start..control_start + control_len)?);
        Some(Received { payload: buffer.slice(payload_start..payload_end), control })
    }
}

impl Drop for UringReceiver {
    fn drop(&mut self) {
        if self.armed {
            let cancel = opcode::AsyncCancel::new(RECV).build().user_data(CANCEL);
            // SAFETY: the cancel entry holds no pointers.
            let pushed = unsafe { self.ring.submission().push(&cancel) }.is_ok();
            let mut rounds = 0;
            while pushed && self.armed && rounds < TEARDOWN_ROUNDS {
                rounds += 1;
                if self.ring.submit_and_wait(1).is_err() {
                    break;
                }
                for c in self.ring.completion() {
                    if c.user_data() == RECV && !cqueue::more(c.flags()) {
                        self.armed = false;
                    }
                    if let Some(id) = cqueue::buffer_select(c.flags()) {
                        // SAFETY: handed back by the completion; dropped at
                        // once, which returns it to the pool.
                        drop(unsafe { self.pool.lend(id, 0, 0) });
                    }
                }
            }
        }
        if self.armed {
            // The kernel may still write into the ring's buffers: leak the
            // ring registration (and with it the buffer ring memory) rather
            // than free it. The pool memory is leaked too.
            tracing::error!("io_uring receive did not end at teardown; leaking its buffers");
            std::mem::forget(self.pool.clone());
            return;
        }
        if let Err(e) = self.bufring.unregister(&self.ring.submitter()) {
            tracing::warn!("cannot unregister buffer ring: {e}");
        }
    }
}
