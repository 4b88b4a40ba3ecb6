//! Active health: how a pool's backends are checked (a [`HealthView`]) and
//! what the checks found (a [`HealthState`] per backend).
//!
//! Why the state is ours and not Pingora's `Backends` registry: that registry
//! takes its checker once, so a change to how health is checked (even only
//! the interval, or `tls`/`sni`) needed a fresh registry, and a fresh one
//! starts every backend healthy: a backend known to be down got traffic
//! again until its checks failed anew. Here the checker (Pingora's TCP or
//! HTTP check) is only the probe; the verdict lives in each backend's
//! [`HealthState`], which a rebuilt pool (a reload, a DNS answer) shares by
//! address with the pool it replaces.
//!
//! # The verdict follows the config
//! Sharing it unconditionally froze backends: with `health_check` removed,
//! nothing checks a backend again, so one that was down stayed down for
//! good, and an upstream whose backends were all down answered 503 until a
//! restart. [`HealthState::succeeding`] decides per rebuild:
//!
//! - **checked before and after** (the check may have changed: interval,
//!   type, path, thresholds, `tls`, `sni`): the verdict carries. A backend
//!   known to be down gets no traffic because an interval was edited; the
//!   new check's first round runs at once and `healthy_after` passes bring
//!   it back.
//! - **no `health_check` any more**: a fresh state, healthy. Passive
//!   ejections are not active health: they live in the backend's
//!   `BackendStats`, carry over, and end when their timer does.
//! - **a `health_check` added**: a fresh state, as at start: healthy until
//!   `unhealthy_after` failures say otherwise (Pingora's `Health` starts
//!   healthy too), with the first round due at once.
//!
//! A fresh state is a new value, never a reset of the shared one: a round of
//! the replaced pool may still be running, and its results must land in the
//! state that pool holds, not revive a verdict the config just dropped.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pingora_load_balancing::health_check::HealthCheck;

use super::health;
use crate::config::{HealthCheckSpec, UpstreamSpec};

/// One backend's active health: the verdict and how many checks in a row
/// have disagreed with it (Pingora's flip rule: `healthy_after` successes
/// bring a backend back, `unhealthy_after` failures take it out).
pub struct HealthState {
    healthy: AtomicBool,
    against: AtomicU32,
}

impl Default for HealthState {
    /// Backends start healthy until a check says otherwise.
    fn default() -> Self {
        HealthState {
            healthy: AtomicBool::new(true),
            against: AtomicU32::new(0),
        }
    }
}

