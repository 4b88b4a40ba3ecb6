//! Key specs and key extraction: a spec the parser accepts prints back as
//! itself, and every extracted value is a piece of the request it was read
//! from (a query value once decoded).
//!
//! Input: a key spec line (`header:x-api-key`, `cookie:sid`, ...), a target
//! line (`/path?query`), a client address line, then header lines
//! `name: value`; lines that are not valid as what they stand for are left
//! out, as the HTTP parser would have refused them.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use super::input::lines;
use crate::keys::{KeyInput, KeySpec};

pub fn keys(data: &[u8]) {
    let mut input = lines(data);
    let spec_text = input.next().unwrap_or_default();
    let uri = input
        .next()
        .and_then(|l| Uri::try_from(l).ok())
        .unwrap_or_else(|| Uri::from_static("/"));
    let client_ip: Option<IpAddr> = input
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.parse().ok());
    let mut headers = HeaderMap::new();
    for line in input {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }

    let Ok(spec_text) = std::str::from_utf8(spec_text) else {
        return;
    };
    let Ok(spec) = KeySpec::parse(spec_text) else {
        return;
    };
    let printed = spec.to_string();
    assert_eq!(
        KeySpec::parse(&printed).as_ref(),
        Ok(&spec),
        "{spec_text:?} parsed, printed as {printed:?}, which reads back differently"
    );

    let request = KeyInput {
        client_ip,
        headers: &headers,
        uri: &uri,
        route: "fuzz",
    };
    // Whatever the request, asking never panics, and only a source that can
    // repeat can be ambiguous.
    if spec.is_ambiguous(&request) {
        assert!(matches!(
            spec,
            KeySpec::Header(_) | KeySpec::Cookie(_) | KeySpec::Query(_)
        ));
    }
    let Some(value) = spec.extract(&request) else {
        assert!(
            !matches!(spec, KeySpec::Path | KeySpec::Route | KeySpec::Global),
            "{spec} is always present"
        );
        return;
    };
    let within = |haystack: &[u8]| contains(haystack, &value);
    match &spec {
        KeySpec::ClientIp => {
            let ip = client_ip.map(|ip| match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            });
            assert_eq!(ip.as_deref(), Some(&*value));
        }
        KeySpec::Header(name) => {
            assert_eq!(headers.get(name).map(HeaderValue::as_bytes), Some(&*value));
        }
        KeySpec::Cookie(_) => assert!(
            headers
                .get_all(http::header::COOKIE)
                .iter()
                .any(|v| within(v.as_bytes())),
            "a cookie value that is in no Cookie field"
        ),
        KeySpec::Query(_) => {
            let query = uri.query().unwrap_or_default();
            // Decoding only shortens (`%XX` is one byte, `+` one space).
            assert!(
                value.len() <= query.len(),
                "a query value longer than the query"
            );
            if !query.contains(['%', '+']) {
                assert!(
                    within(query.as_bytes()),
                    "a query value that is not in the query"
                );
            }
        }
        KeySpec::Path => assert_eq!(&*value, uri.path().as_bytes()),
        KeySpec::Route => assert_eq!(&*value, b"fuzz"),
        KeySpec::Global => assert!(value.is_empty()),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
