//! The time series behind the dashboard and `/stats/series`: one sample a
//! second, the last [`CAPACITY`] kept in a ring, so memory is fixed however
//! long the process runs.
//!
//! The sampler reads cumulative counters ([`Counters`]: requests by route and
//! status, the latency histogram per route, refusals per limit) and a sample
//! is the difference from the previous reading, divided by the time that
//! really passed (a late tick does not inflate requests/s). Percentiles come
//! from the difference of two latency-histogram snapshots (see
//! [`super::latency`]): exact counts, bucket-midpoint values within 6.25 %.
//! Nothing here reads a clock or a socket: the caller passes the times in.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::latency;

/// Ten minutes of one-second samples.
pub const CAPACITY: usize = 600;

/// One route's cumulative counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteCounters {
    pub statuses: BTreeMap<u16, u64>,
    /// Latency histogram buckets (see [`latency::LatencyHistogram::snapshot`]).
    pub latency: Vec<u64>,
}

/// One limit's cumulative refusals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitCounters {
    pub rejected: u64,
    pub shadow_rejected: u64,
}

/// Every cumulative counter the series is made from, read at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    pub routes: BTreeMap<String, RouteCounters>,
    pub limits: BTreeMap<String, LimitCounters>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteSample {
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Responses by status code.
    pub status: BTreeMap<u16, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LimitSample {
    pub rejected: u64,
    pub shadow_rejected: u64,
}

/// What happened in one interval. Routes and limits with nothing to report
/// are left out (a reader takes a missing one as zero), which keeps an idle
/// gateway's series small.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// The end of the interval, seconds since the Unix epoch.
    pub t: f64,
    /// The interval's length in seconds.
    pub seconds: f64,
    pub routes: BTreeMap<String, RouteSample>,
    pub limits: BTreeMap<String, LimitSample>,
}

pub struct Series {
    capacity: usize,
    samples: VecDeque<Sample>,
    last: Counters,
    last_nanos: u64,
}

impl Series {
    /// A series whose first interval starts at `start_nanos` from all-zero
    /// counters (the process's counters start at zero), so no request is
    /// missing from the samples.
    pub fn new(capacity: usize, start_nanos: u64) -> Series {
        Series {
            capacity: capacity.max(1),
            samples: VecDeque::with_capacity(capacity.max(1)),
            last: Counters::default(),
            last_nanos: start_nanos,
        }
    }

    /// Adds the interval that ends now: `now_nanos` on a monotonic clock,
    /// `unix_secs` the same moment on the wall clock.
    pub fn record(&mut self, counters: Counters, now_nanos: u64, unix_secs: f64) {
        let nanos = now_nanos.saturating_sub(self.last_nanos);
        if nanos == 0 {
            return;
        }
        let seconds = nanos as f64 / 1e9;
        let sample = diff(&self.last, &counters, seconds, unix_secs);
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        self.last = counters;
        self.last_nanos = now_nanos;
    }

