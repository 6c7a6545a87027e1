//! Runs a [`Playout`] on a shard: sleeps until bytes are due, publishes
//! them into a hub, and records how far each emission was from its PCR
//! time.
//!
//! Wake-ups are what paced playout costs, so a stream wakes at most once
//! per [`DriveOptions::quantum`] (1 ms): measured with 32 streams of
//! 5 Mbit/s, waking for every packet's due time (about 3300 times a second
//! each) cost 62 % of a core (one run with builds sharing the cores),
//! waking at most once a millisecond 14-15 % (perf/file.sh, idle). To keep
//! emission centred on the PCR time rather than up to a quantum late, each
//! wake-up releases what is due up to half a quantum ahead: each packet goes out within about ±0.5 ms of its PCR
//! time plus the wake-up latency. [`PacingErrors`] records an emission by
//! its earliest packet, so its figures lean late by up to half a quantum.
//! Everything released at one wake-up is published as one batch (one reader
//! wake-up).
//!
//! The wait is on a [`PreciseTimer`]: tokio's timer wheel would add up to
//! 2 ms (it rounds to the millisecond and parks in whole milliseconds).
//! When no timerfd can be had, tokio's timer is used and a warning logged.
//! With [`DriveOptions::align`] (`serve`'s file inputs) the wait is on the
//! shard's [`ShardTimer`] instead, rounded up to its grid: the shard's
//! paced files (and, after them, its UDP outputs) wake together, one timer
//! expiry for all of them. A grid wake-up cannot move to a due time, so it
//! releases a whole quantum ahead instead of half: emissions are up to a
//! quantum early, never late (the outputs re-pace). In perf/serve.sh
//! (64 files, 20 ms quantum) this cut the node's CPU to about 0.7x of a
//! timerfd per file, and the longest silence on a group from 40 ms to
//! 24-33 ms.

use std::time::Duration;

use bytes::Bytes;

use super::{Next, Playout, PlayoutCounters, PlayoutError};
use crate::clock::Clock;
use crate::hub::Publisher;

/// Where a driven playout's chunks go: a hub's publisher, or a relay's
/// input stage that counts (and filters) before publishing.
pub trait ChunkSink {
    /// Takes every chunk of `batch`, in order, leaving it empty.
    fn publish_batch(&mut self, batch: &mut Vec<Bytes>);

    /// Counts `count` segments of a segmented source (HLS) that were lost
    /// before the chunks that follow; sinks without such a counter ignore it.
    fn segments_missed(&mut self, _count: u64) {}
}

impl ChunkSink for Publisher<Bytes> {
    fn publish_batch(&mut self, batch: &mut Vec<Bytes>) {
        Publisher::publish_batch(self, batch.drain(..));
    }
}
use crate::shard::timer::{PreciseTimer, ShardTimer, shard_timer};

/// Chunks published per batch at most, and, with `pace=none`, between
/// yields to the shard's other tasks.
const BATCH: usize = 64;
/// Width of a bucket of the error histogram.
const BUCKET: Duration = Duration::from_micros(10);
/// Earliest error the histogram tells apart (earlier ones share its first
/// bucket).
const EARLIEST: Duration = Duration::from_millis(10);
/// Buckets: 10 µs each from 10 ms early to 40 ms late.
const BUCKETS: usize = 5000;

/// How a stream is driven.
#[derive(Clone, Copy, Debug)]
pub struct DriveOptions {
    /// Shortest time between two wake-ups of a paced stream.
    pub quantum: Duration,
    /// Stop after this long (`None`: when the playout ends).
    pub run_for: Option<Duration>,
    /// Wake on the shard's shared grid ([`ShardTimer`]) rather than on a
    /// timer of its own: every stream of the shard due in the same quantum
    /// then wakes at once. Meant for the system clock (the grid is).
    pub align: bool,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions { quantum: Duration::from_millis(1), run_for: None, align: false }
    }
}

/// Emission time minus due time of paced emissions, signed: a histogram of
/// 10 µs buckets from 10 ms early to 40 ms late.
#[derive(Clone, Debug)]
pub struct PacingErrors {
    counts: Box<[u64]>,
    total: u64,
    /// Extremes, in nanoseconds (negative: early).
    min: i64,
    max: i64,
}

