//! One configured limit: the algorithm's state plus what every algorithm
//! shares (key hashing, missing keys, the policy advertised in headers).
//!
//! A limit kept in the shared store has both halves: the [`RemoteLimit`] that
//! asks Redis, and a local algorithm at `1/instances` of the limit's size
//! that decides in its place when Redis cannot answer and the limit says
//! `on_store_error: local`. The policy it advertises is always the limit as
//! configured, whichever half decided.

use std::sync::Arc;

use prometheus::IntCounter;

use super::adaptive::{AdaptiveLimit, Params, Priority, Snapshot};
use super::concurrency::{self, ConcurrencyGuard, ConcurrencyLimit};
use super::headers::{ceil_secs, intern, render_policy, QuotaUnit, RateLimitInfo};
use super::redis_store::{RedisStore, RemoteLimit};
use super::sliding_window::SlidingWindow;
use super::spec::{Algorithm, LimitSpec, OnMissing, StoreSpec};
use super::store::CounterStore;
use super::token_bucket::TokenBucket;
use super::KeyStatus;

/// One configured limit and its state.
pub struct Limiter {
    spec: LimitSpec,
    name: &'static str,
    hasher: ahash::RandomState,
    kind: Kind,
    /// `q`, `w` and `qu` of the policy, fixed by the spec.
    policy: (u64, Option<u64>, QuotaUnit),
    /// The `RateLimit-Policy` value those make, rendered once.
    policy_field: &'static str,
    /// The shared half of a `store: redis` limit.
    remote: Option<RemoteLimit>,
}

enum Kind {
    TokenBucket(TokenBucket),
    SlidingWindow(SlidingWindow),
    Concurrency(ConcurrencyLimit),
    Adaptive(AdaptiveLimit),
}

impl Limiter {
    /// A limit counted in this process only.
    pub fn new(spec: LimitSpec) -> Limiter {
        Limiter::build(spec, None)
    }

    /// A limit in `store` if its spec says `store: redis` (and a store is
    /// given), else local. `fallbacks` counts its `on_store_error` decisions.
    pub fn with_store(
        spec: LimitSpec,
        store: Option<&Arc<RedisStore>>,
        fallbacks: IntCounter,
    ) -> Limiter {
        let remote = match (&spec.store, store) {
            (
                StoreSpec::Redis {
                    on_error,
                    lease_ttl,
                },
                Some(store),
            ) => Some(RemoteLimit::new(
                store.clone(),
                &spec,
                *on_error,
                *lease_ttl,
                fallbacks,
            )),
            _ => None,
        };
        Limiter::build(spec, remote)
    }

    fn build(spec: LimitSpec, remote: Option<RemoteLimit>) -> Limiter {
        // The advertised policy is the configured limit's...
        let policy = policy_of(&spec.algorithm);
        // ...while the local state of a shared limit is its stand-in's share.
        let local = match &remote {
            Some(r) => spec.algorithm.scaled_down(r.store().spec().instances),
            None => spec.algorithm.clone(),
        };
        let kind = match local {
            Algorithm::TokenBucket {
                capacity,
                fill_rate,
            } => Kind::TokenBucket(TokenBucket::new(capacity, fill_rate, spec.max_keys)),
            Algorithm::SlidingWindow { limit, window } => {
                Kind::SlidingWindow(SlidingWindow::new(limit, window, spec.max_keys))
            }
            Algorithm::Concurrency { max } => Kind::Concurrency(ConcurrencyLimit::new(max)),
            Algorithm::AdaptiveConcurrency {
                initial, min, max, ..
            } => Kind::Adaptive(AdaptiveLimit::new(
                &spec.name,
                Params {
                    initial: initial as f64,
                    min: min as f64,
                    max: max as f64,
                    ..Params::default()
                },
                spec.max_keys,
            )),
        };
        let name = intern(&spec.name);
        let (quota, window_secs, unit) = policy;
        let policy_field = intern(&render_policy(&RateLimitInfo {
            name,
            quota,
            window_secs,
            unit,
            remaining: 0,
            reset_secs: None,
            policy: "",
        }));
        Limiter {
            name,
            policy_field,
            spec,
            hasher: ahash::RandomState::new(),
            kind,
            policy,
            remote,
        }
    }

    /// The busiest key of an adaptive limit, and the number of keys.
    pub fn adaptive(&self) -> Option<(Snapshot, usize)> {
        match &self.kind {
            Kind::Adaptive(a) => a.busiest(),
            _ => None,
        }
    }

    /// The request class this limit reads from `priority:`, if it has one.
    pub fn priority_key(&self) -> Option<&crate::keys::KeySpec> {
        match &self.spec.algorithm {
            Algorithm::AdaptiveConcurrency { priority, .. } => priority.as_ref(),
            _ => None,
        }
    }

    /// The shared half, for a `store: redis` limit.
    pub fn remote(&self) -> Option<&RemoteLimit> {
        self.remote.as_ref()
    }

