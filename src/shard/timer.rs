//! A sub-millisecond timer for paced inputs: a `timerfd` waited on through
//! the shard's reactor.
//!
//! tokio's timer wheel rounds every deadline up to the next millisecond and
//! parks in whole milliseconds, so a sleep ends up to about 2 ms late:
//! measured on `pace=pcr` playout, the 99th percentile of emission lateness
//! was 2–3 ms with `tokio::time::sleep_until`. A timerfd armed with the
//! exact remaining time fires within tens of microseconds, costs one
//! `timerfd_settime` and one `read` per wake-up, and works on both backends
//! (tokio-uring drives the same reactor).
//!
//! Many paced streams on one shard each with their own timer wake the
//! shard once per stream per quantum. [`ShardTimer`] is one such timer for
//! all of them, on a grid: streams round their wake-ups up to the grid
//! ([`ShardTimer::align`]), so one timer expiry and one thread wake-up
//! serve every stream due at that instant.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::clock::{Clock, SystemClock};

/// A one-shot timer re-armed for each wait.
pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PreciseTimer {
    /// A disarmed timer on the monotonic clock; must be created on a shard
    /// (inside a runtime).
    pub fn new() -> io::Result<PreciseTimer> {
        // SAFETY: plain syscall with constant arguments; the result is checked.
        let raw = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just created and own alone.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the AsyncFd owns the timerfd, so it stays open and the
        // same for the AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }.map_err(|e| e.into_parts().1)?;
        Ok(PreciseTimer { fd })
    }

    /// Waits `delay` (returns at once for zero).
    pub async fn sleep(&mut self, delay: Duration) -> io::Result<()> {
        if delay.is_zero() {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(delay.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(delay.subsec_nanos() as i32),
            },
        };
        // SAFETY: `spec` is a valid itimerspec for the call; the old value
        // is not asked for (null).
        if unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a local 8-byte buffer.
            let n = unsafe { libc::read(guard.get_inner().as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
            if n == 8 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
            guard.clear_ready();
        }
    }
}

/// One timer for every paced stream of a shard; see the module docs.
pub struct ShardTimer {
    /// Where the grid starts.
    origin: Instant,
    state: RefCell<Waiters>,
    /// Tells the firing task that an earlier deadline arrived.
    earlier: Notify,
}

#[derive(Default)]
struct Waiters {
    next_key: u64,
    /// Every pending sleep: a few dozen streams per shard, so a plain
    /// vector.
    pending: Vec<Pending>,
    /// The deadline the firing task sleeps until, if any.
    armed: Option<Instant>,
    /// Times the timer fired (for tests and diagnosis).
    fired: u64,
    woken: Vec<Waker>,
    woken_last: Vec<Waker>,
}

struct Pending {
    key: u64,
    at: Instant,
    /// Woken after the others due at the same expiry.
    last: bool,
    waker: Waker,
}

thread_local! {
    /// The timer of the shard this thread runs, once a task asked for it.
    static SHARD_TIMER: RefCell<Option<Rc<ShardTimer>>> = const { RefCell::new(None) };
}

/// This shard's timer, started on first use (its firing task is spawned
/// on the thread's `LocalSet`). Call it from a task on a shard. Fails when
/// no timerfd can be had.
pub fn shard_timer() -> io::Result<Rc<ShardTimer>> {
    SHARD_TIMER.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some(timer) = cell.as_ref() {
            return Ok(Rc::clone(timer));
        }
        let precise = PreciseTimer::new()?;
        let timer = Rc::new(ShardTimer {
            origin: SystemClock.now(),
            state: RefCell::new(Waiters::default()),
            earlier: Notify::new(),
        });
        tokio::task::spawn_local(fire(Rc::clone(&timer), precise));
        *cell = Some(Rc::clone(&timer));
        Ok(timer)
    })
}

impl ShardTimer {
    /// `at` rounded up to the grid of step `quantum` (`at` itself for a
    /// zero quantum or a time before the grid starts).
    pub fn align(&self, at: Instant, quantum: Duration) -> Instant {
        let Some(since) = at.checked_duration_since(self.origin) else { return at };
        let step = quantum.as_nanos();
        if step == 0 {
            return at;
        }
        let steps = since.as_nanos().div_ceil(step);
        let aligned = u64::try_from(steps.saturating_mul(step)).unwrap_or(u64::MAX);
        self.origin.checked_add(Duration::from_nanos(aligned)).unwrap_or(at)
    }

