//! What the gateway allows one client connection, enforced below Pingora's
//! HTTP layer, on the transport stream:
//! - `max_connections` and `max_connections_per_ip`: a connection past
//!   either is closed the moment it arrives, before any byte is read, so a
//!   flood costs an accept and a close instead of file descriptors and
//!   memory until the process runs out ([`counts`]);
//! - `request_header_timeout` and `keepalive_timeout` on HTTP/1
//!   connections ([`deadline`], [`stream`]): Pingora's own read timeout
//!   restarts at every read (pingora#447);
//! - HTTP/2 connections get the SETTINGS/PING flood guard instead
//!   (`crate::transport::h2_guard`); the h2 crate bounds their streams and headers.
//!
//! The proxy tells a connection's stream when a request head has been read
//! and when its response is done ([`request_started`], [`request_done`]),
//! which is what no byte-level view could know (where a body ends).

pub mod counts;
mod deadline;
mod delegate;
pub mod nofile;
mod stream;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::ConnectionFilter;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::Session;

use crate::config::ClientLimits;
use crate::transport::h2_guard::{GuardedStream, PREFACE};

pub use counts::{ConnCounts, Refusal};
pub use stream::{ClientStream, TimeoutCounters};

/// The live `clients:` settings: read per connection, so a reload applies to
/// the next connection accepted. A function rather than the live generation,
/// so that the transport knows nothing of routes, pools or limits.
pub type Settings = Arc<dyn Fn() -> ClientLimits + Send + Sync>;

/// The counters a client connection is counted in.
#[derive(Clone)]
pub struct ConnMetrics {
    /// `sluice_client_connections_refused_total`, by reason.
    pub refused: prometheus::IntCounterVec,
    pub timeouts: TimeoutCounters,
}

impl ConnMetrics {
    fn refused(&self, why: Refusal) {
        self.refused.with_label_values(&[why.label()]).inc();
    }
}

/// A server application whose client connections are admitted, bounded in
/// time, and guarded by protocol.
pub struct ClientGuard<A> {
    pub inner: Arc<A>,
    pub settings: Settings,
    pub counts: Arc<ConnCounts>,
    pub metrics: ConnMetrics,
    /// Whether plaintext connections may be HTTP/2 (an h2c listener).
    pub h2c: bool,
    /// `max_connections` when the config does not say (see [`nofile`]).
    pub default_max_connections: u32,
}

/// Refusals are logged at most once a second: under a flood, one line per
/// refused connection would be a second flood.
static LAST_REFUSAL_LOG: AtomicU64 = AtomicU64::new(0);

fn log_refusal(why: Refusal, ip: Option<IpAddr>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LAST_REFUSAL_LOG.swap(now, Ordering::Relaxed) != now {
        log::warn!(
            "refusing connections past {} (from {}, and maybe others this second)",
            why.label(),
            ip.map_or_else(|| "-".to_string(), |ip| ip.to_string())
        );
    }
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
        let limits = (self.settings)();
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let max = limits
            .max_connections
            .unwrap_or(self.default_max_connections);
        // Held until the connection ends, however it ends.
        let _permit = match self.counts.admit(ip, max, limits.max_connections_per_ip) {
            Ok(permit) => permit,
            Err(why) => {
                self.metrics.refused(why);
                log_refusal(why, ip);
                return None;
            }
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
                self.metrics.timeouts.clone(),
            ))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// The caps checked at accept, before a TLS handshake is spent on a
/// connection that would be refused after it.
pub struct AcceptFilter {
    pub settings: Settings,
    pub counts: Arc<ConnCounts>,
    pub metrics: ConnMetrics,
    pub default_max_connections: u32,
}

impl std::fmt::Debug for AcceptFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptFilter").finish_non_exhaustive()
    }
}

#[async_trait]
impl ConnectionFilter for AcceptFilter {
    async fn should_accept(&self, addr: Option<&SocketAddr>) -> bool {
        // A Unix socket has no address: its connections count in the total.
        let Some(addr) = addr else {
            return true;
        };
        let limits = (self.settings)();
        let max = limits
            .max_connections
            .unwrap_or(self.default_max_connections);
        match self
            .counts
            .would_refuse(addr.ip(), max, limits.max_connections_per_ip)
        {
            None => true,
            Some(why) => {
                self.metrics.refused(why);
                log_refusal(why, Some(addr.ip()));
                false
            }
        }
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
