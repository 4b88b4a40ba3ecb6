//! The background service that runs active health checks for the pools of
//! whichever config is live, so a reload's new pools are checked without
//! restarting anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::pool::Pool;

/// The pools of whichever generation is live, read at each round.
pub type LivePools = Arc<dyn Fn() -> Vec<Arc<Pool>> + Send + Sync>;

pub struct HealthService {
    pub pools: LivePools,
}

/// How long the loop sleeps at most, so a reload's pools start promptly.
const MAX_NAP: Duration = Duration::from_millis(200);

#[async_trait]
impl BackgroundService for HealthService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let pools = (self.pools)();
            let now = Instant::now();
            let mut wake = now + MAX_NAP;
            for pool in &pools {
                let view = pool.health_view();
                if let Some(next) = view.next_check() {
                    if next <= now {
                        // Each pool checks on its own task: a slow backend in
                        // one pool must not delay another pool's checks.
                        let pool = pool.clone();
                        tokio::spawn(async move { pool.check_if_due(Instant::now()).await });
                    } else {
                        wake = wake.min(next);
                    }
                }
            }
            drop(pools);
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
