//! The slot ring under the hub: one writer, any number of readers, no locks
//! on the data path, and no waiting for anyone.
//!
//! # Layout
//!
//! - `slots[capacity]`: one `AtomicU64` per slot, `node index << 32 | pins`.
//!   Position `p` lives in slot `p & (capacity - 1)`.
//! - Nodes: `{ seq, value: MaybeUninit<T>, refs, next }`, in chunks that are
//!   allocated once and never move or shrink until the ring drops, reached by
//!   a `u32` index (chunk `c` holds `base << c` nodes, `base = 2 * capacity`).
//! - `tail`: `published << 2 | WAITERS | CLOSED`, written by the writer only,
//!   except that readers set `WAITERS` before they sleep.
//!
//! # Ownership argument
//!
//! Every node is, at any instant, in exactly one of these states, and only
//! the owner named here may touch its `seq` and `value` cells:
//!
//! 1. **Free** (uninitialised value): in the writer's private list or in the
//!    shared `returned` stack. Owned by the writer once it takes the list.
//!    Readers never see free nodes: no slot names them.
//! 2. **Installed**: named by a slot word. The writer wrote `seq` and
//!    `value` *before* the `AcqRel` swap that installed it, and never writes
//!    them again while installed. Readers read them only between a pin (the
//!    `fetch_add` on the slot word, `Acquire`, so the writer's writes are
//!    visible) and the matching unpin; reads may run concurrently.
//! 3. **Displaced**: the writer's swap removed it from its slot. The word the
//!    swap returned holds `k`, the pins still out on it.
//!    - `k == 0`: nobody is reading it, and every earlier reader unpinned
//!      with a `Release` CAS on that very word, which the swap read
//!      (`Acquire`). The writer owns it: it drops the value at once (the
//!      overwritten item's buffer goes back to its pool right there) and
//!      keeps the node for its next publish.
//!    - `k > 0`: the pins move to `refs` (differential counting): readers
//!      whose unpin CAS finds another node in the slot do
//!      `refs.fetch_sub(1)`, the writer does `refs.fetch_add(k)`. Before the
//!      writer's add `refs` is never positive, so it reaches exactly zero
//!      once, after the add and all `k` subtractions; whoever takes it there
//!      (`AcqRel`, so every reader's clone happens before) owns the node,
//!      drops the value and returns the node to `returned`. The item then
//!      outlives its overwrite by the few nanoseconds the last reader needs
//!      to finish its clone, never longer.
//!
//! A pinned node cannot be freed, so it cannot come back into the slot while
//! a reader still holds a pin from an earlier installation: a slot word never
//! shows the same node again while anyone compares against an old copy (no
//! ABA). The `returned` stack is pushed by any thread and only ever emptied
//! whole by the writer (`swap`), so its CAS never reads a node it does not
//! own.
//!
//! Memory: at most `capacity` values live in slots, plus at most one
//! displaced value per reader inside a clone. The node pool is sized
//! `capacity + 1 + readers` and grows only when a subscriber joins (under a
//! mutex that the writer never takes while the invariant holds).
//!
//! What this module does not do: wake anyone (see `notify.rs`) or turn lags
//! into errors (see `mod.rs`).
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use super::notify::Notify;
use super::sync::{AtomicPtr, AtomicU32, AtomicU64, Mutex, Ordering, Padded, UnsafeCell, lock};

/// `tail` bit: the hub has been closed (the writer dropped).
const CLOSED: u64 = 1;
/// `tail` bit: a reader may be asleep; the next publish must wake.
const WAITERS: u64 = 2;
const COUNT_SHIFT: u32 = 2;

/// An index that names no node.
const NONE: u32 = u32::MAX;
const PIN: u64 = 1;
const PINS: u64 = 0xFFFF_FFFF;
const MAX_CHUNKS: usize = 32;

/// Largest capacity a ring takes, so node indices always fit in `u32`.
pub(super) const MAX_CAPACITY: usize = 1 << 24;

struct Node<T> {
    /// The position whose item `value` holds.
    seq: UnsafeCell<u64>,
    value: UnsafeCell<MaybeUninit<T>>,
    /// Pins handed over from the slot word when the node was displaced.
    refs: AtomicU64,
    /// Next node in a free list.
    next: AtomicU32,
}

impl<T> Node<T> {
    fn new() -> Self {
        Node {
            seq: UnsafeCell::new(0),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            refs: AtomicU64::new(0),
            next: AtomicU32::new(NONE),
        }
    }
}

/// Pool bookkeeping, changed only under the mutex.
struct Pool {
    /// Nodes created so far (indices `0..made`).
    made: u32,
    /// Live readers: each may hold one displaced node.
    readers: u32,
}

