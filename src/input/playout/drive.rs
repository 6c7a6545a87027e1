//! Runs a [`Playout`] on a shard: sleeps on the runtime's timer until bytes
//! are due, publishes them into a hub, and records how late each emission
//! was against its PCR time.
//!
//! One wake-up releases every packet due by then, published as one batch
//! (one reader wake-up). The timer wheel has a 1 ms resolution, so a paced
//! stream wakes at most about a thousand times a second whatever its
//! bitrate, and emission is late by up to about a millisecond.

use std::time::Duration;

use bytes::Bytes;

use super::{Next, Playout, PlayoutCounters, PlayoutError};
use crate::clock::Clock;
use crate::hub::Publisher;

/// Chunks published per batch at most, and, with `pace=none`, between
/// yields to the shard's other tasks.
const BATCH: usize = 64;
/// Width of a lateness bucket.
const BUCKET: Duration = Duration::from_micros(10);
/// Buckets: 10 µs each up to 50 ms; later emissions share the last one.
const BUCKETS: usize = 5000;

/// How late emissions were against their due time: a histogram of 10 µs
/// buckets up to 50 ms.
#[derive(Clone, Debug)]
pub struct Lateness {
    counts: Box<[u64]>,
    total: u64,
    max: Duration,
}

impl Default for Lateness {
    fn default() -> Self {
        Lateness { counts: vec![0; BUCKETS].into_boxed_slice(), total: 0, max: Duration::ZERO }
    }
}

impl Lateness {
    /// Records one emission `late` after its due time.
    pub fn record(&mut self, late: Duration) {
        let bucket = ((late.as_nanos() / BUCKET.as_nanos()) as usize).min(BUCKETS - 1);
        self.counts[bucket] += 1;
        self.total += 1;
        self.max = self.max.max(late);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Lateness) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Emissions recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latest emission.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The `q` quantile (0 to 1), as the upper edge of its bucket; zero
    /// when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return (BUCKET * (index as u32 + 1)).min(self.max);
            }
        }
        self.max
    }
}

/// What a finished (or stopped) playout did.
#[derive(Clone, Debug)]
pub struct DriveReport {
    /// The playout's counters.
    pub counters: PlayoutCounters,
    /// Lateness of paced emissions (empty with `pace=none`).
    pub lateness: Lateness,
    /// Hub items published.
    pub published: u64,
}

/// Plays `playout` into `publisher` until it ends or `run_for` has passed.
pub async fn drive<C: Clock>(
    mut playout: Playout,
    mut publisher: Publisher<Bytes>,
    clock: C,
    run_for: Option<Duration>,
) -> Result<DriveReport, PlayoutError> {
    let start = clock.now();
    let mut lateness = Lateness::default();
    let mut batch: Vec<Bytes> = Vec::with_capacity(BATCH);
    let mut dues: Vec<Duration> = Vec::with_capacity(BATCH);
    loop {
        let now = clock.now() - start;
        if run_for.is_some_and(|limit| now >= limit) {
            break;
        }
        let wait = match playout.next(now)? {
            Next::Emit { bytes, due } => {
                batch.push(bytes);
                dues.extend(due);
                if batch.len() < BATCH {
                    continue;
                }
                None
            }
            Next::Wait(at) => Some(at),
            Next::End => {
                publish(&mut publisher, &mut batch, &mut dues, &mut lateness, &clock, start);
                break;
            }
        };
        publish(&mut publisher, &mut batch, &mut dues, &mut lateness, &clock, start);
        match wait {
            Some(at) => {
                let at = run_for.map_or(at, |limit| at.min(limit));
                tokio::time::sleep_until(tokio::time::Instant::from_std(start + at)).await;
            }
            // A full batch: let the shard's other tasks run.
            None => tokio::task::yield_now().await,
        }
    }
    publish(&mut publisher, &mut batch, &mut dues, &mut lateness, &clock, start);
    Ok(DriveReport { counters: playout.counters(), lateness, published: publisher.published() })
}

/// Publishes the batch and records, for each paced item, how late it went
/// out.
fn publish<C: Clock>(
    publisher: &mut Publisher<Bytes>,
    batch: &mut Vec<Bytes>,
    dues: &mut Vec<Duration>,
    lateness: &mut Lateness,
    clock: &C,
    start: std::time::Instant,
) {
    if batch.is_empty() {
        return;
    }
    publisher.publish_batch(batch.drain(..));
    if dues.is_empty() {
        return;
    }
    let sent = clock.now() - start;
    for due in dues.drain(..) {
        lateness.record(sent.saturating_sub(due));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_quantiles_come_from_the_buckets() {
        let mut l = Lateness::default();
        assert_eq!(l.quantile(0.5), Duration::ZERO);
        for us in 1..=100 {
            l.record(Duration::from_micros(us * 10 - 5));
        }
        assert_eq!(l.count(), 100);
        assert_eq!(l.quantile(0.5), Duration::from_micros(500));
        assert_eq!(l.quantile(0.99), Duration::from_micros(990));
        assert_eq!(l.quantile(1.0), Duration::from_micros(995));
        let mut other = Lateness::default();
        other.record(Duration::from_secs(1));
        l.merge(&other);
        assert_eq!((l.count(), l.max()), (101, Duration::from_secs(1)));
        assert_eq!(l.quantile(1.0), Duration::from_secs(1).min(BUCKET * BUCKETS as u32));
    }
}
