//! Upstream pools: backend selection, active health checks, the background
//! service that runs those checks for whatever config is live, and the state
//! machines that account for a request's attempts at a pool.

mod attempt;
mod attempts;
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
mod targets;
mod view;

pub use attempt::{AttemptTracker, Ending, Failure, Settled};
pub(crate) use attempts::Attempts;
pub use budget::RetryBudget;
pub use load::PeakEwma;
pub use outlier::OutlierState;
pub use peer::PeerTemplate;
pub use pool::{BackendState, BackendStats, Pick, Pool};
pub use selection::{load_aware_cost, Load, Selector};
pub use service::{HealthService, LivePools};
pub use targets::{pool_targets, Target};
pub use view::{HealthState, HealthView};
