//! Prometheus metrics, all prefixed `sluice_`, served on the admin
//! listener's `/metrics`.
//!
//! Counters are updated on the request path through handles resolved once
//! per config load ([`RouteMetrics`], [`BackendMetrics`], [`LimitMetrics`]):
//! looking a labelled child up per request would hash its labels and take a
//! lock each time. The gauges that describe the live config (backend health,
//! in-flight counts, adaptive limits) are computed per scrape in
//! [`crate::telemetry::live_gauges`], so a backend removed by a reload disappears from the
//! output instead of reporting stale values.
//!
//! The counters that name a backend or an upstream live in the registry, so
//! they are removed explicitly when a new generation no longer has their
//! backend ([`Metrics::forget_backend`], [`Metrics::forget_upstream`]):
//! with DNS discovery, backends come and go for the life of the process, and
//! each departed address would otherwise stay in every scrape forever. A
//! request of the replaced generation still in flight counts into its
//! detached handle, which nothing reads: at most those last attempts go
//! uncounted. An address that comes back starts its counters from zero,
//! which Prometheus reads as a counter reset.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use crate::limits::redis_store::StoreMetrics;
use crate::telemetry::snapshot::LiveSnapshot;
use crate::telemetry::stats::latency::LatencyHistogram;
use crate::transport::conn::{ConnMetrics, TimeoutCounters};

/// One route's request counters and duration histogram.
pub struct RouteMetrics {
    name: String,
    requests: IntCounterVec,
    duration: Histogram,
    /// Counter per status code, created on first use.
    by_status: Box<[OnceLock<IntCounter>]>,
    /// Finer than `duration`, for the dashboard's percentiles.
    latency: Arc<LatencyHistogram>,
}

impl RouteMetrics {
    pub fn observe(&self, status: u16, seconds: f64) {
        self.duration.observe(seconds);
        self.latency.record(seconds);
        let counter = match self.by_status.get(status as usize) {
            Some(slot) => slot.get_or_init(|| {
                self.requests
                    .with_label_values(&[self.name.as_str(), &status.to_string()])
            }),
            None => {
                self.requests
                    .with_label_values(&[self.name.as_str(), "other"])
                    .inc();
                return;
            }
        };
        counter.inc();
    }
}

/// The `outcome` label values of `sluice_upstream_requests_total`.
/// Every label `BackendMetrics` creates must be here, or forgetting a backend
/// leaves its series behind.
const OUTCOMES: [&str; 6] = [
    "ok",
    "connect_failure",
    "timeout",
    "reset",
    "client_deadline",
    "error",
];

/// One backend's attempt counters.
pub struct BackendMetrics {
    pub ok: IntCounter,
    pub connect_failure: IntCounter,
    /// A read or write timed out after connect.
    pub timeout: IntCounter,
    /// The backend closed or reset the connection, or answered garbage.
    pub reset: IntCounter,
    /// The client's own deadline (`grpc-timeout`) passed first.
    pub client_deadline: IntCounter,
    pub error: IntCounter,
}

impl BackendMetrics {
    /// Counts one attempt under its `outcome` label.
    pub fn count(&self, outcome: &str) {
        match outcome {
            "ok" => &self.ok,
            "connect_failure" => &self.connect_failure,
            "timeout" => &self.timeout,
            "reset" => &self.reset,
            "client_deadline" => &self.client_deadline,
            _ => &self.error,
        }
        .inc();
    }
}

/// One limit's decision counters.
pub struct LimitMetrics {
    pub admitted: IntCounter,
    pub rejected: IntCounter,
    pub shadow_rejected: IntCounter,
}

pub struct Metrics {
    registry: Registry,
    /// Requests that matched no route.
    pub no_route: RouteMetrics,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub ratelimit: IntCounterVec,
    pub retries: IntCounterVec,
    /// Failed or empty resolutions of a backend name.
    pub dns_failures: IntCounterVec,
    pub reloads: IntCounterVec,
    pub access_log_dropped: IntCounter,
    store_errors: IntCounterVec,
    client_refused: IntCounterVec,
    client_timeouts: IntCounterVec,
    store_fallback: IntCounterVec,
    store_circuit: IntCounterVec,
    store_duration: Histogram,
    /// Per route name, kept across reloads like the Prometheus children.
    latency: Mutex<BTreeMap<String, Arc<LatencyHistogram>>>,
}

