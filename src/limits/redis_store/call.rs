//! The vocabulary every part of the store speaks: which script, one call of
//! it, its reply or why the store gave none, and the counters it reports.
//!
//! Plain data with no behaviour, so that the connections, the store's thread,
//! the leases and the limits can all name it without naming one another.

use std::future::Future;
use std::pin::Pin;

use prometheus::{Histogram, IntCounter};
use redis::{RedisResult, Value};

/// Counters the store reports to `/metrics`.
#[derive(Clone)]
pub struct StoreMetrics {
    pub timeouts: IntCounter,
    pub errors: IntCounter,
    /// Seconds from sending a decision to its reply.
    pub duration: Histogram,
    /// The circuit opened (an episode began).
    pub opened: IntCounter,
    /// The circuit closed (an episode ended, or the first connection).
    pub closed: IntCounter,
}

/// Why the store gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFailure {
    /// The circuit is open or no connection exists yet: not asked.
    Unavailable,
    Timeout,
    Error(String),
}

/// The reply to a decision that missed `decision_timeout`, still on its way:
/// Redis makes the decision when the call gets there, read or not.
pub struct Late(pub Pin<Box<dyn Future<Output = RedisResult<Value>> + Send>>);

/// What a decision sent to the store came to.
pub struct Reply {
    pub result: Result<Value, StoreFailure>,
    /// The connection it went on (a follow-up call goes on the same one).
    pub conn: usize,
    /// Set when it timed out.
    pub late: Option<Late>,
}

#[derive(Clone, Copy, Debug)]
pub enum Which {
    TokenBucket,
    SlidingWindow,
    Concurrency,
}

/// One script call, owned, for the background task.
pub struct Call {
    pub which: Which,
    pub key: String,
    pub args: Vec<String>,
    /// The connection a related call used, to keep the two in order.
    pub conn: Option<usize>,
}
