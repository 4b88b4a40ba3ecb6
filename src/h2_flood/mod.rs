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
//! wrapped (ALPN h2 on TLS, the connection preface on an h2c listener), so
//! HTTP/1.1 keeps its plain stream.

mod frames;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::SslDigest;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::Stream;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// A server application whose HTTP/2 connections are guarded.
pub struct FloodGuard<A> {
    pub inner: Arc<A>,
    /// Whether plaintext connections may be HTTP/2 (an h2c listener).
    pub h2c: bool,
}

impl<A> FloodGuard<A> {
    /// Whether `stream` carries HTTP/2: ALPN said so, or on an h2c listener
    /// the client's first bytes are the preface (peeked, as Pingora does).
    async fn is_h2(&self, stream: &mut Stream) -> bool {
        if stream.get_ssl_digest().is_some() {
            return stream.selected_alpn_proto() == Some(ALPN::H2);
        }
        if !self.h2c {
            return false;
        }
        let mut buf = [0u8; PREFACE.len()];
        matches!(stream.try_peek(&mut buf).await, Ok(true)) && buf == PREFACE
    }
}

#[async_trait]
impl<A> ServerApp for FloodGuard<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.is_h2(&mut stream).await {
            stream = Box::new(GuardedStream::new(stream));
        }
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
