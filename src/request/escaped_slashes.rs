//! What an encoded slash (`%2F`, or `%5C` for `\`) in a request path means:
//! the route's `normalize_path: { escaped_slashes: ... }`.
//!
//! Normalisation keeps both encoded ([`super::path`]), so the gateway routes
//! `/public/..%2Fadmin` as one segment under `/public/`. That is right for a
//! backend that keeps it encoded too, and wrong for one that decodes it
//! before it resolves the path, which then serves `/admin`. Only the
//! operator knows which kind of backend a route has, so, as Envoy's
//! `path_with_escaped_slashes_action` does, the route chooses:
//!
//! - `keep` (the default; Envoy's KEEP_UNCHANGED): forwarded as sent;
//! - `reject` (REJECT_REQUEST): 400, for backends that would decode it;
//! - `unescape` (UNESCAPE_AND_FORWARD): both become `/` (a backslash is a
//!   separator to the backends that decode `%5C`), the path is normalised
//!   again, and the request is routed again by the path the backend will
//!   read, so `..%2F` cannot climb out of the route it was matched by.

use pingora_http::RequestHeader;

use super::path::{self, OriginalTarget, PathError};

/// A route's choice for encoded slashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EscapedSlashes {
    #[default]
    Keep,
    Reject,
    Unescape,
}

impl EscapedSlashes {
    /// The YAML spelling.
    pub fn parse(text: &str) -> Option<EscapedSlashes> {
        match text {
            "keep" => Some(EscapedSlashes::Keep),
            "reject" => Some(EscapedSlashes::Reject),
            "unescape" => Some(EscapedSlashes::Unescape),
            _ => None,
        }
    }
}

/// The encodings that stand for a slash. A normalised path writes its hex
/// in upper case, so these are the only spellings left.
const ESCAPED: [&str; 2] = ["%2F", "%5C"];

fn has_escaped_slash(path: &str) -> bool {
    path.contains('%') && ESCAPED.iter().any(|e| path.contains(e))
}

/// Applies `choice` to the (already normalised) path of `req`. `Ok(None)`:
/// nothing changed; `Ok(Some(original))`: the path was unescaped, and the
/// request must be routed again.
pub fn apply(
    choice: EscapedSlashes,
    req: &mut RequestHeader,
) -> Result<Option<OriginalTarget>, PathError> {
    if choice == EscapedSlashes::Keep || !has_escaped_slash(req.uri.path()) {
        return Ok(None);
    }
    if choice == EscapedSlashes::Reject {
        return Err(PathError::EscapedSlash);
    }
    let unescaped = unescape(req.uri.path());
    let clean = path::normalize(&unescaped)?;
    path::set_path(req, &clean).map(Some)
}

fn unescape(p: &str) -> String {
    ESCAPED
        .iter()
        .fold(p.to_string(), |acc, e| acc.replace(e, "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str) -> RequestHeader {
        RequestHeader::build("GET", target.as_bytes(), None).unwrap()
    }

    fn run(choice: EscapedSlashes, target: &str) -> Result<String, PathError> {
        let mut r = req(target);
        path::normalize_request(&mut r)?;
        apply(choice, &mut r)?;
        Ok(r.uri.to_string())
    }

    #[test]
    fn keep_forwards_the_encoding() {
        assert_eq!(
            run(EscapedSlashes::Keep, "/public/..%2fadmin/x?q=1").as_deref(),
            Ok("/public/..%2Fadmin/x?q=1")
        );
    }

    #[test]
    fn reject_refuses_either_encoding_in_any_case() {
        for t in ["/a%2fb", "/a%2Fb", "/a%5cb", "/a%5C"] {
            assert_eq!(
                run(EscapedSlashes::Reject, t),
                Err(PathError::EscapedSlash),
                "{t}"
            );
        }
        assert_eq!(run(EscapedSlashes::Reject, "/a/b").as_deref(), Ok("/a/b"));
        // An encoded `%` is not a slash, whatever follows it.
        assert_eq!(
            run(EscapedSlashes::Reject, "/a%252Fb").as_deref(),
            Ok("/a%252Fb")
        );
    }

    #[test]
    fn unescape_decodes_then_normalises_again() {
        let cases = [
            ("/public/..%2Fadmin/x?q=1", "/admin/x?q=1"),
            ("/a%2Fb", "/a/b"),
            ("/a%5Cb%5c..%5Cc", "/a/c"),
            ("/a%2F%2Fb", "/a/b"),
        ];
        for (t, want) in cases {
            assert_eq!(run(EscapedSlashes::Unescape, t).as_deref(), Ok(want), "{t}");
        }
        assert_eq!(
            run(EscapedSlashes::Unescape, "/a/..%2F..%2Fetc"),
            Err(PathError::AboveRoot)
        );
    }

    #[test]
    fn a_path_without_an_escaped_slash_is_left_alone() {
        let mut r = req("/a/b");
        assert!(apply(EscapedSlashes::Unescape, &mut r).unwrap().is_none());
    }

    #[test]
    fn parses_the_three_choices() {
        assert_eq!(EscapedSlashes::parse("keep"), Some(EscapedSlashes::Keep));
        assert_eq!(
            EscapedSlashes::parse("reject"),
            Some(EscapedSlashes::Reject)
        );
        assert_eq!(
            EscapedSlashes::parse("unescape"),
            Some(EscapedSlashes::Unescape)
        );
        assert_eq!(EscapedSlashes::parse("KEEP_UNCHANGED"), None);
    }
}