/// What a read at one position found.
#[derive(Debug)]
pub(super) enum Read<T> {
    /// The item at the position.
    Item(T),
    /// Nothing published there yet.
    Empty,
    /// Nothing published there, and nothing ever will be.
    Closed,
    /// The position was overwritten; `next` is the oldest retained one.
    Lagged { next: u64 },
}

/// The ring shared by the writer and all readers.
pub(super) struct Ring<T> {
    tail: Padded<AtomicU64>,
    returned: Padded<AtomicU32>,
    mask: u64,
    capacity: u64,
    base_shift: u32,
    slots: Box<[AtomicU64]>,
    chunks: Box<[AtomicPtr<Node<T>>]>,
    pool: Mutex<Pool>,
    /// The hub's waiter list; the ring only hosts it.
    pub(super) notify: Notify,
}

// SAFETY: values of `T` are moved in by the writer and cloned and dropped by
// readers on other threads (`T: Send`), and read by many threads at once
// through `&T` (`T: Sync`). Access to the cells follows the ownership
// argument in the module doc.
unsafe impl<T: Send + Sync> Sync for Ring<T> {}
// SAFETY: as above; the ring owns its values and nodes.
unsafe impl<T: Send + Sync> Send for Ring<T> {}

/// Chunk and offset of node `idx`: chunk `c` holds indices
/// `base * (2^c - 1) .. base * (2^(c+1) - 1)`.
fn locate(idx: u32, base_shift: u32) -> (usize, usize) {
    let q = (u64::from(idx) >> base_shift) + 1;
    let c = 63 - q.leading_zeros();
    let start = ((1u64 << c) - 1) << base_shift;
    (c as usize, (u64::from(idx) - start) as usize)
}

impl<T> Ring<T> {
    /// A ring of `capacity` slots (a power of two, at most
    /// [`MAX_CAPACITY`]; the caller checks) and its one writer.
    pub(super) fn new(capacity: usize) -> (super::sync::Arc<Self>, Writer<T>) {
        debug_assert!(capacity.is_power_of_two() && capacity <= MAX_CAPACITY);
        let ring = Ring {
            tail: Padded(AtomicU64::new(0)),
            returned: Padded(AtomicU32::new(NONE)),
            mask: capacity as u64 - 1,
            capacity: capacity as u64,
            base_shift: (2 * capacity).trailing_zeros(),
            slots: (0..capacity).map(|_| AtomicU64::new(u64::from(NONE) << 32)).collect(),
            chunks: (0..MAX_CHUNKS).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect(),
            pool: Mutex::new(Pool { made: 0, readers: 0 }),
            notify: Notify::new(),
        };
        {
            let mut pool = lock(&ring.pool);
            for _ in 0..=capacity {
                let idx = ring.make_node(&mut pool);
                ring.push_returned(idx);
            }
        }
        let ring = super::sync::Arc::new(ring);
        let writer = Writer { ring: ring.clone(), next: 0, free: NONE };
        (ring, writer)
    }

    /// Slots in the ring.
    pub(super) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Items published so far, and whether the writer is gone.
    pub(super) fn tail(&self) -> (u64, bool) {
        let w = self.tail.load(Ordering::Acquire);
        (w >> COUNT_SHIFT, w & CLOSED != 0)
    }

    /// Creates node `made` (and its chunk if needed). Only under the pool
    /// mutex.
    fn make_node(&self, pool: &mut Pool) -> u32 {
        let idx = pool.made;
        assert!(idx < NONE - 1, "hub node pool exhausted (more than 2^32 nodes)");
        let (c, off) = locate(idx, self.base_shift);
        if off == 0 {
            let len = (1usize << self.base_shift) << c;
            let chunk: Box<[Node<T>]> = (0..len).map(|_| Node::new()).collect();
            let ptr = Box::into_raw(chunk).cast::<Node<T>>();
            // Release: a reader reaching any index in this chunk does so
            // through a chain of Acquire loads that starts after this store.
            self.chunks[c].store(ptr, Ordering::Release);
        }
        pool.made += 1;
        idx
    }

    /// One more reader: the pool grows so the writer always finds a free
    /// node even if every reader holds a displaced one.
    pub(super) fn add_reader(&self) {
        let mut pool = lock(&self.pool);
        pool.readers += 1;
        let want = self.capacity + 1 + u64::from(pool.readers);
        while u64::from(pool.made) < want {
            let idx = self.make_node(&mut pool);
            self.push_returned(idx);
        }
    }

    /// A reader left. Its share of nodes stays in the pool for the next one.
    pub(super) fn remove_reader(&self) {
        let mut pool = lock(&self.pool);
        pool.readers = pool.readers.saturating_sub(1);
    }

