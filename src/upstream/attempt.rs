//! One request attempt at a backend, as a state machine: picked → (connect
//! failed | sent → answered | timed out | reset | client gone) → settled.
//!
//! Why a state machine instead of counting in each Pingora callback: Pingora
//! reports one failed attempt through several callbacks (`error_while_proxy`,
//! then `fail_to_proxy`, then `logging`), and counting in more than one of
//! them counted some failures twice and missed others (a read timeout was
//! never shown to passive health, so a backend that accepts and hangs was
//! never ejected). Here every transition out of `InFlight` yields the
//! attempt's one [`Settled`] record, and every later event is a no-op, so an
//! attempt is counted exactly once whatever order the callbacks come in.
//!
//! What counts against the backend follows Envoy's "gateway failures": a
//! failed connect, a 5xx, a read or write timeout and a connection reset
//! after connect. A client that hangs up, a stale pooled connection the
//! backend had already closed, and the gateway's own errors say nothing about
//! the backend and are counted, but not held against it. A timeout or reset
//! still gives `load_aware` a latency sample (the time waited), so a backend
//! that hangs looks as slow as it is.
//!
//! A timeout the client chose is not the backend's either. A gRPC call's
//! `grpc-timeout` shortens the attempt's read timeout; when that shortened
//! timer is the one that fires, the backend was given the client's time,
//! not the upstream's, and a backend that answers in 300 ms is no worse for
//! missing a 20 ms deadline. Counting it would let any client eject healthy
//! backends, lower adaptive limits and steer `load_aware` with a header. So
//! such an ending is [`Ending::ClientDeadline`]: counted, but like a client
//! that hangs up it tells passive health, adaptive limits and `load_aware`
//! nothing. A backend that really hangs is still caught by requests without
//! a deadline, or with one longer than `read_timeout`.
//!
//! Whose an ending is, is decided once, in [`Settled::backend_failed`]; the
//! latency and adaptive samples are derived from it, so no consumer can
//! learn from an ending that is not the backend's.
//!
//! One attempt is only part of a request's story: what the request holds
//! across its attempts (tried backends, in-flight count, retries) is
//! `attempts`'s.

use pingora_error::{Error, ErrorSource, ErrorType};

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    ConnectFailed,
    /// A response header came back.
    Answered {
        status: u16,
    },
    /// A read or write on the backend's connection timed out.
    TimedOut,
    /// The backend closed or reset the connection, or sent garbage.
    Reset,
    /// A reused pooled connection turned out closed: retried on the same
    /// backend, which is not to blame.
    Stale,
    /// The client went away before the backend answered.
    ClientGone,
    /// The attempt's read timeout was the client's own deadline
    /// (`grpc-timeout`, shorter than the upstream's `read_timeout`), and it
    /// passed before the backend answered.
    ClientDeadline,
    /// The request ended for a reason of the gateway's own.
    Abandoned,
}

/// One settled attempt: which backend, how it ended, how long it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    pub backend: usize,
    pub ending: Ending,
    /// From the pick to the ending (limiter clock nanos).
    pub waited_nanos: u64,
}

impl Settled {
    /// The `outcome` label of `sluice_upstream_requests_total`.
    pub fn label(&self) -> &'static str {
        match self.ending {
            Ending::Answered { .. } => "ok",
            Ending::ConnectFailed => "connect_failure",
            Ending::TimedOut => "timeout",
            Ending::Reset => "reset",
            Ending::ClientDeadline => "client_deadline",
            Ending::Stale | Ending::ClientGone | Ending::Abandoned => "error",
        }
    }

    /// Whose the ending is, the one judgement every consumer follows: the
    /// backend's failure (`Some(true)`), its success (`Some(false)`), or
    /// not the backend's at all (`None`: the client hung up or ran out of
    /// its own time, a pooled connection was stale, the gateway gave up for
    /// a reason of its own). Passive health reads it directly.
    pub fn backend_failed(&self) -> Option<bool> {
        match self.ending {
            Ending::Answered { status } => Some(status >= 500),
            Ending::ConnectFailed | Ending::TimedOut | Ending::Reset => Some(true),
            Ending::Stale | Ending::ClientGone | Ending::ClientDeadline | Ending::Abandoned => None,
        }
    }

    /// A response-time sample for `load_aware`: the time to the header, or
    /// the time waited before a timeout or reset. Only an ending that is the
    /// backend's, and only once it had the request (a failed connect waited
    /// for no answer).
    pub fn latency_sample(&self) -> Option<u64> {
        let reached = self.ending != Ending::ConnectFailed;
        (self.backend_failed().is_some() && reached).then_some(self.waited_nanos)
    }

    /// What adaptive limits learn: (round trip, ok), for an ending that is
    /// the backend's. A client that hung up or ran out of its deadline, or a
    /// stale connection, tells them nothing about congestion.
    pub fn adaptive_sample(&self) -> Option<(u64, bool)> {
        self.backend_failed()
            .map(|failed| (self.waited_nanos, !failed))
    }
}

