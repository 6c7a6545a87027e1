//! Receive buffers, lent out as `Bytes` without a copy.
//!
//! A [`BufferPool`] is one page-aligned anonymous mapping cut into `count` buffers
//! of `size` bytes, identified by a [`BufId`]. Ownership of a buffer moves
//! through three states, and only one party holds it in each:
//!
//! 1. **Free**, held by the receiver (the shard task that owns the socket):
//!    it may hand the buffer's pointer to the kernel.
//! 2. **With the kernel**: in a provided-buffer ring or an in-flight
//!    `recvmmsg`. Nobody in user space touches it.
//! 3. **Filled**: the kernel named it in a completion; the receiver turns it
//!    into one [`PoolBuf`] via [`BufferPool::lend`], which becomes the owner
//!    of a `Bytes` (`Bytes::from_owner`) that any number of consumers on any
//!    thread may clone and slice. The bytes are only read from now on.
//!
//! When the last clone drops, the `PoolBuf` drop puts the id on a lock-free
//! return queue; the receiver takes it back ([`BufferPool::reclaim`]) and
//! the cycle restarts. The pool memory is freed when the pool and every
//! `PoolBuf` are gone (both hold the `Arc`); the receiver must also make
//! sure the kernel holds no buffer any more (see `bufring`), which is why
//! the memory lives behind the `Arc` and not in the receiver.
//!
//! Heap fallback: consumers that hold buffers (a hub keeps its last
//! `capacity` chunks) can drain the pool. A receiver that runs low copies
//! datagrams into heap chunks instead ([`HeapBudget`]), up to a byte cap,
//! and drops (counting) beyond it, so receiving never stalls.
#![allow(unsafe_code)]

#[cfg(miri)]
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use thiserror::Error;

/// Index of one buffer in its pool.
pub type BufId = u16;

/// Alignment of the pool memory under Miri (which cannot map): a page, as
/// the mapping is everywhere else.
#[cfg(miri)]
const ALIGN: usize = 4096;
/// Pools at least this large ask for transparent huge pages.
const HUGE_PAGE_MIN: usize = 2 << 20;

/// Why a pool could not be made.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PoolError {
    /// Zero buffers, zero-sized buffers, or more than `BufId` can name.
    #[error("bad buffer pool shape: {count} buffers of {size} bytes")]
    Shape {
        /// Buffers asked for.
        count: usize,
        /// Bytes per buffer asked for.
        size: usize,
    },
    /// The allocator refused.
    #[error("cannot allocate a buffer pool of {0} bytes")]
    Alloc(usize),
}

/// Counters of a pool, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Buffers lent out and not yet returned.
    pub lent: AtomicU64,
    /// Datagrams copied to the heap because the pool ran low.
    pub fallbacks: AtomicU64,
    /// Datagrams dropped because the heap fallback was at its cap.
    pub drops: AtomicU64,
}

/// Where the pool's bytes live.
///
/// An anonymous mapping rather than a zeroed allocation: the allocator
/// zeroes page-aligned memory with a `memset`, which faulted in all of a
/// 33 MB UDP pool at open (about 10 ms of CPU, and the RSS, for buffers a
/// receiver may never touch), while a fresh mapping is zero and only the
/// pages used get backing. Large pools also ask for huge pages, which cut
/// TLB misses when the kernel copies into buffers across the pool.
#[cfg(not(miri))]
type Backing = memmap2::MmapMut;
/// Under Miri, which cannot map: a zeroed allocation.
#[cfg(miri)]
type Backing = Layout;

struct PoolMemory {
    base: NonNull<u8>,
    /// Owns the memory `base` points into; only dropped, never accessed.
    #[cfg_attr(not(miri), allow(dead_code))]
    backing: Backing,
    size: usize,
    count: usize,
    returned: ArrayQueue<BufId>,
    stats: Arc<PoolStats>,
}

// SAFETY: the memory is only written by the party that holds a buffer in
// state 1 or 2 of the module doc and only read by `PoolBuf` in state 3; ids
// move between parties through the return queue (which synchronises) or
// through the receiver's own completions. No `&mut` to shared bytes exists.
unsafe impl Send for PoolMemory {}
// SAFETY: as above; shared access is read-only to filled buffers.
unsafe impl Sync for PoolMemory {}

#[cfg(miri)]
impl Drop for PoolMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `allocate` with this layout; the last `Arc`
        // is gone, so no `PoolBuf` and no receiver can reach it.
        unsafe { dealloc(self.base.as_ptr(), self.backing) };
    }
}

