//! The circuit breaker in front of the shared store.
//!
//! # Why a breaker, and why it is opened by the requests but closed in the background
//! A store that times out costs every request `decision_timeout`; a store that
//! is down costs nothing per request only if requests stop asking it. So after
//! [`THRESHOLD`] errors or timeouts in a row the circuit opens and every shared
//! limit decides locally at once (its `on_store_error`). Requests never probe
//! an open circuit (Envoy's and Hystrix's half-open state lets one request pay
//! for the probe): the store's own task pings it a few times a second and
//! closes the circuit when it answers, so no request waits on a store that is
//! still down, and recovery needs no traffic.
//!
//! The state is two atomics, read on every decision without a lock.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Consecutive failures that open the circuit.
pub const THRESHOLD: u32 = 3;

#[derive(Debug)]
pub struct Circuit {
    failures: AtomicU32,
    open: AtomicBool,
}

impl Circuit {
    /// A circuit that starts open: nothing is known to answer until the
    /// store's task has connected.
    pub fn new_open() -> Circuit {
        Circuit {
            failures: AtomicU32::new(THRESHOLD),
            open: AtomicBool::new(true),
        }
    }

    /// Whether requests may ask the store.
    pub fn is_closed(&self) -> bool {
        !self.open.load(Ordering::Acquire)
    }

    pub fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failure; `true` exactly once per episode: for the failure that
    /// opened the circuit.
    pub fn failure(&self) -> bool {
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        n >= THRESHOLD
            && self
                .open
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// The store answered a probe; `true` if that ended an episode.
    pub fn close(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        self.open
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_says_so_once() {
        let c = Circuit::new_open();
        assert!(!c.is_closed(), "closed only once the store answered");
        assert!(c.close());
        assert!(!c.close(), "closing a closed circuit is not a new episode");
        assert!(c.is_closed());
        assert!(!c.failure());
        c.success();
        assert!(!c.failure());
        assert!(!c.failure());
        assert!(c.is_closed(), "a success in between resets the count");
        assert!(c.failure(), "the third failure in a row opens it");
        assert!(!c.is_closed());
        assert!(!c.failure(), "further failures are the same episode");
        assert!(c.close());
        assert!(c.is_closed());
    }

    #[test]
    fn racing_failures_open_it_once() {
        let c = Circuit::new_open();
        c.close();
        let opened = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if c.failure() {
                            opened.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(opened.load(Ordering::Relaxed), 1);
    }
}
