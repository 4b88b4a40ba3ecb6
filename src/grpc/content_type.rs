//! Which requests are gRPC calls.
//!
//! It matters twice: a gRPC call gets the gateway's own answers as gRPC
//! statuses, and its `grpc-timeout` bounds how long the gateway waits for
//! the backend. The second is a lever a client holds over the gateway's
//! timers, so the test is exact rather than a prefix match: a prefix took
//! `application/grpc-web` (a different protocol, spoken by browsers through
//! a translating proxy, which sets no HTTP/2 deadline semantics) and
//! `application/grpcfoo` for gRPC.
//!
//! gRPC over HTTP/2 spec, "Requests": `Content-Type → "content-type"
//! "application/grpc" [("+proto" / "+json" / {custom})]`. The media type is
//! compared without its parameters and case-insensitively (RFC 9110 §8.3.1:
//! type and subtype are case-insensitive; parameters follow a `;`). The
//! protocol is defined over HTTP/2, so a `+{custom}` format is believed only
//! there; over HTTP/1.1 (which some proxies and test clients use for gRPC)
//! only the spec's own `application/grpc`, `+proto` and `+json` count.

use http::{HeaderMap, Version};

/// Whether a request is a gRPC call (see the module doc for the rule).
pub fn is_grpc(version: Version, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return false;
    };
    let raw = value.as_bytes();
    let media = raw.split(|&b| b == b';').next().unwrap_or(raw).trim_ascii();
    const BASE: &[u8] = b"application/grpc";
    if media.len() < BASE.len() || !media[..BASE.len()].eq_ignore_ascii_case(BASE) {
        return false;
    }
    match &media[BASE.len()..] {
        [] => true,
        [b'+', format @ ..] if !format.is_empty() => {
            format.eq_ignore_ascii_case(b"proto")
                || format.eq_ignore_ascii_case(b"json")
                || version == Version::HTTP_2
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc(version: Version, content_type: Option<&str>) -> bool {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert("content-type", ct.parse().unwrap());
        }
        is_grpc(version, &h)
    }

    #[test]
    fn the_specs_content_types_are_grpc_on_any_version() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "Application/GRPC",
            "application/grpc+PROTO",
            "application/grpc; charset=utf-8",
            " application/grpc+proto ;x=y",
        ] {
            for v in [Version::HTTP_11, Version::HTTP_2] {
                assert!(grpc(v, Some(ct)), "{ct:?} over {v:?}");
            }
        }
    }

    #[test]
    fn a_custom_format_is_grpc_only_over_http2() {
        assert!(grpc(Version::HTTP_2, Some("application/grpc+thrift")));
        assert!(!grpc(Version::HTTP_11, Some("application/grpc+thrift")));
        assert!(!grpc(Version::HTTP_2, Some("application/grpc+")));
    }

    #[test]
    fn grpc_web_and_lookalikes_are_not_grpc() {
        for ct in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/grpcfoo",
            "application/grp",
            "application/json",
            "text/application/grpc",
            "",
        ] {
            for v in [Version::HTTP_11, Version::HTTP_2] {
                assert!(!grpc(v, Some(ct)), "{ct:?} over {v:?}");
            }
        }
        assert!(!grpc(Version::HTTP_2, None));
    }
}
