//! Passive health (outlier ejection): a backend that keeps failing real
//! requests is taken out of rotation for a while, without waiting for the
//! active check (which may well pass: a backend can answer `/health` and
//! still fail every real request).
//!
//! Like Envoy's outlier detection: `consecutive_failures` connect failures or
//! 5xx answers in a row eject a backend for `base_ejection · 2^(n-1)` (n = its
//! ejections so far), capped at `max_ejection`; the timer brings it back. No
//! more than `max_ejected_percent` of a pool is ejected at once, so a pool
//! whose backends all fail keeps serving rather than going dark. A backend
//! that stays clean for `max_ejection` after its last ejection starts its
//! count afresh. Active health checks can end an ejection early, but only by
//! seeing the backend fail and then pass: a backend that answers its health
//! check while failing real requests stays out until the timer says so.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::config::OutlierSpec;

/// One backend's passive-health state. Times are nanos on the gateway's clock.
#[derive(Default)]
pub struct OutlierState {
    consecutive: AtomicU32,
    ejections: AtomicU32,
    /// 0 when not ejected.
    ejected_until: AtomicU64,
}

impl OutlierState {
    pub fn is_ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Ordering::Relaxed)
    }

    pub fn ejected_until(&self) -> u64 {
        self.ejected_until.load(Ordering::Relaxed)
    }

    /// Ends an ejection early: an active health check saw the backend fail
    /// and then recover, which is better evidence than the timer.
    pub fn uneject(&self) {
        self.ejected_until.store(0, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
    }

    pub fn record_success(&self, spec: &OutlierSpec, now: u64) {
        self.consecutive.store(0, Ordering::Relaxed);
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until != 0 && now > until.saturating_add(spec.max_ejection.as_nanos() as u64) {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failure; returns true if this failure ejected the backend.
    /// `may_eject` says whether the pool's ejection cap leaves room.
    pub fn record_failure(&self, spec: &OutlierSpec, now: u64, may_eject: bool) -> bool {
        let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if n < spec.consecutive_failures || self.is_ejected(now) || !may_eject {
            return false;
        }
        let ejections = self.ejections.fetch_add(1, Ordering::Relaxed);
        let base = spec.base_ejection.as_nanos() as u64;
        let duration = base
            .saturating_mul(1u64 << ejections.min(30))
            .min(spec.max_ejection.as_nanos() as u64);
        self.ejected_until
            .store(now.saturating_add(duration), Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        true
    }
}

/// Whether one more backend may be ejected from a pool of `total` with
/// `ejected` already out.
pub fn room_to_eject(spec: &OutlierSpec, ejected: usize, total: usize) -> bool {
    (ejected + 1) * 100 <= spec.max_ejected_percent as usize * total
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const S: u64 = 1_000_000_000;

    fn spec() -> OutlierSpec {
        OutlierSpec {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(2),
            max_ejection: Duration::from_secs(5),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn ejects_after_n_failures_for_a_growing_capped_time() {
        let s = OutlierState::default();
        let spec = spec();
        assert!(!s.record_failure(&spec, 10 * S, true));
        assert!(!s.record_failure(&spec, 10 * S, true));
        assert!(s.record_failure(&spec, 10 * S, true));
        assert!(s.is_ejected(11 * S));
        assert!(!s.is_ejected(12 * S), "first ejection lasts base_ejection");
        for _ in 0..3 {
            s.record_failure(&spec, 12 * S, true);
        }
        assert!(
            s.is_ejected(15 * S) && !s.is_ejected(16 * S),
            "second lasts twice as long"
        );
        for _ in 0..3 {
            s.record_failure(&spec, 16 * S, true);
        }
        assert!(
            s.is_ejected(20 * S) && !s.is_ejected(21 * S),
            "capped at max_ejection"
        );
    }

    #[test]
    fn a_success_resets_the_run() {
        let s = OutlierState::default();
        let spec = spec();
        s.record_failure(&spec, S, true);
        s.record_failure(&spec, S, true);
        s.record_success(&spec, S);
        assert!(!s.record_failure(&spec, S, true));
    }

    #[test]
    fn the_cap_keeps_part_of_the_pool() {
        let spec = spec();
        assert!(room_to_eject(&spec, 0, 2));
        assert!(!room_to_eject(&spec, 1, 2));
        assert!(room_to_eject(&spec, 1, 4));
        assert!(
            !room_to_eject(&spec, 0, 1),
            "a pool of one is never emptied"
        );
        let s = OutlierState::default();
        for _ in 0..5 {
            assert!(!s.record_failure(&spec, S, false));
        }
    }
}
