//! Waking readers that wait for the hub's next item, at a cost to the writer
//! that does not grow with the number of readers.
//!
//! A reader that finds nothing registers its waker here, then sets the ring's
//! `WAITERS` bit (see `ring.rs`); the writer learns of it from the swap that
//! publishes, so a publish with nobody waiting touches nothing here.
//!
//! When someone waits, the writer moves the whole list aside (`pending`,
//! O(1)), wakes **one** of them (the leader) and leaves the rest to be woken
//! by a reader:
//! - a registered reader whose wait ends (its future returns or is dropped)
//!   checks, under the lock, whether its entry is still in the current list.
//!   If so it vacates it, so the writer never picks a leader that is no
//!   longer waiting. If not, the writer moved it aside, so it wakes everyone
//!   pending (the leader always ends its wait this way: it was woken because
//!   an item is there);
//! - any reader that polls while a hand-off is pending does it too.
//!
//! A writer that finds the hand-off still not done at its next publish wakes
//! one more pending reader itself, so a task that is woken but never runs
//! delays the others by at most one publish each. Closing wakes everyone
//! from the writer (once).
//!
//! Registration is deduplicated per list generation (`epoch`): a reader
//! polled again before it was woken replaces its waker in place, so the list
//! holds at most one entry per reader.
//!
//! Wakers are always called outside the lock.

use std::task::Waker;

use super::sync::{AtomicBool, Mutex, MutexGuard, Ordering, lock};

/// The hub's waiter list.
pub(super) struct Notify {
    /// `pending` is not empty: a reader should hand the wake-up on.
    fanout: AtomicBool,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Bumped whenever `waiting` is moved aside.
    epoch: u64,
    /// `None`: vacated by a reader that stopped waiting.
    waiting: Vec<Option<Waker>>,
    pending: Vec<Option<Waker>>,
}

/// One reader's place in the list, and its buffer for handing wake-ups on.
#[derive(Debug)]
pub(super) struct Registration {
    /// `(epoch, index)` of our waker in `waiting`, if registered.
    at: Option<(u64, usize)>,
    scratch: Vec<Option<Waker>>,
}

impl Registration {
    /// Not registered.
    pub(super) fn new() -> Self {
        Registration { at: None, scratch: Vec::new() }
    }
}

impl Notify {
    pub(super) fn new() -> Self {
        Notify {
            fanout: AtomicBool::new(false),
            inner: Mutex::new(Inner { epoch: 0, waiting: Vec::new(), pending: Vec::new() }),
        }
    }

    /// Puts (or refreshes) `waker` in the list.
    pub(super) fn register(&self, reg: &mut Registration, waker: &Waker) {
        {
            let mut g = lock(&self.inner);
            let epoch = g.epoch;
            match reg.at {
                Some((e, i)) if e == epoch && i < g.waiting.len() => {
                    if !g.waiting[i].as_ref().is_some_and(|w| w.will_wake(waker)) {
                        g.waiting[i] = Some(waker.clone());
                    }
                    return;
                }
                // An older entry the writer moved aside: hand the wake-up on.
                Some(_) if !g.pending.is_empty() => {
                    std::mem::swap(&mut g.pending, &mut reg.scratch);
                    self.fanout.store(false, Ordering::Release);
                }
                _ => {}
            }
            reg.at = Some((epoch, g.waiting.len()));
            g.waiting.push(Some(waker.clone()));
        }
        for w in reg.scratch.drain(..).flatten() {
            w.wake();
        }
    }

    /// The reader's wait is over (it got a result, or its future dropped).
    /// Vacates its entry if the writer has not taken it; hands the wake-up
    /// on if it has.
    #[inline]
    pub(super) fn done_waiting(&self, reg: &mut Registration) {
        let Some((e, i)) = reg.at.take() else {
            return;
        };
        {
            let mut g = lock(&self.inner);
            if e == g.epoch {
                if let Some(entry) = g.waiting.get_mut(i) {
                    *entry = None;
                }
                return;
            }
            self.hand_on(g, reg);
        }
    }

