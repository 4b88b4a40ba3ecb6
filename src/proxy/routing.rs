//! Which route a request takes. The normalised path finds it; then the
//! route's own reading of encoded slashes applies, and when that rewrites the
//! path (`unescape`) the request is routed again by the path the backend
//! will read, so `..%2F` cannot climb out of the route that matched it; and
//! a request whose limit or hash key could be read two ways is refused
//! before anything counts it.

use pingora_http::RequestHeader;

use crate::errors::GatewayError;
use crate::live::Generation;
use crate::request::escaped_slashes;
use crate::request::path::OriginalTarget;

/// The index of the request's route in `gw.routes`. `original` is the
/// target as the client sent it, kept for a route that forwards it as sent;
/// it is set here if the path is rewritten and it was not already.
pub(super) fn route(
    gw: &Generation,
    req: &mut RequestHeader,
    client_ip: Option<std::net::IpAddr>,
    original: &mut Option<OriginalTarget>,
) -> Result<usize, GatewayError> {
    let mut id = find(gw, req)?;
    let choice = gw.routes[id].spec.escaped_slashes;
    if let Some(before) = escaped_slashes::apply(choice, req)? {
        original.get_or_insert(before);
        // No encoded slash is left for the new route's own choice to read.
        id = find(gw, req)?;
    }
    if crate::admission::ambiguous_key(&gw.routes[id], req, client_ip) {
        return Err(GatewayError::AmbiguousKey);
    }
    Ok(id)
}

fn find(gw: &Generation, req: &RequestHeader) -> Result<usize, GatewayError> {
    let host = crate::router::request_host(&req.uri, &req.headers);
    gw.router
        .find(host, req.uri.path(), &req.method)
        .ok_or(GatewayError::NoRoute)
}
