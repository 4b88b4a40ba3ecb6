//! One upstream pool: its backends, their health and load, and its selector.
//!
//! A backend is *available* when active health checks pass (Pingora's
//! checkers as probes, run by [`Pool::check_if_due`]) and passive health has not
//! ejected it. [`Pool::pick`] hands the [`Selector`] the available backends
//! this request has not tried, with each one's load; below the panic
//! threshold it hands it every backend instead (Envoy's panic mode: better to
//! spread load over all than to crush the few that still pass checks).
//!
//! A pool is immutable once built; a reload builds a new one, which shares,
//! per address, the old one's [`BackendStats`], so in-flight counts, latency
//! and passive ejections survive any edit of the pool. Active health is kept
//! apart from them because it must follow the config instead: a verdict is
//! carried only while the pool is checked before and after (see
//! [`HealthState::succeeding`]), so removing a `health_check` cannot leave a
//! backend down with nothing left to bring it back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::Backend;
use rand::Rng;
use smallvec::SmallVec;

use super::attempt::Settled;
use super::budget::RetryBudget;
use super::load::PeakEwma;
use super::outlier::{room_to_eject, OutlierState};
use super::peer::PeerTemplate;
use super::selection::{load_aware_cost, Load, Selector};
use super::targets::Target;
use super::view::{HealthState, HealthView};
use crate::config::{Balance, UpstreamSpec};
use crate::telemetry::metrics::{BackendMetrics, Metrics};

/// What the gateway measures of a backend; shared across reloads by address.
pub struct BackendStats {
    /// Requests being served by this backend now.
    pub inflight: AtomicU64,
    pub latency: PeakEwma,
    pub outlier: OutlierState,
    /// When the backend (re)joined, for slow start; 0 = fully warmed.
    ready_since: AtomicU64,
    /// Whether the last pick saw it available, to notice a recovery.
    was_available: AtomicBool,
}

impl Default for BackendStats {
    fn default() -> Self {
        BackendStats {
            inflight: AtomicU64::new(0),
            latency: PeakEwma::default(),
            outlier: OutlierState::default(),
            ready_since: AtomicU64::new(0),
            was_available: AtomicBool::new(true),
        }
    }
}

/// A backend of this pool.
pub struct BackendState {
    pub addr: SocketAddr,
    /// The `host:port` it was resolved from, if it was given by name.
    pub name: Option<Arc<str>>,
    pub weight: u32,
    /// Pingora's handle, the key of its health state.
    pub backend: Backend,
    pub stats: Arc<BackendStats>,
    /// What active checks found; shared with the previous pool only while
    /// both check health (see the module doc).
    pub health: Arc<HealthState>,
    pub metrics: BackendMetrics,
}

/// The outcome of asking a pool for a backend.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    Backend(usize),
    /// No backend is healthy: answer 503.
    NoneHealthy,
    /// Healthy backends exist but this request has tried them all: 502.
    Exhausted,
}

pub struct Pool {
    pub spec: UpstreamSpec,
    pub backends: Vec<BackendState>,
    selector: Selector,
    view: Arc<HealthView>,
    pub budget: RetryBudget,
    pub retries: prometheus::IntCounter,
    in_panic: AtomicBool,
    decay_nanos: f64,
    template: PeerTemplate,
}

impl Pool {
    /// A pool for `spec` that succeeds `previous`, keeping what it knew (see
    /// the module doc). Backends new to the pool start their slow start at `now`.
    pub fn succeeding(
        spec: UpstreamSpec,
        targets: Vec<Target>,
        previous: Option<&Pool>,
        now: u64,
        metrics: &Metrics,
    ) -> Pool {
        let was_checked = previous.is_some_and(|p| p.spec.health_check.is_some());
        let checked = spec.health_check.is_some();
        let backends: Vec<BackendState> = targets
            .into_iter()
            .map(|b| {
                let old = previous.and_then(|p| p.backends.iter().find(|o| o.addr == b.addr));
                let stats = match (old, previous) {
                    (Some(o), _) => o.stats.clone(),
                    (None, Some(_)) => {
                        let s = BackendStats::default();
                        s.ready_since.store(now.max(1), Ordering::Relaxed);
                        Arc::new(s)
                    }
                    (None, None) => Arc::new(BackendStats::default()),
                };
                let health = HealthState::succeeding(old.map(|o| &o.health), was_checked, checked);
                BackendState {
                    addr: b.addr,
                    name: b.name,
                    weight: b.weight,
                    backend: Backend {
                        addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(b.addr),
                        weight: b.weight as usize,
                        ext: Default::default(),
                    },
                    stats,
                    health,
                    metrics: metrics.backend(&spec.name, &b.addr.to_string()),
                }
            })
            .collect();
        let view = HealthView::for_spec(&spec, previous.map(|p| &p.view));
        let weights: Vec<(SocketAddr, u32)> = backends.iter().map(|b| (b.addr, b.weight)).collect();
        Pool {
            selector: Selector::new(spec.balance, &weights),
            budget: RetryBudget::new(spec.retry_budget.clone()),
            retries: metrics.retries_for(&spec.name),
            decay_nanos: spec.latency_decay.as_nanos() as f64,
            template: PeerTemplate::of(&spec),
            spec,
            backends,
            view,
            in_panic: AtomicBool::new(false),
        }
    }