/// `total` zeroed bytes, page-aligned, and what owns them.
#[cfg(not(miri))]
fn allocate(total: usize) -> Result<(NonNull<u8>, Backing), PoolError> {
    let mut map = memmap2::MmapOptions::new().len(total).map_anon().map_err(|_| PoolError::Alloc(total))?;
    if total >= HUGE_PAGE_MIN {
        // Only advice: without huge pages the pool works the same.
        let _ = map.advise(memmap2::Advice::HugePage);
    }
    let base = NonNull::new(map.as_mut_ptr()).ok_or(PoolError::Alloc(total))?;
    Ok((base, map))
}

/// `total` zeroed bytes, page-aligned, and what owns them.
#[cfg(miri)]
fn allocate(total: usize) -> Result<(NonNull<u8>, Backing), PoolError> {
    let _ = HUGE_PAGE_MIN;
    let layout = Layout::from_size_align(total, ALIGN).map_err(|_| PoolError::Alloc(total))?;
    // SAFETY: the layout has a non-zero size (the caller checked).
    let base = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or(PoolError::Alloc(total))?;
    Ok((base, layout))
}

/// A set of equal receive buffers (see the module doc).
#[derive(Clone)]
pub struct BufferPool {
    memory: Arc<PoolMemory>,
}

impl BufferPool {
    /// `count` buffers of `size` bytes each, zeroed.
    pub fn new(count: usize, size: usize) -> Result<BufferPool, PoolError> {
        let shape = PoolError::Shape { count, size };
        if count == 0 || size == 0 || count > usize::from(BufId::MAX) + 1 {
            return Err(shape);
        }
        let total = count.checked_mul(size).filter(|&t| t <= isize::MAX as usize).ok_or(shape)?;
        let (base, backing) = allocate(total)?;
        let memory = PoolMemory {
            base,
            backing,
            size,
            count,
            returned: ArrayQueue::new(count),
            stats: Arc::new(PoolStats::default()),
        };
        Ok(BufferPool { memory: Arc::new(memory) })
    }

    /// Bytes per buffer.
    pub fn buffer_size(&self) -> usize {
        self.memory.size
    }

    /// Number of buffers.
    pub fn count(&self) -> usize {
        self.memory.count
    }

    /// The pool's counters.
    pub fn stats(&self) -> &Arc<PoolStats> {
        &self.memory.stats
    }

    /// Start of buffer `id`, for handing to the kernel; `None` for an id
    /// outside the pool. Writing through it is allowed only while the
    /// caller holds the buffer free (module doc, state 1 or 2).
    pub fn buffer_ptr(&self, id: BufId) -> Option<NonNull<u8>> {
        let id = usize::from(id);
        if id >= self.memory.count {
            return None;
        }
        // SAFETY: id < count, so the offset lies inside the allocation.
        Some(unsafe { self.memory.base.add(id * self.memory.size) })
    }

    /// Turns filled buffer `id` into `Bytes` of its bytes `start..end`
    /// (clamped to the buffer). The id returns to the pool when the last
    /// clone drops. Returns `None` for an id outside the pool.
    ///
    /// # Safety
    ///
    /// The caller must hold `id` (received it in a completion and not lent
    /// it since) and nothing may write to it any more: the kernel is done
    /// with it.
    pub unsafe fn lend(&self, id: BufId, start: usize, end: usize) -> Option<Bytes> {
        let ptr = self.buffer_ptr(id)?;
        let end = end.min(self.memory.size);
        let start = start.min(end);
        self.memory.stats.lent.fetch_add(1, Ordering::Relaxed);
        let owner = PoolBuf { memory: Arc::clone(&self.memory), ptr, id, start, end };
        Some(Bytes::from_owner(owner))
    }

    /// Ids whose last `Bytes` was dropped since the last call, in any order.
    pub fn reclaim(&self, mut each: impl FnMut(BufId)) {
        while let Some(id) = self.memory.returned.pop() {
            each(id);
        }
    }
}

/// The owner behind the `Bytes` of one filled buffer.
struct PoolBuf {
    memory: Arc<PoolMemory>,
    ptr: NonNull<u8>,
    id: BufId,
    start: usize,
    end: usize,
}

// SAFETY: a PoolBuf only reads its own filled buffer, which nobody writes
// while it exists (module doc, state 3).
unsafe impl Send for PoolBuf {}

impl AsRef<[u8]> for PoolBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `start <= end <= size` (clamped in `lend`), the buffer is
        // inside the allocation kept alive by `memory`, and it is not
        // written while this owner exists.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(self.start), self.end - self.start) }
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        self.memory.stats.lent.fetch_sub(1, Ordering::Relaxed);
        // The queue holds every id at once, so it is never full; were it
        // ever, the buffer would only be lost to the pool, not misused.
        let _ = self.memory.returned.push(self.id);
    }
}

