//! Key parsing, extraction, canonical query values and ambiguity.

use super::*;

fn input<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> KeyInput<'a> {
    KeyInput {
        client_ip: Some("10.0.0.7".parse().unwrap()),
        headers,
        uri,
        route: "api",
    }
}

#[test]
fn parses_every_form_and_rejects_the_rest() {
    assert_eq!(KeySpec::parse("client_ip"), Ok(KeySpec::ClientIp));
    assert_eq!(
        KeySpec::parse("header:X-User-Id"),
        Ok(KeySpec::Header(HeaderName::from_static("x-user-id")))
    );
    assert_eq!(
        KeySpec::parse("cookie:sid"),
        Ok(KeySpec::Cookie("sid".into()))
    );
    assert_eq!(KeySpec::parse("query:k"), Ok(KeySpec::Query("k".into())));
    assert!(KeySpec::parse("header:").is_err());
    assert!(KeySpec::parse("path:x").is_err());
    assert!(KeySpec::parse("header:bad name").is_err());
    assert!(KeySpec::parse("ip").unwrap_err().contains("unknown key"));
}

#[test]
fn extracts_values_without_copying_request_text() {
    let mut headers = HeaderMap::new();
    headers.insert("x-user-id", "u42".parse().unwrap());
    headers.append("cookie", "a=1; sid=abc ".parse().unwrap());
    let uri: Uri = "/p/q?x=1&k=v%20w&k=2".parse().unwrap();
    let i = input(&headers, &uri);
    let get = |s: &str| KeySpec::parse(s).unwrap().extract(&i).map(|c| c.to_vec());
    assert_eq!(get("header:x-user-id"), Some(b"u42".to_vec()));
    assert_eq!(get("cookie:sid"), Some(b"abc".to_vec()));
    assert_eq!(get("cookie:none"), None);
    assert_eq!(get("query:k"), Some(b"v w".to_vec()));
    assert_eq!(get("query:zz"), None);
    assert_eq!(get("path"), Some(b"/p/q".to_vec()));
    assert_eq!(get("route"), Some(b"api".to_vec()));
    assert_eq!(get("client_ip"), Some(vec![10, 0, 0, 7]));
    assert_eq!(get("header:absent"), None);
}

fn key(spec: &str, target: &str) -> Option<Vec<u8>> {
    let headers = HeaderMap::new();
    let uri: Uri = target.parse().unwrap();
    KeySpec::parse(spec)
        .unwrap()
        .extract(&input(&headers, &uri))
        .map(|v| v.to_vec())
}

#[test]
fn every_spelling_of_a_query_value_is_one_key() {
    for target in [
        "/?api_key=abc",
        "/?api_key=%61bc",
        "/?api_key=a%62c",
        "/?api_key=%61%62%63",
        "/?api_key=ab%63",
        "/?api%5Fkey=abc",
        "/?x=1&api_key=abc",
    ] {
        assert_eq!(
            key("query:api_key", target),
            Some(b"abc".to_vec()),
            "{target}"
        );
    }
    assert_eq!(key("query:q", "/?q=a+b%2Bc"), Some(b"a b+c".to_vec()));
    assert_eq!(key("query:q", "/?q=100%"), Some(b"100%".to_vec()));
    assert_eq!(key("query:q", "/?q=%zz%4"), Some(b"%zz%4".to_vec()));
    assert_eq!(key("query:q", "/?q"), Some(b"".to_vec()));
}

#[test]
fn header_and_cookie_values_are_compared_as_sent() {
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", "%61bc".parse().unwrap());
    headers.insert("cookie", "sid=%61bc".parse().unwrap());
    let uri = Uri::from_static("/");
    let i = input(&headers, &uri);
    let get = |s: &str| KeySpec::parse(s).unwrap().extract(&i).map(|c| c.to_vec());
    assert_eq!(get("header:x-api-key"), Some(b"%61bc".to_vec()));
    assert_eq!(get("cookie:sid"), Some(b"%61bc".to_vec()));
}

#[test]
fn a_source_sent_twice_with_different_values_is_ambiguous() {
    let ambiguous = |spec: &str, headers: &[(&str, &str)], target: &str| {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let uri: Uri = target.parse().unwrap();
        KeySpec::parse(spec)
            .unwrap()
            .is_ambiguous(&input(&map, &uri))
    };
    assert!(ambiguous("query:api_key", &[], "/?api_key=zzz&api_key=abc"));
    assert!(ambiguous(
        "query:api_key",
        &[],
        "/?api_key=abc&api%5fkey=zzz"
    ));
    assert!(!ambiguous(
        "query:api_key",
        &[],
        "/?api_key=abc&api_key=%61bc"
    ));
    assert!(!ambiguous(
        "query:api_key",
        &[],
        "/?api_key=abc&other=1&other=2"
    ));
    assert!(!ambiguous("query:api_key", &[], "/"));
    let two = [("x-api-key", "a"), ("x-api-key", "b")];
    assert!(ambiguous("header:x-api-key", &two, "/"));
    let same = [("x-api-key", "a"), ("x-api-key", "a")];
    assert!(!ambiguous("header:x-api-key", &same, "/"));
    assert!(ambiguous("cookie:sid", &[("cookie", "sid=a; sid=b")], "/"));
    assert!(ambiguous(
        "cookie:sid",
        &[("cookie", "sid=a"), ("cookie", "sid=b")],
        "/"
    ));
    assert!(!ambiguous(
        "cookie:sid",
        &[("cookie", "sid=a; other=b")],
        "/"
    ));
    assert!(!ambiguous("client_ip", &two, "/"));
    assert!(!ambiguous("path", &two, "/"));
}