impl Default for PacingErrors {
    fn default() -> Self {
        PacingErrors { counts: vec![0; BUCKETS].into_boxed_slice(), total: 0, min: i64::MAX, max: i64::MIN }
    }
}

impl PacingErrors {
    /// Records one emission at `sent` of bytes due at `due`.
    pub fn record(&mut self, sent: Duration, due: Duration) {
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let error = nanos(sent).saturating_sub(nanos(due));
        let shifted = error.saturating_add(nanos(EARLIEST)).max(0);
        let bucket = usize::try_from(shifted / nanos(BUCKET)).unwrap_or(usize::MAX).min(BUCKETS - 1);
        self.counts[bucket] += 1;
        self.total += 1;
        self.min = self.min.min(error);
        self.max = self.max.max(error);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &PacingErrors) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Emissions recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The earliest and latest errors in seconds (negative: early); zeros
    /// when nothing was recorded.
    pub fn extremes(&self) -> (f64, f64) {
        if self.total == 0 {
            return (0.0, 0.0);
        }
        (self.min as f64 / 1e9, self.max as f64 / 1e9)
    }

    /// The `q` quantile (0 to 1) of the error in seconds, as the upper edge
    /// of its bucket (clamped to the extremes); zero when nothing was
    /// recorded.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let edge = (index + 1) as f64 * BUCKET.as_secs_f64() - EARLIEST.as_secs_f64();
                return edge.clamp(self.min as f64 / 1e9, self.max as f64 / 1e9);
            }
        }
        self.max as f64 / 1e9
    }

    /// The `q` quantile of the error's magnitude (early or late) in
    /// seconds, to the resolution of a bucket.
    pub fn abs_quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        // Buckets ordered by distance from zero error.
        let zero = (EARLIEST.as_nanos() / BUCKET.as_nanos()) as usize;
        let mut by_distance: Vec<(usize, u64)> =
            self.counts.iter().enumerate().map(|(i, &c)| (i.abs_diff(zero), c)).filter(|&(_, c)| c > 0).collect();
        by_distance.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (distance, count) in by_distance {
            seen += count;
            if seen >= rank {
                return ((distance + 1) as f64 * BUCKET.as_secs_f64())
                    .min(self.min.abs().max(self.max.abs()) as f64 / 1e9);
            }
        }
        self.min.abs().max(self.max.abs()) as f64 / 1e9
    }
}

/// What a finished (or stopped) playout did.
#[derive(Clone, Debug)]
pub struct DriveReport {
    /// The playout's counters.
    pub counters: PlayoutCounters,
    /// Emission time minus due time of paced emissions (empty with
    /// `pace=none`).
    pub errors: PacingErrors,
    /// Hub items published.
    pub published: u64,
    /// Times the stream woke up to emit.
    pub wakeups: u64,
}

