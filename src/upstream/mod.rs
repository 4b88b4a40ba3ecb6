//! Upstream pools: backend selection, active health checks, and the
//! background service that runs those checks for whatever config is live.

mod budget;
mod grpc_check;
mod health;
mod load;
mod outlier;
mod peer;
mod pool;
mod selection;
mod service;
mod view;

pub use budget::{BudgetSpec, RetryBudget};
pub use load::PeakEwma;
pub use outlier::{OutlierSpec, OutlierState};
pub use peer::{parse_ca, PeerTemplate};
pub use pool::{Attempt, BackendState, BackendStats, Pick, Pool};
pub use selection::{load_aware_cost, Load, Selector};
pub use service::HealthService;
pub use view::HealthView;
