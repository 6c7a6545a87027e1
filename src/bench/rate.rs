//! Rates, durations and the send schedule of `bench send`. Pure: no clock
//! reads, no sockets; time comes in as an argument.
//!
//! A paced schedule is anchored at the start instant: datagram `k` is due
//! at `start + k × interval`, with `interval = datagram bits / rate` (UDP
//! payload bits only: no UDP, IP or Ethernet headers) computed in integer
//! nanoseconds from `k`, so rounding never accumulates. A batch leaves when
//! its first datagram is due and holds [`Schedule::batch`] datagrams (as
//! many as [`MAX_BURST`] of data at the rate), so no datagram leaves more
//! than [`MAX_BURST`] early.
//!
//! A sender that falls behind catches up: whatever is due goes out back to
//! back, up to `max_batch` per call, until it is on schedule again; nothing
//! is skipped, so the datagram count is the planned one and a late sender
//! shows as `max_lag`, not as loss. The run ends at `start + duration`
//! once every planned datagram is out; a sender too slow for the rate stops
//! [`END_GRACE`] after that with fewer datagrams than planned.
//!
//! [`Schedule::unpaced`] (`--rate max`) hands out full batches until the
//! end instant.

use std::time::{Duration, Instant};

use thiserror::Error;

/// Slowest rate accepted, in bits per second.
pub const MIN_RATE_BPS: u64 = 1_000;
/// Fastest rate accepted, in bits per second.
pub const MAX_RATE_BPS: u64 = 100_000_000_000;
/// Longest run accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);
/// Most data one on-time batch may hold, as time at the configured rate.
pub const MAX_BURST: Duration = Duration::from_micros(100);
/// How long after the end a late sender may still send what was due.
pub const END_GRACE: Duration = Duration::from_millis(10);

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A rate or duration the operator gave that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RateError {
    /// Not a number with an optional k/M/G suffix.
    #[error("'{0}' is not a rate: expected bits/s like 3G, 500M, 100k, 1.5G, 2000000, or max")]
    Syntax(String),
    /// Outside [`MIN_RATE_BPS`]..=[`MAX_RATE_BPS`].
    #[error("rate '{0}' is out of range: must be between 1k and 100G bits/s")]
    Range(String),
    /// Not a positive number of seconds up to a day.
    #[error("duration '{0}' must be more than 0 and at most 86400 seconds")]
    Duration(String),
}

/// Parses a rate in bits per second: a decimal number with an optional SI
/// suffix `k`/`K` (10³), `M` (10⁶) or `G` (10⁹).
///
/// ```
/// use uringest::bench::rate::parse_rate;
/// assert_eq!(parse_rate("1.5G"), Ok(1_500_000_000));
/// assert_eq!(parse_rate("100k"), Ok(100_000));
/// ```
pub fn parse_rate(text: &str) -> Result<u64, RateError> {
    let s = text.trim();
    let (number, scale) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1e3),
        Some((i, 'M')) => (&s[..i], 1e6),
        Some((i, 'G')) => (&s[..i], 1e9),
        _ => (s, 1.0),
    };
    // f64 parsing also takes "inf", "nan" and "1e9"; allow only plain decimals.
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(RateError::Syntax(text.to_owned()));
    }
    let value: f64 = number.parse().map_err(|_| RateError::Syntax(text.to_owned()))?;
    let bps = (value * scale).round();
    if !(MIN_RATE_BPS as f64..=MAX_RATE_BPS as f64).contains(&bps) {
        return Err(RateError::Range(text.to_owned()));
    }
    // In range, so the cast is exact.
    Ok(bps as u64)
}

/// `--rate`: a paced bit rate, or as fast as the sender goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// `max`: no pacing; full batches back to back.
    Max,
    /// UDP payload bits per second.
    Bps(u64),
}

impl Rate {
    /// The paced rate, `None` for [`Rate::Max`].
    pub fn bps(self) -> Option<u64> {
        match self {
            Rate::Max => None,
            Rate::Bps(bps) => Some(bps),
        }
    }
}

impl std::str::FromStr for Rate {
    type Err = RateError;

    /// `max`, or a rate as [`parse_rate`] reads it.
    fn from_str(text: &str) -> Result<Self, RateError> {
        if text.trim() == "max" { Ok(Rate::Max) } else { parse_rate(text).map(Rate::Bps) }
    }
}

