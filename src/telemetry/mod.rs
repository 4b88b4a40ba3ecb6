//! What the gateway tells its operators: Prometheus [`metrics`], the
//! [`access_log`], the dashboard's time series ([`stats`]) and what is
//! recorded when a request ends ([`observe`]).
//!
//! Telemetry reads the gateway; nothing below it reads telemetry back except
//! through the narrow counter handles it hands out.

pub mod access_log;
mod live_gauges;
pub mod metrics;
pub mod observe;
pub mod snapshot;
pub mod stats;
