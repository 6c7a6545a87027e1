//! Bounded histograms of the sink's gaps and burst lengths.

/// Gap histogram: exact 0, then 100 ns buckets below this many ns...
const LINEAR_NS: u64 = 100_000;
const LINEAR_STEP: u64 = 100;
/// ... then this many buckets per doubling, for this many doublings.
const LOG_PER_DOUBLING: f64 = 64.0;
const LOG_BUCKETS: usize = 64 * 26;
/// Burst lengths counted one by one up to this; longer ones share a bucket.
const BURST_BUCKETS: usize = 1024;

/// A histogram of gaps in ns: bounded memory whatever the run's length.
#[derive(Clone)]
pub struct GapHistogram {
    counts: Vec<u64>,
    total: u64,
    max_ns: u64,
}

impl GapHistogram {
    pub fn new() -> Self {
        GapHistogram { counts: vec![0; 1 + (LINEAR_NS / LINEAR_STEP) as usize + LOG_BUCKETS], total: 0, max_ns: 0 }
    }

    fn bucket(ns: u64) -> usize {
        if ns == 0 {
            0
        } else if ns < LINEAR_NS {
            1 + (ns / LINEAR_STEP) as usize
        } else {
            let k = ((ns as f64 / LINEAR_NS as f64).log2() * LOG_PER_DOUBLING) as usize;
            1 + (LINEAR_NS / LINEAR_STEP) as usize + k.min(LOG_BUCKETS - 1)
        }
    }

    /// A value inside bucket `b`: its middle.
    fn value(b: usize) -> f64 {
        let linear = (LINEAR_NS / LINEAR_STEP) as usize;
        if b == 0 {
            0.0
        } else if b <= linear {
            ((b - 1) as u64 * LINEAR_STEP) as f64 + LINEAR_STEP as f64 / 2.0
        } else {
            LINEAR_NS as f64 * (((b - 1 - linear) as f64 + 0.5) / LOG_PER_DOUBLING).exp2()
        }
    }

    pub fn add(&mut self, ns: u64, times: u64) {
        self.counts[Self::bucket(ns)] += times;
        self.total += times;
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn merge(&mut self, other: &GapHistogram) {
        self.counts.iter_mut().zip(&other.counts).for_each(|(a, b)| *a += b);
        self.total += other.total;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The `q` quantile in µs (never above the exact maximum).
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::value(b).min(self.max_ns as f64) / 1e3);
            }
        }
        None
    }

    pub fn json(&self) -> serde_json::Value {
        let r = |v: Option<f64>| v.map(|x| (x * 100.0).round() / 100.0);
        serde_json::json!({
            "count": self.total,
            "p50": r(self.quantile_us(0.50)),
            "p90": r(self.quantile_us(0.90)),
            "p99": r(self.quantile_us(0.99)),
            "max": if self.total > 0 { r(Some(self.max_ns as f64 / 1e3)) } else { None },
        })
    }
}

/// Burst lengths in datagrams.
#[derive(Clone)]
pub struct BurstHistogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl BurstHistogram {
    pub fn new() -> Self {
        BurstHistogram { counts: vec![0; BURST_BUCKETS + 1], total: 0, max: 0 }
    }

    pub fn add(&mut self, len: u64) {
        if len == 0 {
            return;
        }
        self.counts[(len as usize).min(BURST_BUCKETS)] += 1;
        self.total += 1;
        self.max = self.max.max(len);
    }

    pub fn merge(&mut self, other: &BurstHistogram) {
        self.counts.iter_mut().zip(&other.counts).for_each(|(a, b)| *a += b);
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn quantile(&self, q: f64) -> Option<u64> {
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (len, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                // The last bucket holds every longer burst: the longest is
                // the one value known in it.
                return Some(if len == BURST_BUCKETS { self.max } else { len as u64 });
            }
        }
        None
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.total,
            "p50": self.quantile(0.50),
            "p90": self.quantile(0.90),
            "p99": self.quantile(0.99),
            "max": (self.total > 0).then_some(self.max),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gap_quantiles_come_within_a_bucket_of_the_truth() {
        let mut h = GapHistogram::new();
        // 80 zeros, 19 gaps of 10.5 us, one of 2 ms: p50 0, p90 ~10.5, p99 ~10.5, max 2000.
        h.add(0, 80);
        h.add(10_500, 19);
        h.add(2_000_000, 1);
        assert_eq!(h.quantile_us(0.50), Some(0.0));
        let p90 = h.quantile_us(0.90).unwrap();
        assert!((p90 - 10.5).abs() <= 0.1, "{p90}");
        let p99 = h.quantile_us(0.99).unwrap();
        assert!((p99 - 10.5).abs() <= 0.1, "{p99}");
        let p100 = h.quantile_us(1.0).unwrap();
        assert!((p100 - 2000.0).abs() <= 2000.0 * 0.011, "{p100}");
        assert_eq!(h.json()["max"], 2000.0);
        // Log buckets stay within 1.1 % all the way up.
        for ns in [100_000u64, 123_456, 9_999_999, 3_000_000_000] {
            let mut h = GapHistogram::new();
            h.add(ns, 1);
            h.add(u64::MAX / 2, 1);
            let got = h.quantile_us(0.5).unwrap() * 1e3;
            assert!((got - ns as f64).abs() <= ns as f64 * 0.011, "{ns}: {got}");
        }
        assert_eq!(GapHistogram::new().quantile_us(0.5), None);
    }

    #[test]
    fn burst_quantiles_are_exact() {
        let mut h = BurstHistogram::new();
        (0..98).for_each(|_| h.add(9));
        h.add(64);
        h.add(5000);
        h.add(0);
        assert_eq!(h.quantile(0.5), Some(9));
        assert_eq!(h.quantile(0.99), Some(64));
        assert_eq!(h.quantile(1.0), Some(5000));
        assert_eq!(h.json()["count"], 100);
    }
}
