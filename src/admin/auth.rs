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
//!
//! Without a token, a browser request must also have addressed the listener
//! by an IP address or `localhost`. Otherwise a site whose name an attacker
//! re-points at 127.0.0.1 (DNS rebinding) would be same-origin with the
//! listener and could read `/status` or reload. A token defeats that anyway
//! (the rebinding page does not have it), so with one any host name works.

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
    match token {
        Some(token) => {
            if !is_open(path) && !bearer_matches(headers.get(header::AUTHORIZATION), token) {
                return Err(Refusal::Unauthorized);
            }
        }
        None => {
            if path != "/healthz" && from_browser(headers) && !addressed_by_ip(headers) {
                return Err(Refusal::CrossSite);
            }
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

/// Browsers send `Sec-Fetch-Site` (Fetch metadata) or `Origin`; curl and
/// monitoring agents send neither.
fn from_browser(headers: &HeaderMap) -> bool {
    headers.contains_key("sec-fetch-site") || headers.contains_key(header::ORIGIN)
}

/// Whether `Host` is an IP literal or `localhost`, with or without a port.
fn addressed_by_ip(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
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

    #[test]
    fn without_a_token_browsers_must_address_the_listener_by_ip() {
        let get = Method::GET;
        let browser = |host: &str| headers(&[("host", host), ("sec-fetch-site", "same-origin")]);
        for host in [
            "127.0.0.1:9901",
            "[::1]:9901",
            "localhost:9901",
            "LOCALHOST",
            "10.0.0.5",
        ] {
            assert_eq!(
                check(None, &get, "/status", &browser(host)),
                Ok(()),
                "{host}"
            );
        }
        // A rebound name: same-origin to the browser, but not ours.
        let rebound = browser("attacker.example:9901");
        assert_eq!(
            check(None, &get, "/status", &rebound),
            Err(Refusal::CrossSite)
        );
        let post = Method::POST;
        let rebound_post = headers(&[
            ("host", "attacker.example:9901"),
            ("origin", "http://attacker.example:9901"),
        ]);
        assert_eq!(
            check(None, &post, "/reload", &rebound_post),
            Err(Refusal::CrossSite)
        );
        // Not a browser, or a token in use, or the health probe: any name.
        let curl = headers(&[("host", "gateway.internal:9901")]);
        assert_eq!(check(None, &get, "/status", &curl), Ok(()));
        let with_token = headers(&[
            ("host", "gateway.internal:9901"),
            ("sec-fetch-site", "same-origin"),
            ("authorization", "Bearer s3cret"),
        ]);
        assert_eq!(check(Some("s3cret"), &get, "/status", &with_token), Ok(()));
        assert_eq!(check(None, &get, "/healthz", &rebound), Ok(()));
    }
}
