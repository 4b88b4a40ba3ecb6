//! The validated, typed description of one limit: what `limits.NAME` in the
//! YAML means once the config module has checked it. The limiter is built
//! from this and nothing else.

use std::time::Duration;

use crate::keys::KeySpec;

#[derive(Clone, Debug, PartialEq)]
pub struct LimitSpec {
    /// The limit's name (its key under `limits:`), used in headers and metrics.
    pub name: String,
    pub algorithm: Algorithm,
    pub key: KeySpec,
    /// Count and log, never reject.
    pub shadow: bool,
    pub on_missing: OnMissing,
    /// Status of a rejection (default 429).
    pub status: u16,
    /// Upper bound on keys with live state; the least recently used beyond it are evicted.
    pub max_keys: usize,
    pub store: StoreSpec,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Algorithm {
    /// `capacity` = burst, `fill_rate` = tokens per second (may be fractional).
    TokenBucket { capacity: f64, fill_rate: f64 },
    /// `limit` requests per sliding `window`.
    SlidingWindow { limit: u64, window: Duration },
    /// At most `max` requests in flight.
    Concurrency { max: u64 },
    /// A concurrency limit found from measured latency, within `min..=max`.
    AdaptiveConcurrency {
        initial: u64,
        min: u64,
        max: u64,
        /// Where a request's class (critical, default, sheddable) is read.
        priority: Option<KeySpec>,
    },
}

/// What to do with a request that lacks the key's value (no such header, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMissing {
    /// Admit it, counted under one shared "missing" key.
    Shared,
    /// Reject it outright.
    Reject,
}

/// Default bound on live keys per limit.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Where a limit's counters live.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreSpec {
    /// In this process only: each gateway counts what it sees.
    Local,
    /// In the Redis store named by the top-level `redis:` section, shared by
    /// every gateway that points at it.
    Redis {
        on_error: OnStoreError,
        /// Concurrency: how long a lease outlives a gateway that died holding it.
        lease_ttl: Duration,
    },
}

/// What a shared limit does when the store cannot answer in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStoreError {
    /// Enforce the same limit in-process at `1/instances` of its size.
    Local,
    /// Admit.
    Allow,
    /// Refuse with the limit's status.
    Deny,
}

impl OnStoreError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnStoreError::Local => "local",
            OnStoreError::Allow => "allow",
            OnStoreError::Deny => "deny",
        }
    }
}

/// Default life of a concurrency lease in a shared store.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

impl Algorithm {
    /// The same algorithm at `1/instances` of its size (rounded up, never
    /// below one request), for the local stand-in of a shared limit.
    pub fn scaled_down(&self, instances: u32) -> Algorithm {
        let n = f64::from(instances.max(1));
        let share = |v: u64| v.div_ceil(u64::from(instances.max(1))).max(1);
        match *self {
            Algorithm::TokenBucket {
                capacity,
                fill_rate,
            } => Algorithm::TokenBucket {
                capacity: (capacity / n).max(1.0),
                fill_rate: fill_rate / n,
            },
            Algorithm::SlidingWindow { limit, window } => Algorithm::SlidingWindow {
                limit: share(limit),
                window,
            },
            Algorithm::Concurrency { max } => Algorithm::Concurrency { max: share(max) },
            // Not shared (the config refuses it): each gateway measures its own.
            ref adaptive @ Algorithm::AdaptiveConcurrency { .. } => adaptive.clone(),
        }
    }
}
