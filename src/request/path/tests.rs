use std::borrow::Cow;

use proptest::prelude::*;

use super::*;

fn norm(p: &str) -> Result<String, PathError> {
    normalize(p).map(Cow::into_owned)
}

#[test]
fn clean_paths_are_borrowed() {
    for p in [
        "/",
        "/a",
        "/a/",
        "/api/v1/users",
        "/a%20b",
        "/a%2Fb",
        "/%5C",
        "/a.b/c..d/.e",
        "*",
        "",
    ] {
        assert!(
            matches!(normalize(p), Ok(Cow::Borrowed(s)) if s == p),
            "{p} should be returned as it is"
        );
    }
}

#[test]
fn the_traversal_table() {
    let cases = [
        ("/public/../admin/x", "/admin/x"),
        ("/public/%2e%2e/admin/x", "/admin/x"),
        ("/public/%2E%2E/admin/x", "/admin/x"),
        ("/public/.%2e/admin/x", "/admin/x"),
        ("//admin/x", "/admin/x"),
        ("/public/./x", "/public/x"),
        ("/admin//x", "/admin/x"),
        ("/public/%2e/x", "/public/x"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/../", "/a/"),
        ("/a/..", "/"),
        ("/.", "/"),
        ("///", "/"),
        ("/a/./../b", "/b"),
        ("/a/b/c/./../../g", "/a/g"),
    ];
    for (input, want) in cases {
        assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
    }
}

#[test]
fn climbing_above_the_root_is_refused() {
    for p in [
        "/..",
        "/../x",
        "/public/../../x",
        "/%2e%2e/x",
        "/a/%2E%2e/..",
        "//../x",
    ] {
        assert_eq!(norm(p), Err(PathError::AboveRoot), "{p}");
    }
}

#[test]
fn separators_stay_encoded_and_hex_is_upper_cased() {
    assert_eq!(norm("/public/%2fadmin").as_deref(), Ok("/public/%2Fadmin"));
    assert_eq!(norm("/public/%2Fadmin").as_deref(), Ok("/public/%2Fadmin"));
    assert_eq!(norm("/a/%5c..%5cb").as_deref(), Ok("/a/%5C..%5Cb"));
    // `..` next to an encoded slash is not a segment of its own.
    assert_eq!(norm("/a/..%2Fb").as_deref(), Ok("/a/..%2Fb"));
    assert_eq!(norm("/a%3fb").as_deref(), Ok("/a%3Fb"));
}

#[test]
fn unreserved_characters_are_decoded_and_others_kept() {
    assert_eq!(norm("/%41%62c").as_deref(), Ok("/Abc"));
    assert_eq!(norm("/%7e%5F%2D%30").as_deref(), Ok("/~_-0"));
    assert_eq!(norm("/a%20b%25").as_deref(), Ok("/a%20b%25"));
    // %25 is `%` itself: decoding it would make `%2e` out of `%252e`.
    assert_eq!(norm("/%252e%252e/x").as_deref(), Ok("/%252e%252e/x"));
    assert_eq!(norm("/caf%C3%A9/é").as_deref(), Ok("/caf%C3%A9/é"));
}

#[test]
fn broken_percent_encodings_are_refused() {
    for p in ["/a%", "/a%2", "/a%zz", "/%g0/b", "/a/%2/../b"] {
        assert_eq!(norm(p), Err(PathError::BadPercentEncoding), "{p}");
    }
}

fn request(target: &[u8]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    req.set_raw_path(target).unwrap();
    req
}

#[test]
fn a_request_keeps_its_query_and_can_be_put_back() {
    let mut req = request(b"/public/%2e%2e/admin/x?a=%2e%2e&b");
    let original = normalize_request(&mut req).unwrap().expect("changed");
    assert_eq!(req.uri.path(), "/admin/x");
    assert_eq!(req.raw_path(), b"/admin/x?a=%2e%2e&b");
    original.restore(&mut req).unwrap();
    assert_eq!(req.raw_path(), b"/public/%2e%2e/admin/x?a=%2e%2e&b");

    let mut clean = request(b"/admin/x?q");
    assert!(normalize_request(&mut clean).unwrap().is_none());
    assert_eq!(clean.raw_path(), b"/admin/x?q");
}

#[test]
fn an_absolute_form_target_keeps_its_authority() {
    let mut req = request(b"http://example.com/a/../b?x=1");
    assert_eq!(req.uri.path(), "/a/../b");
    let original = normalize_request(&mut req).unwrap().expect("changed");
    assert_eq!(req.raw_path(), b"http://example.com/b?x=1");
    assert_eq!(req.uri.path(), "/b");
    original.restore(&mut req).unwrap();
    assert_eq!(req.raw_path(), b"http://example.com/a/../b?x=1");
}

#[test]
fn an_h2_uri_keeps_its_scheme_and_authority() {
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    req.set_uri("https://example.com/a//b?q=1".parse().unwrap());
    normalize_request(&mut req).unwrap().expect("changed");
    assert_eq!(req.uri.to_string(), "https://example.com/a/b?q=1");
}

#[test]
fn a_non_utf8_target_that_needs_rewriting_is_refused() {
    let mut req = request(b"/a/\xff/../b");
    assert_eq!(normalize_request(&mut req).unwrap_err(), PathError::NotUtf8);
    let mut clean = request(b"/a/\xff/b");
    assert!(normalize_request(&mut clean).unwrap().is_none());
}

/// Paths built from the pieces that matter: separators, dots in every
/// spelling, encoded separators, broken escapes and plain text.
fn path_strategy() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/", "/", "/", ".", "..", "%2e", "%2E", "%2f", "%5c", "%41", "%7e", "%20", "%3f", "%",
        "%2", "a", "b", "~", "é", "-",
    ]);
    prop::collection::vec(piece, 0..16).prop_map(|pieces| format!("/{}", pieces.concat()))
}

proptest! {
    #[test]
    fn normal_form_is_a_fixed_point(path in path_strategy()) {
        if let Ok(once) = normalize(&path) {
            let twice = normalize(&once).expect("a normal form normalises");
            prop_assert!(matches!(twice, Cow::Borrowed(_)), "{} → {} is not clean", path, once);
            prop_assert_eq!(twice.as_ref(), once.as_ref());
            prop_assert!(once.starts_with('/'));
            for bad in ["/./", "/../", "//"] {
                prop_assert!(!once.contains(bad), "{} → {} contains {}", path, once, bad);
            }
            prop_assert!(!once.ends_with("/.") && !once.ends_with("/.."), "{} → {}", path, once);
            let lower_unreserved = ["%2e", "%2E", "%41", "%7e"];
            prop_assert!(!lower_unreserved.iter().any(|e| once.contains(e)));
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_full_rewrite(path in path_strategy()) {
        let full = decode_unreserved(&path).and_then(|d| remove_dot_segments(&d));
        match normalize(&path) {
            Ok(n) => {
                prop_assert_eq!(Ok(n.as_ref().to_string()), full.clone());
                prop_assert_eq!(matches!(n, Cow::Borrowed(_)), full == Ok(path.clone()));
            }
            Err(e) => prop_assert_eq!(Err(e), full),
        }
    }
}
