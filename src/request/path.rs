//! Request path normalisation, so that routing, `path` keys and the backend
//! all read a path the same way.
//!
//! A gateway that routes on the raw path while the backend normalises it can
//! be walked around: `/public/../admin/x` matches the `/public/` route (its
//! limits, its filters) and the backend then serves `/admin/x`. So before
//! anything reads the path it is put in one canonical form:
//!
//! - percent-encoded *unreserved* characters are decoded (RFC 3986 §2.3:
//!   `ALPHA DIGIT - . _ ~`; §6.2.2.2 says they are equivalent to the plain
//!   character), so `%2e` is `.` and `%41` is `A`;
//! - every other percent-encoding stays encoded, with its hex digits in upper
//!   case (§6.2.2.1): `%20` stays `%20`, `%3f` becomes `%3F`;
//! - dot segments are removed (§5.2.4); a `..` that would climb above the
//!   root is an error, not silently dropped as §5.2.4 would, because a client
//!   that sends one is probing, and no backend should see a guess of ours;
//! - empty segments are merged (`//admin` is `/admin`): most backends and
//!   file systems treat them as one, and `path_prefix` matching must too.
//!
//! `%2F` (`/`) and `%5C` (`\`) are kept encoded. Decoding `%2F` would create a
//! segment boundary the client did not send (`/a%2F..%2Fb` would become
//! `/a/../b`), and backends on Windows, and some frameworks, treat `\` as a
//! separator. Either way, the gateway deciding what those segments are would
//! only move the disagreement with the backend elsewhere: left encoded, the
//! gateway and the backend both see one segment, which is the confusion this
//! module exists to remove.
//!
//! A `%` not followed by two hex digits is not a valid URI (§2.1) and is an
//! error: a backend may decode it in any way at all.
//!
//! Two spellings are refused because backends read them as something the
//! gateway would not route as:
//! - a raw `\`, which RFC 3986 does not allow in a path (§3.3) and which
//!   IIS and ASP.NET treat as `/`: `/public/..\admin/x` is `/admin/x` there;
//! - a dot segment carrying parameters (`..;x`, `.;`, also once `%2e` is
//!   decoded, and with `;` written `%3B`): Tomcat, Jetty and Spring strip
//!   `;` parameters from each segment before they resolve dot segments, so
//!   `/public/..;/admin/x` is `/admin/x` to them, while to RFC 3986 `..;` is
//!   a plain segment. Refusing is the only answer both sides agree on.
//!
//! What an encoded slash means is the route's choice (`escaped_slashes`,
//! [`super::escaped_slashes`]).
//!
//! The common case, a path that is already clean, is checked without
//! allocating and returned borrowed.

use std::borrow::Cow;

use http::uri::{PathAndQuery, Uri};
use pingora_http::RequestHeader;

/// Why a request path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// A `..` segment climbs above the root.
    AboveRoot,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// The target is not valid UTF-8 and would have to be rewritten, which
    /// would replace its bytes (its URI holds only a lossy rendering).
    NotUtf8,
    /// A raw `\` (a separator to some backends, not to RFC 3986).
    Backslash,
    /// A `.` or `..` segment with `;` parameters (`..;x`): a dot segment to
    /// Tomcat-like backends, a name to RFC 3986.
    DotSegmentParams,
    /// An encoded `/` or `\` on a route with `escaped_slashes: reject`.
    EscapedSlash,
}

impl From<PathError> for crate::errors::GatewayError {
    fn from(e: PathError) -> Self {
        match e {
            PathError::AboveRoot => crate::errors::GatewayError::BadPath,
            PathError::Backslash | PathError::DotSegmentParams => {
                crate::errors::GatewayError::AmbiguousPath
            }
            PathError::EscapedSlash => crate::errors::GatewayError::EscapedSlash,
            PathError::BadPercentEncoding | PathError::NotUtf8 => {
                crate::errors::GatewayError::Malformed
            }
        }
    }
}

/// The normalised form of a request path (no query). Paths that do not
/// start with `/` (`*` of `OPTIONS *`, an empty path) are returned as they
/// are: they have no segments to normalise.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') || is_clean(path)? {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let out = remove_dot_segments(&decoded)?;
    if out == path {
        Ok(Cow::Borrowed(path))
    } else {
        Ok(Cow::Owned(out))
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte a `%XX` at the start of `s` stands for.
fn percent_byte(s: &[u8]) -> Result<u8, PathError> {
    match (
        s.get(1).copied().and_then(hex_value),
        s.get(2).copied().and_then(hex_value),
    ) {
        (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
        _ => Err(PathError::BadPercentEncoding),
    }
}

/// Whether `path` is already in normal form: no empty segment but a
/// trailing one, no `.` or `..` segment, and only upper-case encodings of
/// bytes that stay encoded.
fn is_clean(path: &str) -> Result<bool, PathError> {
    let bytes = path.as_bytes();
    let mut segments = bytes[1..].split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg.contains(&b'\\') {
            return Err(PathError::Backslash);
        }
        if (seg.is_empty() && !last) || seg == b"." || seg == b".." || may_be_dot_with_params(seg) {
            return Ok(false);
        }
        let mut i = 0;
        while let Some(off) = seg[i..].iter().position(|&b| b == b'%') {
            let at = i + off;
            let v = percent_byte(&seg[at..])?;
            let upper = seg[at + 1..at + 3].iter().all(|b| !b.is_ascii_lowercase());
            if is_unreserved(v) || !upper {
                return Ok(false);
            }
            i = at + 3;
        }
    }
    Ok(true)
}

/// Whether a raw segment could be a dot segment with parameters once
/// decoded: it starts with `.` or `%` and has a `;` or `%` after that. A
/// cheap over-approximation that sends the segment to the slow path, where
/// [`is_dot_with_params`] decides on the decoded form.
fn may_be_dot_with_params(seg: &[u8]) -> bool {
    matches!(seg.first(), Some(b'.' | b'%')) && seg[1..].iter().any(|&b| b == b';' || b == b'%')
}

/// `.` or `..` followed by `;` or its encoding `%3B`, on a segment whose
/// unreserved characters are decoded (so `%2e%2e;` is caught as `..;`).
fn is_dot_with_params(seg: &str) -> bool {
    let rest = seg
        .strip_prefix("..")
        .or_else(|| seg.strip_prefix('.'))
        .unwrap_or(seg);
    rest.len() < seg.len()
        && (rest.starts_with(';') || rest.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("%3B")))
}

