//! Upstream pools: backend selection, active health checks, and the
//! background service that runs those checks for whatever config is live.

mod attempt;
mod budget;
pub mod dns;
mod grpc_check;
mod health;
mod load;
mod outlier;
mod peer;
mod pool;
mod selection;
mod service;
mod view;

pub use attempt::{AttemptTracker, Ending, Failure, Settled};
pub use budget::RetryBudget;
pub use load::PeakEwma;
pub use outlier::OutlierState;
pub use peer::PeerTemplate;
pub use pool::{pool_targets, BackendState, BackendStats, Pick, Pool, Target};
pub use selection::{load_aware_cost, Load, Selector};
pub use service::{HealthService, LivePools};
pub use view::{HealthState, HealthView};
