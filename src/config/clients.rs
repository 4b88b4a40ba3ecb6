//! The top-level keys that bound what one client connection may hold:
//! `request_header_timeout`, `keepalive_timeout`, `max_connections`,
//! `max_connections_per_ip` and `tls_handshake_timeout` (see
//! `crate::transport::conn` for how they apply).

use std::time::Duration;

use serde_yaml::{Mapping, Value};

use super::model::ClientLimits;
use super::node::{Errors, Node};

/// nginx's `client_header_timeout` default is 60s; 10s (Envoy's
/// `request_headers_timeout` advice for edge proxies) is long for any real
/// client and short for a slowloris.
pub const DEFAULT_REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// nginx's `keepalive_timeout` is 75s, Pingora's own 60s.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// A handshake is two round trips: 10s is long for any real client and, at
/// the per-IP cap, short for a client that holds places by never speaking.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pingora itself ends every handshake at 60s: a longer timeout would never apply.
pub const MAX_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn validate(top: &Mapping, root: &Node, errs: &mut Errors) -> Option<ClientLimits> {
    let field = |key: &str| top.get(key).map(|v| root.child(key, v));
    let request_header_timeout = match field("request_header_timeout") {
        None => Some(DEFAULT_REQUEST_HEADER_TIMEOUT),
        Some(n) => n.duration(errs),
    };
    let keepalive_timeout = match field("keepalive_timeout") {
        None => Some(DEFAULT_KEEPALIVE_TIMEOUT),
        Some(n) => n.duration(errs),
    };
    let max_connections = match field("max_connections") {
        None => Some(None),
        Some(n) => off_or(&n, errs, u32::MAX as u64),
    };
    let max_connections_per_ip = match field("max_connections_per_ip") {
        None => Some(None),
        Some(n) => off_or(&n, errs, u32::MAX as u64),
    };
    let tls_handshake_timeout = match field("tls_handshake_timeout") {
        None => Some(DEFAULT_TLS_HANDSHAKE_TIMEOUT),
        Some(n) => n.duration(errs).and_then(|d| {
            if d > MAX_TLS_HANDSHAKE_TIMEOUT {
                errs.push(
                    n.path(),
                    "must be at most 60s (Pingora ends every handshake at 60s)",
                );
                return None;
            }
            Some(d)
        }),
    };
    Some(ClientLimits {
        request_header_timeout: request_header_timeout?,
        keepalive_timeout: keepalive_timeout?,
        max_connections: max_connections?.map(|v| v as u32),
        max_connections_per_ip: max_connections_per_ip?.map(|v| v as u32),
        tls_handshake_timeout: tls_handshake_timeout?,
    })
}

/// `off` or a whole number from 1.
fn off_or(node: &Node, errs: &mut Errors, max: u64) -> Option<Option<u64>> {
    if let Value::String(s) = node.value {
        if s == "off" {
            return Some(None);
        }
    }
    node.uint(errs, 1, max).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;
    use crate::filters::Registry;

    const BASE: &str = "listen: [127.0.0.1:1]\nupstreams:\n  u: { backends: [127.0.0.1:2] }\nroutes:\n  - { upstream: u }\n";

    fn limits(extra: &str) -> Result<ClientLimits, Vec<String>> {
        load(&format!("{extra}{BASE}"), &Registry::builtin())
            .map(|l| l.gateway.clients)
            .map_err(|errs| errs.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn defaults_are_nginx_like_and_caps_are_off() {
        let l = limits("").unwrap();
        assert_eq!(l.request_header_timeout, DEFAULT_REQUEST_HEADER_TIMEOUT);
        assert_eq!(l.keepalive_timeout, DEFAULT_KEEPALIVE_TIMEOUT);
        assert_eq!(l.max_connections, None);
        assert_eq!(l.max_connections_per_ip, None);
        assert_eq!(l.tls_handshake_timeout, DEFAULT_TLS_HANDSHAKE_TIMEOUT);
    }

    #[test]
    fn tls_handshake_timeout_is_read_and_bounded() {
        let l = limits("tls_handshake_timeout: 300ms\n").unwrap();
        assert_eq!(l.tls_handshake_timeout, Duration::from_millis(300));
        let l = limits("tls_handshake_timeout: 1m\n").unwrap();
        assert_eq!(l.tls_handshake_timeout, MAX_TLS_HANDSHAKE_TIMEOUT);
        for (extra, message) in [
            (
                "tls_handshake_timeout: 0s\n",
                "tls_handshake_timeout: must be longer than 0",
            ),
            (
                "tls_handshake_timeout: 61s\n",
                "tls_handshake_timeout: must be at most 60s",
            ),
            (
                "tls_handshake_timeout: 5\n",
                "tls_handshake_timeout: a duration needs a unit",
            ),
            (
                "tls_handshake_timeout: soon\n",
                "tls_handshake_timeout: `soon` is not a duration",
            ),
        ] {
            let errs = limits(extra).unwrap_err();
            assert!(
                errs.iter().any(|e| e.starts_with(message)),
                "{extra}: {errs:?}"
            );
        }
    }

    #[test]
    fn values_and_off_are_read() {
        let l = limits(
            "request_header_timeout: 2s\nkeepalive_timeout: 500ms\nmax_connections: 1000\nmax_connections_per_ip: off\n",
        )
        .unwrap();
        assert_eq!(l.request_header_timeout, Duration::from_secs(2));
        assert_eq!(l.keepalive_timeout, Duration::from_millis(500));
        assert_eq!(l.max_connections, Some(1000));
        assert_eq!(l.max_connections_per_ip, None);
        assert_eq!(
            limits("max_connections_per_ip: 8\n")
                .unwrap()
                .max_connections_per_ip,
            Some(8)
        );
    }

    #[test]
    fn bad_values_are_refused_by_key_path() {
        for (extra, message) in [
            (
                "request_header_timeout: 10\n",
                "request_header_timeout: a duration needs a unit",
            ),
            (
                "keepalive_timeout: 0s\n",
                "keepalive_timeout: must be longer than 0",
            ),
            (
                "request_header_timeout: 9999999999h\n",
                "request_header_timeout: must be at most 365d",
            ),
            (
                "max_connections: 0\n",
                "max_connections: must be at least 1",
            ),
            ("max_connections_per_ip: lots\n", "max_connections_per_ip: "),
            (
                "max_connections: 99999999999\n",
                "max_connections: must be at most",
            ),
        ] {
            let errs = limits(extra).unwrap_err();
            assert!(
                errs.iter().any(|e| e.starts_with(message)),
                "{extra}: {errs:?}"
            );
        }
    }
}
