//! What the gateway allows one client connection, enforced below Pingora's
//! HTTP layer, on the transport stream:
//! - `max_connections` and `max_connections_per_ip`: a connection takes its
//!   place at accept, before any byte is read or TLS work done, and one
//!   past either cap is closed then and there, so a flood costs an accept
//!   and a close instead of file descriptors and memory until the process
//!   runs out ([`places`], [`counts`]);
//! - `tls_handshake_timeout`: a TLS connection's handshake is bounded from
//!   accept, and its place is tied to its socket ([`handshake`]);
//! - `request_header_timeout` and `keepalive_timeout` on HTTP/1
//!   connections ([`deadline`], [`stream`]): Pingora's own read timeout
//!   restarts at every read (pingora#447);
//! - HTTP/2 connections get the SETTINGS/PING flood guard instead
//!   (`crate::transport::h2_guard`); the h2 crate bounds their streams and headers.
//!
//! The proxy tells a connection's stream when a request head has been read
//! and when its response is done ([`request_started`], [`request_done`]),
//! which is what no byte-level view could know (where a body ends).

mod arrivals;
pub mod counts;
mod deadline;
mod delegate;
mod handshake;
pub mod nofile;
mod places;
mod stream;

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::Session;

use crate::transport::h2_guard::{GuardedStream, PREFACE};

pub use counts::{ConnCounts, Refusal};
pub use handshake::{HandshakeGuard, Handshakes};
pub use places::{AcceptFilter, ConnMetrics, Places, Settings};
pub use stream::{ClientStream, TimeoutCounters};

/// A server application whose client connections are admitted, bounded in
/// time, and guarded by protocol.
pub struct ClientGuard<A> {
    pub inner: Arc<A>,
    pub places: Arc<Places>,
    /// The TLS listeners' handshakes, which hold their own places.
    pub handshakes: Arc<Handshakes>,
    /// Whether plaintext connections may be HTTP/2 (an h2c listener).
    pub h2c: bool,
}

/// Whether `stream` carries HTTP/2: ALPN said so, or on an h2c listener
/// the client's first bytes are the preface (peeked, as Pingora does).
async fn is_h2(stream: &mut Stream, h2c: bool) -> bool {
    if stream.get_ssl_digest().is_some() {
        return stream.selected_alpn_proto() == Some(ALPN::H2);
    }
    if !h2c {
        return false;
    }
    let mut buf = [0u8; PREFACE.len()];
    matches!(stream.try_peek(&mut buf).await, Ok(true)) && buf == PREFACE
}

#[async_trait]
impl<A> ServerApp for ClientGuard<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = (self.places.settings)();
        // A TLS connection's place hangs on its socket since its handshake
        // began; a plain one's was parked at accept and is held here until
        // the connection ends, however it ends.
        let tls = stream.get_ssl_digest().is_some() && self.handshakes.done(stream.id());
        let _place = if tls {
            None
        } else {
            let peer = stream
                .get_socket_digest()
                .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
            Some(self.places.claim(peer, &limits)?)
        };
        // On an h2c listener the peek waits for the client's first bytes:
        // that wait is part of the first request head's time.
        let h2 = tokio::time::timeout(limits.request_header_timeout, is_h2(&mut stream, self.h2c))
            .await
            .ok()?;
        let stream: Stream = if h2 {
            Box::new(GuardedStream::new(stream))
        } else {
            Box::new(ClientStream::new(
                stream,
                &limits,
                self.places.metrics.timeouts.clone(),
            ))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

fn client_stream(session: &Session) -> Option<&ClientStream> {
    session
        .as_downstream()
        .stream()?
        .as_any()
        .downcast_ref::<ClientStream>()
}

/// The proxy has read a whole request head on this session's connection.
pub fn request_started(session: &Session) {
    if let Some(s) = client_stream(session) {
        s.request_started();
    }
}

/// The proxy has finished this session's response.
pub fn request_done(session: &Session) {
    if let Some(s) = client_stream(session) {
        s.request_done();
    }
}
