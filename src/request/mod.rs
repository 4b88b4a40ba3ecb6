//! Request hardening: what the gateway checks and rewrites in a request before
//! it routes it, each rule in a file of its own so it is read and tested alone.
//!
//! In the order `request_filter` applies them: the header block's size
//! ([`header_size`]), body framing a backend could read differently
//! ([`framing`]), the path every later step reads ([`path`]), who the client
//! is ([`forwarded`]), the request's id ([`request_id`]) and, once the route
//! is known, what its encoded slashes mean ([`escaped_slashes`]) and its
//! `max_body` ([`body_limit`]). None of these knows about
//! routes, limits or backends.

pub mod body_limit;
pub mod escaped_slashes;
pub mod forwarded;
pub(crate) mod framing;
pub mod header_size;
pub mod path;
pub mod request_id;

use pingora_http::RequestHeader;

use crate::errors::GatewayError;

/// The checks and the rewrite every request gets before it is routed, in
/// order: the header block's size, `Host` on HTTP/1.1, framing, then the
/// path put in normal form. Returns the target as sent when the path was
/// rewritten (for a route that forwards it as sent).
pub fn harden(
    req: &mut RequestHeader,
    max_header_size: usize,
) -> Result<Option<path::OriginalTarget>, GatewayError> {
    if header_size::wire_size(req) > max_header_size {
        return Err(GatewayError::HeaderTooLarge);
    }
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request
    // without Host (routing by host would otherwise guess).
    if req.version == http::Version::HTTP_11 && !req.headers.contains_key(http::header::HOST) {
        return Err(GatewayError::MissingHost);
    }
    if let Err(why) = framing::check(req) {
        log::debug!("refused: {}", why.reason());
        return Err(GatewayError::Malformed);
    }
    // Routing, `path` keys and the backend all read the normalised path.
    Ok(path::normalize_request(req)?)
}