    /// Waits until `at` (returns at once when it has passed).
    pub fn sleep_until(&self, at: Instant) -> SleepUntil<'_> {
        SleepUntil { timer: self, at, last: false, key: None }
    }

    /// The same, but woken after every other sleep due at the same
    /// expiry: the shard's outputs, so they send what the inputs woken
    /// with them just published rather than a quantum later.
    pub fn sleep_until_after_others(&self, at: Instant) -> SleepUntil<'_> {
        SleepUntil { timer: self, at, last: true, key: None }
    }

    /// Times the timer has fired so far.
    pub fn fired(&self) -> u64 {
        self.state.borrow().fired
    }

    /// Sleeps pending.
    pub fn pending(&self) -> usize {
        self.state.borrow().pending.len()
    }
}

/// A wait on a [`ShardTimer`]; dropping it withdraws the wait.
pub struct SleepUntil<'a> {
    timer: &'a ShardTimer,
    at: Instant,
    last: bool,
    key: Option<u64>,
}

impl Future for SleepUntil<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut state = this.timer.state.borrow_mut();
        if SystemClock.now() >= this.at {
            if let Some(key) = this.key.take() {
                state.pending.retain(|p| p.key != key);
            }
            return Poll::Ready(());
        }
        match this.key {
            Some(key) => {
                if let Some(entry) = state.pending.iter_mut().find(|p| p.key == key) {
                    entry.waker.clone_from(cx.waker());
                } else {
                    // Woken by the firing task before its time (the clocks
                    // disagree by a hair): wait again.
                    state.pending.push(Pending { key, at: this.at, last: this.last, waker: cx.waker().clone() });
                }
            }
            None => {
                state.next_key += 1;
                let key = state.next_key;
                state.pending.push(Pending { key, at: this.at, last: this.last, waker: cx.waker().clone() });
                this.key = Some(key);
            }
        }
        if state.armed.is_none_or(|armed| this.at < armed) {
            this.timer.earlier.notify_one();
        }
        Poll::Pending
    }
}

impl Drop for SleepUntil<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.timer.state.borrow_mut().pending.retain(|p| p.key != key);
        }
    }
}

/// The firing task: sleeps until the earliest pending deadline and wakes
/// every sleep due by then.
async fn fire(timer: Rc<ShardTimer>, mut precise: PreciseTimer) {
    loop {
        let earliest = timer.state.borrow().pending.iter().map(|p| p.at).min();
        let Some(at) = earliest else {
            timer.state.borrow_mut().armed = None;
            timer.earlier.notified().await;
            continue;
        };
        let now = SystemClock.now();
        if at > now {
            timer.state.borrow_mut().armed = Some(at);
            tokio::select! {
                slept = precise.sleep(at - now) => {
                    if let Err(e) = slept {
                        // Without its timerfd the shard's paced streams
                        // fall back to the runtime's 1 ms timer.
                        tracing::warn!("shard timer failed ({e}): pacing falls back to the 1 ms runtime timer");
                        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    }
                }
                _ = timer.earlier.notified() => continue,
            }
        }
        let now = SystemClock.now();
        let (mut woken, mut woken_last) = {
            let mut state = timer.state.borrow_mut();
            state.armed = None;
            state.fired += 1;
            let mut woken = std::mem::take(&mut state.woken);
            let mut woken_last = std::mem::take(&mut state.woken_last);
            // Due sleeps leave the list here, so the next look does not
            // see them again before they run; each finds its time passed.
            let mut index = 0;
            while index < state.pending.len() {
                if state.pending[index].at <= now {
                    let due = state.pending.swap_remove(index);
                    if due.last { &mut woken_last } else { &mut woken }.push(due.waker);
                } else {
                    index += 1;
                }
            }
            (woken, woken_last)
        };
        // The runtime runs woken tasks in the order woken.
        for waker in woken.drain(..).chain(woken_last.drain(..)) {
            waker.wake();
        }
        let mut state = timer.state.borrow_mut();
        state.woken = woken;
        state.woken_last = woken_last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};

    #[test]
    fn sleeps_about_as_long_as_asked() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
        runtime.block_on(async {
            let mut timer = PreciseTimer::new().unwrap();
            timer.sleep(Duration::ZERO).await.unwrap();
            for micros in [300u64, 1500, 250] {
                let start = SystemClock.now();
                timer.sleep(Duration::from_micros(micros)).await.unwrap();
                let slept = SystemClock.now() - start;
                assert!(slept >= Duration::from_micros(micros), "woke after {slept:?} of {micros} µs");
            }
        });
    }
}

