//! A pool's membership and active health, kept across reloads.
//!
//! Pingora's `Backends` holds health per backend identity and reconciles it
//! when discovery returns a new set: backends present before and after keep
//! their health, new ones start healthy, removed ones are dropped. So a
//! reload that edits a pool hands the *same* view the new backend set
//! through our discovery, rather than building a fresh view that would forget
//! that a backend is down. Only a change to how health is checked (the
//! check's settings, TLS, SNI) starts a fresh view: Pingora's registry takes
//! its checker once.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use futures::FutureExt;
use pingora_error::Result;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::{Backend, Backends};

use super::health;
use crate::config::{HealthCheckSpec, UpstreamSpec};

/// Discovery whose answer the gateway sets: the backends of the live config.
struct ConfiguredBackends(Arc<ArcSwap<BTreeSet<Backend>>>);

#[async_trait]
impl ServiceDiscovery for ConfiguredBackends {
    async fn discover(&self) -> Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        Ok((BTreeSet::clone(&self.0.load()), HashMap::new()))
    }
}

/// What decides how a pool's health is checked; a view is reused only while
/// this stays the same.
#[derive(Clone, PartialEq)]
struct CheckSettings {
    health_check: Option<HealthCheckSpec>,
    tls: bool,
    sni: String,
    protocol: crate::config::UpstreamProtocol,
    ca: Option<String>,
}

impl CheckSettings {
    fn of(spec: &UpstreamSpec) -> Self {
        CheckSettings {
            health_check: spec.health_check.clone(),
            tls: spec.tls,
            sni: spec.sni.clone(),
            protocol: spec.protocol,
            ca: spec.ca.clone(),
        }
    }
}

pub struct HealthView {
    members: Arc<ArcSwap<BTreeSet<Backend>>>,
    backends: Backends,
    settings: CheckSettings,
    next_check: Mutex<Instant>,
    checking: AtomicBool,
}

impl HealthView {
    /// The view for `spec`: `previous` (with the new membership) when it
    /// checks health the same way, a fresh one otherwise.
    pub fn for_spec(
        spec: &UpstreamSpec,
        members: BTreeSet<Backend>,
        previous: Option<&Arc<HealthView>>,
    ) -> Arc<HealthView> {
        let settings = CheckSettings::of(spec);
        let view = match previous {
            Some(prev) if prev.settings == settings => {
                prev.members.store(Arc::new(members));
                prev.clone()
            }
            _ => {
                let shared = Arc::new(ArcSwap::from_pointee(members));
                let mut backends = Backends::new(Box::new(ConfiguredBackends(shared.clone())));
                if let Some(hc) = &spec.health_check {
                    backends.set_health_check(health::build(hc, spec));
                }
                Arc::new(HealthView {
                    members: shared,
                    backends,
                    settings,
                    next_check: Mutex::new(Instant::now()),
                    checking: AtomicBool::new(false),
                })
            }
        };
        // Our discovery never waits, so this completes on the first poll.
        if let Some(Err(e)) = view.backends.update(|_| {}).now_or_never() {
            log::error!("upstream {}: updating backends failed: {e}", spec.name);
        }
        view
    }

    pub fn ready(&self, backend: &Backend) -> bool {
        self.backends.ready(backend)
    }

    /// When the next check is due, if this view checks health at all.
    pub fn next_check(&self) -> Option<Instant> {
        self.settings.health_check.as_ref()?;
        Some(*self.next_check.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs one round of checks, all backends in parallel, if one is due and
    /// none is running.
    pub async fn check_if_due(&self, now: Instant) {
        let Some(hc) = &self.settings.health_check else {
            return;
        };
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
        self.backends.run_health_check(true).await;
        self.checking.store(false, Ordering::Release);
    }
}