/// The heap fallback's budget: bytes of heap chunks alive at once.
#[derive(Clone, Debug)]
pub struct HeapBudget {
    in_use: Arc<AtomicUsize>,
    cap: usize,
}

impl HeapBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> HeapBudget {
        HeapBudget { in_use: Arc::new(AtomicUsize::new(0)), cap }
    }

    /// Bytes of heap chunks alive now.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// A heap copy of `data` when the budget allows, else `None`.
    pub fn copy(&self, data: &[u8]) -> Option<Bytes> {
        let len = data.len();
        let mut now = self.in_use.load(Ordering::Relaxed);
        loop {
            let next = now.checked_add(len).filter(|&n| n <= self.cap)?;
            match self.in_use.compare_exchange_weak(now, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(seen) => now = seen,
            }
        }
        Some(Bytes::from_owner(HeapChunk { data: data.into(), in_use: Arc::clone(&self.in_use) }))
    }
}

/// A heap copy counted against a [`HeapBudget`].
struct HeapChunk {
    data: Box<[u8]>,
    in_use: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for HeapChunk {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for HeapChunk {
    fn drop(&mut self) {
        self.in_use.fetch_sub(self.data.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(pool: &BufferPool, id: BufId, byte: u8, len: usize) {
        let ptr = pool.buffer_ptr(id).unwrap();
        // SAFETY: (test) the test holds `id` free; nothing else touches it.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), byte, len) };
    }

    #[test]
    fn lent_bytes_return_their_buffer_when_the_last_clone_drops() {
        let pool = BufferPool::new(4, 64).unwrap();
        fill(&pool, 2, 0xAB, 64);
        // SAFETY: (test) buffer 2 was filled above and is not written again.
        let bytes = unsafe { pool.lend(2, 8, 40) }.unwrap();
        assert_eq!(bytes.len(), 32);
        assert!(bytes.iter().all(|&b| b == 0xAB));
        let clone = bytes.slice(4..8);
        drop(bytes);
        let mut back = Vec::new();
        pool.reclaim(|id| back.push(id));
        assert!(back.is_empty(), "a clone is still alive");
        assert_eq!(pool.stats().lent.load(Ordering::Relaxed), 1);
        drop(clone);
        pool.reclaim(|id| back.push(id));
        assert_eq!(back, [2]);
        assert_eq!(pool.stats().lent.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn bytes_outlive_the_pool_handle() {
        let pool = BufferPool::new(2, 16).unwrap();
        fill(&pool, 1, 7, 16);
        // SAFETY: (test) buffer 1 was filled above.
        let bytes = unsafe { pool.lend(1, 0, 100) }.unwrap();
        drop(pool);
        assert_eq!(&bytes[..], &[7u8; 16]);
    }

    #[test]
    fn lent_bytes_cross_threads() {
        let pool = BufferPool::new(8, 32).unwrap();
        let mut handles = Vec::new();
        for id in 0..8u16 {
            fill(&pool, id, id as u8, 32);
            // SAFETY: (test) each buffer was filled above.
            let bytes = unsafe { pool.lend(id, 0, 32) }.unwrap();
            handles.push(std::thread::spawn(move || bytes.iter().all(|&b| b == id as u8)));
        }
        assert!(handles.into_iter().all(|h| h.join().unwrap()));
        let mut back = Vec::new();
        pool.reclaim(|id| back.push(id));
        back.sort_unstable();
        assert_eq!(back, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn bad_shapes_and_ids_are_refused() {
        assert!(BufferPool::new(0, 10).is_err());
        assert!(BufferPool::new(10, 0).is_err());
        assert!(BufferPool::new(70_000, 10).is_err());
        let pool = BufferPool::new(2, 16).unwrap();
        assert!(pool.buffer_ptr(2).is_none());
        // SAFETY: (test) id 5 is outside the pool; nothing is lent.
        assert!(unsafe { pool.lend(5, 0, 1) }.is_none());
    }

    #[test]
    fn heap_budget_caps_and_refunds() {
        let budget = HeapBudget::new(100);
        let a = budget.copy(&[1; 60]).unwrap();
        assert!(budget.copy(&[2; 50]).is_none(), "over the cap");
        let b = budget.copy(&[3; 40]).unwrap();
        assert_eq!(budget.in_use(), 100);
        drop(a);
        assert_eq!(budget.in_use(), 40);
        assert_eq!(&b[..], &[3; 40]);
    }
}
