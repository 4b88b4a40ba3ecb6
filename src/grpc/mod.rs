//! gRPC as the gateway sees it: which requests are gRPC, how its own
//! refusals are said to a gRPC client, and the client's deadline.
//!
//! A gRPC client reads the call's outcome from `grpc-status`, not from the
//! HTTP status: a JSON 429 would surface as an opaque transport error. So a
//! response the gateway makes itself to a gRPC request is sent, as Envoy
//! does, as a *trailers-only* response (HTTP 200, `grpc-status` and
//! `grpc-message` in the only header block, no body) with the HTTP status
//! mapped to the gRPC code a client retries or gives up on correctly.

mod content_type;
pub mod health;
mod status;
mod timeout;

use http::HeaderMap;
use pingora_http::ResponseHeader;

pub use content_type::is_grpc;
pub use status::{code_for_status, Code};
pub use timeout::{deadline, parse_timeout, wait, Wait};

/// Turns a gateway-made response into its trailers-only gRPC form: status
/// 200, the mapped `grpc-status`, `message` as `grpc-message`, no body. Every
/// other field (`x-request-id`, `RateLimit`, `Retry-After`, ...) rides along.
pub fn to_trailers_only(header: &mut ResponseHeader, message: &str) {
    let code = code_for_status(header.status.as_u16());
    let _ = header.set_status(200);
    let _ = header.insert_header("content-type", "application/grpc");
    let _ = header.insert_header("content-length", "0");
    for (name, value) in status_fields(code, message) {
        let _ = header.insert_header(name, value);
    }
}

/// The trailers that end a call whose response had already begun when the
/// gateway gave up on it (the backend failed mid-stream): the only place
/// left for the status.
pub fn trailers(status: u16, message: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in status_fields(code_for_status(status), message) {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            map.insert(name, v);
        }
    }
    map
}

fn status_fields(code: Code, message: &str) -> [(&'static str, String); 2] {
    [
        ("grpc-status", (code as u8).to_string()),
        ("grpc-message", percent_encode(message)),
    ]
}

/// `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%`
/// itself, become `%XX` (gRPC over HTTP/2 spec, "Responses").
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_becomes_trailers_only_and_keeps_its_fields() {
        let mut h = ResponseHeader::build(429, None).unwrap();
        h.insert_header("ratelimit", "\"per_ip\";r=0;t=1").unwrap();
        h.insert_header("content-type", "application/json").unwrap();
        to_trailers_only(&mut h, "rate limited by per_ip");
        assert_eq!(h.status, 200);
        assert_eq!(h.headers["grpc-status"], "8");
        assert_eq!(h.headers["grpc-message"], "rate limited by per_ip");
        assert_eq!(h.headers["content-type"], "application/grpc");
        assert_eq!(h.headers["ratelimit"], "\"per_ip\";r=0;t=1");
    }

    #[test]
    fn a_failure_mid_call_becomes_trailers() {
        let t = trailers(504, "the backend did not answer in time");
        assert_eq!(t["grpc-status"], "4");
        assert_eq!(t["grpc-message"], "the backend did not answer in time");
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("50% off"), "50%25 off");
        assert_eq!(percent_encode("caf\u{e9}\n"), "caf%C3%A9%0A");
    }
}
