//! HTTP statuses the gateway answers with, as gRPC status codes.
//!
//! The codes are chosen for what a client's retry logic does with them:
//! UNAVAILABLE (no backend, none reachable) is retried, RESOURCE_EXHAUSTED
//! (a limit, a body or header block too large) backs off, DEADLINE_EXCEEDED
//! (the backend was too slow) ends the call, UNIMPLEMENTED (no route) says
//! the method is not served here, UNAUTHENTICATED (401: no or a wrong
//! credential) asks for one, PERMISSION_DENIED (403: known but not allowed,
//! or a refused address) is not retried with the same credential. The gRPC
//! project's "HTTP to gRPC Status Code Mapping" calls a 429 UNAVAILABLE; a
//! gateway's 429 is a quota, which is what RESOURCE_EXHAUSTED means, as in
//! Envoy's rate-limit filter. Its 401 and 403 are the same as here.

/// The gRPC status codes the gateway sends (the numbers are the protocol's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Unknown = 2,
    DeadlineExceeded = 4,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

pub fn code_for_status(status: u16) -> Code {
    match status {
        200..=299 => Code::Ok,
        429 | 413 | 431 => Code::ResourceExhausted,
        502 | 503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        404 => Code::Unimplemented,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        400..=499 => Code::Internal,
        _ => Code::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_as_the_design_says() {
        assert_eq!(code_for_status(429), Code::ResourceExhausted);
        assert_eq!(code_for_status(503), Code::Unavailable);
        assert_eq!(code_for_status(502), Code::Unavailable);
        assert_eq!(code_for_status(504), Code::DeadlineExceeded);
        assert_eq!(code_for_status(404), Code::Unimplemented);
        assert_eq!(code_for_status(413), Code::ResourceExhausted);
        assert_eq!(code_for_status(431), Code::ResourceExhausted);
        assert_eq!(code_for_status(400), Code::Internal);
        assert_eq!(code_for_status(401), Code::Unauthenticated);
        assert_eq!(code_for_status(403), Code::PermissionDenied);
        assert_eq!(code_for_status(408), Code::Internal);
        assert_eq!(code_for_status(500), Code::Unknown);
        assert_eq!(Code::Unavailable as u8, 14);
        assert_eq!(Code::ResourceExhausted as u8, 8);
        assert_eq!(Code::Unauthenticated as u8, 16);
        assert_eq!(Code::PermissionDenied as u8, 7);
        assert_eq!(Code::DeadlineExceeded as u8, 4);
    }
}
