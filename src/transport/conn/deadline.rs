//! When an HTTP/1 client connection must have sent something: the deadline
//! a request head must arrive by, and how long an idle keep-alive
//! connection may wait for its next request. A pure state machine over the
//! connection's events, so the rules are testable without sockets.
//!
//! Pingora restarts its read timeout at every read (pingora#447), so a
//! client sending a byte every few seconds holds a connection forever.
//! These deadlines are absolute instead, like nginx's
//! `client_header_timeout`: the first request's head must be complete
//! `request_header_timeout` after the connection opened; a later one's,
//! after its first byte arrived, the wait for that byte being bounded by
//! `keepalive_timeout`.

use std::time::{Duration, Instant};

/// What a connection is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The rest of a request head, due by the deadline.
    Head { due: Instant, started: bool },
    /// A request is being served: its body, its response, an upgraded
    /// connection. The proxy's own timeouts apply, not these.
    Serving,
    /// The next request's first byte, due by the deadline.
    Idle { due: Instant },
}

/// What to do when the deadline passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Part of a head arrived, not all of it: answer 408 and close.
    RequestTimeout,
    /// Nothing of a request arrived: close quietly, as for any idle
    /// connection (a 408 there would race a client reusing it).
    Close,
}

#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    header_timeout: Duration,
    keepalive_timeout: Duration,
    phase: Phase,
}

impl Deadlines {
    /// A connection opened at `now`: its first request head is due.
    pub fn new(header_timeout: Duration, keepalive_timeout: Duration, now: Instant) -> Self {
        Deadlines {
            header_timeout,
            keepalive_timeout,
            phase: Phase::Head {
                due: now + header_timeout,
                started: false,
            },
        }
    }

    /// Bytes arrived (at `now()`, read only when it matters).
    pub fn bytes(&mut self, now: impl FnOnce() -> Instant) {
        match &mut self.phase {
            Phase::Head { started, .. } => *started = true,
            Phase::Idle { .. } => {
                self.phase = Phase::Head {
                    due: now() + self.header_timeout,
                    started: true,
                }
            }
            Phase::Serving => {}
        }
    }

    /// A whole request head has been read: the request is being served.
    pub fn request_started(&mut self) {
        self.phase = Phase::Serving;
    }

    /// The request's response is done at `now`: the connection idles.
    pub fn request_done(&mut self, now: Instant) {
        self.phase = Phase::Idle {
            due: now + self.keepalive_timeout,
        };
    }

    /// When the connection must have sent something by, and what happens
    /// then; `None` while a request is served.
    pub fn due(&self) -> Option<(Instant, Expiry)> {
        match self.phase {
            Phase::Head { due, started: true } => Some((due, Expiry::RequestTimeout)),
            Phase::Head {
                due,
                started: false,
            }
            | Phase::Idle { due } => Some((due, Expiry::Close)),
            Phase::Serving => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    #[test]
    fn the_first_head_is_due_from_the_connection_not_from_each_read() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(HEAD, IDLE, t0);
        assert_eq!(d.due(), Some((t0 + HEAD, Expiry::Close)));
        for s in 1..9 {
            d.bytes(|| t0 + Duration::from_secs(s));
        }
        // Trickling bytes never move the deadline.
        assert_eq!(d.due(), Some((t0 + HEAD, Expiry::RequestTimeout)));
    }

    #[test]
    fn serving_has_no_deadline_and_idling_waits_keepalive_timeout() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(HEAD, IDLE, t0);
        d.bytes(|| t0);
        d.request_started();
        assert_eq!(d.due(), None);
        d.bytes(|| t0 + Duration::from_secs(100)); // body bytes
        assert_eq!(d.due(), None);
        let done = t0 + Duration::from_secs(120);
        d.request_done(done);
        assert_eq!(d.due(), Some((done + IDLE, Expiry::Close)));
    }

    #[test]
    fn a_later_head_is_due_from_its_first_byte() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(HEAD, IDLE, t0);
        d.request_started();
        d.request_done(t0);
        let first = t0 + Duration::from_secs(30);
        d.bytes(|| first);
        assert_eq!(d.due(), Some((first + HEAD, Expiry::RequestTimeout)));
        d.bytes(|| first + Duration::from_secs(5));
        assert_eq!(d.due(), Some((first + HEAD, Expiry::RequestTimeout)));
    }
}
