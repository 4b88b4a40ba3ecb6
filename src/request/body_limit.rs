//! `max_body`: the largest request body a route accepts.
//!
//! Two checks, because a body announces its size only sometimes:
//! - a `Content-Length` over the limit is refused from the header alone,
//!   before any backend is contacted ([`declared_over`]);
//! - a body without one (chunked, or HTTP/2 DATA frames) is counted as it is
//!   read ([`BodyLimit::admit`]), and the piece that would cross the limit is
//!   refused *before* it is forwarded, so a backend never receives more than
//!   `max_body` bytes of it. The request then fails with a 413 error, which
//!   the proxy's failure path answers if no response has started, and the
//!   upstream request is aborted.

use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use pingora_core::{Error, ErrorType};

/// Whether a `Content-Length` says the body is longer than `max`. A value
/// that is not a number is left to the HTTP parser, which owns framing.
pub fn declared_over(headers: &HeaderMap, max: u64) -> bool {
    headers.get_all(CONTENT_LENGTH).iter().any(|v| {
        let digits = v.as_bytes().trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return false;
        }
        // All digits: a value that does not fit a u64 is over any limit.
        std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .is_none_or(|n| n > max)
    })
}

/// The bytes of one request body read so far, against its limit.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit {
    max: u64,
    seen: u64,
}

/// A piece of body that would take the total past the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exceeded;

impl BodyLimit {
    pub fn new(max: u64) -> BodyLimit {
        BodyLimit { max, seen: 0 }
    }

    /// Counts a piece of body about to be forwarded; `Err` if it would take
    /// the total past the limit (it is then not counted, and must not be
    /// forwarded).
    pub fn admit(&mut self, len: usize) -> Result<(), Exceeded> {
        let total = self.seen.saturating_add(len as u64);
        if total > self.max {
            return Err(Exceeded);
        }
        self.seen = total;
        Ok(())
    }
}

/// The error that fails a request whose body crossed its limit: a 413 (the
/// proxy's failure path answers with its status), caused by the client, so
/// it counts against no backend's health and is never retried.
pub fn exceeded_error() -> Box<Error> {
    let mut e = Error::explain(
        ErrorType::HTTPStatus(413),
        "request body larger than max_body",
    );
    e.as_down();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CONTENT_LENGTH, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_declared_length_is_checked_against_the_limit() {
        assert!(!declared_over(&headers(&[]), 10));
        assert!(!declared_over(&headers(&["10"]), 10));
        assert!(declared_over(&headers(&["11"]), 10));
        assert!(declared_over(&headers(&[" 11 "]), 10));
        assert!(declared_over(
            &headers(&["99999999999999999999999"]),
            u64::MAX
        ));
        assert!(declared_over(&headers(&["5", "11"]), 10), "any value over");
        // Not a length: the parser refuses it; this check does not guess.
        assert!(!declared_over(&headers(&["+11"]), 10));
        assert!(!declared_over(&headers(&["11, 11"]), 10));
    }

    #[test]
    fn the_piece_that_crosses_is_refused_and_not_counted() {
        let mut l = BodyLimit::new(10);
        assert_eq!(l.admit(4), Ok(()));
        assert_eq!(l.admit(6), Ok(()), "exactly at the limit passes");
        assert_eq!(l.admit(1), Err(Exceeded));
        assert_eq!(l.admit(0), Ok(()), "an empty piece never crosses");

        let mut l = BodyLimit::new(10);
        assert_eq!(l.admit(11), Err(Exceeded), "one piece past it");
        assert_eq!(l.admit(10), Ok(()), "the refused piece was not counted");
        assert_eq!(BodyLimit::new(0).admit(1), Err(Exceeded));
        assert_eq!(
            BodyLimit::new(u64::MAX).admit(usize::MAX),
            Ok(()),
            "no overflow"
        );
    }

    #[test]
    fn the_error_is_a_413_the_client_caused() {
        let e = exceeded_error();
        assert_eq!(crate::errors::status_for(&e), 413);
        assert_eq!(e.esource(), &pingora_core::ErrorSource::Downstream);
        assert!(!e.retry());
    }
}