    /// The samples of the last `seconds` seconds, oldest first.
    pub fn recent(&self, seconds: f64) -> Vec<&Sample> {
        let Some(newest) = self.samples.back() else {
            return Vec::new();
        };
        let since = newest.t - seconds;
        self.samples.iter().filter(|s| s.t > since).collect()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

fn diff(before: &Counters, after: &Counters, seconds: f64, t: f64) -> Sample {
    let empty = RouteCounters::default();
    let routes = after
        .routes
        .iter()
        .filter_map(|(name, now)| {
            let then = before.routes.get(name).unwrap_or(&empty);
            let status: BTreeMap<u16, u64> = now
                .statuses
                .iter()
                .map(|(code, n)| {
                    (
                        *code,
                        n.saturating_sub(*then.statuses.get(code).unwrap_or(&0)),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            let requests: u64 = status.values().sum();
            (requests > 0).then(|| {
                let rps = requests as f64 / seconds;
                let sample = RouteSample {
                    requests,
                    rps: (rps * 100.0).round() / 100.0,
                    p50_ms: latency::percentile_ms(&then.latency, &now.latency, 0.50),
                    p99_ms: latency::percentile_ms(&then.latency, &now.latency, 0.99),
                    status,
                };
                (name.clone(), sample)
            })
        })
        .collect();
    let none = LimitCounters::default();
    let limits = after
        .limits
        .iter()
        .filter_map(|(name, now)| {
            let then = before.limits.get(name).unwrap_or(&none);
            let sample = LimitSample {
                rejected: now.rejected.saturating_sub(then.rejected),
                shadow_rejected: now.shadow_rejected.saturating_sub(then.shadow_rejected),
            };
            (sample.rejected + sample.shadow_rejected > 0).then(|| (name.clone(), sample))
        })
        .collect();
    Sample {
        t,
        seconds: (seconds * 1000.0).round() / 1000.0,
        routes,
        limits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::stats::latency::LatencyHistogram;

    const SEC: u64 = 1_000_000_000;

    fn counters(route: &str, ok: u64, limited: u64, h: &LatencyHistogram) -> Counters {
        let mut c = Counters::default();
        c.routes.insert(
            route.to_string(),
            RouteCounters {
                statuses: [(200, ok), (429, limited)].into_iter().collect(),
                latency: h.snapshot(),
            },
        );
        c.limits.insert(
            "per_ip".into(),
            LimitCounters {
                rejected: limited,
                shadow_rejected: 0,
            },
        );
        c
    }

    #[test]
    fn a_sample_is_the_difference_over_the_time_that_passed() {
        let h = LatencyHistogram::default();
        let mut s = Series::new(10, 0);
        for _ in 0..30 {
            h.record(0.020);
        }
        s.record(counters("api", 25, 5, &h), SEC, 1000.0);
        for _ in 0..10 {
            h.record(0.100);
        }
        // A late tick: two seconds passed, so 10 requests are 5 per second.
        s.record(counters("api", 35, 5, &h), 3 * SEC, 1002.0);

        let all = s.recent(600.0);
        assert_eq!(all.len(), 2);
        let first = &all[0].routes["api"];
        assert_eq!(first.requests, 30);
        assert_eq!(first.rps, 30.0);
        assert_eq!(first.status[&429], 5);
        assert!((first.p50_ms.unwrap() - 20.0).abs() < 1.3);
        assert_eq!(all[0].limits["per_ip"].rejected, 5);

        let second = &all[1].routes["api"];
        assert_eq!(second.requests, 10);
        assert_eq!(second.rps, 5.0);
        assert_eq!(second.status.get(&429), None, "no new 429s");
        assert!((second.p99_ms.unwrap() - 100.0).abs() < 6.3);
        assert!(all[1].limits.is_empty(), "no new refusals");
        assert_eq!(all[1].seconds, 2.0);
    }

    #[test]
    fn idle_routes_are_left_out() {
        let h = LatencyHistogram::default();
        let mut s = Series::new(10, 0);
        s.record(counters("api", 0, 0, &h), SEC, 1.0);
        assert!(s.recent(60.0)[0].routes.is_empty());
    }

    #[test]
    fn the_ring_keeps_only_its_capacity_and_recent_filters_by_time() {
        let h = LatencyHistogram::default();
        let mut s = Series::new(5, 0);
        for i in 1..=12u64 {
            s.record(counters("api", i, 0, &h), i * SEC, i as f64);
        }
        let all = s.recent(1e9);
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].t, 8.0);
        assert_eq!(all[4].t, 12.0);
        assert_eq!(s.recent(2.0).len(), 2);
        assert_eq!(s.capacity(), 5);
    }

    #[test]
    fn a_tick_with_no_time_passed_adds_nothing_and_counters_never_go_negative() {
        let h = LatencyHistogram::default();
        let mut s = Series::new(5, 0);
        s.record(counters("api", 10, 0, &h), SEC, 1.0);
        s.record(counters("api", 20, 0, &h), SEC, 1.0);
        assert_eq!(s.recent(60.0).len(), 1);
        // A counter that went down (cannot happen with Prometheus counters,
        // but must not wrap) reads as no traffic.
        s.record(counters("api", 3, 0, &h), 2 * SEC, 2.0);
        assert!(s.recent(60.0)[1].routes.is_empty());
    }
}
