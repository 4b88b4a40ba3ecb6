//! The gauges of `/metrics` that describe the live config (backend health,
//! in-flight counts, panic mode, adaptive limits, the shared store's circuit)
//! and the open client connections.
//!
//! They are computed from the config snapshot at each scrape into metric
//! families of their own, never stored in the registry: shared gauges would
//! have to be reset and set again per scrape, and two scrapes at once could
//! interleave those steps and report a half-reset set. A backend or limit
//! that a reload removed simply stops appearing.

use std::sync::atomic::Ordering;

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGaugeVec, Opts};

use crate::gateway::Gateway;

#[allow(
    clippy::expect_used,
    reason = "static metric definitions: they fail only on a programming error, which every test run would catch"
)]
fn int_gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

/// The families for `gw` at `now` (limiter clock), with the count of open
/// client connections.
#[allow(
    clippy::expect_used,
    reason = "static metric definitions: they fail only on a programming error, which every test run would catch"
)]
pub fn families(gw: &Gateway, now: u64, open_connections: u32) -> Vec<MetricFamily> {
    let healthy = int_gauge(
        "sluice_upstream_backend_healthy",
        "1 when active health checks let the backend take traffic.",
        &["upstream", "backend"],
    );
    let in_flight = int_gauge(
        "sluice_upstream_backend_in_flight",
        "Requests being served by the backend now.",
        &["upstream", "backend"],
    );
    let ejected = int_gauge(
        "sluice_upstream_backend_ejected",
        "1 while passive health (outlier detection) keeps the backend out.",
        &["upstream", "backend"],
    );
    let panic_mode = int_gauge(
        "sluice_upstream_panic_mode",
        "1 while too few backends are available and the pool balances across all.",
        &["upstream"],
    );
    for (name, pool) in &gw.pools {
        panic_mode
            .with_label_values(&[name.as_str()])
            .set(i64::from(pool.in_panic()));
        for (i, b) in pool.backends.iter().enumerate() {
            let addr = b.addr.to_string();
            let labels = [name.as_str(), addr.as_str()];
            healthy
                .with_label_values(&labels)
                .set(i64::from(pool.is_healthy(i)));
            ejected
                .with_label_values(&labels)
                .set(i64::from(pool.is_ejected(i, now)));
            in_flight
                .with_label_values(&labels)
                .set(b.stats.inflight.load(Ordering::Relaxed) as i64);
        }
    }
    let adaptive_limit = GaugeVec::new(
        Opts::new(
            "sluice_adaptive_limit",
            "An adaptive_concurrency limit's current value (its busiest key).",
        ),
        &["limit"],
    )
    .expect("static metric definition");
    let adaptive_in_flight = int_gauge(
        "sluice_adaptive_in_flight",
        "Requests an adaptive_concurrency limit holds now (its busiest key).",
        &["limit"],
    );
    for (name, limiter) in &gw.limiters {
        if let Some((s, _)) = limiter.adaptive() {
            adaptive_limit
                .with_label_values(&[name.as_str()])
                .set(s.limit);
            adaptive_in_flight
                .with_label_values(&[name.as_str()])
                .set(s.in_flight as i64);
        }
    }
    let mut out = Vec::new();
    let circuit = prometheus::IntGauge::new(
        "sluice_ratelimit_store_circuit_open",
        "1 while the shared store is skipped after repeated failures.",
    )
    .expect("static metric definition");
    if let Some(store) = &gw.redis {
        circuit.set(i64::from(!store.is_available()));
        out.extend(circuit.collect());
    }
    let open = prometheus::IntGauge::new(
        "sluice_client_connections",
        "Client connections open now (what max_connections caps).",
    )
    .expect("static metric definition");
    open.set(i64::from(open_connections));
    out.extend(open.collect());
    out.extend(healthy.collect());
    out.extend(in_flight.collect());
    out.extend(ejected.collect());
    out.extend(panic_mode.collect());
    out.extend(adaptive_limit.collect());
    out.extend(adaptive_in_flight.collect());
    // The text encoder refuses a family without samples (the registry's own
    // gather drops them too): a config without pools or adaptive limits.
    out.retain(|f| !f.get_metric().is_empty());
    out
}
