//! The gaps between an output's datagrams, as a histogram: how evenly it
//! sends. Datagrams that leave in one send call (a GSO message or one
//! `sendmmsg`) count as back to back: gap zero.

use serde::Serialize;

/// Sub-buckets per power of two: quantiles are within 19 % of the truth.
const SUB: u32 = 4;
/// Buckets: zero, then powers of two of nanoseconds up to about 70 s.
const BUCKETS: usize = 1 + 36 * SUB as usize;

/// Inter-datagram gaps in nanoseconds.
#[derive(Clone, Debug)]
pub struct GapHistogram {
    counts: Vec<u64>,
    total: u64,
    max_ns: u64,
}

impl Default for GapHistogram {
    fn default() -> Self {
        GapHistogram { counts: vec![0; BUCKETS], total: 0, max_ns: 0 }
    }
}

/// Gap percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct GapSummary {
    /// Median gap.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest gap.
    pub max: f64,
    /// Gaps measured (datagrams sent minus one).
    pub count: u64,
}

fn bucket(ns: u64) -> usize {
    if ns == 0 {
        return 0;
    }
    let log = 63 - ns.leading_zeros();
    let frac = if log >= 2 { ((ns >> (log - 2)) & 3) as u32 } else { 0 };
    (1 + log * SUB + frac).min(BUCKETS as u32 - 1) as usize
}

fn upper_ns(index: usize) -> u64 {
    if index == 0 {
        return 0;
    }
    let i = index as u32 - 1;
    let (log, frac) = (i / SUB, i % SUB);
    let base = 1u64 << log;
    if log < 2 {
        // Too small to split: `bucket` puts all of [base, 2 base) in frac 0.
        return (base << 1) - 1;
    }
    base + (base >> 2) * u64::from(frac + 1) - 1
}

impl GapHistogram {
    /// Records `zeros` back-to-back datagrams and then one gap of `gap_ns`.
    pub fn record(&mut self, gap_ns: u64, zeros: u64) {
        self.counts[0] += zeros;
        self.counts[bucket(gap_ns)] += 1;
        self.total += zeros + 1;
        self.max_ns = self.max_ns.max(gap_ns);
    }

    /// Records `zeros` back-to-back datagrams only (the first send).
    pub fn record_zeros(&mut self, zeros: u64) {
        self.counts[0] += zeros;
        self.total += zeros;
    }

    fn quantile_ns(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_ns(i).min(self.max_ns);
            }
        }
        self.max_ns
    }

    /// Percentiles in microseconds.
    pub fn summary(&self) -> GapSummary {
        let us = |ns: u64| ns as f64 / 1e3;
        GapSummary {
            p50: us(self.quantile_ns(0.5)),
            p90: us(self.quantile_ns(0.9)),
            p99: us(self.quantile_ns(0.99)),
            max: us(self.max_ns),
            count: self.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values() {
        for ns in [1u64, 2, 3, 5, 7, 100, 1000, 10_500, 1 << 33] {
            let b = bucket(ns);
            assert!(upper_ns(b) >= ns, "{ns}: upper {}", upper_ns(b));
            assert!(b == 0 || upper_ns(b - 1) < ns, "{ns}: previous bucket also fits");
        }
    }

    #[test]
    fn percentiles_of_even_gaps_with_bursts() {
        let mut h = GapHistogram::default();
        // 100 sends of 4 datagrams, 40 us apart: 3 zeros and a gap each.
        for _ in 0..100 {
            h.record(40_000, 3);
        }
        let s = h.summary();
        assert_eq!(s.p50, 0.0);
        assert!((40.0..=48.0).contains(&s.p90), "{s:?}");
        assert_eq!(s.max, 40.0);
        assert_eq!(s.count, 400);
    }
}
