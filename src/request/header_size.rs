//! The size of a request's header block, for `max_request_header_size`.
//!
//! Pingora reads header blocks of up to 1 MiB and would pass them all
//! upstream; nginx stops at 8 KiB per line (32 KiB in all) and Envoy at
//! 60 KiB, and many backends at less. The gateway refuses a larger block
//! with 431 before it costs a backend anything.

use pingora_http::RequestHeader;

/// The default limit: 64 KiB, Envoy's order of magnitude.
pub const DEFAULT_MAX_REQUEST_HEADER_SIZE: u64 = 64 * 1024;
/// Pingora refuses anything larger itself.
pub const MAX_REQUEST_HEADER_SIZE: u64 = 1_048_575;

/// The bytes of the request line and header fields as HTTP/1.1 writes them:
/// `METHOD SP target SP HTTP/1.1 CRLF`, `name: value CRLF` each, `CRLF`.
pub fn wire_size(req: &RequestHeader) -> usize {
    let line = req.method.as_str().len() + 1 + req.raw_path().len() + 1 + 8 + 2;
    let fields: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + fields + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_http_1_1_writes() {
        let mut req = RequestHeader::build("GET", b"/a?b=c", None).unwrap();
        req.insert_header("host", "example.com").unwrap();
        req.append_header("x-tag", "1").unwrap();
        req.append_header("x-tag", "22").unwrap();
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let written = b"GET /a?b=c HTTP/1.1\r\n".len() + wire.len() + 2;
        assert_eq!(wire_size(&req), written);
    }
}