/// Decodes unreserved characters and upper-cases the hex of the rest.
/// Nothing decoded is a `/`, so the segments stay the ones the client sent.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let v = percent_byte(&bytes[i..])?;
        if is_unreserved(v) {
            out.push(v);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(v >> 4)], HEX[usize::from(v & 15)]]);
        }
        i += 3;
    }
    // Only ASCII was added and every other byte copied whole, so this is
    // UTF-8 again; refuse rather than panic if that ever stopped holding.
    String::from_utf8(out).map_err(|_| PathError::BadPercentEncoding)
}

/// RFC 3986 §5.2.4 on an absolute path, with empty segments merged and a
/// climb above the root refused. A path ending in `.` or `..` keeps its
/// trailing slash (`/a/b/..` is `/a/`), as §5.2.4 gives.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in path[1..].split('/') {
        trailing_slash = true;
        // `is_clean` may have stopped before the segment that has one.
        if seg.contains('\\') {
            return Err(PathError::Backslash);
        }
        if is_dot_with_params(seg) {
            return Err(PathError::DotSegmentParams);
        }
        match seg {
            "" | "." => {}
            ".." => {
                if kept.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => {
                kept.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &kept {
        out.push('/');
        out.push_str(seg);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The request target as it was before [`normalize_request`] rewrote it, to
/// be put back for a route with `normalize_path: false`.
#[derive(Clone, Debug)]
pub enum OriginalTarget {
    /// The target was the URI itself (origin-form, HTTP/2).
    Uri(Uri),
    /// The target was kept as bytes beside the URI (absolute-form).
    Raw(Box<[u8]>),
}

impl OriginalTarget {
    /// Puts the original target back on `req`.
    pub fn restore(&self, req: &mut RequestHeader) -> pingora_core::Result<()> {
        match self {
            OriginalTarget::Uri(uri) => {
                req.set_uri(uri.clone());
                Ok(())
            }
            OriginalTarget::Raw(raw) => req.set_raw_path(raw),
        }
    }
}

/// Normalises the path of `req`'s target in place, keeping its query, and
/// for HTTP/2 its scheme and authority, and for an absolute-form target its
/// form. Returns the original target when it changed (`None`: the path was
/// already clean, and nothing was allocated).
pub fn normalize_request(req: &mut RequestHeader) -> Result<Option<OriginalTarget>, PathError> {
    let clean = match normalize(req.uri.path())? {
        Cow::Borrowed(_) => return Ok(None),
        Cow::Owned(p) => p,
    };
    set_path(req, &clean).map(Some)
}

/// Replaces the path of `req`'s target with `path`, keeping its query, and
/// for HTTP/2 its scheme and authority, and for an absolute-form target its
/// form. Returns the target as it was.
pub(crate) fn set_path(req: &mut RequestHeader, path: &str) -> Result<OriginalTarget, PathError> {
    if !req.raw_path_is_utf8() {
        return Err(PathError::NotUtf8);
    }
    let path_and_query = match req.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let old_pq = req.uri.path_and_query().map_or("", |p| p.as_str());
    let raw = req.raw_path();
    if raw != old_pq.as_bytes() {
        // Absolute-form: the URI holds the path-and-query, which ends the
        // raw target; swap that tail and keep the scheme and authority.
        if let Some(head) = raw.strip_suffix(old_pq.as_bytes()) {
            let original = OriginalTarget::Raw(raw.into());
            let mut target = Vec::with_capacity(head.len() + path_and_query.len());
            target.extend_from_slice(head);
            target.extend_from_slice(path_and_query.as_bytes());
            req.set_raw_path(&target)
                .map_err(|_| PathError::BadPercentEncoding)?;
            return Ok(original);
        }
    }
    let original = req.uri.clone();
    let mut parts = original.clone().into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(path_and_query).map_err(|_| PathError::BadPercentEncoding)?);
    let uri = Uri::from_parts(parts).map_err(|_| PathError::BadPercentEncoding)?;
    req.set_uri(uri);
    Ok(OriginalTarget::Uri(original))
}

#[cfg(test)]
mod tests;
