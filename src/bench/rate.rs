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
mod tests;
