//! Latency histograms, and the percentiles the report gives of them.

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in nanoseconds, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    // Auto-resizing covers any value.
    let mut h = Histogram::new(3).expect("3 significant figures are valid");
    h.auto(true);
    h
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    /// Samples.
    pub(crate) count: u64,
    /// Smallest.
    pub(crate) min_us: f64,
    /// Mean.
    pub(crate) mean_us: f64,
    /// Median.
    pub(crate) p50_us: f64,
    /// 90th percentile.
    pub(crate) p90_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// 99.9th percentile.
    pub(crate) p999_us: f64,
    /// Largest.
    pub(crate) max_us: f64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds; `None` when empty.
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        Some(Self {
            count: h.len(),
            min_us: us(h.min()),
            mean_us: (h.mean() / 100.0).round() / 10.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        })
    }
}
