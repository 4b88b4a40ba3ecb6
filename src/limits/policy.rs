//! What every configured limit shares whatever its algorithm: its spec, how
//! a key's value becomes its 64-bit identity, and the policy it advertises in
//! `RateLimit-Policy` and `RateLimit`.
//!
//! # Keys
//! Keys are hashed to 64 bits with `ahash`, seeded at random per limit so
//! that a client cannot precompute values that collide with another client's
//! key; the hash is all a local algorithm stores. A request without the key's
//! value is counted under one shared "missing" key (distinct from every real
//! key, including the empty one) unless the limit says `on_missing: reject`.
//!
//! # The advertised policy
//! It is the limit as configured, whichever state decided (a shared limit's
//! local stand-in enforces only its share, but advertises the whole), rendered
//! once when the limit is built; only a limit whose quota moves (adaptive)
//! renders it per response.

use super::headers::{ceil_secs, intern, render_policy, QuotaUnit, RateLimitInfo};
use super::limit::{KeyStatus, Limit};
use super::spec::{Algorithm, LimitSpec, OnMissing};
use super::token_bucket::Gcra;

pub struct Policy {
    spec: LimitSpec,
    name: &'static str,
    hasher: ahash::RandomState,
    /// `q`, `w` and `qu` of the policy, fixed by the spec.
    quota: (u64, Option<u64>, QuotaUnit),
    /// The `RateLimit-Policy` value those make, rendered once.
    field: &'static str,
}

impl Policy {
    pub fn new(spec: LimitSpec) -> Policy {
        let name = intern(&spec.name);
        let quota = quota_of(&spec.algorithm);
        let (q, window_secs, unit) = quota;
        let field = intern(&render_policy(&RateLimitInfo {
            name,
            quota: q,
            window_secs,
            unit,
            remaining: 0,
            reset_secs: None,
            policy: "",
        }));
        Policy {
            spec,
            name,
            hasher: ahash::RandomState::new(),
            quota,
            field,
        }
    }

    pub fn spec(&self) -> &LimitSpec {
        &self.spec
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    #[inline]
    pub fn shadow(&self) -> bool {
        self.spec.shadow
    }

    /// The key's 64-bit identity, or `None` for a missing key this limit refuses.
    /// `None` and `Some(b"")` hash differently: `Option`'s tag is hashed too.
    #[inline]
    pub fn resolve(&self, value: Option<&[u8]>) -> Option<u64> {
        if value.is_none() && self.spec.on_missing == OnMissing::Reject {
            return None;
        }
        Some(self.hasher.hash_one(value))
    }

    /// `Retry-After` in whole seconds, rounded up; `None` when no wait helps.
    pub fn retry_after_secs(&self, status: &KeyStatus, limit: &impl Limit) -> Option<u64> {
        match status.wait_ns {
            Some(ns) => Some(ceil_secs(ns).max(1)),
            // A zero limit, or a slot that frees up when some request ends.
            None => limit.retry_hint_secs(),
        }
    }

    /// What `RateLimit` and `RateLimit-Policy` say after `status`.
    pub fn info(&self, status: &KeyStatus, limit: &impl Limit) -> RateLimitInfo {
        let (quota, window_secs, unit) = self.quota;
        let reset_secs = if status.admitted {
            status.wait_ns.map(ceil_secs)
        } else {
            self.retry_after_secs(status, limit)
        };
        // A moving quota is rendered per response (an empty `policy`).
        let (quota, policy) = match limit.quota_now() {
            Some(q) => (q, ""),
            None => (quota, self.field),
        };
        RateLimitInfo {
            name: self.name,
            quota,
            window_secs,
            unit,
            remaining: status.remaining,
            reset_secs,
            policy,
        }
    }
}

/// `q`, `w` and `qu` of a limit's policy.
fn quota_of(algorithm: &Algorithm) -> (u64, Option<u64>, QuotaUnit) {
    match *algorithm {
        Algorithm::TokenBucket {
            capacity,
            fill_rate,
        } => {
            let g = Gcra::new(capacity, fill_rate);
            (g.quota(), Some(g.window_secs()), QuotaUnit::Requests)
        }
        Algorithm::SlidingWindow { limit, window } => {
            // The same rounding the sliding window applies to its window.
            let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
            (
                limit,
                Some(ceil_secs(ms.saturating_mul(1_000_000))),
                QuotaUnit::Requests,
            )
        }
        Algorithm::Concurrency { max } => (max, None, QuotaUnit::ConcurrentRequests),
        Algorithm::AdaptiveConcurrency { initial, .. } => {
            (initial, None, QuotaUnit::ConcurrentRequests)
        }
    }
}