    pub fn spec(&self) -> &LimitSpec {
        &self.spec
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Forgets keys whose state carries no information at `now_nanos`: full
    /// token buckets. Call it every few seconds; the sketch-based limits hold
    /// no per-key state and have nothing to sweep.
    pub fn sweep(&self, now_nanos: u64) {
        if let Kind::TokenBucket(b) = &self.kind {
            b.store().sweep(now_nanos);
        }
        if let Some(r) = &self.remote {
            r.sweep(now_nanos);
        }
    }

    /// Keys holding per-key state (token buckets only; sketches have none).
    pub fn live_keys(&self) -> usize {
        match &self.kind {
            Kind::TokenBucket(b) => b.store().live_keys(),
            Kind::SlidingWindow(_) | Kind::Concurrency(_) => 0,
            Kind::Adaptive(a) => a.busiest().map_or(0, |(_, n)| n),
        }
    }

    /// Bytes of counter state this limit holds now: the token bucket's map
    /// (grows with live keys, bounded by `max_keys`), or the fixed sketches.
    pub fn state_bytes(&self) -> usize {
        match &self.kind {
            Kind::TokenBucket(b) => b.store().allocated_bytes(),
            Kind::SlidingWindow(w) => w.sketch_bytes(),
            Kind::Concurrency(_) => concurrency::SKETCH_BYTES,
            Kind::Adaptive(a) => a.busiest().map_or(0, |(_, n)| n) * 512,
        }
    }

    /// The key's 64-bit identity, or `None` for a missing key this limit refuses.
    /// `None` and `Some(b"")` hash differently: `Option`'s tag is hashed too.
    #[inline]
    pub(super) fn resolve(&self, key: Option<&[u8]>) -> Option<u64> {
        if key.is_none() && self.spec.on_missing == OnMissing::Reject {
            return None;
        }
        Some(self.hasher.hash_one(key))
    }

    /// What a request with this key's value would be told at `now`, counting
    /// nothing; `None` for a missing key this limit refuses.
    pub fn probe(&self, key: Option<&[u8]>, now: u64) -> Option<KeyStatus> {
        self.resolve(key)
            .map(|k| self.peek(k, Priority::default(), now))
    }

    pub(super) fn peek(&self, key: u64, priority: Priority, now: u64) -> KeyStatus {
        match &self.kind {
            Kind::Adaptive(a) => a.peek(key, priority, now),
            Kind::TokenBucket(b) => b.peek(key, now),
            Kind::SlidingWindow(w) => w.peek(key),
            // `Inflight` has no read-only probe: decided at commit.
            Kind::Concurrency(c) => KeyStatus {
                admitted: true,
                remaining: c.max(),
                wait_ns: None,
            },
        }
    }

    #[inline]
    pub(super) fn commit(
        &self,
        key: u64,
        priority: Priority,
        now: u64,
    ) -> (KeyStatus, Option<ConcurrencyGuard>) {
        match &self.kind {
            Kind::Adaptive(a) => {
                let (status, guard) = a.try_acquire(key, priority, now);
                (status, guard.map(ConcurrencyGuard::adaptive))
            }
            Kind::TokenBucket(b) => (b.try_acquire(key, now), None),
            Kind::SlidingWindow(w) => (w.try_acquire(key), None),
            Kind::Concurrency(c) => c.try_acquire(key),
        }
    }

    pub(super) fn rollback(&self, key: u64, now: u64) {
        match &self.kind {
            Kind::TokenBucket(b) => b.release(key, now),
            Kind::SlidingWindow(w) => w.release(key),
            // The slot is released by dropping its guard.
            Kind::Concurrency(_) | Kind::Adaptive(_) => {}
        }
    }

    /// `Retry-After` for a refusal by this limit.
    pub(super) fn retry_after_secs(&self, status: &KeyStatus) -> Option<u64> {
        match (&self.kind, status.wait_ns) {
            (_, Some(ns)) => Some(ceil_secs(ns).max(1)),
            (Kind::Concurrency(_) | Kind::Adaptive(_), None) => Some(1),
            // A zero limit: no wait helps.
            _ => None,
        }
    }

    pub(super) fn info(&self, status: &KeyStatus) -> RateLimitInfo {
        let (quota, window_secs, unit) = self.policy;
        let reset_secs = if status.admitted {
            status.wait_ns.map(ceil_secs)
        } else {
            self.retry_after_secs(status)
        };
        // An adaptive limit's `q` is what it allows now, so its policy field
        // is rendered per response (an empty `policy`).
        let (quota, policy) = match &self.kind {
            Kind::Adaptive(a) => (a.current_quota(), ""),
            _ => (quota, self.policy_field),
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
fn policy_of(algorithm: &Algorithm) -> (u64, Option<u64>, QuotaUnit) {
    match *algorithm {
        Algorithm::TokenBucket {
            capacity,
            fill_rate,
        } => {
            let g = super::token_bucket::Gcra::new(capacity, fill_rate);
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
