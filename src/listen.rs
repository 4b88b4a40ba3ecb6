//! How the client-facing listeners speak HTTP: TLS listeners offer `h2` and
//! `http/1.1` by ALPN (RFC 7301), a plaintext listener with `h2c: true` also
//! takes HTTP/2 with prior knowledge (RFC 9113 §3.3), and every HTTP/2
//! connection is bounded by `h2_max_streams`.

use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::protocols::http::v2::server::{default_h2_options, H2Options};

use crate::config::TlsSpec;

/// HTTP/2 server settings: Pingora's bounded defaults (header list size,
/// the h2 crate's reset-flood limits) with the configured stream limit.
pub fn h2_options(max_streams: u32) -> H2Options {
    let mut options = default_h2_options();
    options.max_concurrent_streams(max_streams);
    options
}

/// `idle`: how long an HTTP/2 connection without streams stays open
/// (`keepalive_timeout`, as nginx applies its own to HTTP/2); HTTP/1
/// connections get theirs from `crate::transport::conn`.
pub fn server_options(h2c: bool, idle: std::time::Duration) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2c = h2c;
    options.h2_idle_timeout = Some(idle);
    options
}

/// A TLS listener's settings: the certificate, and ALPN preferring h2.
pub fn tls_settings(tls: &TlsSpec) -> pingora_core::Result<TlsSettings> {
    let mut settings = TlsSettings::intermediate(&tls.cert, &tls.key)?;
    settings.enable_h2();
    Ok(settings)
}
