//! The shared store: limits counted in Redis, so that every gateway pointing
//! at it enforces one limit together instead of one each.
//!
//! [`RedisStore`] is one per `redis:` section: it owns the connections and a
//! small thread of its own for everything no request waits for (its module
//! doc says why). [`RemoteLimit`] is the per-limit half: which script, its
//! arguments, the local deny cache, and how a reply reads as a
//! [`KeyStatus`](super::limit::KeyStatus). [`SharedLimit`] is what the
//! admission engine sees: the remote half and its local stand-in behind the
//! one [`Limit`](super::limit::Limit) interface.
//!
//! # Layout
//! This file only declares the parts and re-exports what the rest of the
//! gateway uses; no part names anything through it. From the bottom up, each
//! part imports only parts below it:
//!
//! - `spec` (the `redis:` section), `call` (one script call, failures,
//!   metrics), `circuit`, [`keys`], [`scripts`]: plain vocabulary.
//! - `conn`: connections to a node or a cluster behind one type.
//! - `held`: the table of leases this gateway holds, and their calls.
//! - `link`: connections, circuit and scripts together; runs one call.
//! - `members`: the heartbeat that tells how many gateways share the store.
//! - `task`: the store's thread, which asks of its owner only a link, a
//!   table of leases and the membership, so the store can own it without a
//!   circle.
//! - `store`: [`RedisStore`], holding all of the above inline.
//! - `lease`: the [`Lease`] guard, which keeps its store to release through.
//! - `limit` ([`RemoteLimit`]); `stand_in`, the local limit that decides in
//!   the store's place, sized for the gateways sharing it; then `shared`
//!   ([`SharedLimit`]), the two together.

mod call;
mod circuit;
mod conn;
mod held;
pub mod keys;
mod lease;
mod limit;
mod link;
mod members;
#[cfg(test)]
mod redis_tests;
pub mod scripts;
mod shared;
mod spec;
mod stand_in;
mod store;
mod task;

pub use call::{Call, StoreFailure, StoreMetrics, Which};
pub use circuit::Circuit;
pub use lease::Lease;
pub use limit::{Reconcile, RemoteLimit, RemoteOutcome, Undo};
pub use shared::{SharedLimit, SharedPermit, SharedUndo};
pub use spec::{
    redact, RedisNodes, RedisSpec, DEFAULT_CONNECTIONS, DEFAULT_DECISION_TIMEOUT, DEFAULT_PREFIX,
};
pub use store::RedisStore;
