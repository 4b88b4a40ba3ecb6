//! How a pool talks to its backends: the Pingora peer settings that follow
//! from an upstream's `protocol`, `tls`, `sni`, `ca` and timeouts. Requests
//! and health checks both start from [`PeerTemplate`], so a check speaks the
//! same protocol the traffic does.
//!
//! HTTP/2 peers are multiplexed by Pingora: one connection carries up to
//! `max_h2_streams` requests at once, and idle connections go back to its
//! pool like HTTP/1.1 ones.

use std::sync::Arc;
use std::time::Duration;

use pingora_core::protocols::tls::CaType;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::{HttpPeer, PeerOptions};

use crate::config::{parse_ca, UpstreamProtocol, UpstreamSpec};

/// Streams one upstream HTTP/2 connection carries before Pingora opens
/// another (Pingora's default is 1, which would defeat multiplexing).
const MAX_H2_STREAMS_PER_CONNECTION: usize = 100;

/// The settings every peer of one pool shares.
#[derive(Clone)]
pub struct PeerTemplate {
    tls: bool,
    sni: String,
    protocol: UpstreamProtocol,
    ca: Option<Arc<CaType>>,
}

impl PeerTemplate {
    pub fn of(spec: &UpstreamSpec) -> PeerTemplate {
        // Validation read and parsed the file; a file changed since then is
        // logged and the system roots used, rather than failing the pool.
        let ca = spec.ca.as_ref().and_then(|path| {
            let ca = std::fs::read(path).ok().and_then(|pem| parse_ca(&pem));
            if ca.is_none() {
                log::error!(
                    "upstream {}: cannot load CA `{path}`; using the system roots",
                    spec.name
                );
            }
            ca
        });
        PeerTemplate {
            tls: spec.tls,
            sni: spec.sni.clone(),
            protocol: spec.protocol,
            ca,
        }
    }

    /// A peer for `addr` speaking this pool's protocol, with no timeouts set.
    pub fn peer(&self, addr: std::net::SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, self.tls, self.sni.clone());
        self.apply(&mut peer.options);
        peer
    }

    /// Sets the protocol and trust settings on `o`.
    pub fn apply(&self, o: &mut PeerOptions) {
        match self.protocol {
            UpstreamProtocol::Http1 => {}
            // RFC 9113 §3.2: over TLS, h2 is chosen by ALPN alone.
            UpstreamProtocol::H2 => o.alpn = ALPN::H2,
            // RFC 9113 §3.3: prior knowledge; Pingora speaks h2 on plaintext
            // when the peer allows no HTTP/1.
            UpstreamProtocol::H2c => o.set_http_version(2, 2),
        }
        if self.protocol.is_h2() {
            o.max_h2_streams = MAX_H2_STREAMS_PER_CONNECTION;
            // Notices a backend that vanished without closing the connection,
            // which would otherwise hold every multiplexed request.
            o.h2_ping_interval = Some(Duration::from_secs(10));
        }
        if let Some(ca) = &self.ca {
            o.ca = Some(ca.clone());
        }
    }
}
