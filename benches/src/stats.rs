//! Latency histograms (hdrhistogram, microseconds) and counters by outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency recorded exactly, in microseconds (one hour); longer ones are
/// recorded as this.
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 3 significant digits.
#[derive(Clone, Debug)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        // Constant bounds that hdrhistogram accepts (1 ≤ low, high ≥ 2·low, 3 figures).
        let histogram = Histogram::new_with_bounds(1, MAX_MICROS, 3);
        Self(histogram.expect("constant histogram bounds are valid"))
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot overflow the range.
        let _ = self.0.add(&other.0);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The percentiles of the report.
    pub fn summary(&self) -> Percentiles {
        let h = &self.0;
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            mean_us: h.mean(),
            min_us: h.min(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Percentiles of a [`Latency`], in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Smallest.
    pub min_us: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// Counts by a key (HTTP status, error kind, task status).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Counts(BTreeMap<String, u64>);

impl Counts {
    /// Adds `n` to `key`.
    pub fn add(&mut self, key: impl Into<String>, n: u64) {
        *self.0.entry(key.into()).or_default() += n;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (k, n) in &other.0 {
            self.add(k.clone(), *n);
        }
    }

    /// The count of `key` (0 when absent).
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// The sum of every count.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `key=n` pairs, comma-separated, or `-` when empty.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "-".into();
        }
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k}={n}")).collect();
        parts.join(", ")
    }
}

/// `count / seconds`, or 0 for an empty interval.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_recorded_values() {
        let mut h = Latency::new();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert!((49_900..=50_100).contains(&s.p50_us), "{s:?}");
        assert!((98_900..=99_100).contains(&s.p99_us), "{s:?}");
        assert!((99_900..=100_100).contains(&s.max_us), "{s:?}");
    }

    #[test]
    fn merge_adds_and_extremes_are_clamped() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        a.record(Duration::ZERO);
        b.record(Duration::from_secs(100_000));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.min_us, 1);
        assert!(s.max_us >= MAX_MICROS - MAX_MICROS / 1000);
        assert_eq!(Latency::new().summary(), Percentiles::default());
    }

    #[test]
    fn counts_merge_and_describe() {
        let mut a = Counts::default();
        a.add("202", 3);
        let mut b = Counts::default();
        b.add("202", 1);
        b.add("503", 2);
        a.merge(&b);
        assert_eq!(a.get("202"), 4);
        assert_eq!(a.total(), 6);
        assert_eq!(a.describe(), "202=4, 503=2");
        assert_eq!(Counts::default().describe(), "-");
    }
}