    fn node(&self, idx: u32) -> &Node<T> {
        let (c, off) = locate(idx, self.base_shift);
        let ptr = self.chunks[c].load(Ordering::Acquire);
        debug_assert!(!ptr.is_null());
        // SAFETY: `idx < made` (indices only come from `make_node`), so
        // chunk `c` was allocated and its pointer stored (Release) before the
        // index was handed out, and every path that hands an index to
        // another thread goes through Release/Acquire pairs. Chunks are
        // freed only in `Drop`, `off < base << c` by `locate`, and nodes are
        // only ever shared (`&Node`), never moved.
        unsafe { &*ptr.add(off) }
    }

    fn push_returned(&self, idx: u32) {
        let node = self.node(idx);
        let mut head = self.returned.load(Ordering::Relaxed);
        loop {
            node.next.store(head, Ordering::Relaxed);
            match self.returned.compare_exchange_weak(head, idx, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Reads position `pos`: a clone of its item, or why not.
    pub(super) fn read(&self, pos: u64) -> Read<T>
    where
        T: Clone,
    {
        self.read_seen(pos, self.tail.load(Ordering::Acquire))
    }

    /// Appends up to `max` items from `*pos` on to `out`, advancing `*pos`.
    /// Returns how many, and what stopped it short of `max` (`Item(())`:
    /// nothing did). Loads `tail` once, and again only on reaching it.
    pub(super) fn read_batch(&self, pos: &mut u64, max: usize, out: &mut Vec<T>) -> (usize, Read<()>)
    where
        T: Clone,
    {
        let mut w = self.tail.load(Ordering::Acquire);
        let mut n = 0;
        while n < max {
            match self.read_seen(*pos, w) {
                Read::Item(v) => {
                    out.push(v);
                    *pos += 1;
                    n += 1;
                }
                Read::Empty => {
                    let now = self.tail.load(Ordering::Acquire);
                    if now == w {
                        return (n, Read::Empty);
                    }
                    w = now;
                }
                Read::Closed => return (n, Read::Closed),
                Read::Lagged { next } => return (n, Read::Lagged { next }),
            }
        }
        (n, Read::Item(()))
    }

    /// `read` against a `tail` word loaded earlier. A stale word only makes
    /// it see less: `Empty` sooner, or a lag that is still exact but whose
    /// `next` may already be gone too (the next read says so).
    #[inline]
    fn read_seen(&self, pos: u64, w: u64) -> Read<T>
    where
        T: Clone,
    {
        let published = w >> COUNT_SHIFT;
        if pos >= published {
            return if w & CLOSED != 0 { Read::Closed } else { Read::Empty };
        }
        if published - pos > self.capacity {
            return Read::Lagged { next: published - self.capacity };
        }
        let Some(pin) = self.pin(pos) else {
            return Read::Empty;
        };
        let seq = pin.seq();
        if seq == pos {
            return Read::Item(pin.value().clone());
        }
        drop(pin);
        // The slot already holds `seq > pos`, so positions up to
        // `seq - capacity` are gone; `tail` may not show `seq` yet.
        let (published, _) = self.tail();
        Read::Lagged { next: published.max(seq + 1) - self.capacity }
    }

    /// Pins the node in `pos`'s slot. `pos` must be published (`None` if it
    /// is not, which `read` rules out first).
    fn pin(&self, pos: u64) -> Option<Pinned<'_, T>> {
        let slot = &self.slots[(pos & self.mask) as usize];
        let word = slot.fetch_add(PIN, Ordering::Acquire);
        let idx = (word >> 32) as u32;
        if idx == NONE {
            slot.fetch_sub(PIN, Ordering::Relaxed);
            return None;
        }
        Some(Pinned { ring: self, slot, guess: word + PIN, idx, node: self.node(idx) })
    }

    /// Marks that a reader at `pos` is about to sleep. Returns `true` if it
    /// need not: `pos` got published or the hub closed meanwhile.
    pub(super) fn mark_waiting(&self, pos: u64) -> bool {
        let w = self.tail.fetch_or(WAITERS, Ordering::AcqRel);
        (w >> COUNT_SHIFT) > pos || w & CLOSED != 0
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // No writer or reader is left: no pins, every displaced node was
        // reclaimed, and each installed node holds exactly one value.
        for slot in self.slots.iter() {
            let idx = (slot.load(Ordering::Relaxed) >> 32) as u32;
            if idx != NONE {
                let node = self.node(idx);
                // SAFETY: installed nodes hold an initialised value, and with
                // `&mut self` nobody else can reach it.
                node.value.with_mut(|v| unsafe { (*v).assume_init_drop() });
            }
        }
        for (c, chunk) in self.chunks.iter().enumerate() {
            let ptr = chunk.load(Ordering::Relaxed);
            if !ptr.is_null() {
                let len = (1usize << self.base_shift) << c;
                // SAFETY: `ptr` came from `Box::into_raw` of a boxed slice of
                // exactly `len` nodes in `make_node` and is freed once, here.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
            }
        }
    }
}

/// A reader's hold on a node: its cells stay as they are until this drops.
struct Pinned<'a, T> {
    ring: &'a Ring<T>,
    slot: &'a AtomicU64,
    /// The slot word as our pin left it: the likely value at unpin.
    guess: u64,
    idx: u32,
    node: &'a Node<T>,
}

impl<T> Pinned<'_, T> {
    fn seq(&self) -> u64 {
        // SAFETY: pinned: the writer wrote `seq` before installing the node
        // (visible through the pin's Acquire) and will not write it again
        // until the pin is released.
        self.node.seq.with(|s| unsafe { *s })
    }

