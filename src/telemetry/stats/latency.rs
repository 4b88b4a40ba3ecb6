//! A latency histogram fine enough for percentiles a person reads.
//!
//! The Prometheus histogram's buckets (`sluice_request_duration_seconds`) are
//! a factor of two to two and a half apart: a p99 taken from them says "between
//! 25 and 50 ms". This one is log-linear, like HdrHistogram with three
//! significant bits: below 16 µs one bucket per microsecond, above that eight
//! buckets per power of two, so a bucket's midpoint is within 6.25 % of any
//! value in it. Recording is one relaxed atomic add, so it can sit on the
//! request path beside the Prometheus one; it never resets, and the series
//! sampler takes percentiles from the difference of two snapshots.

use std::sync::atomic::{AtomicU64, Ordering};

/// Microseconds below this each get their own bucket.
const LINEAR: u64 = 16;
const SUB_BUCKETS: u64 = 8;
/// The highest power of two kept apart (2^30 µs ≈ 18 minutes); longer
/// requests share the last bucket.
const MAX_POWER: u32 = 30;
pub const BUCKETS: usize = (LINEAR + (MAX_POWER as u64 - 3) * SUB_BUCKETS) as usize;

pub struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LatencyHistogram {
    pub fn record(&self, seconds: f64) {
        // `as` saturates: NaN and negatives land in bucket 0.
        let micros = (seconds * 1e6) as u64;
        self.counts[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Every bucket's count so far.
    pub fn snapshot(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

fn bucket_of(micros: u64) -> usize {
    if micros < LINEAR {
        return micros as usize;
    }
    let power = (63 - micros.leading_zeros()).min(MAX_POWER);
    if power == MAX_POWER && micros >> MAX_POWER >= 2 {
        return BUCKETS - 1;
    }
    let sub = (micros >> (power - 3)) & (SUB_BUCKETS - 1);
    (LINEAR + (power as u64 - 4) * SUB_BUCKETS + sub) as usize
}

/// The middle of bucket `i`, in milliseconds.
fn midpoint_ms(i: usize) -> f64 {
    let i = i as u64;
    if i < LINEAR {
        return (i as f64 + 0.5) / 1e3;
    }
    let power = (i - LINEAR) / SUB_BUCKETS + 4;
    let sub = (i - LINEAR) % SUB_BUCKETS;
    let width = 1u64 << (power - 3);
    let lower = (SUB_BUCKETS + sub) * width;
    (lower as f64 + width as f64 / 2.0) / 1e3
}

/// The nearest-rank `q` quantile (0 < q ≤ 1) of the requests counted
/// between two snapshots, as the midpoint of the bucket it falls in; `None`
/// when no request was counted.
pub fn percentile_ms(before: &[u64], after: &[u64], q: f64) -> Option<f64> {
    let deltas: Vec<u64> = after
        .iter()
        .zip(before.iter().chain(std::iter::repeat(&0)))
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let total: u64 = deltas.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, n) in deltas.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(midpoint_ms(i));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_within_its_buckets_error_bound() {
        for micros in (0..20_000u64).chain((1..2000).map(|k| k * 7919)) {
            let mid_us = midpoint_ms(bucket_of(micros)) * 1e3;
            let err = (mid_us - micros as f64).abs();
            assert!(
                err <= 0.5 || err / micros as f64 <= 0.0626,
                "{micros} µs reported as {mid_us}"
            );
        }
    }

    #[test]
    fn buckets_are_in_order_and_in_range() {
        let mut last = 0;
        for micros in [
            0,
            1,
            15,
            16,
            17,
            31,
            32,
            1000,
            1 << 29,
            (1 << 31) - 1,
            u64::MAX,
        ] {
            let b = bucket_of(micros);
            assert!(b >= last && b < BUCKETS, "{micros} → {b}");
            last = b;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_come_from_the_difference_of_snapshots() {
        let h = LatencyHistogram::default();
        for _ in 0..1000 {
            h.record(0.200); // old traffic, before the window
        }
        let before = h.snapshot();
        for _ in 0..98 {
            h.record(0.010);
        }
        h.record(0.050);
        h.record(0.090);
        let after = h.snapshot();
        let p50 = percentile_ms(&before, &after, 0.5).unwrap();
        let p99 = percentile_ms(&before, &after, 0.99).unwrap();
        let p100 = percentile_ms(&before, &after, 1.0).unwrap();
        assert!((p50 - 10.0).abs() / 10.0 < 0.0625, "p50 {p50}");
        assert!((p99 - 50.0).abs() / 50.0 < 0.0625, "p99 {p99}");
        assert!((p100 - 90.0).abs() / 90.0 < 0.0625, "max {p100}");
        assert_eq!(percentile_ms(&after, &after, 0.5), None);
    }

    #[test]
    fn bad_readings_do_not_panic() {
        let h = LatencyHistogram::default();
        h.record(f64::NAN);
        h.record(-1.0);
        h.record(f64::INFINITY);
        let s = h.snapshot();
        assert_eq!(s[0], 2);
        assert_eq!(s[BUCKETS - 1], 1);
    }
}