    /// Writer side, after a publish that found a reader waiting (or a
    /// hand-off not yet done): wakes one reader and leaves the rest to it.
    pub(super) fn wake_one_and_delegate(&self) {
        let leader = {
            let mut g = lock(&self.inner);
            let Inner { epoch, waiting, pending } = &mut *g;
            if !waiting.is_empty() {
                *epoch += 1;
                if pending.is_empty() {
                    std::mem::swap(waiting, pending);
                } else {
                    pending.append(waiting);
                }
            }
            let mut leader = None;
            while let Some(entry) = pending.pop() {
                if entry.is_some() {
                    leader = entry;
                    break;
                }
            }
            self.fanout.store(!pending.is_empty(), Ordering::Release);
            leader
        };
        if let Some(w) = leader {
            w.wake();
        }
    }

    /// Whether a hand-off is waiting to be done.
    #[inline]
    pub(super) fn fanout_pending(&self) -> bool {
        self.fanout.load(Ordering::Acquire)
    }

    /// Reader side: wakes everyone the writer left pending.
    pub(super) fn fan_out(&self, reg: &mut Registration) {
        self.hand_on(lock(&self.inner), reg);
    }

    /// Takes the wake-ups the writer left pending (under the lock held in
    /// `g`), then wakes them with the lock released.
    fn hand_on(&self, mut g: MutexGuard<'_, Inner>, reg: &mut Registration) {
        if g.pending.is_empty() {
            return;
        }
        std::mem::swap(&mut g.pending, &mut reg.scratch);
        self.fanout.store(false, Ordering::Release);
        drop(g);
        for w in reg.scratch.drain(..).flatten() {
            w.wake();
        }
    }

    /// Wakes every registered reader (the hub closed).
    pub(super) fn wake_all(&self) {
        let (waiting, pending) = {
            let mut g = lock(&self.inner);
            g.epoch += 1;
            self.fanout.store(false, Ordering::Release);
            (std::mem::take(&mut g.waiting), std::mem::take(&mut g.pending))
        };
        for w in waiting.into_iter().chain(pending).flatten() {
            w.wake();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn wakers(n: usize) -> Vec<(Arc<Count>, Waker)> {
        (0..n)
            .map(|_| {
                let c = Arc::new(Count(AtomicUsize::new(0)));
                (c.clone(), Waker::from(c))
            })
            .collect()
    }

    fn woken(ws: &[(Arc<Count>, Waker)]) -> usize {
        ws.iter().map(|(c, _)| c.0.load(Ordering::Relaxed)).sum()
    }

    #[test]
    fn the_writer_wakes_one_and_a_reader_wakes_the_rest() {
        let n = Notify::new();
        let ws = wakers(5);
        let mut regs: Vec<_> = ws.iter().map(|_| Registration::new()).collect();
        for ((_, w), r) in ws.iter().zip(&mut regs) {
            n.register(r, w);
        }
        n.wake_one_and_delegate();
        assert_eq!(woken(&ws), 1);
        assert!(n.fanout_pending());
        n.fan_out(&mut regs[0]);
        assert_eq!(woken(&ws), 5);
        assert!(!n.fanout_pending());
        n.fan_out(&mut regs[1]);
        assert_eq!(woken(&ws), 5, "nothing twice");
    }

    #[test]
    fn a_stalled_hand_off_costs_one_wake_per_publish() {
        let n = Notify::new();
        let ws = wakers(3);
        let mut reg = Registration::new();
        for (_, w) in &ws {
            n.register(&mut Registration::new(), w);
        }
        n.wake_one_and_delegate();
        n.wake_one_and_delegate();
        assert_eq!(woken(&ws), 2);
        n.wake_one_and_delegate();
        assert_eq!(woken(&ws), 3);
        assert!(!n.fanout_pending());
        n.fan_out(&mut reg);
        assert_eq!(woken(&ws), 3);
    }

    #[test]
    fn registering_twice_in_one_generation_keeps_one_entry() {
        let n = Notify::new();
        let ws = wakers(2);
        let mut reg = Registration::new();
        n.register(&mut reg, &ws[0].1);
        n.register(&mut reg, &ws[0].1);
        n.register(&mut reg, &ws[1].1); // replaced in place
        assert_eq!(lock(&n.inner).waiting.len(), 1);
        n.wake_all();
        assert_eq!(ws[0].0.0.load(Ordering::Relaxed), 0);
        assert_eq!(ws[1].0.0.load(Ordering::Relaxed), 1);
        n.register(&mut reg, &ws[0].1);
        assert_eq!(lock(&n.inner).waiting.len(), 1, "a new generation, a new entry");
    }
}
