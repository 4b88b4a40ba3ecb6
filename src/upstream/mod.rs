//! Upstream pools: backend selection, active health checks, and the
//! background service that runs those checks for whatever config is live.

mod health;
mod pool;
mod selection;
mod service;

pub use pool::{BackendState, Pick, Pool};
pub use selection::Selector;
pub use service::HealthService;