/// Parses a run length in seconds (fractions allowed), more than zero and at
/// most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, RateError> {
    let bad = || RateError::Duration(text.to_owned());
    let secs: f64 = text.trim().parse().map_err(|_| bad())?;
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_DURATION.as_secs_f64() {
        return Err(bad());
    }
    let d = Duration::from_secs_f64(secs);
    if d.is_zero() { Err(bad()) } else { Ok(d) }
}

/// Datagrams per batch: as many as fit in [`MAX_BURST`] at `rate_bps`, at
/// least one and at most `max_batch`.
pub fn batch_for(rate_bps: u64, datagram_bytes: usize, max_batch: usize) -> usize {
    let bits = datagram_bytes.max(1) as u128 * 8;
    let fit = MAX_BURST.as_nanos() * u128::from(rate_bps) / (bits * NANOS_PER_SEC);
    usize::try_from(fit).unwrap_or(usize::MAX).clamp(1, max_batch.max(1))
}

/// What the sender should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send datagrams `first..first + count` now.
    Send {
        /// Index of the first datagram of the batch, from 0 at the start.
        first: u64,
        /// Datagrams in the batch, `1..=batch`.
        count: usize,
    },
    /// Nothing is due before this instant.
    WaitUntil(Instant),
    /// The run is over.
    Done,
}

/// The deadline schedule of one run; see the module docs.
#[derive(Clone, Debug)]
pub struct Schedule {
    start: Instant,
    duration: Duration,
    /// `None`: unpaced (`--rate max`).
    rate_bps: Option<u64>,
    datagram_bits: u64,
    batch: usize,
    max_batch: usize,
    sent: u64,
    max_lag: Duration,
}

impl Schedule {
    /// A run of `duration` from `start`, of `datagram_bytes`-byte datagrams
    /// at `rate_bps` bits per second, at most `max_batch` per send.
    pub fn new(start: Instant, duration: Duration, rate_bps: u64, datagram_bytes: usize, max_batch: usize) -> Self {
        Schedule {
            start,
            duration,
            rate_bps: Some(rate_bps.max(1)),
            datagram_bits: datagram_bytes.max(1) as u64 * 8,
            batch: batch_for(rate_bps, datagram_bytes, max_batch),
            max_batch: max_batch.max(1),
            sent: 0,
            max_lag: Duration::ZERO,
        }
    }

    /// A run of `duration` from `start` as fast as the sender goes: every
    /// step is a batch of `max_batch` until the end.
    pub fn unpaced(start: Instant, duration: Duration, datagram_bytes: usize, max_batch: usize) -> Self {
        Schedule {
            start,
            duration,
            rate_bps: None,
            datagram_bits: datagram_bytes.max(1) as u64 * 8,
            batch: max_batch.max(1),
            max_batch: max_batch.max(1),
            sent: 0,
            max_lag: Duration::ZERO,
        }
    }

    /// Datagrams an on-time [`Step::Send`] asks for.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Datagrams handed out so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Datagrams due before the end, `ceil(rate × duration / datagram
    /// bits)`; `None` when unpaced.
    pub fn planned(&self) -> Option<u64> {
        self.rate_bps.map(|rate| self.count_before(rate, self.duration))
    }

    /// The latest any batch was handed out after its first datagram was due.
    pub fn max_lag(&self) -> Duration {
        self.max_lag
    }

    /// The instant the run ends.
    pub fn end(&self) -> Instant {
        self.start + self.duration
    }

