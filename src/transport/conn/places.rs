//! A client connection's place in `max_connections` and
//! `max_connections_per_ip`, from accept to close.
//!
//! Pingora runs a listener's connection filter in its accept loop, then
//! spawns the connection's task, which does the TLS handshake (Pingora
//! waits up to 60 s for it) before the application sees the connection.
//! A place taken by the application is taken after the handshake: 1,500
//! connections that never sent a ClientHello held 1,500 descriptors
//! without a place and ran a process with 1,024 out of them, whatever the
//! caps said.
//!
//! So the place is taken in the filter ([`AcceptFilter`]), in the same
//! step as the check (checking there and taking the place later lets a
//! burst of connections all pass the check), and a connection past a cap
//! is closed by Pingora then and there, before its task exists. The place
//! waits in [`Arrivals`] for the connection's task to [`Places::claim`] it:
//! on a TLS listener the pre-handshake hook, which ties it to the socket
//! and bounds the handshake (`super::handshake`); on a plain one
//! `ClientGuard::process_new`, which holds it until the connection ends.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora_core::listeners::ConnectionFilter;

use super::arrivals::Arrivals;
use super::counts::{ConnCounts, Permit, Refusal};
use super::stream::TimeoutCounters;
use crate::config::ClientLimits;

/// The live client settings (`request_header_timeout` ... `tls_handshake_timeout`):
/// read per connection, so a reload applies to the next connection
/// accepted. A function rather than the live generation, so that the
/// transport knows nothing of routes, pools or limits.
pub type Settings = Arc<dyn Fn() -> ClientLimits + Send + Sync>;

/// The counters a client connection is counted in.
#[derive(Clone)]
pub struct ConnMetrics {
    /// `sluice_client_connections_refused_total`, by reason.
    pub refused: prometheus::IntCounterVec,
    pub timeouts: TimeoutCounters,
}

/// Where client connections take and give back their places.
pub struct Places {
    pub settings: Settings,
    pub counts: Arc<ConnCounts>,
    pub arrivals: Arrivals,
    pub metrics: ConnMetrics,
    /// `max_connections` when the config does not say (see `super::nofile`).
    pub default_max_connections: u32,
}

impl Places {
    pub fn new(
        settings: Settings,
        counts: Arc<ConnCounts>,
        metrics: ConnMetrics,
        default_max_connections: u32,
    ) -> Self {
        Places {
            settings,
            counts,
            arrivals: Arrivals::default(),
            metrics,
            default_max_connections,
        }
    }

    fn admit(&self, ip: Option<IpAddr>, limits: &ClientLimits) -> Option<Permit> {
        let max = limits
            .max_connections
            .unwrap_or(self.default_max_connections);
        match self.counts.admit(ip, max, limits.max_connections_per_ip) {
            Ok(permit) => Some(permit),
            Err(why) => {
                self.metrics.refused.with_label_values(&[why.label()]).inc();
                log_refusal(why, ip);
                None
            }
        }
    }

    /// The place of a connection from `peer` that has just been accepted:
    /// `false` if it is refused (counted and logged).
    pub fn at_accept(&self, peer: SocketAddr) -> bool {
        let limits = (self.settings)();
        match self.admit(Some(peer.ip()), &limits) {
            Some(permit) => {
                let keep = limits.tls_handshake_timeout;
                self.arrivals.park(peer, permit, Instant::now(), keep);
                true
            }
            None => false,
        }
    }

    /// The place a connection's task holds from now on, and since when the
    /// connection has one: the place taken at accept, or (a connection
    /// without an address, or whose place waited too long) a place taken
    /// now. `None`: refused, counted and logged.
    pub fn claim(
        &self,
        peer: Option<SocketAddr>,
        limits: &ClientLimits,
    ) -> Option<(Permit, Instant)> {
        if let Some(claimed) = peer.and_then(|p| self.arrivals.claim(p)) {
            return Some(claimed);
        }
        self.admit(peer.map(|p| p.ip()), limits)
            .map(|permit| (permit, Instant::now()))
    }
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

/// Takes a connection's place at accept, before any byte or TLS work.
pub struct AcceptFilter(pub Arc<Places>);

impl std::fmt::Debug for AcceptFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptFilter").finish_non_exhaustive()
    }
}

#[async_trait]
impl ConnectionFilter for AcceptFilter {
    async fn should_accept(&self, addr: Option<&SocketAddr>) -> bool {
        // A Unix socket has no address: its task takes its place.
        addr.is_none_or(|peer| self.0.at_accept(*peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn places(max: u32, per_ip: Option<u32>) -> Places {
        let limits = ClientLimits {
            request_header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            max_connections: Some(max),
            max_connections_per_ip: per_ip,
            tls_handshake_timeout: Duration::from_secs(10),
        };
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new("refused", "refused"),
            &["reason"],
        )
        .unwrap();
        let counter = || prometheus::IntCounter::new("t", "t").unwrap();
        Places::new(
            Arc::new(move || limits),
            Arc::new(ConnCounts::default()),
            ConnMetrics {
                refused,
                timeouts: TimeoutCounters {
                    request_header: counter(),
                    idle: counter(),
                    tls_handshake: counter(),
                },
            },
            u32::MAX,
        )
    }

    fn peer(ip: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, ip], port))
    }

    fn refused(p: &Places, why: &str) -> u64 {
        p.metrics.refused.with_label_values(&[why]).get()
    }

    #[test]
    fn a_place_is_taken_at_accept_and_held_by_whoever_claims_it() {
        let p = places(10, Some(2));
        assert!(p.at_accept(peer(1, 1)));
        assert!(p.at_accept(peer(1, 2)));
        // Before either connection's task has run, the cap is full.
        assert!(!p.at_accept(peer(1, 3)));
        assert_eq!(refused(&p, "max_connections_per_ip"), 1);
        let limits = (p.settings)();
        let (held, _) = p.claim(Some(peer(1, 1)), &limits).unwrap();
        assert_eq!(p.arrivals.parked(), 1);
        assert_eq!(p.counts.open(), 2, "a claim takes no second place");
        drop(held);
        assert!(p.at_accept(peer(1, 3)));
    }

    #[test]
    fn the_total_cap_counts_places_taken_at_accept() {
        let p = places(2, None);
        assert!(p.at_accept(peer(1, 1)));
        assert!(p.at_accept(peer(2, 1)));
        assert!(!p.at_accept(peer(3, 1)));
        assert_eq!(refused(&p, "max_connections"), 1);
    }

    #[test]
    fn a_task_without_a_parked_place_takes_one_or_is_refused() {
        let p = places(1, None);
        let limits = (p.settings)();
        let (held, _) = p.claim(None, &limits).expect("a Unix socket's place");
        assert!(p.claim(Some(peer(1, 1)), &limits).is_none());
        assert_eq!(refused(&p, "max_connections"), 1);
        drop(held);
        assert!(p.claim(Some(peer(1, 1)), &limits).is_some());
        assert_eq!(p.counts.open(), 0);
    }
}
