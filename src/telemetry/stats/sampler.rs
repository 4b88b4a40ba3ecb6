//! Reads the gateway's cumulative counters once a second into the
//! [`Series`](super::Series). The counters are the same ones `/metrics`
//! exposes (requests by route and status, limit decisions), so the dashboard
//! and a Prometheus scrape never disagree about a count.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use prometheus::core::Collector;
use prometheus::IntCounterVec;

use super::series::{Counters, LimitCounters, Series, CAPACITY};
use crate::limits::{Clock, MonotonicClock};
use crate::telemetry::metrics::Metrics;

/// The series, shared by the sampler that writes it and the admin listener
/// that serves it.
pub struct Stats {
    series: Mutex<Series>,
}

impl Stats {
    pub fn new(start_nanos: u64) -> Arc<Stats> {
        Arc::new(Stats {
            series: Mutex::new(Series::new(CAPACITY, start_nanos)),
        })
    }

    /// Takes one sample now.
    pub fn sample(&self, metrics: &Metrics, now_nanos: u64) {
        let counters = read(metrics);
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let t = (unix * 1000.0).round() / 1000.0;
        self.lock().record(counters, now_nanos, t);
    }

    /// The `/stats/series` document for the last `seconds` seconds.
    pub fn to_json(&self, seconds: f64) -> serde_json::Value {
        let series = self.lock();
        serde_json::json!({
            "interval_seconds": 1,
            "capacity": series.capacity(),
            "samples": series.recent(seconds),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every `(labels, value)` of a counter vector, labels in declaration order.
fn children(vec: &IntCounterVec) -> Vec<(Vec<String>, u64)> {
    vec.collect()
        .iter()
        .flat_map(|family| family.get_metric().iter())
        .map(|m| {
            let mut labels: Vec<(&str, &str)> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            labels.sort();
            (
                labels.into_iter().map(|(_, v)| v.to_string()).collect(),
                m.get_counter().get_value() as u64,
            )
        })
        .collect()
}

fn read(metrics: &Metrics) -> Counters {
    let mut c = Counters::default();
    for (name, histogram) in metrics.latency_histograms() {
        c.routes.entry(name).or_default().latency = histogram.snapshot();
    }
    // Labels sorted by name: (route, status).
    for (labels, n) in children(&metrics.requests) {
        let [route, status] = labels.as_slice() else {
            continue;
        };
        // "other" (a code outside 0..600) is in /metrics only.
        if let Ok(code) = status.parse::<u16>() {
            *c.routes
                .entry(route.clone())
                .or_default()
                .statuses
                .entry(code)
                .or_default() += n;
        }
    }
    // Labels sorted by name: (decision, limit).
    for (labels, n) in children(&metrics.ratelimit) {
        let [decision, limit] = labels.as_slice() else {
            continue;
        };
        let entry: &mut LimitCounters = c.limits.entry(limit.clone()).or_default();
        match decision.as_str() {
            "rejected" => entry.rejected += n,
            "shadow_rejected" => entry.shadow_rejected += n,
            _ => {}
        }
    }
    c
}

/// Samples every second until shutdown.
pub struct SampleStats {
    pub metrics: Arc<Metrics>,
    pub clock: MonotonicClock,
    pub stats: Arc<Stats>,
}

#[async_trait]
impl BackgroundService for SampleStats {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // After a stall, carry on from now: the sample's own length says how
        // long the interval really was.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            self.stats.sample(&self.metrics, self.clock.now_nanos());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_the_metrics_the_gateway_exposes() {
        let m = Metrics::new();
        let api = m.route("api");
        api.observe(200, 0.010);
        api.observe(200, 0.012);
        api.observe(429, 0.001);
        m.no_route.observe(404, 0.0001);
        m.limit("per_ip").rejected.inc();
        m.limit("watch").shadow_rejected.inc();
        m.limit("per_ip").admitted.inc();

        let c = read(&m);
        assert_eq!(c.routes["api"].statuses[&200], 2);
        assert_eq!(c.routes["api"].statuses[&429], 1);
        assert_eq!(c.routes[""].statuses[&404], 1);
        assert_eq!(c.routes["api"].latency.iter().sum::<u64>(), 3);
        assert_eq!(c.limits["per_ip"].rejected, 1);
        assert_eq!(c.limits["watch"].shadow_rejected, 1);

        let stats = Stats::new(0);
        stats.sample(&m, 1_000_000_000);
        let doc = stats.to_json(300.0);
        assert_eq!(doc["samples"][0]["routes"]["api"]["requests"], 3);
        assert_eq!(doc["samples"][0]["routes"]["api"]["status"]["429"], 1);
        assert_eq!(doc["samples"][0]["limits"]["per_ip"]["rejected"], 1);
        assert_eq!(doc["capacity"], CAPACITY);
    }
}
