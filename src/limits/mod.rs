//! Admission control: token-bucket, sliding-window and concurrency limits.
//!
//! A route lists limits; a request is admitted only if *all* of them admit it.
//! The proxy reads the clock once, extracts each limit's key, and calls
//! [`admit`], which returns a [`Verdict`]: admitted or rejected (by which limit,
//! with its status and `Retry-After`), each limit's [`Decision`] for metrics,
//! the permits to hold until the request ends, and what the
//! `RateLimit`/`RateLimit-Policy` fields should say. Nothing here knows about
//! Pingora's proxy types: the module is tested and benchmarked on its own.
//!
//! # Layers
//! The core is the engine ([`engine`]), the one interface every limit
//! implements ([`limit`]), what every configured limit shares ([`policy`]),
//! and the local algorithms ([`local`]: [`token_bucket`], [`sliding_window`],
//! [`concurrency`]). The optional kinds, [`adaptive`] and the shared store
//! ([`redis_store`]), implement the interface and import the core, never the
//! other way round; [`limiter`] alone knows every kind and puts them behind
//! one type. Check-all-then-commit, its rollback and what the decision
//! counters count are argued in [`engine`]; key hashing and the advertised
//! policy in [`policy`].
//!
//! # Shared limits
//! A limit with `store: redis` is counted in Redis, shared by every gateway
//! (see [`redis_store`]); the engine asks it after reading the local limits
//! and before committing any, so the same check-all-then-commit promise holds
//! across both stores.

pub mod adaptive;
pub mod clock;
pub mod concurrency;
pub mod engine;
pub mod headers;
mod inflight_table;
pub mod limit;
mod limiter;
pub mod local;
pub mod policy;
pub mod redis_store;
pub mod sliding_window;
pub mod spec;
pub mod token_bucket;
pub mod word_map;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use concurrency::{ConcurrencyGuard, ConcurrencyLimit};
pub use engine::{Decision, Outcome};
pub use headers::{ceil_secs, render_policy, render_ratelimit, QuotaUnit, RateLimitInfo};
pub use limit::{KeyStatus, Priority};
pub use limiter::{admit, admit_classed, Held, Kind, Limiter, Verdict};
pub use sliding_window::{SlidingWindow, WindowCounts};
pub use spec::*;
pub use token_bucket::{Gcra, TokenBucket};
pub use word_map::{ShardedWordMap, WordMap};

#[cfg(test)]
mod tests;
