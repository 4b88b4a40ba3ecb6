//! Disconnects HTTP/2 clients that flood SETTINGS or PING frames.
//!
//! Each such frame makes the server do work and write an answer (a SETTINGS
//! ACK, a PING ACK) while costing the client nine bytes; the `h2` crate
//! answers every one of them as long as the client reads. Its own limits
//! cover the other floods: rapid reset (CVE-2023-44487) through
//! `max_pending_accept_reset_streams`, CONTINUATION floods, oversized header
//! lists; the stream limit is `h2_max_streams`. So the gateway counts a
//! connection's SETTINGS and PING frames as the bytes come in, and past a
//! budget (a burst of [`BURST`], then [`PER_SEC`] a second, far above what
//! keep-alive pings and window tuning use) it ends the connection by failing
//! the read, which closes it.
//!
//! The count happens below the HTTP/2 parser, on the transport stream, so it
//! needs nothing from Pingora but the stream. Only HTTP/2 connections are
//! wrapped (`crate::transport::conn` tells them apart: ALPN h2 on TLS, the
//! connection preface on an h2c listener).

mod frames;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use pingora_core::protocols::Stream;
use tokio::io::{AsyncRead, ReadBuf};

pub use frames::{ControlBudget, ControlFrameCounter, PREFACE};

/// SETTINGS and PING frames a connection may send at once.
pub const BURST: u32 = 1000;
/// ... and per second after that.
pub const PER_SEC: u32 = 100;

/// A transport stream whose inbound HTTP/2 control frames are counted.
pub struct GuardedStream {
    inner: Stream,
    counter: ControlFrameCounter,
    budget: ControlBudget,
    flooded: bool,
}

impl GuardedStream {
    pub fn new(inner: Stream) -> Self {
        GuardedStream {
            inner,
            counter: ControlFrameCounter::default(),
            budget: ControlBudget::new(BURST, PER_SEC, Instant::now()),
            flooded: false,
        }
    }
}

impl fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .finish()
    }
}

fn flood_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "HTTP/2 SETTINGS/PING flood",
    )
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.flooded {
            return Poll::Ready(Err(flood_error()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let control = this.counter.feed(&buf.filled()[before..]);
        if control > 0 && !this.budget.spend(control, Instant::now()) {
            this.flooded = true;
            log::warn!(
                "closing an HTTP/2 connection from {}: SETTINGS/PING flood",
                this.inner
                    .get_socket_digest()
                    .and_then(|d| d.peer_addr().cloned())
                    .map_or_else(|| "?".to_string(), |a| a.to_string())
            );
            return Poll::Ready(Err(flood_error()));
        }
        Poll::Ready(Ok(()))
    }
}

crate::delegate_transport!(GuardedStream);