impl HealthState {
    /// The state a rebuilt pool gives a backend: `previous` (the same
    /// address's state in the pool it replaces) while both pools check
    /// health, a fresh one otherwise (see the module doc).
    pub fn succeeding(
        previous: Option<&Arc<HealthState>>,
        was_checked: bool,
        checked: bool,
    ) -> Arc<HealthState> {
        match previous {
            Some(p) if was_checked && checked => p.clone(),
            _ => Arc::new(HealthState::default()),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records one check; returns the new verdict if this check flipped it.
    /// A view runs one round at a time; only a round of a view a reload just
    /// replaced can overlap, and then a lost update costs one check's count,
    /// which the next round repairs.
    pub fn observe(&self, passed: bool, spec: &HealthCheckSpec) -> Option<bool> {
        let healthy = self.is_healthy();
        if passed == healthy {
            self.against.store(0, Ordering::Relaxed);
            return None;
        }
        let needed = if passed {
            spec.healthy_after
        } else {
            spec.unhealthy_after
        };
        let n = self.against.fetch_add(1, Ordering::Relaxed) + 1;
        if n < needed {
            return None;
        }
        self.against.store(0, Ordering::Relaxed);
        self.healthy.store(passed, Ordering::Relaxed);
        Some(passed)
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

/// How a pool's backends are checked, and when the next round is due.
pub struct HealthView {
    settings: CheckSettings,
    checker: Option<Arc<dyn HealthCheck + Send + Sync>>,
    next_check: Mutex<Instant>,
    checking: AtomicBool,
}

impl HealthView {
    /// The view for `spec`: `previous` when it checks health the same way
    /// (keeping its schedule), a new one otherwise, whose first round is due
    /// at once. The backends' verdicts are not the view's: they live in their
    /// [`HealthState`].
    pub fn for_spec(spec: &UpstreamSpec, previous: Option<&Arc<HealthView>>) -> Arc<HealthView> {
        let settings = CheckSettings::of(spec);
        match previous {
            Some(prev) if prev.settings == settings => prev.clone(),
            _ => Arc::new(HealthView {
                checker: spec
                    .health_check
                    .as_ref()
                    .map(|hc| Arc::from(health::build(hc, spec))),
                settings,
                next_check: Mutex::new(Instant::now()),
                checking: AtomicBool::new(false),
            }),
        }
    }

    /// The check settings, if this view checks health at all.
    pub fn spec(&self) -> Option<&HealthCheckSpec> {
        self.settings.health_check.as_ref()
    }

    /// When the next check is due, if this view checks health at all.
    pub fn next_check(&self) -> Option<Instant> {
        self.spec()?;
        Some(*self.next_check.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Claims the round due at `now`: the probe to run, or `None` if no
    /// round is due or one is still running. Call [`HealthView::round_done`]
    /// after.
    pub fn claim_round(&self, now: Instant) -> Option<Arc<dyn HealthCheck + Send + Sync>> {
        let (hc, checker) = (self.spec()?, self.checker.as_ref()?);
        {
            let mut next = self.next_check.lock().unwrap_or_else(|p| p.into_inner());
            if now < *next {
                return None;
            }
            *next = now + hc.interval;
        }
        if self.checking.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(checker.clone())
    }

    pub fn round_done(&self) {
        self.checking.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HealthKind;
    use std::time::Duration;

    fn spec(healthy_after: u32, unhealthy_after: u32) -> HealthCheckSpec {
        HealthCheckSpec {
            kind: HealthKind::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_after,
            unhealthy_after,
        }
    }

    #[test]
    fn flips_only_after_enough_checks_in_a_row() {
        let s = HealthState::default();
        let spec = spec(2, 3);
        assert_eq!(s.observe(false, &spec), None);
        assert_eq!(s.observe(false, &spec), None);
        assert_eq!(s.observe(true, &spec), None, "a pass breaks the run");
        assert_eq!(s.observe(false, &spec), None);
        assert_eq!(s.observe(false, &spec), None);
        assert_eq!(s.observe(false, &spec), Some(false));
        assert!(!s.is_healthy());
        assert_eq!(s.observe(true, &spec), None);
        assert_eq!(s.observe(true, &spec), Some(true));
        assert!(s.is_healthy());
    }

    fn down() -> Arc<HealthState> {
        let s = Arc::new(HealthState::default());
        s.observe(false, &spec(1, 1));
        assert!(!s.is_healthy());
        s
    }

    #[test]
    fn a_verdict_carries_only_while_the_pool_is_checked_before_and_after() {
        let old = down();
        let kept = HealthState::succeeding(Some(&old), true, true);
        assert!(
            Arc::ptr_eq(&kept, &old),
            "an edited check keeps the verdict"
        );
        let dropped = HealthState::succeeding(Some(&old), true, false);
        assert!(dropped.is_healthy(), "no health_check: healthy again");
        assert!(!Arc::ptr_eq(&dropped, &old));
        let added = HealthState::succeeding(Some(&old), false, true);
        assert!(added.is_healthy(), "a check added starts as at start");
        assert!(!Arc::ptr_eq(&added, &old));
        assert!(HealthState::succeeding(None, true, true).is_healthy());
    }

    #[test]
    fn a_round_of_the_replaced_pool_cannot_take_down_a_fresh_state() {
        let old = Arc::new(HealthState::default());
        let fresh = HealthState::succeeding(Some(&old), true, false);
        // The old pool's round, still running at the reload, finishes.
        assert_eq!(old.observe(false, &spec(1, 1)), Some(false));
        assert!(fresh.is_healthy());
    }

    #[test]
    fn a_down_backend_stays_down_whatever_the_check_settings_become() {
        let s = HealthState::default();
        s.observe(false, &spec(1, 1));
        // The same state, read under other settings (a reload changed them).
        assert!(!s.is_healthy());
        assert_eq!(s.observe(false, &spec(3, 5)), None);
        assert!(!s.is_healthy());
        assert_eq!(s.observe(true, &spec(1, 5)), Some(true));
    }
}
