//! Read buffers: pool buffers with headroom for the carry, and heap
//! buffers when consumers hold the whole pool.
//!
//! Layout of every buffer: [`HEADROOM`] bytes, then the read area. A read
//! fills the read area only. When its completion is taken (in stream
//! order), the carry of the previous window (at most `framer::MAX_CARRY`
//! bytes, under the headroom) is copied just in front of the new bytes, so
//! the window `carry + new bytes` is contiguous without moving the new
//! bytes, whatever the number of reads in flight: the carry only has to be
//! known when a read completes, not when it is submitted.
//!
//! Ownership (the states of `shard::pool`): a [`Slot`] is a buffer taken by
//! the reader. While a read into it is in flight the kernel may write its
//! read area and nobody touches it; [`ReadBuffers::finish`] is called once
//! the read is over, writes the carry and lends the window as `Bytes`
//! (pool buffers go back to the pool when the last clone drops, heap
//! buffers are freed). A slot whose read is abandoned goes back with
//! [`ReadBuffers::release`], again only once the read is over.
#![allow(unsafe_code)]

use std::io;

use bytes::Bytes;

use crate::input::framer::MAX_CARRY;
use crate::shard::pool::{BufId, BufferPool};

/// Bytes in front of each read area, for the carry. A page, so the read
/// area starts page-aligned (pool buffers are page-aligned and their size
/// is a multiple of a page).
pub(super) const HEADROOM: usize = 4096;
const _: () = assert!(HEADROOM >= MAX_CARRY);
const PAGE: usize = 4096;

/// A buffer held by the reader.
pub(super) enum Slot {
    /// Buffer `id` of the pool (registered with the ring on io_uring).
    Pool(BufId),
    /// A heap buffer of the same layout, when the pool had none free. Its
    /// heap block does not move while the `Box` moves.
    Heap(Box<[u8]>),
}

/// The reader's buffers.
pub(super) struct ReadBuffers {
    pool: BufferPool,
    /// Pool buffers the reader holds free.
    free: Vec<BufId>,
    read_len: usize,
    heap_reads: u64,
}

impl ReadBuffers {
    /// `count` pool buffers with read areas of `read_len` bytes (rounded
    /// up to a page).
    pub(super) fn new(count: usize, read_len: usize) -> io::Result<ReadBuffers> {
        let read_len = read_len.max(PAGE).div_ceil(PAGE) * PAGE;
        let pool = BufferPool::new(count, HEADROOM + read_len).map_err(io::Error::other)?;
        let free = (0..count).rev().filter_map(|id| BufId::try_from(id).ok()).collect();
        Ok(ReadBuffers { pool, free, read_len, heap_reads: 0 })
    }

    /// The pool (to register its buffers with a ring).
    pub(super) fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// Bytes a read may fill.
    pub(super) fn read_len(&self) -> usize {
        self.read_len
    }

    /// Reads that had to use a heap buffer.
    pub(super) fn heap_reads(&self) -> u64 {
        self.heap_reads
    }

    /// A free pool buffer, after taking back those consumers dropped.
    pub(super) fn take(&mut self) -> Option<Slot> {
        let free = &mut self.free;
        self.pool.reclaim(|id| free.push(id));
        self.free.pop().map(Slot::Pool)
    }

    /// A fresh heap buffer (counted).
    pub(super) fn take_heap(&mut self) -> Slot {
        self.heap_reads += 1;
        Slot::Heap(vec![0u8; HEADROOM + self.read_len].into_boxed_slice())
    }

    /// Start of `slot`'s read area, `read_len` bytes long. Writing through
    /// it is allowed while the reader holds the slot and no read is over
    /// (module doc).
    pub(super) fn read_ptr(&self, slot: &mut Slot) -> Option<*mut u8> {
        match slot {
            // SAFETY: the pool buffer is HEADROOM + read_len bytes long, so
            // the offset stays inside it.
            Slot::Pool(id) => self.pool.buffer_ptr(*id).map(|p| unsafe { p.as_ptr().add(HEADROOM) }),
            Slot::Heap(buf) => buf.get_mut(HEADROOM..).map(<[u8]>::as_mut_ptr),
        }
    }

    /// Gives back a slot that was never lent (its read was abandoned or
    /// failed, and is over).
    pub(super) fn release(&mut self, slot: Slot) {
        if let Slot::Pool(id) = slot {
            self.free.push(id);
        }
    }

    /// The window `carry` + the `filled` bytes a read put in `slot`, as
    /// `Bytes` without copying the new bytes.
    ///
    /// # Safety
    ///
    /// The read into `slot` is over (its completion was seen, or the
    /// syscall returned): nothing else writes the buffer any more.
    pub(super) unsafe fn finish(&mut self, slot: Slot, carry: &[u8], filled: usize) -> Bytes {
        let filled = filled.min(self.read_len);
        // The framer's carry is never longer (see framer::MAX_CARRY); a
        // longer one would be a bug there, and is cut rather than written
        // out of bounds.
        let carry = &carry[carry.len().saturating_sub(HEADROOM)..];
        let start = HEADROOM - carry.len();
        match slot {
            Slot::Pool(id) => {
                let Some(base) = self.pool.buffer_ptr(id) else { return Bytes::new() };
                // SAFETY: `start..HEADROOM` lies inside the buffer; the
                // reader holds it and the read is over (caller's contract),
                // so nobody else reads or writes it; `carry` is another
                // buffer's bytes, so the two do not overlap.
                unsafe { std::ptr::copy_nonoverlapping(carry.as_ptr(), base.as_ptr().add(start), carry.len()) };
                // SAFETY: as above: the read is over and the reader hands
                // the buffer on here, once.
                unsafe { self.pool.lend(id, start, HEADROOM + filled) }.unwrap_or_default()
            }
            Slot::Heap(mut buf) => {
                buf[start..HEADROOM].copy_from_slice(carry);
                Bytes::from(buf).slice(start..HEADROOM + filled)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_put_the_carry_before_the_new_bytes_and_return_to_the_pool() {
        let mut b = ReadBuffers::new(2, 100).unwrap();
        assert_eq!(b.read_len(), PAGE);
        let mut slot = b.take().unwrap();
        let ptr = b.read_ptr(&mut slot).unwrap();
        // SAFETY: (test) the slot is held and no read is in flight.
        unsafe { std::ptr::write_bytes(ptr, 7, 10) };
        // SAFETY: (test) the "read" above is over.
        let window = unsafe { b.finish(slot, &[1, 2, 3], 10) };
        assert_eq!(&window[..], &[1, 2, 3, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]);
        let _second = b.take().unwrap();
        assert!(b.take().is_none(), "both buffers are out");
        drop(window);
        assert!(b.take().is_some(), "a dropped window returns its buffer");
        let mut heap = b.take_heap();
        let ptr = b.read_ptr(&mut heap).unwrap();
        // SAFETY: (test) as above.
        unsafe { std::ptr::write_bytes(ptr, 9, 2) };
        // SAFETY: (test) as above.
        let window = unsafe { b.finish(heap, &[4], 2) };
        assert_eq!(&window[..], &[4, 9, 9]);
        assert_eq!(b.heap_reads(), 1);
    }
}
