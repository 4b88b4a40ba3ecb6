//! What the gateway's own responses say: which error maps to which status
//! and message, and the small JSON body `{"error": "...", "request_id": "..."}`.
//! This is the vocabulary; sending an answer (when it may be written, what
//! every answer carries) is `proxy::answer`'s job.

use bytes::Bytes;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;

/// Why the gateway answered a request itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayError {
    NoRoute,
    NoHealthyBackend,
    UpstreamUnreachable,
    UpstreamTimeout,
    BadRequest,
    MissingHost,
    /// A request path that climbs above the root (RFC 3986 §5.2.4).
    BadPath,
    /// A request whose framing or fields could be read two ways (RFC 9112).
    Malformed,
    /// A path some backends resolve differently from RFC 3986: a raw `\`,
    /// or a dot segment with `;` parameters.
    AmbiguousPath,
    /// An encoded slash on a route with `escaped_slashes: reject`.
    EscapedSlash,
    /// The source of a limit or hash key appears twice with different values.
    AmbiguousKey,
    /// The request head did not arrive within `request_header_timeout`.
    RequestTimeout,
    /// The body is larger than the route's `max_body`.
    PayloadTooLarge,
    HeaderTooLarge,
    Internal,
}

impl GatewayError {
    pub fn status(self) -> u16 {
        match self {
            GatewayError::NoRoute => 404,
            GatewayError::NoHealthyBackend => 503,
            GatewayError::UpstreamUnreachable => 502,
            GatewayError::UpstreamTimeout => 504,
            GatewayError::BadRequest
            | GatewayError::MissingHost
            | GatewayError::BadPath
            | GatewayError::Malformed
            | GatewayError::AmbiguousPath
            | GatewayError::EscapedSlash
            | GatewayError::AmbiguousKey => 400,
            GatewayError::RequestTimeout => 408,
            GatewayError::PayloadTooLarge => 413,
            GatewayError::HeaderTooLarge => 431,
            GatewayError::Internal => 500,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no route matches this request",
            GatewayError::NoHealthyBackend => "no healthy backend",
            GatewayError::UpstreamUnreachable => "could not reach a backend",
            GatewayError::UpstreamTimeout => "the backend did not answer in time",
            GatewayError::BadRequest => "bad request",
            GatewayError::MissingHost => "an HTTP/1.1 request needs a Host header",
            GatewayError::BadPath => "the request path climbs above the root",
            GatewayError::Malformed => "malformed request",
            GatewayError::AmbiguousPath => "the request path could be read two ways",
            GatewayError::EscapedSlash => "encoded slashes are not allowed on this route",
            GatewayError::AmbiguousKey => "ambiguous limit key",
            GatewayError::RequestTimeout => "the request head did not arrive in time",
            GatewayError::PayloadTooLarge => "request body too large",
            GatewayError::HeaderTooLarge => "request header fields too large",
            GatewayError::Internal => "internal error",
        }
    }

    /// Whether the connection is closed after this answer: the request's
    /// framing or body cannot be trusted, or is left unread, so nothing
    /// after it on the connection can be read as the next request.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            GatewayError::MissingHost
                | GatewayError::Malformed
                | GatewayError::PayloadTooLarge
                | GatewayError::RequestTimeout
        )
    }

    /// The error a status code stands for, when the gateway made it.
    pub fn from_status(status: u16) -> GatewayError {
        match status {
            404 => GatewayError::NoRoute,
            503 => GatewayError::NoHealthyBackend,
            502 => GatewayError::UpstreamUnreachable,
            504 => GatewayError::UpstreamTimeout,
            431 => GatewayError::HeaderTooLarge,
            408 => GatewayError::RequestTimeout,
            413 => GatewayError::PayloadTooLarge,
            400..=499 => GatewayError::BadRequest,
            _ => GatewayError::Internal,
        }
    }
}

/// The status to answer a failed proxy attempt with (0: the client is gone,
/// answer nothing). A backend that took the request and then timed out is
/// 504 (RFC 9110 §15.6.5: no timely response from the upstream server). A
/// connect that timed out is 502 like a refused one: no backend was
/// reached and nothing was sent, which is what "every connect attempt
/// failed" tells the client, where 504 would say a backend may have the
/// request (nginx answers 504 for both). Any other upstream failure is 502;
/// our own `HTTPStatus` errors (503 for no healthy backend, ...) keep their
/// code.
pub fn status_for(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// `{"error": message, "request_id": id}`, escaped properly.
pub fn json_body(message: &str, request_id: &str) -> Vec<u8> {
    let mut body = serde_json::to_vec(&serde_json::json!({
        "error": message,
        "request_id": request_id,
    }))
    .unwrap_or_default();
    body.push(b'\n');
    body
}

/// The header and body of a gateway-made response.
pub fn response(status: u16, message: &str, request_id: &str) -> (ResponseHeader, Bytes) {
    let body = json_body(message, request_id);
    // Building a header from a valid status and static names cannot fail;
    // fall back to a bare header rather than panic if it ever did.
    #[allow(
        clippy::expect_used,
        reason = "500 is a valid status: building its header cannot fail"
    )]
    let mut header = ResponseHeader::build(status, Some(4))
        .unwrap_or_else(|_| ResponseHeader::build_no_case(500, None).expect("500 is valid"));
    let _ = header.insert_header("content-type", "application/json");
    let _ = header.insert_header("content-length", body.len().to_string());
    let _ = header.insert_header("x-request-id", request_id);
    let _ = header.insert_header("cache-control", "no-store");
    (header, Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_escaped_json() {
        let body = json_body("quote \" here", "id\n1");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "quote \" here");
        assert_eq!(v["request_id"], "id\n1");
    }

    #[test]
    fn proxy_failures_map_to_statuses() {
        let upstream = |t| {
            let mut e = Error::new(t);
            e.as_up();
            e
        };
        assert_eq!(status_for(&upstream(ErrorType::ConnectRefused)), 502);
        assert_eq!(status_for(&upstream(ErrorType::ReadTimedout)), 504);
        assert_eq!(status_for(&upstream(ErrorType::WriteTimedout)), 504);
        assert_eq!(
            status_for(&upstream(ErrorType::ConnectTimedout)),
            502,
            "every connect attempt failed: 502, whether refused or timed out"
        );
        assert_eq!(status_for(&Error::new(ErrorType::HTTPStatus(503))), 503);
        let mut gone = Error::new(ErrorType::ConnectionClosed);
        gone.as_down();
        assert_eq!(status_for(&gone), 0);
    }

    #[test]
    fn statuses_match_the_design() {
        assert_eq!(GatewayError::NoRoute.status(), 404);
        assert_eq!(GatewayError::NoHealthyBackend.status(), 503);
        assert_eq!(GatewayError::UpstreamUnreachable.status(), 502);
    }
}
