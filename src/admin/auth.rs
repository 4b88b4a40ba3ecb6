//! Who may use the admin listener.
//!
//! With `admin.token_file` set, every request needs `Authorization: Bearer
//! <token>` (RFC 6750 §2.1), except `/healthz` (load balancers and
//! supervisors probe it without secrets) and the dashboard's page itself,
//! which is static, holds no data, and is what asks a person for the token.
//! The token is compared in constant time, so response timing does not leak
//! how much of a guess was right.
//!
//! Independently of the token, `POST /reload` refuses a browser request sent
//! from another origin (RFC 6454 `Origin`; Fetch's `Sec-Fetch-Site`): a page
//! on some other site, or another port of this host, must not be able to
//! make an operator's browser reload the config. Clients that are not
//! browsers send no `Origin` and are not affected.

use http::{header, HeaderMap, Method};
use subtle::ConstantTimeEq;

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no token, or the wrong one.
    Unauthorized,
    /// 403: a cross-site browser request to change something.
    CrossSite,
}

/// Paths anyone who reaches the listener may read.
fn is_open(path: &str) -> bool {
    matches!(path, "/healthz" | "/")
}

/// Decides one admin request.
pub fn check(
    token: Option<&str>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    if let Some(token) = token {
        if !is_open(path) && !bearer_matches(headers.get(header::AUTHORIZATION), token) {
            return Err(Refusal::Unauthorized);
        }
    }
    if *method != Method::GET && *method != Method::HEAD && !same_origin(headers) {
        return Err(Refusal::CrossSite);
    }
    Ok(())
}

/// Whether `Authorization` carries `Bearer <token>`; the scheme is
/// case-insensitive (RFC 9110 §11.1).
pub fn bearer_matches(value: Option<&http::HeaderValue>, token: &str) -> bool {
    let Some(v) = value.map(|v| v.as_bytes()) else {
        return false;
    };
    let Some((scheme, credentials)) = v.split_first_chunk::<7>() else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    constant_time_eq(credentials.trim_ascii(), token.as_bytes())
}

/// Equal in time independent of where the first difference is (the length
/// is not secret: it shows in the request's size anyway).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A request a browser marks as same-origin, or no browser request at all.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match text(header::ORIGIN.as_str()) {
        None => true,
        // The admin listener speaks plain HTTP, so its own origin is
        // `http://` and the host the browser addressed it by.
        Some(origin) => text(header::HOST.as_str()).is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .is_some_and(|o| o.eq_ignore_ascii_case(host))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn a_token_is_needed_except_for_healthz_and_the_page() {
        let get = Method::GET;
        let none = headers(&[]);
        let good = headers(&[("authorization", "Bearer s3cret")]);
        let lower = headers(&[("authorization", "bearer s3cret")]);
        let wrong = headers(&[("authorization", "Bearer s3creX")]);
        let basic = headers(&[("authorization", "Basic czNjcmV0")]);
        let t = Some("s3cret");
        assert_eq!(check(t, &get, "/status", &none), Err(Refusal::Unauthorized));
        assert_eq!(
            check(t, &get, "/status", &wrong),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            check(t, &get, "/metrics", &basic),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(check(t, &get, "/status", &good), Ok(()));
        assert_eq!(check(t, &get, "/stats/series", &lower), Ok(()));
        assert_eq!(check(t, &get, "/healthz", &none), Ok(()));
        assert_eq!(check(t, &get, "/", &none), Ok(()));
        assert_eq!(check(None, &get, "/status", &none), Ok(()));
    }

    #[test]
    fn reload_refuses_cross_site_browser_requests() {
        let post = Method::POST;
        let own = headers(&[
            ("host", "127.0.0.1:9901"),
            ("origin", "http://127.0.0.1:9901"),
        ]);
        let other_port = headers(&[
            ("host", "127.0.0.1:9901"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        let other_site = headers(&[
            ("host", "127.0.0.1:9901"),
            ("origin", "https://evil.example"),
        ]);
        let opaque = headers(&[("host", "127.0.0.1:9901"), ("origin", "null")]);
        let fetch_site = headers(&[("host", "127.0.0.1:9901"), ("sec-fetch-site", "same-site")]);
        let curl = headers(&[("host", "127.0.0.1:9901")]);
        assert_eq!(check(None, &post, "/reload", &own), Ok(()));
        assert_eq!(check(None, &post, "/reload", &curl), Ok(()));
        for h in [other_port, other_site, opaque, fetch_site] {
            assert_eq!(check(None, &post, "/reload", &h), Err(Refusal::CrossSite));
        }
    }
}
