//! UDP receive on the epoll backend: `recvmmsg` batches straight into pool
//! buffers, one per call.
//!
//! Wake-ups are batched as on io_uring. The socket is watched through a
//! private one-shot epoll (`sys::oneshot_epoll`) that the reactor waits on:
//! it reports the first datagram and then stays silent, the receiver lets a
//! batch gather for `batch_window`, reads until the socket is empty and
//! re-arms the watch. Waiting on the socket in the reactor directly woke
//! the shard for every datagram arriving during the window (24 000 context
//! switches a second at 3 Gbit/s), and reading at each wake-up cost 1.6x the
//! CPU per datagram of a blocking `recvmmsg` loop.
//!
//! Buffers follow `shard::pool`'s ownership rules: free ids are lent to
//! one `recvmmsg` call, filled ones become `Bytes`, and they come back
//! through the pool's return queue. When fewer than a quarter of the pool's
//! buffers are free (consumers hold them), a batch goes into the
//! receiver's own scratch buffers and is copied to the heap (counted), or
//! dropped past the heap cap (counted).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use socket2::Socket;
use tokio::io::unix::AsyncFd;

use super::cmsg::{self, CONTROL_LEN};
use super::sys::{self, MmsgBatch};
use super::{Received, RecvCounters};
use crate::shard::pool::{BufId, BufferPool, HeapBudget};

/// Datagrams per `recvmmsg` call.
const BATCH: usize = 64;

/// A `recvmmsg` receiver on one socket.
pub struct EpollReceiver {
    // Declared first: deregisters from the reactor before the fds close.
    poller: AsyncFd<OwnedFd>,
    socket: Socket,
    pool: BufferPool,
    heap: HeapBudget,
    free: Vec<BufId>,
    batch: MmsgBatch,
    scratch: Vec<u8>,
    /// Ids and pointers of the buffers lent to the current call.
    ids: Vec<BufId>,
    buffers: Vec<(*mut u8, usize)>,
    /// How long to let datagrams gather after the socket was found empty.
    batch_window: Duration,
    /// The watch fired and the socket has not been read empty since.
    draining: bool,
}

impl EpollReceiver {
    /// A receiver with `buffers` pool buffers of `buffer_size` bytes.
    pub fn new(
        socket: Socket,
        buffers: usize,
        buffer_size: usize,
        heap_cap: usize,
        batch_window: Duration,
    ) -> io::Result<EpollReceiver> {
        let pool = BufferPool::new(buffers, buffer_size).map_err(io::Error::other)?;
        let free = (0..buffers).filter_map(|id| BufId::try_from(id).ok()).rev().collect();
        let epoll = sys::oneshot_epoll(&socket)?;
        // SAFETY: the AsyncFd owns the epoll fd, so it stays open and the
        // same for the AsyncFd's whole life.
        let poller = unsafe { AsyncFd::register_with_interest(epoll, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(EpollReceiver {
            poller,
            socket,
            pool,
            heap: HeapBudget::new(heap_cap),
            free,
            batch: MmsgBatch::new(BATCH, CONTROL_LEN),
            scratch: vec![0; BATCH * buffer_size],
            ids: Vec::with_capacity(BATCH),
            buffers: Vec::with_capacity(BATCH),
            batch_window,
            draining: false,
        })
    }

    /// The receive pool (for its counters).
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// Waits for datagrams and appends them to `out`.
    pub async fn recv(&mut self, out: &mut Vec<Received>, counters: &mut RecvCounters) -> io::Result<()> {
        let before = out.len();
        loop {
            let free = &mut self.free;
            self.pool.reclaim(|id| free.push(id));
            if !self.draining {
                let mut ready = self.poller.readable().await?;
                let reported = sys::take_report(ready.get_inner())?;
                // The watch is one-shot and now disarmed, so nothing can
                // make the epoll fd ready again until it is re-armed.
                ready.clear_ready();
                drop(ready);
                if !reported {
                    continue;
                }
                // Set before the wait: if this future is dropped there, the
                // next call reads (and re-arms) instead of waiting forever.
                self.draining = true;
                if !self.batch_window.is_zero() {
                    tokio::time::sleep(self.batch_window).await;
                }
            }
            {
                let size = self.pool.buffer_size();
                let low = self.free.len() * 4 < self.pool.count();
                self.ids.clear();
                self.buffers.clear();
                if low {
                    self.buffers.extend(self.scratch.chunks_exact_mut(size).map(|c| (c.as_mut_ptr(), size)));
                } else {
                    while self.ids.len() < BATCH {
                        let Some(id) = self.free.pop() else { break };
                        let Some(ptr) = self.pool.buffer_ptr(id) else { continue };
                        self.ids.push(id);
                        self.buffers.push((ptr.as_ptr(), size));
                    }
                }
                // SAFETY: (see MmsgBatch::recv) the pool buffers were taken
                // from this receiver's free list, the scratch is its own, and
                // nothing else touches either during the call.
                let n = match unsafe { self.batch.recv(&self.socket, &self.buffers) } {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(e) => {
                        self.free.extend_from_slice(&self.ids);
                        return Err(e);
                    }
                };
                if !low {
                    self.free.extend_from_slice(&self.ids[n..]);
                }
                for i in 0..n {
                    let (len, flags, control) = self.batch.received(i);
                    if flags & libc::MSG_TRUNC != 0 {
                        counters.truncated += 1;
                    }
                    let control = cmsg::parse(control);
                    let len = len.min(size);
                    let payload = if low {
                        match self.heap.copy(&self.scratch[i * size..i * size + len]) {
                            Some(copy) => {
                                counters.pool_fallbacks += 1;
                                copy
                            }
                            None => {
                                counters.pool_drops += 1;
                                continue;
                            }
                        }
                    } else {
                        // SAFETY: recvmmsg has returned; the buffer is ours
                        // and nothing writes it any more.
                        match unsafe { self.pool.lend(self.ids[i], 0, len) } {
                            Some(bytes) => bytes,
                            None => continue,
                        }
                    };
                    out.push(Received { payload, control });
                }
                if n < self.buffers.len() {
                    // The socket is empty: watch it again (an arrival since
                    // the read makes the epoll fd ready at once).
                    self.draining = false;
                    sys::rearm(self.poller.get_ref(), &self.socket)?;
                }
            }
            // Hand each batch over at once: holding on while the socket
            // stays busy kept every pool buffer from the consumer and, at a
            // few Gbit/s, ran the pool dry (heap copies, then drops).
            if out.len() > before {
                return Ok(());
            }
            if self.draining {
                // A full batch all dropped (consumers hold the pool and the
                // heap cap is reached): let the shard's other tasks, and a
                // caller's deadline, run before reading on.
                tokio::task::yield_now().await;
            }
        }
    }
}
