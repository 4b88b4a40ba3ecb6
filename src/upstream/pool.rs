//! One upstream pool: its backends, their health and load, and its selector.
//!
//! Membership and active health come from Pingora's load-balancing crate
//! (`Backends` with static discovery and a `HealthCheck`); which backend to
//! use comes from [`Selector`], which asks this pool which backends are
//! eligible. A pool is immutable once built; a reload builds a new one.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use futures::FutureExt;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::{Backend, Backends};
use rand::Rng;

use super::health;
use super::selection::Selector;
use crate::config::UpstreamSpec;

/// A backend and what the gateway measures of it.
pub struct BackendState {
    pub addr: SocketAddr,
    pub weight: u32,
    /// Pingora's handle, the key of its health state.
    pub backend: Backend,
    /// Requests currently being served by this backend through this pool.
    pub inflight: AtomicU64,
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
    view: Backends,
    has_health_check: bool,
    next_check: Mutex<Instant>,
    checking: AtomicBool,
}

impl Pool {
    pub fn new(spec: UpstreamSpec) -> Pool {
        let backends: Vec<BackendState> = spec
            .backends
            .iter()
            .map(|b| BackendState {
                addr: b.address,
                weight: b.weight,
                backend: Backend {
                    addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(b.address),
                    weight: b.weight as usize,
                    ext: Default::default(),
                },
                inflight: AtomicU64::new(0),
            })
            .collect();
        let set: BTreeSet<Backend> = backends.iter().map(|b| b.backend.clone()).collect();
        let mut view = Backends::new(Static::new(set));
        let has_health_check = match &spec.health_check {
            Some(hc) => {
                view.set_health_check(health::build(hc, &spec));
                true
            }
            None => false,
        };
        // Static discovery never waits, so this resolves on the first poll; it
        // publishes the membership that health checks then run over.
        if let Some(Err(e)) = view.update(|_| {}).now_or_never() {
            log::error!("upstream {}: backend discovery failed: {e}", spec.name);
        }
        let weights: Vec<(SocketAddr, u32)> = backends.iter().map(|b| (b.addr, b.weight)).collect();
        Pool {
            selector: Selector::new(spec.balance, &weights),
            spec,
            backends,
            view,
            has_health_check,
            next_check: Mutex::new(Instant::now()),
            checking: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether active health checks currently let this backend take traffic.
    /// Backends start healthy until their first check says otherwise.
    pub fn is_healthy(&self, idx: usize) -> bool {
        self.backends
            .get(idx)
            .is_some_and(|b| self.view.ready(&b.backend))
    }

    pub fn healthy_count(&self) -> usize {
        (0..self.backends.len())
            .filter(|i| self.is_healthy(*i))
            .count()
    }

    /// Picks a healthy backend this request has not tried yet.
    pub fn pick(&self, key: &[u8], tried: &[usize], rng: &mut impl Rng) -> Pick {
        let healthy: Vec<bool> = (0..self.backends.len())
            .map(|i| self.is_healthy(i))
            .collect();
        if !healthy.iter().any(|h| *h) {
            return Pick::NoneHealthy;
        }
        match self
            .selector
            .select(key, |i| healthy[i] && !tried.contains(&i), rng)
        {
            Some(i) => Pick::Backend(i),
            None => Pick::Exhausted,
        }
    }

    /// The Pingora peer for a backend, with this pool's timeouts.
    pub fn peer(&self, idx: usize) -> Option<Box<HttpPeer>> {
        let b = self.backends.get(idx)?;
        let mut peer = HttpPeer::new(b.addr, self.spec.tls, self.spec.sni.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(self.spec.connect_timeout);
        o.total_connection_timeout = Some(self.spec.connect_timeout * 2);
        o.read_timeout = Some(self.spec.read_timeout);
        o.write_timeout = Some(self.spec.write_timeout);
        o.idle_timeout = Some(self.spec.idle_timeout);
        Some(Box::new(peer))
    }

    /// Runs one round of active health checks if one is due and none is
    /// running. Called by the health service's loop.
    pub async fn check_if_due(&self, now: Instant) {
        let Some(hc) = &self.spec.health_check else {
            return;
        };
        if !self.has_health_check {
            return;
        }
        {
            let mut next = self.next_check.lock().unwrap_or_else(|p| p.into_inner());
            if now < *next {
                return;
            }
            *next = now + hc.interval;
        }
        if self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        self.view.run_health_check(true).await;
        self.checking.store(false, Ordering::Release);
    }

    /// When the next check is due (None without health checks).
    pub fn next_check(&self) -> Option<Instant> {
        self.spec.health_check.as_ref()?;
        Some(*self.next_check.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
