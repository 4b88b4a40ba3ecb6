//! The gauges of `/metrics` that describe the live config (backend health,
//! in-flight counts, panic mode, adaptive limits, the shared store's circuit)
//! and the open client connections.
//!
//! They are computed from a [`LiveSnapshot`] taken at each scrape into metric
//! families of their own, never stored in the registry: shared gauges would
//! have to be reset and set again per scrape, and two scrapes at once could
//! interleave those steps and report a half-reset set. A backend or limit
//! that a reload removed simply stops appearing.

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGaugeVec, Opts};

use crate::telemetry::snapshot::LiveSnapshot;

#[allow(
    clippy::expect_used,
    reason = "static metric definitions: they fail only on a programming error, which every test run would catch"
)]
fn int_gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

/// The families for one scrape's snapshot.
#[allow(
    clippy::expect_used,
    reason = "static metric definitions: they fail only on a programming error, which every test run would catch"
)]
pub fn families(live: &LiveSnapshot) -> Vec<MetricFamily> {
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
    for pool in &live.pools {
        panic_mode
            .with_label_values(&[pool.name.as_str()])
            .set(i64::from(pool.panic_mode));
        for b in &pool.backends {
            let labels = [pool.name.as_str(), b.addr.as_str()];
            healthy.with_label_values(&labels).set(i64::from(b.healthy));
            ejected.with_label_values(&labels).set(i64::from(b.ejected));
            in_flight
                .with_label_values(&labels)
                .set(i64::try_from(b.in_flight).unwrap_or(i64::MAX));
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
    for a in &live.adaptive {
        adaptive_limit
            .with_label_values(&[a.name.as_str()])
            .set(a.limit);
        adaptive_in_flight
            .with_label_values(&[a.name.as_str()])
            .set(i64::try_from(a.in_flight).unwrap_or(i64::MAX));
    }
    let mut out = Vec::new();
    let circuit = prometheus::IntGauge::new(
        "sluice_ratelimit_store_circuit_open",
        "1 while the shared store is skipped after repeated failures.",
    )
    .expect("static metric definition");
    if let Some(open) = live.store_circuit_open {
        circuit.set(i64::from(open));
        out.extend(circuit.collect());
    }
    let open = prometheus::IntGauge::new(
        "sluice_client_connections",
        "Client connections open now (what max_connections caps).",
    )
    .expect("static metric definition");
    open.set(i64::from(live.open_connections));
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
