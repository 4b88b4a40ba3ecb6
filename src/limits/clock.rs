//! Time for the limiters, injected rather than read inside them.
//!
//! The token bucket is a pure function of (state, now), so tests drive it with a
//! [`ManualClock`] instead of sleeping, and the proxy reads the clock once per
//! request and hands the same `now` to every limit on the route, so the limits of
//! one request agree on when it happened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic clock in nanoseconds since some fixed epoch.
pub trait Clock: Send + Sync {
    fn now_nanos(&self) -> u64;
}

/// The real clock: nanoseconds since the clock was created. A `u64` of
/// nanoseconds lasts 584 years, so it never wraps in a process's life.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    epoch: Instant,
}

impl MonotonicClock {
    pub fn new() -> MonotonicClock {
        MonotonicClock {
            epoch: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

impl Clock for MonotonicClock {
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to; for tests and benchmarks.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    pub fn new(start_nanos: u64) -> ManualClock {
        ManualClock {
            nanos: AtomicU64::new(start_nanos),
        }
    }

    pub fn set(&self, nanos: u64) {
        self.nanos.store(nanos, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(5);
        assert_eq!(c.now_nanos(), 5);
        c.advance(Duration::from_micros(1));
        assert_eq!(c.now_nanos(), 1_005);
        c.set(u64::MAX - 1);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now_nanos(), u64::MAX);
    }

    #[test]
    fn monotonic_clock_does_not_go_back() {
        let c = MonotonicClock::new();
        let a = c.now_nanos();
        let b = c.now_nanos();
        assert!(b >= a);
    }
}