/// Plays `playout` into `sink` until it ends or `options.run_for` has
/// passed.
pub async fn drive<C: Clock>(
    mut playout: Playout,
    sink: &mut impl ChunkSink,
    clock: C,
    options: DriveOptions,
) -> Result<DriveReport, PlayoutError> {
    let start = clock.now();
    // Released this far ahead of due. On the shard grid a wake-up cannot
    // be moved to a due time, so it releases a whole quantum ahead: never
    // late, and the outputs, which re-pace, have it in hand.
    let lead = if options.align { options.quantum } else { options.quantum / 2 };
    let mut errors = PacingErrors::default();
    let mut wakeups = 0;
    let mut published = 0;
    let mut batch: Vec<Bytes> = Vec::with_capacity(BATCH);
    let mut dues: Vec<Duration> = Vec::with_capacity(BATCH);
    let shared: Option<std::rc::Rc<ShardTimer>> = if options.align {
        shard_timer().map_err(|e| tracing::warn!("no shard timer ({e}): pacing on a timer of its own")).ok()
    } else {
        None
    };
    let mut timer = match shared {
        Some(_) => None,
        None => PreciseTimer::new()
            .map_err(|e| tracing::warn!("no timerfd ({e}): pacing falls back to the 1 ms runtime timer"))
            .ok(),
    };
    let mut woke = Duration::ZERO;
    loop {
        let now = clock.now() - start;
        if options.run_for.is_some_and(|limit| now >= limit) {
            break;
        }
        let wait = match playout.next(now + lead)? {
            Next::Emit { bytes, due } => {
                batch.push(bytes);
                dues.extend(due);
                if batch.len() < BATCH {
                    continue;
                }
                None
            }
            Next::Wait(at) => Some(at),
            Next::End => break,
        };
        published += publish(sink, &mut batch, &mut dues, &mut errors, &clock, start);
        let Some(at) = wait else {
            // A full batch: let the shard's other tasks run.
            tokio::task::yield_now().await;
            continue;
        };
        // On the shard's grid, wake-ups are a grid step apart already;
        // adding the quantum to the (slightly late) last wake-up would
        // round up to every other grid point.
        let spacing = if shared.is_some() { woke } else { woke + options.quantum };
        let mut wake_at = at.saturating_sub(lead).max(spacing);
        if let Some(limit) = options.run_for {
            wake_at = wake_at.min(limit);
        }
        let slept = match (shared.as_ref(), timer.as_mut()) {
            (Some(shared), _) => {
                shared.sleep_until(shared.align(start + wake_at, options.quantum)).await;
                Ok(())
            }
            (None, Some(timer)) => timer.sleep(wake_at.saturating_sub(clock.now() - start)).await,
            (None, None) => {
                tokio::time::sleep_until(tokio::time::Instant::from_std(start + wake_at)).await;
                Ok(())
            }
        };
        if let Err(e) = slept {
            tracing::warn!("timerfd failed ({e}): pacing falls back to the 1 ms runtime timer");
            timer = None;
        }
        woke = clock.now() - start;
        wakeups += 1;
    }
    published += publish(sink, &mut batch, &mut dues, &mut errors, &clock, start);
    Ok(DriveReport { counters: playout.counters(), errors, published, wakeups })
}

/// Publishes the batch and records, for each paced item, when it went out
/// against when it was due. Returns the items published.
fn publish<C: Clock>(
    sink: &mut impl ChunkSink,
    batch: &mut Vec<Bytes>,
    dues: &mut Vec<Duration>,
    errors: &mut PacingErrors,
    clock: &C,
    start: std::time::Instant,
) -> u64 {
    if batch.is_empty() {
        return 0;
    }
    let items = batch.len() as u64;
    sink.publish_batch(batch);
    if dues.is_empty() {
        return items;
    }
    let sent = clock.now() - start;
    for due in dues.drain(..) {
        errors.record(sent, due);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1e3)
    }

    #[test]
    fn errors_are_signed_and_quantiles_come_from_the_buckets() {
        let mut e = PacingErrors::default();
        assert_eq!((e.quantile(0.5), e.abs_quantile(0.99), e.extremes()), (0.0, 0.0, (0.0, 0.0)));
        // 100 emissions from 0.495 ms early to 0.495 ms late.
        for k in 0..100 {
            e.record(ms(10.0), ms(10.0 + 0.495 - k as f64 * 0.01));
        }
        assert_eq!(e.count(), 100);
        assert!((e.quantile(0.5) - 0.0).abs() < 11e-6, "{}", e.quantile(0.5));
        assert!((e.abs_quantile(1.0) - 0.495e-3).abs() < 1e-9);
        assert!((e.abs_quantile(0.5) - 0.25e-3).abs() < 11e-6, "{}", e.abs_quantile(0.5));
        let (early, late) = e.extremes();
        assert!((early + 0.495e-3).abs() < 1e-9 && (late - 0.495e-3).abs() < 1e-9);
        let mut other = PacingErrors::default();
        other.record(ms(1000.0), Duration::ZERO);
        e.merge(&other);
        assert_eq!(e.count(), 101);
        assert_eq!(e.extremes().1, 1.0);
        assert!((e.quantile(1.0) - 0.04).abs() < 1e-9, "past the last bucket: its edge, 40 ms");
    }
}
