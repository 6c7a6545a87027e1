//! Output pacing, without I/O: what arrives in bursts leaves evenly.
//!
//! Inputs hand the hub their packets in bursts: a UDP input one receive
//! batch per millisecond (or a GRO batch of 49 datagrams), a file input
//! whatever its pacer released. Receivers with small buffers count
//! continuity errors when such a burst reaches them at line rate, so an
//! output re-spreads it. [`Pacer`] estimates the input's rate over
//! windows of [`WINDOW`] and lets bytes leave at that rate plus
//! [`HEADROOM`], tick by tick; what waits longer than [`MAX_DELAY`] at the
//! current rate leaves at once, so latency stays bounded when the rate
//! jumps. [`ByteQueue`] holds the waiting bytes as `Bytes` slices (no copy)
//! and cuts them into datagrams.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

/// Span over which the input rate is measured.
pub const WINDOW: Duration = Duration::from_millis(20);
/// How much faster than the measured rate the output may send, so the
/// queue drains instead of growing with measurement error.
pub const HEADROOM: f64 = 1.05;
/// Longest a byte waits at the measured rate before it leaves regardless.
pub const MAX_DELAY: Duration = Duration::from_millis(20);
/// Longest a partial datagram waits for the rest of its packets.
pub const PARTIAL_FLUSH: Duration = Duration::from_millis(20);
/// Most credit kept when ticks come late, in time at the current rate, or
/// [`CREDIT_TICKS`] ticks' worth when ticks are longer (slow streams):
/// credit past that is lost rather than sent later at the input's rate
/// plus headroom.
const MAX_CREDIT: Duration = Duration::from_micros(200);
/// Ticks of credit kept at least. With less than a tick's, a stream whose
/// tick is longer than [`MAX_CREDIT`] (below about 370 Mbit/s at 7
/// datagrams a tick) sent less per tick than arrived, and its bytes left
/// in overdue flushes, [`MAX_DELAY`] late.
const CREDIT_TICKS: f64 = 2.0;
/// The first window, short so that little leaves unpaced at the start.
pub const FIRST_WINDOW: Duration = Duration::from_millis(2);
/// Weight of a new window in the rate estimate.
const ALPHA: f64 = 0.3;

/// Rate estimate and send credit of one output.
#[derive(Clone, Debug, Default)]
pub struct Pacer {
    /// Bytes per second; `None` until a window has been measured.
    rate: Option<f64>,
    window_start: Option<Duration>,
    window_bytes: u64,
    credit: f64,
    last_tick: Option<Duration>,
}

impl Pacer {
    /// A pacer with no estimate yet (it lets everything through until it
    /// has one).
    pub fn new() -> Pacer {
        Pacer::default()
    }

    /// The measured input rate in bytes per second, once known.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// `bytes` arrived at `now`.
    pub fn arrived(&mut self, now: Duration, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        self.window_bytes += bytes as u64;
        let span = now.saturating_sub(start);
        let window = if self.rate.is_some() { WINDOW } else { FIRST_WINDOW };
        if span >= window {
            let sample = self.window_bytes as f64 / span.as_secs_f64();
            self.rate = Some(match self.rate {
                Some(rate) => rate + ALPHA * (sample - rate),
                None => sample,
            });
            self.window_start = Some(now);
            self.window_bytes = 0;
        }
    }

    /// Bytes that may leave at `now`, with `queued` bytes waiting, on ticks
    /// `tick` apart, in datagrams of `datagram` bytes. Call it once per
    /// tick, then [`Pacer::sent`] with what actually left.
    ///
    /// One tick sends at most a tick's worth at the paced rate, rounded up
    /// to whole datagrams; credit beyond that (a late tick) stays for the
    /// ticks after. Without the cap a tick 40 % late sent 40 % more at
    /// once: at 16 outputs of 1 Gbit/s the outputs' p99 burst was 13
    /// datagrams against the input's 9 (perf/relay.sh's relay row, run
    /// alone). Only what is overdue ([`MAX_DELAY`]) leaves past the cap.
    pub fn allowance(&mut self, now: Duration, queued: usize, tick: Duration, datagram: usize) -> usize {
        let Some(rate) = self.rate else {
            self.last_tick = Some(now);
            return queued;
        };
        let elapsed = now.saturating_sub(self.last_tick.unwrap_or(now));
        self.last_tick = Some(now);
        if queued == 0 {
            // Nothing waits: no credit builds up, or the next burst from
            // the input would leave as a burst.
            self.credit = self.credit.min(0.0);
            return 0;
        }
        let datagram = datagram.max(1) as f64;
        let per_tick = (rate * HEADROOM * tick.as_secs_f64() / datagram).ceil().max(1.0) * datagram;
        let cap = (rate * MAX_CREDIT.as_secs_f64()).max(CREDIT_TICKS * per_tick);
        self.credit = (self.credit + rate * HEADROOM * elapsed.as_secs_f64()).min(cap);
        let overdue = queued as f64 - rate * MAX_DELAY.as_secs_f64();
        let budget = self.credit.min(per_tick).max(overdue).max(0.0);
        (budget as usize).min(queued)
    }

