//! An HTTP/1 client connection's transport, with the deadlines of
//! [`Deadlines`] enforced on its reads: past one, it answers 408 itself
//! (the head is incomplete, so Pingora has no request to answer) or ends
//! the connection like a client that went away.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use pingora_core::protocols::Stream;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::deadline::{Deadlines, Expiry};
use crate::config::ClientLimits;
use crate::errors::{json_body, GatewayError};
use crate::request::request_id::RequestId;

const NO_SIGNAL: u8 = 0;
const STARTED: u8 = 1;
const DONE: u8 = 2;

/// The counters a connection's deadlines count in.
#[derive(Clone)]
pub struct TimeoutCounters {
    pub request_header: IntCounter,
    pub idle: IntCounter,
    /// Counted by `super::handshake`.
    pub tls_handshake: IntCounter,
}

enum State {
    Open,
    /// Writing the 408, this far.
    Answering(Vec<u8>, usize),
    Closed,
}

pub struct ClientStream {
    pub(super) inner: Stream,
    deadlines: Deadlines,
    /// What the proxy said happened since the last read (it holds the
    /// stream only by shared reference).
    signal: AtomicU8,
    timer: Pin<Box<Sleep>>,
    /// When `timer` fires: never later than the deadline it stands for.
    timer_at: Instant,
    state: State,
    counters: TimeoutCounters,
}

impl ClientStream {
    pub fn new(inner: Stream, limits: &ClientLimits, counters: TimeoutCounters) -> Self {
        let now = Instant::now();
        let deadlines =
            Deadlines::new(limits.request_header_timeout, limits.keepalive_timeout, now);
        let first = now + limits.request_header_timeout;
        ClientStream {
            inner,
            deadlines,
            signal: AtomicU8::new(NO_SIGNAL),
            timer: Box::pin(tokio::time::sleep_until(first.into())),
            timer_at: first,
            state: State::Open,
            counters,
        }
    }

    /// The proxy has read a whole request head.
    pub fn request_started(&self) {
        self.signal.store(STARTED, Ordering::Relaxed);
    }

    /// The proxy has finished the request's response.
    pub fn request_done(&self) {
        self.signal.store(DONE, Ordering::Relaxed);
    }

    fn apply_signal(&mut self) {
        match self.signal.swap(NO_SIGNAL, Ordering::Relaxed) {
            STARTED => self.deadlines.request_started(),
            DONE => self.deadlines.request_done(Instant::now()),
            _ => {}
        }
    }

    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let State::Answering(bytes, pos) = &mut self.state else {
                return Poll::Ready(Err(timed_out()));
            };
            if *pos == bytes.len() {
                break;
            }
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*pos..])) {
                Ok(0) | Err(_) => break,
                Ok(n) => *pos += n,
            }
        }
        let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
        self.state = State::Closed;
        Poll::Ready(Err(timed_out()))
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "request head not complete within request_header_timeout",
    )
}

/// The 408, written straight to the socket: no request was parsed, so
/// nothing but the status, the JSON body and the close is known.
fn request_timeout_response() -> Vec<u8> {
    let err = GatewayError::RequestTimeout;
    let id = RequestId::keep_or_generate(None);
    let body = json_body(err.message(), id.as_str());
    let mut out = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nx-request-id: {}\r\ncache-control: no-store\r\n\
         connection: close\r\n\r\n",
        body.len(),
        id.as_str()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

impl fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStream")
            .field("inner", &self.inner)
            .field("deadlines", &self.deadlines)
            .finish()
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.state {
            State::Open => {}
            State::Answering(..) => return this.poll_answer(cx),
            // End of stream: the connection is over.
            State::Closed => return Poll::Ready(Ok(())),
        }
        this.apply_signal();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.deadlines.bytes(Instant::now);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some((due, expiry)) = this.deadlines.due() else {
                    return Poll::Pending;
                };
                // Deadlines only move later from one request to the next,
                // so the timer is left to fire early and re-armed then, once,
                // instead of being reset (a timer-wheel update) per request.
                if due < this.timer_at {
                    this.timer.as_mut().reset(due.into());
                    this.timer_at = due;
                }
                loop {
                    if this.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if this.timer_at >= due {
                        break;
                    }
                    this.timer.as_mut().reset(due.into());
                    this.timer_at = due;
                }
                match expiry {
                    Expiry::Close => {
                        this.counters.idle.inc();
                        this.state = State::Closed;
                        Poll::Ready(Ok(()))
                    }
                    Expiry::RequestTimeout => {
                        this.counters.request_header.inc();
                        this.state = State::Answering(request_timeout_response(), 0);
                        this.poll_answer(cx)
                    }
                }
            }
        }
    }
}

crate::delegate_transport!(ClientStream);
