//! What `/metrics` shows of the live generation, as plain data.
//!
//! Telemetry must not reach into the live generation (that is how the old
//! core grew an import circle: the generation held the metrics, and the
//! metrics read the generation back). The generation fills this in at scrape
//! time instead, and telemetry renders whatever it is given.

/// One backend of a pool, at the moment of the scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendGauges {
    pub addr: String,
    pub healthy: bool,
    pub ejected: bool,
    pub in_flight: u64,
}

/// One upstream pool.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolGauges {
    pub name: String,
    pub panic_mode: bool,
    pub backends: Vec<BackendGauges>,
}

/// One `adaptive_concurrency` limit (its busiest key).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdaptiveGauges {
    pub name: String,
    pub limit: f64,
    pub in_flight: u64,
}

/// The live part of `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveSnapshot {
    pub pools: Vec<PoolGauges>,
    pub adaptive: Vec<AdaptiveGauges>,
    /// `Some(open)` when the config has a shared store.
    pub store_circuit_open: Option<bool>,
    pub open_connections: u32,
}