/// A failure Pingora reported while proxying, sorted by who is to blame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    TimedOut,
    Reset,
    Stale,
    ClientGone,
    Internal,
}

impl Failure {
    /// Sorts a Pingora error from `error_while_proxy`; `will_retry` is
    /// Pingora's verdict that the connection was a stale reused one. A retry
    /// comes first: whoever is to blame, the request goes back to the same
    /// backend, and none of these endings is held against it.
    pub fn classify(e: &Error, will_retry: bool) -> Failure {
        if will_retry {
            return Failure::Stale;
        }
        match e.esource() {
            ErrorSource::Downstream => return Failure::ClientGone,
            ErrorSource::Internal | ErrorSource::Unset => return Failure::Internal,
            ErrorSource::Upstream => {}
        }
        match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout => {
                Failure::TimedOut
            }
            _ => Failure::Reset,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Idle,
    /// Picked; connecting or waiting for the answer. `client_deadline`:
    /// when the client's own deadline passes, if it, not the upstream's
    /// `read_timeout`, bounds the wait.
    InFlight {
        backend: usize,
        since: u64,
        client_deadline: Option<u64>,
    },
}

/// The current attempt of one request. Each method is one event; the ones
/// that end the attempt return its [`Settled`] record, once.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttemptTracker {
    state: State,
}

impl AttemptTracker {
    /// A backend was picked. An attempt still open (a callback Pingora
    /// skipped) is settled as abandoned rather than lost.
    pub fn picked(&mut self, backend: usize, now: u64) -> Option<Settled> {
        let previous = self.settle(Ending::Abandoned, now);
        self.state = State::InFlight {
            backend,
            since: now,
            client_deadline: None,
        };
        previous
    }

    /// The open attempt's read timeout was shortened to the client's
    /// deadline, which passes at `at`: a timeout from then on is the
    /// client's, not the backend's.
    pub fn bounded_by_client(&mut self, at: u64) {
        if let State::InFlight {
            client_deadline, ..
        } = &mut self.state
        {
            *client_deadline = Some(at);
        }
    }

    pub fn connect_failed(&mut self, now: u64) -> Option<Settled> {
        self.settle(Ending::ConnectFailed, now)
    }

    pub fn answered(&mut self, status: u16, now: u64) -> Option<Settled> {
        self.settle(Ending::Answered { status }, now)
    }

    pub fn failed(&mut self, failure: Failure, now: u64) -> Option<Settled> {
        let ending = match failure {
            Failure::TimedOut => Ending::TimedOut,
            Failure::Reset => Ending::Reset,
            Failure::Stale => Ending::Stale,
            Failure::ClientGone => Ending::ClientGone,
            Failure::Internal => Ending::Abandoned,
        };
        self.settle(ending, now)
    }

    /// The request is over: an attempt still open ends here.
    pub fn finish(&mut self, error: Option<&Error>, now: u64) -> Option<Settled> {
        let ending = match error.map(|e| Failure::classify(e, false)) {
            Some(f @ (Failure::TimedOut | Failure::Reset | Failure::ClientGone)) => {
                return self.failed(f, now)
            }
            _ => Ending::Abandoned,
        };
        self.settle(ending, now)
    }

    /// When the open attempt started, if one is open.
    pub fn open_since(&self) -> Option<u64> {
        match self.state {
            State::InFlight { since, .. } => Some(since),
            State::Idle => None,
        }
    }

    fn settle(&mut self, ending: Ending, now: u64) -> Option<Settled> {
        match std::mem::take(&mut self.state) {
            State::Idle => None,
            State::InFlight {
                backend,
                since,
                client_deadline,
            } => {
                let ending = match (ending, client_deadline) {
                    (Ending::TimedOut, Some(at)) if now >= at => Ending::ClientDeadline,
                    (ending, _) => ending,
                };
                Some(Settled {
                    backend,
                    ending,
                    waited_nanos: now.saturating_sub(since),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
