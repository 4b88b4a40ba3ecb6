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
}

#[derive(Clone, Debug, PartialEq)]
pub enum Algorithm {
    /// `capacity` = burst, `fill_rate` = tokens per second (may be fractional).
    TokenBucket { capacity: f64, fill_rate: f64 },
    /// `limit` requests per sliding `window`.
    SlidingWindow { limit: u64, window: Duration },
    /// At most `max` requests in flight.
    Concurrency { max: u64 },
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