#[allow(
    clippy::expect_used,
    reason = "static metric definitions: they fail only on a programming error, which every test run would catch"
)]
fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The definitions are static, so building them cannot fail at run time;
    /// the `expect`s guard only against a programming error caught by tests.
    #[allow(
        clippy::expect_used,
        reason = "static metric definitions: they fail only on a programming error, which every test run would catch"
    )]
    pub fn new() -> Metrics {
        let r = Registry::new();
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sluice_request_duration_seconds",
                "Time from the request's arrival to the end of its response, by route.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route"],
        )
        .expect("static metric definition");
        r.register(Box::new(duration.clone()))
            .expect("metric names are unique");
        let access_log_dropped = IntCounter::new(
            "sluice_access_log_dropped_total",
            "Access log lines dropped because the writer fell behind.",
        )
        .expect("static metric definition");
        r.register(Box::new(access_log_dropped.clone()))
            .expect("metric names are unique");
        let requests = counter(
            &r,
            "sluice_requests_total",
            "Requests answered, by route (\"\" when none matched) and status.",
            &["route", "status"],
        );
        let latency = Mutex::new(BTreeMap::new());
        Metrics {
            no_route: route_metrics(&requests, &duration, latency_of(&latency, ""), ""),
            requests,
            duration,
            upstream_requests: counter(
                &r,
                "sluice_upstream_requests_total",
                "Attempts to use a backend: ok (a response came back), connect_failure, timeout, reset (after connect), client_deadline (the client's own grpc-timeout passed first), error (the client left, a stale connection, the gateway's own).",
                &["upstream", "backend", "outcome"],
            ),
            ratelimit: counter(
                &r,
                "sluice_ratelimit_decisions_total",
                "Admission decisions by limit: admitted, rejected, shadow_rejected.",
                &["limit", "decision"],
            ),
            retries: counter(
                &r,
                "sluice_retries_total",
                "Requests sent again to another backend after a failure.",
                &["upstream"],
            ),
            dns_failures: counter(
                &r,
                "sluice_dns_resolution_failures_total",
                "Resolutions of a backend name that failed or found no address (the last good set is kept).",
                &["name"],
            ),
            reloads: counter(
                &r,
                "sluice_config_reloads_total",
                "Config reloads by result: ok or failed.",
                &["result"],
            ),
            access_log_dropped,
            client_refused: counter(
                &r,
                "sluice_client_connections_refused_total",
                "Client connections closed on arrival, by the cap they hit: max_connections or max_connections_per_ip.",
                &["reason"],
            ),
            client_timeouts: counter(
                &r,
                "sluice_client_timeouts_total",
                "Client connections closed by a deadline: request_header (HTTP/1, answered 408), idle (HTTP/1, nothing sent within request_header_timeout or keepalive_timeout) or tls_handshake (not done within tls_handshake_timeout).",
                &["kind"],
            ),
            store_errors: counter(
                &r,
                "sluice_ratelimit_store_errors_total",
                "Shared-store decisions that failed, by reason: timeout or error.",
                &["reason"],
            ),
            store_fallback: counter(
                &r,
                "sluice_ratelimit_store_fallback_total",
                "Shared-limit decisions made by on_store_error instead of the store, by limit and mode.",
                &["limit", "mode"],
            ),
            store_circuit: counter(
                &r,
                "sluice_ratelimit_store_circuit_transitions_total",
                "Changes of the shared store's circuit: to=open (an episode began), to=closed (it ended, or the store first connected).",
                &["to"],
            ),
            store_duration: store_duration(&r),
            latency,
            registry: r,
        }
    }

    /// The handles the shared store counts with.
    pub fn store(&self) -> StoreMetrics {
        StoreMetrics {
            timeouts: self.store_errors.with_label_values(&["timeout"]),
            errors: self.store_errors.with_label_values(&["error"]),
            duration: self.store_duration.clone(),
            opened: self.store_circuit.with_label_values(&["open"]),
            closed: self.store_circuit.with_label_values(&["closed"]),
        }
    }

    /// Counts a client connection refused on arrival.
    /// The counters the client transport counts refusals and deadlines in.
    pub fn connections(&self) -> ConnMetrics {
        ConnMetrics {
            refused: self.client_refused.clone(),
            timeouts: TimeoutCounters {
                request_header: self.client_timeouts.with_label_values(&["request_header"]),
                idle: self.client_timeouts.with_label_values(&["idle"]),
                tls_handshake: self.client_timeouts.with_label_values(&["tls_handshake"]),
            },
        }
    }

    /// Counts `limit`'s decisions made by its `on_store_error` mode.
    pub fn store_fallback(&self, limit: &str, mode: &str) -> IntCounter {
        self.store_fallback.with_label_values(&[limit, mode])
    }

    pub fn route(&self, name: &str) -> RouteMetrics {
        route_metrics(
            &self.requests,
            &self.duration,
            latency_of(&self.latency, name),
            name,
        )
    }

    /// Every route's latency histogram, by route name (`""`: no route).
    pub fn latency_histograms(&self) -> Vec<(String, Arc<LatencyHistogram>)> {
        let map = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn backend(&self, upstream: &str, addr: &str) -> BackendMetrics {
        let c = |outcome| {
            self.upstream_requests
                .with_label_values(&[upstream, addr, outcome])
        };
        BackendMetrics {
            ok: c("ok"),
            connect_failure: c("connect_failure"),
            timeout: c("timeout"),
            reset: c("reset"),
            client_deadline: c("client_deadline"),
            error: c("error"),
        }
    }

    /// Drops the series of backend `addr` of `upstream`, which the live
    /// generation no longer has (see the module doc).
    pub fn forget_backend(&self, upstream: &str, addr: &str) {
        for outcome in OUTCOMES {
            // Err only when the series was never created.
            let _ = self
                .upstream_requests
                .remove_label_values(&[upstream, addr, outcome]);
        }
    }

    /// Drops the series of an upstream the live generation no longer has.
    /// Its backends are forgotten one by one, by [`Metrics::forget_backend`].
    pub fn forget_upstream(&self, upstream: &str) {
        let _ = self.retries.remove_label_values(&[upstream]);
    }

    pub fn limit(&self, name: &str) -> LimitMetrics {
        let c = |decision| self.ratelimit.with_label_values(&[name, decision]);
        LimitMetrics {
            admitted: c("admitted"),
            rejected: c("rejected"),
            shadow_rejected: c("shadow_rejected"),
        }
    }

    pub fn retries_for(&self, upstream: &str) -> IntCounter {
        self.retries.with_label_values(&[upstream])
    }

    /// The Prometheus text exposition of every metric.
    /// `live` is what the live generation and the connection counts say at
    /// this scrape.
    pub fn render(&self, live: &LiveSnapshot) -> Vec<u8> {
        let mut families = self.registry.gather();
        families.extend(crate::telemetry::live_gauges::families(live));
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            log::error!("encoding metrics failed: {e}");
        }
        out
    }
}

fn latency_of(
    map: &Mutex<BTreeMap<String, Arc<LatencyHistogram>>>,
    name: &str,
) -> Arc<LatencyHistogram> {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(name.to_string()).or_default().clone()
}

fn route_metrics(
    requests: &IntCounterVec,
    duration: &HistogramVec,
    latency: Arc<LatencyHistogram>,
    name: &str,
) -> RouteMetrics {
    RouteMetrics {
        name: name.to_string(),
        requests: requests.clone(),
        duration: duration.with_label_values(&[name]),
        by_status: (0..600).map(|_| OnceLock::new()).collect(),
        latency,
    }
}

#[allow(
    clippy::expect_used,
    reason = "static metric definitions: they fail only on a programming error, which every test run would catch"
)]
fn store_duration(r: &Registry) -> Histogram {
    let h = Histogram::with_opts(
        HistogramOpts::new(
            "sluice_ratelimit_store_duration_seconds",
            "Time from sending a shared-limit decision to the store to its answer.",
        )
        .buckets(vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
        ]),
    )
    .expect("static metric definition");
    r.register(Box::new(h.clone()))
        .expect("metric names are unique");
    h
}
