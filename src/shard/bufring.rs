//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19+): the
//! kernel picks a receive buffer from it for each multishot completion.
//!
//! ```text
//! ring memory (page aligned, entries × 16 bytes, shared with the kernel)
//!   entry: addr u64 | len u32 | bid u16 | resv u16
//!   entry 0's resv is the ring's tail, written by us, read by the kernel
//! ```
//!
//! Ownership: we write entries at positions `tail..` (which the kernel does
//! not read until the tail passes them), then publish the new tail with a
//! release store; the kernel consumes entries from its head up to the tail.
//! Entry 0 shares its last two bytes with the tail, so entries are written
//! field by field through raw pointers, never as a whole. The memory must
//! stay allocated while the ring is registered: [`BufRing`] unregisters
//! before it frees, and its owner must only drop it once no request that
//! selects from it is in flight (see `input::udp::uring`).
#![allow(unsafe_code)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::ptr::{NonNull, addr_of_mut};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;

use super::pool::BufId;

/// `struct io_uring_buf` of the kernel ABI.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// A registered provided-buffer ring of a power-of-two size.
pub struct BufRing {
    base: NonNull<RingEntry>,
    layout: Layout,
    entries: u16,
    /// Next position to fill (not yet visible to the kernel until
    /// [`BufRing::publish`]).
    tail: u16,
    /// Buffers pushed and not yet published.
    unpublished: u16,
    group: u16,
    registered: bool,
}

// SAFETY: the ring memory is owned by this value (and the kernel, through
// the registration); moving it to another thread moves that ownership.
unsafe impl Send for BufRing {}

impl BufRing {
    /// Allocates a ring of `entries` (a power of two, at most 32768) and
    /// registers it with `submitter`'s ring as buffer group `group`.
    pub fn register(submitter: &Submitter<'_>, entries: u16, group: u16) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "buffer ring size must be a power of two"));
        }
        let bytes = (usize::from(entries) * size_of::<RingEntry>()).max(4096);
        let layout = Layout::from_size_align(bytes, 4096).map_err(io::Error::other)?;
        // SAFETY: non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let base = NonNull::new(raw.cast::<RingEntry>()).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let mut ring = BufRing { base, layout, entries, tail: 0, unpublished: 0, group, registered: false };
        // SAFETY: the memory is page aligned, zeroed (tail 0), sized for
        // `entries`, and stays allocated until `drop` unregisters it.
        unsafe { submitter.register_buf_ring_with_flags(raw as u64, entries, group, 0) }?;
        ring.registered = true;
        Ok(ring)
    }

    /// The buffer group id to name in requests.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Number of entries.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Queues buffer `id` (`len` bytes at `addr`) for the kernel; visible
    /// after [`BufRing::publish`]. The caller hands the buffer over: it must
    /// not touch it until a completion names `id`, and must never have more
    /// buffers in the ring than its size.
    pub fn push(&mut self, id: BufId, addr: NonNull<u8>, len: u32) {
        let index = usize::from(self.tail & (self.entries - 1));
        // SAFETY: index < entries, inside the allocation. The kernel does
        // not read positions at or past the published tail, and only the
        // named fields are written (entry 0's resv is the tail).
        unsafe {
            let entry = self.base.as_ptr().add(index);
            addr_of_mut!((*entry).addr).write(addr.as_ptr() as u64);
            addr_of_mut!((*entry).len).write(len);
            addr_of_mut!((*entry).bid).write(id);
        }
        self.tail = self.tail.wrapping_add(1);
        self.unpublished += 1;
    }

    /// Makes pushed buffers visible to the kernel.
    pub fn publish(&mut self) {
        if self.unpublished == 0 {
            return;
        }
        // SAFETY: the tail field lies in entry 0, inside the allocation, and
        // is 2-byte aligned; the kernel only reads it.
        let tail = unsafe { AtomicU16::from_ptr(addr_of_mut!((*self.base.as_ptr()).resv)) };
        // Release: the entries written above are visible before the tail.
        tail.store(self.tail, Ordering::Release);
        self.unpublished = 0;
    }

    /// Unregisters the ring from `submitter`'s ring before it is dropped.
    /// Dropping without it leaks the ring memory rather than free memory the
    /// kernel may still read.
    pub fn unregister(&mut self, submitter: &Submitter<'_>) -> io::Result<()> {
        if self.registered {
            submitter.unregister_buf_ring(self.group)?;
            self.registered = false;
        }
        Ok(())
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.registered {
            // The kernel may still read it; leak instead (only on a failed
            // teardown, which `unregister` reports).
            return;
        }
        // SAFETY: allocated with this layout in `register`; unregistered.
        unsafe { dealloc(self.base.as_ptr().cast(), self.layout) };
    }
}