    /// Offset from the start at which datagram `k` is due.
    fn offset(&self, rate: u64, k: u64) -> Duration {
        let ns = u128::from(k) * u128::from(self.datagram_bits) * NANOS_PER_SEC / u128::from(rate);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Number of datagrams whose offset is before `span`.
    fn count_before(&self, rate: u64, span: Duration) -> u64 {
        let num = span.as_nanos() * u128::from(rate);
        let den = u128::from(self.datagram_bits) * NANOS_PER_SEC;
        u64::try_from(num.div_ceil(den)).unwrap_or(u64::MAX)
    }

    /// The next thing to do at `now`. A [`Step::Send`] counts as sent.
    pub fn poll(&mut self, now: Instant) -> Step {
        let Some(rate) = self.rate_bps else {
            if now >= self.end() {
                return Step::Done;
            }
            let first = self.sent;
            self.sent += self.batch as u64;
            return Step::Send { first, count: self.batch };
        };
        let planned = self.count_before(rate, self.duration);
        if self.sent >= planned {
            return if now >= self.end() { Step::Done } else { Step::WaitUntil(self.end()) };
        }
        if now >= self.end() + END_GRACE {
            return Step::Done;
        }
        let due = self.start + self.offset(rate, self.sent);
        if now < due {
            return Step::WaitUntil(due);
        }
        self.max_lag = self.max_lag.max(now - due);
        // Everything due by now (the datagram due exactly now included),
        // at least an on-time batch, at most one call's worth.
        let due_now = self.count_before(rate, now - self.start + Duration::from_nanos(1));
        let count =
            due_now.saturating_sub(self.sent).clamp(self.batch as u64, self.max_batch as u64).min(planned - self.sent);
        let first = self.sent;
        self.sent += count;
        // count <= max_batch, a usize.
        Step::Send { first, count: count as usize }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock, SystemClock};

    #[test]
    fn rates_parse_with_si_suffixes() {
        assert_eq!(parse_rate("3G"), Ok(3_000_000_000));
        assert_eq!(parse_rate("500M"), Ok(500_000_000));
        assert_eq!(parse_rate("100k"), Ok(100_000));
        assert_eq!(parse_rate("100K"), Ok(100_000));
        assert_eq!(parse_rate("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_rate("2000000"), Ok(2_000_000));
        assert_eq!(parse_rate("1k"), Ok(1_000));
        assert_eq!(parse_rate("100G"), Ok(100_000_000_000));
        assert_eq!(parse_rate(" 0.5M "), Ok(500_000));
    }

    #[test]
    fn bad_rates_are_refused() {
        for bad in ["", "G", "3X", "3g", "-1G", "1e9", "inf", "nan", "3 G", "1.2.3M", "0x10"] {
            assert!(matches!(parse_rate(bad), Err(RateError::Syntax(_))), "{bad:?}");
        }
        for out in ["999", "0", "0.5k", "101G", "100000000001"] {
            assert!(matches!(parse_rate(out), Err(RateError::Range(_))), "{out:?}");
        }
    }

    #[test]
    fn max_is_a_rate() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("3G".parse::<Rate>(), Ok(Rate::Bps(3_000_000_000)));
        assert_eq!(Rate::Max.bps(), None);
        assert!("MAX".parse::<Rate>().is_err());
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("86400"), Ok(MAX_DURATION));
        for bad in ["0", "-1", "86401", "nan", "inf", "x", "", "1e-12"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn batches_hold_at_most_100_us() {
        // 3 Gbit/s of 1316-byte datagrams: 285k/s, 28.5 per 100 µs.
        assert_eq!(batch_for(3_000_000_000, 1316, 64), 28);
        assert_eq!(batch_for(100_000_000_000, 1316, 64), 64);
        assert_eq!(batch_for(1_000, 1316, 64), 1);
        assert_eq!(batch_for(50_000_000, 1316, 64), 1);
    }

    /// Steps a ManualClock through a run; each wait moves the clock to the
    /// deadline plus `late`. Returns (sends, final instant). Bounded.
    fn simulate(rate: u64, pkt: usize, secs: f64, late: Duration) -> (Vec<(Instant, u64, usize)>, Instant, Schedule) {
        let clock = ManualClock::new(SystemClock.now());
        let start = clock.now();
        let mut s = Schedule::new(start, Duration::from_secs_f64(secs), rate, pkt, 64);
        let mut sends = Vec::new();
        for _ in 0..10_000_000 {
            match s.poll(clock.now()) {
                Step::Send { first, count } => sends.push((clock.now(), first, count)),
                Step::WaitUntil(t) => {
                    assert!(t > clock.now());
                    clock.advance(t - clock.now() + late);
                }
                Step::Done => return (sends, clock.now(), s),
            }
        }
        panic!("schedule did not finish");
    }

    #[test]
    fn a_punctual_sender_sends_the_planned_count_evenly() {
        for (rate, pkt, secs) in [(3_000_000_000, 1316, 1.0), (50_000_000, 1316, 0.5), (1_000_000_000, 188, 0.3)] {
            let (sends, end, s) = simulate(rate, pkt, secs, Duration::ZERO);
            let expected = rate as f64 * secs / (pkt as f64 * 8.0);
            let total: u64 = sends.iter().map(|&(_, _, c)| c as u64).sum();
            assert!((total as f64 - expected).abs() <= s.batch() as f64, "{rate}: {total} vs {expected}");
            assert_eq!(Some(total), s.planned());
            assert!(s.max_lag().is_zero());
            // Contiguous, never more than a batch, one batch per instant.
            let mut next = 0;
            for w in sends.windows(2) {
                assert!(w[1].0 > w[0].0, "two batches at one instant");
            }
            for &(_, first, count) in &sends {
                assert_eq!(first, next);
                assert!(count <= s.batch());
                next += count as u64;
            }
            // Even: each batch leaves when its first datagram is due.
            let interval = pkt as f64 * 8.0 / rate as f64;
            for &(t, first, _) in &sends {
                let due = first as f64 * interval;
                assert!(((t - sends[0].0).as_secs_f64() - due).abs() < 1e-6);
            }
            assert_eq!(end - sends[0].0, Duration::from_secs_f64(secs));
        }
    }

    #[test]
    fn a_slightly_late_sender_catches_up_in_bounded_bursts() {
        // 30 µs late on every wait at 3 Gbit/s.
        let (sends, _, s) = simulate(3_000_000_000, 1316, 0.2, Duration::from_micros(30));
        let total: u64 = sends.iter().map(|&(_, _, c)| c as u64).sum();
        assert_eq!(Some(total), s.planned());
        assert!(sends.iter().all(|&(_, _, c)| c <= 64));
        assert!(s.max_lag() >= Duration::from_micros(30));
    }

    #[test]
    fn a_stalled_sender_catches_up_in_full_batches_and_loses_nothing() {
        let clock = ManualClock::new(SystemClock.now());
        let start = clock.now();
        let mut s = Schedule::new(start, Duration::from_secs(1), 3_000_000_000, 1316, 64);
        assert!(matches!(s.poll(clock.now()), Step::Send { first: 0, count: 28 }));
        // A 10 ms stall: 2850 datagrams are due; they go out 64 at a time,
        // the last batch an on-time one (up to 27 of it not yet due).
        clock.advance(Duration::from_millis(10));
        let mut counts = Vec::new();
        for _ in 0..1000 {
            match s.poll(clock.now()) {
                Step::Send { count, .. } => counts.push(count),
                _ => break,
            }
        }
        let caught_up: usize = counts.iter().sum();
        let due = 3_000_000_000 / 100 / (1316 * 8) + 1;
        assert!((due..due + 28).contains(&(caught_up as u64 + 28)), "{caught_up}");
        assert!(counts.iter().all(|&c| c <= 64));
        assert_eq!(counts[0], 64);
        assert!(s.max_lag() >= Duration::from_millis(9));
        // The rest of the run still sends every planned datagram.
        for _ in 0..10_000_000 {
            match s.poll(clock.now()) {
                Step::Send { .. } => {}
                Step::WaitUntil(t) => clock.advance(t - clock.now()),
                Step::Done => break,
            }
        }
        assert_eq!(Some(s.sent()), s.planned());
    }

    #[test]
    fn a_sender_too_slow_for_the_rate_stops_after_the_grace() {
        let clock = ManualClock::new(SystemClock.now());
        let mut s = Schedule::new(clock.now(), Duration::from_millis(10), 10_000_000_000, 1316, 64);
        assert!(matches!(s.poll(clock.now()), Step::Send { first: 0, .. }));
        clock.advance(Duration::from_millis(10) + END_GRACE);
        assert_eq!(s.poll(clock.now()), Step::Done);
        assert!(Some(s.sent()) < s.planned());
    }

    #[test]
    fn unpaced_runs_send_full_batches_until_the_end() {
        let clock = ManualClock::new(SystemClock.now());
        let mut s = Schedule::unpaced(clock.now(), Duration::from_millis(2), 1316, 49);
        assert_eq!(s.planned(), None);
        assert_eq!(s.poll(clock.now()), Step::Send { first: 0, count: 49 });
        assert_eq!(s.poll(clock.now()), Step::Send { first: 49, count: 49 });
        clock.advance(Duration::from_millis(2));
        assert_eq!(s.poll(clock.now()), Step::Done);
        assert_eq!(s.sent(), 98);
    }

    #[test]
    fn the_run_ends_on_time_even_with_nothing_to_send() {
        // 1 kbit/s for 1 ms: only datagram 0 is due; then Done at the end.
        let clock = ManualClock::new(SystemClock.now());
        let mut s = Schedule::new(clock.now(), Duration::from_millis(1), 1_000, 1316, 64);
        assert_eq!(s.poll(clock.now()), Step::Send { first: 0, count: 1 });
        assert_eq!(s.poll(clock.now()), Step::WaitUntil(s.end()));
        clock.advance(Duration::from_millis(1));
        assert_eq!(s.poll(clock.now()), Step::Done);
    }
}
