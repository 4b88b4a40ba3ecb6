//! Requests whose body framing a backend could read differently from the
//! gateway, refused before routing (400, and the connection closed).
//!
//! Pingora 0.9.1 already refuses most ambiguous requests while reading the
//! head: differing or non-numeric `Content-Length` values, `Transfer-Encoding`
//! on HTTP/1.0 or not ending in `chunked`, two `Host` fields, a `Host` that
//! differs from an absolute-form target, whitespace before a colon, obs-fold,
//! and control characters in fields. With both `Content-Length` and
//! `Transfer-Encoding` it drops the length and closes the connection after
//! the response (RFC 9112 §6.1). What it lets through, and this refuses:
//!
//! - **Repeated `Content-Length`** (`5` twice, or `5, 5`): Pingora accepts
//!   equal values but forwards them as they came, and a backend that refuses
//!   duplicates, or reads only the first of two fields, is one bad parser away
//!   from another length. RFC 9110 §8.6 allows refusing them.
//! - **Any transfer coding but one `chunked`** (`chunked, chunked`,
//!   `gzip, chunked`, or two `Transfer-Encoding` fields): Pingora decodes the
//!   last `chunked` and sends the backend a single `chunked`, so the other
//!   codings would silently vanish and the backend read a body that is still
//!   encoded. The gateway applies no other coding, so it accepts none (RFC
//!   9112 §6.1: chunked is applied at most once and last).
//!
//! The two rules Pingora checks on its side (`Transfer-Encoding` on HTTP/1.0,
//! a `Content-Length` that is not digits) are stated here too, so that this
//! module alone says what framing the gateway forwards.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora_http::RequestHeader;

/// Why a request's framing is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ambiguous {
    /// More than one `Content-Length` value (RFC 9110 §8.6).
    RepeatedContentLength,
    /// A `Content-Length` that is not `1*DIGIT` (RFC 9110 §8.6).
    ContentLengthNotDigits,
    /// A transfer coding other than a single `chunked` (RFC 9112 §6.1).
    CodingNotChunked,
    /// `Transfer-Encoding` on HTTP/1.0 (RFC 9112 §6.1).
    TransferEncodingOnHttp10,
}

impl Ambiguous {
    pub fn reason(self) -> &'static str {
        match self {
            Ambiguous::RepeatedContentLength => "more than one Content-Length",
            Ambiguous::ContentLengthNotDigits => "a Content-Length that is not a number",
            Ambiguous::CodingNotChunked => "a Transfer-Encoding other than one chunked",
            Ambiguous::TransferEncodingOnHttp10 => "Transfer-Encoding on HTTP/1.0",
        }
    }
}

/// `Ok` when the request has one framing: no body, one `Content-Length`, or
/// `Transfer-Encoding: chunked` alone.
pub fn check(req: &RequestHeader) -> Result<(), Ambiguous> {
    let mut lengths = req.headers.get_all(CONTENT_LENGTH).iter();
    if let Some(length) = lengths.next() {
        if lengths.next().is_some() || length.as_bytes().contains(&b',') {
            return Err(Ambiguous::RepeatedContentLength);
        }
        let digits = length.as_bytes().trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(Ambiguous::ContentLengthNotDigits);
        }
    }
    let mut codings = req.headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(coding) = codings.next() {
        if req.version == http::Version::HTTP_10 {
            return Err(Ambiguous::TransferEncodingOnHttp10);
        }
        if codings.next().is_some()
            || !coding
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked")
        {
            return Err(Ambiguous::CodingNotChunked);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: http::Version, fields: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        req.set_version(version);
        for (name, value) in fields {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    fn check11(fields: &[(&str, &str)]) -> Result<(), Ambiguous> {
        check(&request(http::Version::HTTP_11, fields))
    }

    #[test]
    fn one_framing_passes() {
        assert_eq!(check11(&[]), Ok(()));
        assert_eq!(check11(&[("content-length", "0")]), Ok(()));
        assert_eq!(check11(&[("content-length", "12345")]), Ok(()));
        assert_eq!(check11(&[("transfer-encoding", "chunked")]), Ok(()));
        assert_eq!(check11(&[("Transfer-Encoding", "Chunked")]), Ok(()));
        assert_eq!(
            check(&request(http::Version::HTTP_10, &[("content-length", "5")])),
            Ok(())
        );
        assert_eq!(
            check(&request(http::Version::HTTP_2, &[("content-length", "5")])),
            Ok(())
        );
    }

    #[test]
    fn repeated_lengths_are_refused_even_when_equal() {
        let twice = [("content-length", "5"), ("content-length", "5")];
        assert_eq!(check11(&twice), Err(Ambiguous::RepeatedContentLength));
        assert_eq!(
            check11(&[("content-length", "5, 5")]),
            Err(Ambiguous::RepeatedContentLength)
        );
        let h2 = request(http::Version::HTTP_2, &twice);
        assert_eq!(check(&h2), Err(Ambiguous::RepeatedContentLength));
    }

    #[test]
    fn a_length_is_digits_only() {
        for bad in ["+3", "-1", "0x3", "3 4", "", "1e3"] {
            assert_eq!(
                check11(&[("content-length", bad)]),
                Err(Ambiguous::ContentLengthNotDigits),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_a_single_chunked_coding_passes() {
        for bad in [
            "chunked, chunked",
            "gzip, chunked",
            "chunked, gzip",
            "identity",
            "",
            "chunked;q=1",
        ] {
            assert_eq!(
                check11(&[("transfer-encoding", bad)]),
                Err(Ambiguous::CodingNotChunked),
                "{bad:?}"
            );
        }
        let two_fields = [
            ("transfer-encoding", "gzip"),
            ("transfer-encoding", "chunked"),
        ];
        assert_eq!(check11(&two_fields), Err(Ambiguous::CodingNotChunked));
        let same_twice = [
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ];
        assert_eq!(check11(&same_twice), Err(Ambiguous::CodingNotChunked));
    }

    #[test]
    fn transfer_encoding_on_http10_is_refused() {
        let req = request(http::Version::HTTP_10, &[("transfer-encoding", "chunked")]);
        assert_eq!(check(&req), Err(Ambiguous::TransferEncodingOnHttp10));
    }
}