    fn value(&self) -> &T {
        // SAFETY: as for `seq`; an installed or displaced node holds an
        // initialised value until its owner (decided after every pin is
        // released) drops it. The reference does not outlive `self`.
        self.node.value.with(|v| unsafe { (*v).assume_init_ref() })
    }
}

impl<T> Drop for Pinned<'_, T> {
    fn drop(&mut self) {
        // A failed CAS returns the actual word, so starting from a guess
        // costs nothing when it is wrong and saves a load when it is right.
        let mut cur = self.guess;
        loop {
            if (cur >> 32) as u32 != self.idx {
                // Displaced: our pin was handed to `refs` (or will be).
                if self.node.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
                    // SAFETY: `refs` went from 1 to 0 after the writer's
                    // add: every pin is released and we own the node.
                    self.node.value.with_mut(|v| unsafe { (*v).assume_init_drop() });
                    self.ring.push_returned(self.idx);
                }
                return;
            }
            match self.slot.compare_exchange_weak(cur, cur - PIN, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }
}

/// The ring's only writer.
pub(super) struct Writer<T> {
    ring: super::sync::Arc<Ring<T>>,
    /// Position of the next item.
    next: u64,
    /// Head of the writer's private free list.
    free: u32,
}

impl<T> Writer<T> {
    /// The ring written to.
    pub(super) fn ring(&self) -> &super::sync::Arc<Ring<T>> {
        &self.ring
    }

    /// Items published so far.
    pub(super) fn published(&self) -> u64 {
        self.next
    }

    fn take_node(&mut self) -> u32 {
        if self.free == NONE {
            self.free = self.ring.returned.swap(NONE, Ordering::Acquire);
        }
        let idx = self.free;
        if idx == NONE {
            // Not reached while the pool invariant holds (see module doc);
            // a fresh node keeps the writer going regardless.
            let mut pool = lock(&self.ring.pool);
            return self.ring.make_node(&mut pool);
        }
        self.free = self.ring.node(idx).next.load(Ordering::Relaxed);
        idx
    }

    /// Writes `item` at the next position. The item is not visible to
    /// readers until [`Writer::commit`].
    pub(super) fn write(&mut self, item: T) {
        let idx = self.take_node();
        let ring = &*self.ring;
        let node = ring.node(idx);
        let pos = self.next;
        // SAFETY: the node is free and was taken by the writer: nobody else
        // reaches its cells (module doc, state 1). Its old value was dropped
        // when it was reclaimed.
        node.seq.with_mut(|s| unsafe { *s = pos });
        // SAFETY: as above.
        node.value.with_mut(|v| unsafe { (*v).write(item) });
        let slot = &ring.slots[(pos & ring.mask) as usize];
        let old = slot.swap(u64::from(idx) << 32, Ordering::AcqRel);
        self.next = pos + 1;
        let old_idx = (old >> 32) as u32;
        if old_idx == NONE {
            return;
        }
        let pins = old & PINS;
        let old_node = ring.node(old_idx);
        if pins != 0 && old_node.refs.fetch_add(pins, Ordering::AcqRel).wrapping_add(pins) != 0 {
            return; // The last reader out drops it.
        }
        // SAFETY: displaced with no pin outstanding (or all handed back):
        // the writer owns it (module doc, state 3).
        old_node.value.with_mut(|v| unsafe { (*v).assume_init_drop() });
        old_node.next.store(self.free, Ordering::Relaxed);
        self.free = old_idx;
    }

    /// Makes everything written so far visible. Returns `true` if a reader
    /// may be asleep and must be woken.
    pub(super) fn commit(&mut self) -> bool {
        let old = self.ring.tail.swap(self.next << COUNT_SHIFT, Ordering::AcqRel);
        old & WAITERS != 0
    }

    /// Marks the ring closed: readers drain what is left, then see
    /// [`Read::Closed`]. Idempotent.
    pub(super) fn close(&mut self) {
        self.ring.tail.fetch_or(CLOSED, Ordering::AcqRel);
    }
}

impl<T> Drop for Writer<T> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