    /// `bytes` left (they may exceed the allowance by up to a datagram, or
    /// by what was overdue).
    ///
    /// The debt is capped like the credit: an overdue flush (what waited
    /// longer than [`MAX_DELAY`]) is not paid back from later ticks. Paying
    /// it back held the output silent while the queue refilled to
    /// [`MAX_DELAY`], which forced the next overdue flush: once an output
    /// fell that far behind it sent only such flushes, a burst of up to
    /// 200 datagrams every 20 ms (perf/relay.sh, 16 outputs with a credit
    /// cap of 95 us).
    pub fn sent(&mut self, bytes: usize) {
        let floor = -self.rate.unwrap_or(0.0) * MAX_CREDIT.as_secs_f64();
        self.credit = (self.credit - bytes as f64).max(floor);
    }
}

/// Bytes waiting to leave, as slices of the chunks they came in.
#[derive(Debug, Default)]
pub struct ByteQueue {
    chunks: VecDeque<Bytes>,
    len: usize,
    /// When the oldest byte still queued arrived.
    oldest: Option<Duration>,
}

impl ByteQueue {
    /// An empty queue.
    pub fn new() -> ByteQueue {
        ByteQueue::default()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a chunk that arrived at `now`.
    pub fn push(&mut self, now: Duration, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        if self.len == 0 {
            self.oldest = Some(now);
        }
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Whether a partial datagram (less than `datagram` bytes) has waited
    /// long enough at `now` to leave short.
    pub fn partial_due(&self, now: Duration, datagram: usize) -> bool {
        self.len > 0 && self.len < datagram && self.oldest.is_some_and(|t| now.saturating_sub(t) >= PARTIAL_FLUSH)
    }

    /// Moves the first `bytes` bytes (at most [`ByteQueue::len`]) to `out`
    /// as slices, splitting a chunk where the cut falls inside it.
    pub fn take(&mut self, now: Duration, bytes: usize, out: &mut Vec<Bytes>) {
        let mut left = bytes.min(self.len);
        while left > 0 {
            let Some(front) = self.chunks.front_mut() else { break };
            if front.len() <= left {
                left -= front.len();
                self.len -= front.len();
                if let Some(chunk) = self.chunks.pop_front() {
                    out.push(chunk);
                }
            } else {
                out.push(front.split_to(left));
                self.len -= left;
                left = 0;
            }
        }
        self.oldest = (self.len > 0).then_some(now);
    }

    /// Puts `chunks` (taken earlier, in order) back at the front, after
    /// skipping their first `skip` bytes (those left after all).
    pub fn unshift(&mut self, now: Duration, chunks: &mut Vec<Bytes>, mut skip: usize) {
        let mut rest = Vec::with_capacity(chunks.len());
        for mut chunk in chunks.drain(..) {
            if skip >= chunk.len() {
                skip -= chunk.len();
                continue;
            }
            let _ = chunk.split_to(skip);
            skip = 0;
            rest.push(chunk);
        }
        for chunk in rest.into_iter().rev() {
            self.len += chunk.len();
            self.chunks.push_front(chunk);
        }
        if self.len > 0 && self.oldest.is_none() {
            self.oldest = Some(now);
        }
    }

    /// Drops everything (a reader that lagged starts over).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
        self.oldest = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_micros(100);

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// A pacer that learned `rate` bytes per second, fed every 1 ms up to
    /// 400 ms, with its last tick at 400 ms and nothing queued.
    fn learned(rate: usize) -> Pacer {
        let mut p = Pacer::new();
        for t in 0..=400 {
            p.arrived(ms(t), rate / 1000);
        }
        p.allowance(ms(400), 0, TICK, 1);
        p
    }

    #[test]
    fn a_late_tick_sends_one_ticks_worth_and_keeps_the_rest() {
        // 1 Gbit/s in datagrams of 1250 bytes: 100 per ms, 8 per 80 us
        // tick (8.4 with headroom, so at most 9 a tick).
        let mut p = learned(125_000_000);
        let tick = Duration::from_micros(80);
        let mut queued = 200 * 1250;
        // A tick 160 us late: 3 ticks' credit, one tick's burst.
        let late = p.allowance(ms(400) + tick * 3, queued, tick, 1250);
        assert_eq!(late, 9 * 1250);
        p.sent(late);
        queued -= late;
        // The kept credit leaves at 9 a tick on the next ticks.
        let next = p.allowance(ms(400) + tick * 4, queued, tick, 1250);
        assert_eq!(next, 9 * 1250);
    }

    #[test]
    fn a_slow_stream_sends_each_ticks_worth_on_time() {
        // 100 Mbit/s on 842 us ticks, past MAX_CREDIT: each tick sends its
        // 8 datagrams (of 1316 bytes) rather than waiting for MAX_DELAY.
        let mut p = learned(12_500_000);
        let tick = Duration::from_micros(842);
        let mut at = ms(400);
        for _ in 0..20 {
            at += tick;
            let a = p.allowance(at, 8 * 1316, tick, 1316);
            assert!(a >= 8 * 1316, "{a}");
            p.sent(a / 1316 * 1316);
        }
    }

    #[test]
    fn without_an_estimate_everything_goes() {
        let mut p = Pacer::new();
        p.arrived(ms(0), 10_000);
        assert_eq!(p.allowance(ms(0), 10_000, TICK, 1), 10_000);
    }

    #[test]
    fn a_steady_rate_is_learned_and_spread() {
        let mut p = Pacer::new();
        // 125 000 bytes per second (1 Mbit/s), in 1 ms bursts of 125 bytes.
        for t in 0..=400 {
            p.arrived(ms(t), 125);
        }
        let rate = p.rate().unwrap();
        assert!((rate - 125_000.0).abs() < 2_000.0, "{rate}");
        // Ticks of 100 us with a 1 ms burst queued: about a tenth each.
        p.allowance(ms(400), 0, TICK, 1);
        let first = p.allowance(ms(400) + TICK, 125, TICK, 1);
        assert!((12..=14).contains(&first), "{first}");
    }

    #[test]
    fn a_backlog_beyond_the_delay_leaves_at_once() {
        let mut p = Pacer::new();
        for t in 0..=400 {
            p.arrived(ms(t), 100);
        }
        p.allowance(ms(400), 0, TICK, 1);
        // About 100 000 B/s: 20 ms is about 2000 bytes, so of 5000 queued
        // about 3000 leave at once.
        let a = p.allowance(ms(400) + Duration::from_micros(10), 5000, TICK, 1);
        assert!((2950..3010).contains(&a), "{a}");
    }

    #[test]
    fn an_overdue_flush_is_not_paid_back() {
        let mut p = Pacer::new();
        // 125 000 B/s: 20 ms is 2500 bytes.
        for t in 0..=400 {
            p.arrived(ms(t), 125);
        }
        p.allowance(ms(400), 0, TICK, 1);
        let tick = TICK;
        let flushed = p.allowance(ms(400) + tick, 10_000, TICK, 1);
        assert!((7_450..7_550).contains(&flushed), "{flushed}");
        p.sent(flushed);
        // The 2500 bytes left keep leaving at the rate (about 13 per tick),
        // not after a 60 ms silence while the debt is repaid.
        let mut queued = 10_000 - flushed;
        let mut left = 0;
        for i in 2..=11 {
            let a = p.allowance(ms(400) + tick * i, queued, TICK, 1);
            p.sent(a);
            queued -= a;
            left += a;
        }
        assert!((90..=140).contains(&left), "{left}");
    }

    #[test]
    fn idle_credit_is_capped() {
        let mut p = Pacer::new();
        for t in 0..=100 {
            p.arrived(ms(t), 100);
        }
        p.allowance(ms(100), 0, TICK, 1);
        let a = p.allowance(ms(10_000), 1_000_000, TICK, 1);
        // At most 0.2 ms of credit, plus the overdue part (1 000 000 - 2000).
        assert!(a <= 1_000_000 - 2000 + 20 + 1, "{a}");
        p.sent(a);
        assert_eq!(p.allowance(ms(10_000), 0, TICK, 1), 0);
        // An idle queue builds no credit: after 10 ms of nothing queued,
        // one tick's worth (0.25 ms) leaves, not 10 ms' worth.
        let quarter = Duration::from_micros(250);
        assert_eq!(p.allowance(ms(10_010), 0, quarter, 1), 0);
        let after_idle = p.allowance(ms(10_010) + quarter, 1000, quarter, 1);
        assert!(after_idle <= 27, "{after_idle}");
    }

    #[test]
    fn the_queue_cuts_across_chunks_without_copying() {
        let mut q = ByteQueue::new();
        let a = Bytes::from(vec![1u8; 300]);
        let b = Bytes::from(vec![2u8; 300]);
        q.push(ms(0), a.clone());
        q.push(ms(0), b.clone());
        let mut out = Vec::new();
        q.take(ms(1), 400, &mut out);
        assert_eq!(out.iter().map(Bytes::len).collect::<Vec<_>>(), [300, 100]);
        assert_eq!(out[0].as_ptr(), a.as_ptr());
        assert_eq!(out[1].as_ptr(), b.as_ptr());
        assert_eq!(q.len(), 200);
        assert!(!q.partial_due(ms(1), 1316));
        assert!(q.partial_due(ms(1) + PARTIAL_FLUSH, 1316));
        // 150 of the 400 left after all: the other 250 go back in front.
        q.unshift(ms(1), &mut out, 150);
        assert_eq!(q.len(), 450);
        out.clear();
        q.take(ms(2), 1000, &mut out);
        let bytes: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(bytes.len(), 450);
        assert!(bytes[..150].iter().all(|&b| b == 1) && bytes[150..].iter().all(|&b| b == 2));
        assert!(q.is_empty());
    }
}
