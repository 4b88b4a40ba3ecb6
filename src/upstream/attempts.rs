//! All of one request's attempts at its pool, as one state machine: the
//! backends it was sent to, how many attempts it made, the in-flight count it
//! holds on the current backend, and each attempt's settlement.
//!
//! Why one state machine per request, beside the one per attempt
//! ([`AttemptTracker`]): Pingora drives a request's attempts through five
//! callbacks (`upstream_peer`, `fail_to_connect`, `error_while_proxy`,
//! `response_filter`, `logging`), and a task that panics skips the last of
//! them. When each callback changed its own fields of the request context,
//! each had to remember what the others did: a connect failure released the
//! in-flight count, settled the attempt and decided the retry; a stale pooled
//! connection also had to take its backend off the tried list, or the retry
//! could not go back to it; the context's `Drop` released the count again in
//! case `logging` never ran. One forgotten step leaves a backend counted busy
//! forever (`least_conn` and `load_aware` then steer around it) or lets a
//! retry past the budget. Here each callback only reports what happened, and
//! the invariants are kept in one place:
//! - the in-flight count is taken at the pick and given back exactly once:
//!   when the attempt's connect fails, when a stale connection is retried,
//!   at the next pick, when the request finishes, or when the request is
//!   dropped without finishing;
//! - each attempt settles once, whatever order the events come in (the
//!   argument is [`AttemptTracker`]'s);
//! - a connect failure is retried on a backend not tried yet, while the
//!   request has tried no more than `retries` + 1 backends and the pool's
//!   retry budget has room. A stale pooled connection is Pingora's to retry:
//!   its backend leaves the tried list (it may be picked again) and the
//!   retry costs neither `retries` nor the budget.
//!
//! The settlements are returned, not recorded: the pool and the request's
//! adaptive limits both learn from each one, and the limits belong to the
//! request, not to the pool. So every event that can end an attempt returns
//! its [`Settled`] record for the caller to record.
//!
//! The first attempt starts when the request did, so it costs no clock read
//! (see [`Attempts::picking`]); the tried list is inline, so none of this
//! allocates.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pingora_error::Error;
use smallvec::SmallVec;

use super::attempt::{AttemptTracker, Failure, Settled};
use super::pool::Pool;

/// What a connect failure leaves: the failed attempt, and whether Pingora
/// should try another backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) struct ConnectFailure {
    pub(crate) settled: Option<Settled>,
    pub(crate) retry: bool,
}

/// One request's attempts at one pool. Each method is one event; the ones
/// that can end an attempt return its [`Settled`] record, once.
pub(crate) struct Attempts {
    pool: Arc<Pool>,
    /// When the request began (limiter clock nanos): the first pick's time.
    started: u64,
    /// Backends this request has been sent to, in order.
    tried: SmallVec<[usize; 4]>,
    count: usize,
    /// The backend whose in-flight count this request holds.
    holding: Option<usize>,
    current: AttemptTracker,
}

impl Attempts {
    /// The attempts of a request that began at `started`, at the pool of its
    /// route, which stays the same for the request's whole life.
    pub(crate) fn new(pool: Arc<Pool>, started: u64) -> Attempts {
        Attempts {
            pool,
            started,
            tried: SmallVec::new(),
            count: 0,
            holding: None,
            current: AttemptTracker::default(),
        }
    }

    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// A pick is about to be made: returns its time. The first attempt starts
    /// when the request did (no clock read) and counts the request toward the
    /// retry budget; a retry reads `clock`. Any in-flight count still held
    /// goes back first, so the pick sees the backends' true load.
    pub(crate) fn picking(&mut self, clock: impl FnOnce() -> u64) -> u64 {
        self.release();
        if self.count == 0 {
            self.pool.budget.record_request(self.started);
            self.started
        } else {
            clock()
        }
    }

    /// The backends a pick must avoid.
    pub(crate) fn tried(&self) -> &[usize] {
        &self.tried
    }

    /// The pool picked `backend`: this request now holds its in-flight
    /// count. An attempt still open (a callback Pingora skipped) is settled
    /// as abandoned rather than lost.
    #[must_use]
    pub(crate) fn picked(&mut self, backend: usize, now: u64) -> Option<Settled> {
        self.release();
        if let Some(b) = self.pool.backends.get(backend) {
            b.stats.inflight.fetch_add(1, Ordering::Relaxed);
            self.holding = Some(backend);
        }
        self.tried.push(backend);
        self.count += 1;
        self.current.picked(backend, now)
    }

    /// The current attempt's read timeout is the client's deadline, which
    /// passes at `at`: a timeout from then on is not the backend's.
    pub(crate) fn bounded_by_client(&mut self, at: u64) {
        self.current.bounded_by_client(at);
    }

    /// The connection to the picked backend failed. Nothing was sent, so any
    /// method may go to another backend, within `retries` and the budget.
    pub(crate) fn connect_failed(&mut self, now: u64) -> ConnectFailure {
        self.release();
        let settled = self.current.connect_failed(now);
        let retry = !self.tried.is_empty()
            && self.tried.len() <= self.pool.spec.retries as usize
            && self.pool.budget.try_retry(now);
        if retry {
            self.pool.retries.inc();
        }
        ConnectFailure { settled, retry }
    }

    /// Proxying failed. [`Failure::Stale`] is a failure Pingora retries (a
    /// reused connection the backend had already closed, an HTTP/2 stream it
    /// refused): the backend is not to blame, so it leaves the tried list and
    /// may be picked again.
    #[must_use]
    pub(crate) fn failed(&mut self, failure: Failure, now: u64) -> Option<Settled> {
        let settled = self.current.failed(failure, now);
        if failure == Failure::Stale {
            self.pool.retries.inc();
            self.release();
            self.tried.pop();
        }
        settled
    }

    /// Whether an attempt is waiting for its answer: only then is there
    /// anything for [`Attempts::answered`] to settle (and a clock to read).
    pub(crate) fn is_open(&self) -> bool {
        self.current.open_since().is_some()
    }

    /// The backend's response header came. The in-flight count is kept: the
    /// backend is still sending the body.
    #[must_use]
    pub(crate) fn answered(&mut self, status: u16, now: u64) -> Option<Settled> {
        self.current.answered(status, now)
    }

    /// The request is over: an attempt still open ends here, and the
    /// in-flight count goes back.
    #[must_use]
    pub(crate) fn finish(&mut self, error: Option<&Error>, now: u64) -> Option<Settled> {
        let settled = self.current.finish(error, now);
        self.release();
        settled
    }

    /// How many attempts were made (a stale connection's retry included).
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The backend the request was last sent to.
    pub(crate) fn backend(&self) -> Option<SocketAddr> {
        let idx = *self.tried.last()?;
        self.pool.backends.get(idx).map(|b| b.addr)
    }

    fn release(&mut self) {
        if let Some(b) = self.holding.take().and_then(|i| self.pool.backends.get(i)) {
            b.stats.inflight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A request whose task ends early (a panic in a filter hook unwinds through
/// the connection's task, past `logging`) still gives back the backend's
/// in-flight count, or `least_conn` and `load_aware` would steer around that
/// backend forever. Usually [`Attempts::finish`] has given it back already.
impl Drop for Attempts {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests;
