//! The vocabulary every part of the store speaks: which script, one call of
//! it, why the store gave no answer, and the counters it reports.
//!
//! Plain data with no behaviour, so that the connections, the store's thread,
//! the leases and the limits can all name it without naming one another.

use prometheus::{Histogram, IntCounter};

/// Counters the store reports to `/metrics`.
#[derive(Clone)]
pub struct StoreMetrics {
    pub timeouts: IntCounter,
    pub errors: IntCounter,
    /// Seconds from sending a decision to its reply.
    pub duration: Histogram,
}

/// Why the store gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFailure {
    /// The circuit is open or no connection exists yet: not asked.
    Unavailable,
    Timeout,
    Error(String),
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