#[cfg(test)]
mod shard_timer_tests {
    use super::*;

    fn on_a_shard(test: impl Future<Output = ()>) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, test);
    }

    #[test]
    fn align_rounds_up_to_the_grid() {
        on_a_shard(async {
            let timer = shard_timer().unwrap();
            let q = Duration::from_millis(20);
            let o = timer.origin;
            assert_eq!(timer.align(o + Duration::from_millis(25), q), o + Duration::from_millis(40));
            assert_eq!(timer.align(o + Duration::from_millis(40), q), o + Duration::from_millis(40));
            assert_eq!(timer.align(o + Duration::from_nanos(1), q), o + q);
            assert_eq!(timer.align(o + Duration::from_millis(25), Duration::ZERO), o + Duration::from_millis(25));
        });
    }

    #[test]
    fn sleeps_due_together_share_one_expiry() {
        on_a_shard(async {
            let timer = shard_timer().unwrap();
            let at = timer.align(SystemClock.now() + Duration::from_millis(3), Duration::from_millis(5));
            let fired = timer.fired();
            let sleepers: Vec<_> = (0..8)
                .map(|_| {
                    tokio::task::spawn_local(async move {
                        let timer = shard_timer().unwrap();
                        timer.sleep_until(at).await;
                        SystemClock.now()
                    })
                })
                .collect();
            for sleeper in sleepers {
                let woke = sleeper.await.unwrap();
                assert!(woke >= at, "woke {:?} before its time", at - woke);
                assert!(woke - at < Duration::from_millis(100), "woke {:?} late", woke - at);
            }
            assert_eq!(timer.fired() - fired, 1, "eight streams due at one instant: one expiry");
            assert_eq!(timer.pending(), 0);
        });
    }

    #[test]
    fn a_dropped_sleep_withdraws_and_an_earlier_one_is_not_held_up() {
        on_a_shard(async {
            let timer = shard_timer().unwrap();
            let late = SystemClock.now() + Duration::from_secs(60);
            {
                let sleep = timer.sleep_until(late);
                let waited = tokio::time::timeout(Duration::from_millis(2), sleep).await;
                assert!(waited.is_err(), "a sleep of a minute ended early");
            }
            assert_eq!(timer.pending(), 0, "the dropped sleep left");
            // One far sleep pending, a near one arrives: the near one is
            // not kept waiting for the far one.
            let far = tokio::task::spawn_local(async move { shard_timer().unwrap().sleep_until(late).await });
            tokio::task::yield_now().await;
            let start = SystemClock.now();
            let near = start + Duration::from_millis(2);
            timer.sleep_until(near).await;
            let took = SystemClock.now() - start;
            assert!(took >= Duration::from_millis(2) && took < Duration::from_secs(5), "near sleep took {took:?}");
            far.abort();
        });
    }

    #[test]
    fn sleeps_after_others_run_after_the_rest_due_at_the_same_expiry() {
        on_a_shard(async {
            let timer = shard_timer().unwrap();
            let at = timer.align(SystemClock.now() + Duration::from_millis(3), Duration::from_millis(5));
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            // The late one starts waiting first, and still runs last.
            for (name, last) in [("output", true), ("input a", false), ("input b", false)] {
                let order = Rc::clone(&order);
                tasks.push(tokio::task::spawn_local(async move {
                    let timer = shard_timer().unwrap();
                    if last {
                        timer.sleep_until_after_others(at).await;
                    } else {
                        timer.sleep_until(at).await;
                    }
                    order.borrow_mut().push(name);
                }));
                tokio::task::yield_now().await;
            }
            for task in tasks {
                task.await.unwrap();
            }
            let order = order.borrow();
            assert_eq!(order.len(), 3);
            assert_eq!(order[2], "output", "{order:?}");
        });
    }
}