    /// Runs a round of active checks if one is due, all backends at once.
    /// A backend that failed its active check and now passes it again is
    /// also let back from a passive ejection (see [`OutlierState::uneject`]).
    pub async fn check_if_due(&self, now: std::time::Instant) {
        let Some(checker) = self.view.claim_round(now) else {
            return;
        };
        let results =
            futures::future::join_all(self.backends.iter().map(|b| checker.check(&b.backend)))
                .await;
        if let Some(hc) = self.view.spec() {
            for (b, result) in self.backends.iter().zip(results) {
                match b.health.observe(result.is_ok(), hc) {
                    Some(true) => {
                        log::info!("upstream {}: {} becomes healthy", self.spec.name, b.addr);
                        if b.stats.outlier.ejected_until() != 0 {
                            b.stats.outlier.uneject();
                        }
                    }
                    Some(false) => log::warn!(
                        "upstream {}: {} becomes unhealthy: {}",
                        self.spec.name,
                        b.addr,
                        result.err().map_or_else(String::new, |e| e.to_string())
                    ),
                    None => {}
                }
            }
        }
        self.view.round_done();
    }

    /// The backends this pool was built with, to tell whether a rebuild
    /// would change it.
    pub fn targets(&self) -> Vec<Target> {
        self.backends
            .iter()
            .map(|b| Target {
                addr: b.addr,
                weight: b.weight,
                name: b.name.clone(),
            })
            .collect()
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether active health checks currently let this backend take traffic.
    /// Backends start healthy until their first check says otherwise, and a
    /// pool without `health_check` has every backend healthy.
    pub fn is_healthy(&self, idx: usize) -> bool {
        self.backends
            .get(idx)
            .is_some_and(|b| b.health.is_healthy())
    }

    /// Healthy by active checks and not ejected by passive health.
    pub fn is_available(&self, idx: usize, now: u64) -> bool {
        self.is_healthy(idx) && !self.backends[idx].stats.outlier.is_ejected(now)
    }

    pub fn is_ejected(&self, idx: usize, now: u64) -> bool {
        self.backends
            .get(idx)
            .is_some_and(|b| b.stats.outlier.is_ejected(now))
    }

    pub fn healthy_count(&self) -> usize {
        (0..self.backends.len())
            .filter(|i| self.is_healthy(*i))
            .count()
    }

    /// Whether the last pick found the pool below its panic threshold.
    pub fn in_panic(&self) -> bool {
        self.in_panic.load(Ordering::Relaxed)
    }

    /// The slow-start share of a backend's weight at `now`, from 10% to 100%.
    fn ramp(&self, stats: &BackendStats, now: u64) -> f64 {
        let Some(window) = self.spec.slow_start else {
            return 1.0;
        };
        let since = stats.ready_since.load(Ordering::Relaxed);
        if since == 0 {
            return 1.0;
        }
        let f = now.saturating_sub(since) as f64 / window.as_nanos() as f64;
        if f >= 1.0 {
            stats.ready_since.store(0, Ordering::Relaxed);
            1.0
        } else {
            f.max(0.1)
        }
    }

    fn load(&self, idx: usize, now: u64) -> Load {
        let b = &self.backends[idx];
        Load {
            weight: b.weight as f64 * self.ramp(&b.stats, now),
            inflight: b.stats.inflight.load(Ordering::Relaxed),
            // Only load_aware reads latency; skip the exp() for the others.
            latency: if self.spec.balance == Balance::LoadAware {
                b.stats.latency.cost(now, self.decay_nanos)
            } else {
                0.0
            },
        }
    }

    /// Picks a backend this request has not tried yet.
    pub fn pick(&self, key: &[u8], tried: &[usize], now: u64, rng: &mut impl Rng) -> Pick {
        let n = self.backends.len();
        let available: SmallVec<[bool; 16]> = (0..n).map(|i| self.is_available(i, now)).collect();
        if self.spec.slow_start.is_some() {
            for (i, avail) in available.iter().enumerate() {
                let stats = &self.backends[i].stats;
                // A backend coming back from an ejection or a failed check
                // ramps up like a new one.
                if stats.was_available.load(Ordering::Relaxed) != *avail
                    && stats.was_available.swap(*avail, Ordering::Relaxed) != *avail
                    && *avail
                {
                    stats.ready_since.store(now.max(1), Ordering::Relaxed);
                }
            }
        }
        let up = available.iter().filter(|a| **a).count();
        let panic =
            self.spec.panic_threshold > 0 && up * 100 < self.spec.panic_threshold as usize * n;
        // Read before writing: a store per request would bounce the cache
        // line between cores.
        if self.in_panic.load(Ordering::Relaxed) != panic
            && self.in_panic.swap(panic, Ordering::Relaxed) != panic
        {
            if panic {
                log::warn!(
                    "upstream {}: only {up} of {n} backends available, below panic_threshold {}%: balancing across all",
                    self.spec.name,
                    self.spec.panic_threshold
                );
            } else {
                log::info!("upstream {}: out of panic mode", self.spec.name);
            }
        }
        if up == 0 && !panic {
            return Pick::NoneHealthy;
        }
        let eligible = |i: usize| (panic || available[i]) && !tried.contains(&i);
        match self
            .selector
            .select(n, key, eligible, |i| self.load(i, now), rng)
        {
            Some(i) => Pick::Backend(i),
            None => Pick::Exhausted,
        }
    }

    /// Feeds a settled attempt to load tracking and passive health.
    pub fn record(&self, settled: &Settled, now: u64) {
        let Some(b) = self.backends.get(settled.backend) else {
            return;
        };
        b.metrics.count(settled.label());
        if let Some(rtt) = settled.latency_sample() {
            b.stats.latency.observe(rtt, now, self.decay_nanos);
        }
        let Some(failed) = settled.backend_failed() else {
            return;
        };
        let Some(spec) = &self.spec.outlier else {
            return;
        };
        if !failed {
            b.stats.outlier.record_success(spec, now);
            return;
        }
        let ejected = (0..self.backends.len())
            .filter(|i| self.is_ejected(*i, now))
            .count();
        if b.stats.outlier.record_failure(
            spec,
            now,
            room_to_eject(spec, ejected, self.backends.len()),
        ) {
            let secs = b.stats.outlier.ejected_until().saturating_sub(now) as f64 / 1e9;
            log::warn!(
                "upstream {}: ejecting {} for {secs:.1}s after {} failures in a row",
                self.spec.name,
                b.addr,
                spec.consecutive_failures
            );
        }
    }

    /// Each backend's effective weight now: its weight, scaled by slow start
    /// and, for `load_aware`, by how its cost compares with the cheapest
    /// available backend's. 0 when unavailable.
    pub fn effective_weights(&self, now: u64) -> Vec<f64> {
        let loads: Vec<Option<Load>> = (0..self.backends.len())
            .map(|i| self.is_available(i, now).then(|| self.load(i, now)))
            .collect();
        if self.spec.balance != Balance::LoadAware {
            return loads.iter().map(|l| l.map_or(0.0, |l| l.weight)).collect();
        }
        let per_weight = |l: &Load| load_aware_cost(l) * l.weight;
        let cheapest = loads
            .iter()
            .flatten()
            .map(per_weight)
            .fold(f64::INFINITY, f64::min);
        loads
            .iter()
            .map(|l| l.map_or(0.0, |l| l.weight * cheapest / per_weight(&l)))
            .collect()
    }

    /// The Pingora peer for a backend, with this pool's timeouts.
    pub fn peer(&self, idx: usize) -> Option<Box<HttpPeer>> {
        let b = self.backends.get(idx)?;
        let mut peer = self.template.peer(b.addr);
        let o = &mut peer.options;
        o.connection_timeout = Some(self.spec.connect_timeout);
        o.total_connection_timeout = Some(self.spec.connect_timeout * 2);
        o.read_timeout = Some(self.spec.read_timeout);
        o.write_timeout = Some(self.spec.write_timeout);
        o.idle_timeout = Some(self.spec.idle_timeout);
        Some(Box::new(peer))
    }

    /// The health view this pool's checks run on.
    pub fn health_view(&self) -> &Arc<HealthView> {
        &self.view
    }
}
