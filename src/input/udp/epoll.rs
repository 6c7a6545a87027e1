//! UDP receive on the epoll backend: readiness from tokio's reactor, then
//! `recvmmsg` batches straight into pool buffers until the socket is empty.
//!
//! Buffers follow `shard::pool`'s ownership rules: free ids are lent to
//! one `recvmmsg` call, filled ones become `Bytes`, and they come back
//! through the pool's return queue. When fewer than a quarter of the pool's
//! buffers are free (consumers hold them), a batch goes into the
//! receiver's own scratch buffers and is copied to the heap (counted), or
//! dropped past the heap cap (counted).
#![allow(unsafe_code)]

use std::io;

use socket2::Socket;
use tokio::io::unix::AsyncFd;

use super::cmsg::{self, CONTROL_LEN};
use super::sys::MmsgBatch;
use super::{Received, RecvCounters};
use crate::shard::pool::{BufId, BufferPool, HeapBudget};

/// Datagrams per `recvmmsg` call.
const BATCH: usize = 64;

/// A `recvmmsg` receiver on one socket.
pub struct EpollReceiver {
    socket: AsyncFd<Socket>,
    pool: BufferPool,
    heap: HeapBudget,
    free: Vec<BufId>,
    batch: MmsgBatch,
    scratch: Vec<u8>,
    /// Ids and pointers of the buffers lent to the current call.
    ids: Vec<BufId>,
    buffers: Vec<(*mut u8, usize)>,
}

impl EpollReceiver {
    /// A receiver with `buffers` pool buffers of `buffer_size` bytes.
    pub fn new(socket: Socket, buffers: usize, buffer_size: usize, heap_cap: usize) -> io::Result<EpollReceiver> {
        let pool = BufferPool::new(buffers, buffer_size).map_err(io::Error::other)?;
        let free = (0..buffers).filter_map(|id| BufId::try_from(id).ok()).rev().collect();
        // SAFETY: the AsyncFd owns the socket, so its fd stays open and
        // the same for the AsyncFd's whole life.
        let socket = unsafe { AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(EpollReceiver {
            socket,
            pool,
            heap: HeapBudget::new(heap_cap),
            free,
            batch: MmsgBatch::new(BATCH, CONTROL_LEN),
            scratch: vec![0; BATCH * buffer_size],
            ids: Vec::with_capacity(BATCH),
            buffers: Vec::with_capacity(BATCH),
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
            let mut ready = self.socket.readable().await?;
            loop {
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
                let (batch, buffers) = (&mut self.batch, &self.buffers);
                let result = ready.try_io(|socket| {
                    // SAFETY: (see MmsgBatch::recv) the pool buffers were
                    // taken from this receiver's free list, the scratch is
                    // its own, and nothing else touches either during the call.
                    unsafe { batch.recv(socket.get_ref(), buffers) }
                });
                let n = match result {
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => {
                        self.free.extend_from_slice(&self.ids);
                        return Err(e);
                    }
                    Err(_would_block) => {
                        self.free.extend_from_slice(&self.ids);
                        break;
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
                    break;
                }
            }
            if out.len() > before {
                return Ok(());
            }
        }
    }
}
