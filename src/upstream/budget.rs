//! Retry budget: retries may add at most `ratio` of the pool's recent
//! requests, plus a floor of `min_per_second`, over a sliding 10-second window.
//!
//! Why a budget, not only `retries`: a per-request retry count multiplies
//! load by up to `1 + retries` exactly when a pool is failing, which is how
//! retry storms finish off a struggling service. A budget (Envoy's
//! retry_budget, linkerd's) keeps retries a bounded share of traffic while
//! still hiding the occasional dead backend; the floor keeps retries
//! possible on a quiet pool.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::BudgetSpec;

const SLOTS: usize = 10;
const SLOT_NANOS: u64 = 1_000_000_000;

/// Per-second buckets of (requests, retries), tagged with their second.
pub struct RetryBudget {
    spec: BudgetSpec,
    seconds: [AtomicU64; SLOTS],
    requests: [AtomicU64; SLOTS],
    retries: [AtomicU64; SLOTS],
}

impl RetryBudget {
    pub fn new(spec: BudgetSpec) -> RetryBudget {
        RetryBudget {
            spec,
            seconds: Default::default(),
            requests: Default::default(),
            retries: Default::default(),
        }
    }

    /// The slot for `now`, cleared if it still holds an older second.
    fn slot(&self, now: u64) -> usize {
        let second = now / SLOT_NANOS + 1;
        let i = (second as usize) % SLOTS;
        let seen = self.seconds[i].load(Ordering::Relaxed);
        if seen != second
            && self.seconds[i]
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.requests[i].store(0, Ordering::Relaxed);
            self.retries[i].store(0, Ordering::Relaxed);
        }
        i
    }

    fn window(&self, now: u64) -> (u64, u64) {
        let second = now / SLOT_NANOS + 1;
        let mut requests = 0;
        let mut retries = 0;
        for i in 0..SLOTS {
            let s = self.seconds[i].load(Ordering::Relaxed);
            if s + (SLOTS as u64) > second && s <= second {
                requests += self.requests[i].load(Ordering::Relaxed);
                retries += self.retries[i].load(Ordering::Relaxed);
            }
        }
        (requests, retries)
    }

    /// Counts a request's first attempt.
    pub fn record_request(&self, now: u64) {
        let i = self.slot(now);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget if there is one.
    pub fn try_retry(&self, now: u64) -> bool {
        let (requests, retries) = self.window(now);
        let allowed = self.spec.min_per_second * SLOTS as f64 + self.spec.ratio * requests as f64;
        if (retries as f64) < allowed {
            let i = self.slot(now);
            self.retries[i].fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = SLOT_NANOS;

    #[test]
    fn retries_are_a_share_of_requests_plus_a_floor() {
        let b = RetryBudget::new(BudgetSpec {
            ratio: 0.2,
            min_per_second: 0.5,
        });
        for _ in 0..100 {
            b.record_request(5 * S);
        }
        // 0.5/s × 10 s + 20% of 100 = 25 retries.
        let granted = (0..100).filter(|_| b.try_retry(5 * S)).count();
        assert_eq!(granted, 25);
        // Ten seconds later the window has moved on: only the floor is left.
        let granted = (0..100).filter(|_| b.try_retry(16 * S)).count();
        assert_eq!(granted, 5);
    }

    #[test]
    fn a_zero_budget_grants_nothing() {
        let b = RetryBudget::new(BudgetSpec {
            ratio: 0.0,
            min_per_second: 0.0,
        });
        b.record_request(S);
        assert!(!b.try_retry(S));
    }
}
