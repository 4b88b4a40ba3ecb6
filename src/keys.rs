//! Request keys: which part of a request a limit counts by, or a hash pool sticks on.
//!
//! A key is read from plain `http` types, never from a Pingora session, so that
//! the limiter and the balancer can be tested and benchmarked without sockets.
//! Extraction borrows from the request wherever it can: a header, cookie or
//! query value is a slice of the request, and a client address is its raw
//! octets, so the hot path builds no `String`.

use std::fmt;
use std::net::IpAddr;
use std::ops::Deref;

use http::{HeaderMap, HeaderName, Uri};

/// Where a key comes from. Written in YAML as `client_ip`, `header:NAME`,
/// `cookie:NAME`, `query:NAME`, `path`, `route` or `global`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeySpec {
    ClientIp,
    Header(HeaderName),
    Cookie(String),
    Query(String),
    Path,
    Route,
    Global,
}

/// A key's value: a slice of the request, or a client address's octets held
/// inline (no allocation either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyValue<'a> {
    Borrowed(&'a [u8]),
    Inline([u8; 16], u8),
}

impl Deref for KeyValue<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            KeyValue::Borrowed(b) => b,
            KeyValue::Inline(buf, len) => &buf[..*len as usize],
        }
    }
}

impl KeyValue<'_> {
    fn ip(ip: IpAddr) -> KeyValue<'static> {
        let mut buf = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => {
                buf[..4].copy_from_slice(&v4.octets());
                KeyValue::Inline(buf, 4)
            }
            IpAddr::V6(v6) => {
                buf.copy_from_slice(&v6.octets());
                KeyValue::Inline(buf, 16)
            }
        }
    }
}

/// What a key may be read from.
pub struct KeyInput<'a> {
    pub client_ip: Option<IpAddr>,
    pub headers: &'a HeaderMap,
    pub uri: &'a Uri,
    pub route: &'a str,
}

impl KeySpec {
    /// Parses the YAML form. `allow` lists which kinds the caller accepts
    /// (a hash pool has no use for `route` or `global`).
    pub fn parse(text: &str) -> Result<KeySpec, String> {
        let (kind, arg) = match text.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (text, None),
        };
        let need_arg = |what: &str| -> Result<&str, String> {
            match arg {
                Some(a) if !a.trim().is_empty() => Ok(a.trim()),
                _ => Err(format!("`{what}:` needs a name, e.g. `{what}:x-api-key`")),
            }
        };
        let no_arg = |spec: KeySpec| -> Result<KeySpec, String> {
            match arg {
                None => Ok(spec),
                Some(_) => Err(format!("`{kind}` takes no `:name`")),
            }
        };
        match kind {
            "client_ip" => no_arg(KeySpec::ClientIp),
            "path" => no_arg(KeySpec::Path),
            "route" => no_arg(KeySpec::Route),
            "global" => no_arg(KeySpec::Global),
            "header" => {
                let name = need_arg("header")?;
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map(KeySpec::Header)
                    .map_err(|_| format!("`{name}` is not a valid header name"))
            }
            "cookie" => need_arg("cookie").map(|n| KeySpec::Cookie(n.to_string())),
            "query" => need_arg("query").map(|n| KeySpec::Query(n.to_string())),
            other => Err(format!(
                "unknown key `{other}`: expected client_ip, header:NAME, cookie:NAME, query:NAME, path, route or global"
            )),
        }
    }

    /// The key's value for this request, or `None` when the request lacks it.
    pub fn extract<'a>(&self, input: &KeyInput<'a>) -> Option<KeyValue<'a>> {
        match self {
            KeySpec::ClientIp => input.client_ip.map(KeyValue::ip),
            KeySpec::Header(name) => input
                .headers
                .get(name)
                .map(|v| KeyValue::Borrowed(v.as_bytes())),
            KeySpec::Cookie(name) => cookie_value(input.headers, name).map(KeyValue::Borrowed),
            KeySpec::Query(name) => input
                .uri
                .query()
                .and_then(|q| query_value(q, name))
                .map(|v| KeyValue::Borrowed(v.as_bytes())),
            KeySpec::Path => Some(KeyValue::Borrowed(input.uri.path().as_bytes())),
            KeySpec::Route => Some(KeyValue::Borrowed(input.route.as_bytes())),
            KeySpec::Global => Some(KeyValue::Borrowed(b"")),
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::ClientIp => f.write_str("client_ip"),
            KeySpec::Header(n) => write!(f, "header:{n}"),
            KeySpec::Cookie(n) => write!(f, "cookie:{n}"),
            KeySpec::Query(n) => write!(f, "query:{n}"),
            KeySpec::Path => f.write_str("path"),
            KeySpec::Route => f.write_str("route"),
            KeySpec::Global => f.write_str("global"),
        }
    }
}

/// Finds `name` among the `Cookie` headers (RFC 6265 §5.4: `name=value` pairs
/// separated by `; `; a request may carry several Cookie fields under HTTP/2).
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    for field in headers.get_all(http::header::COOKIE) {
        for pair in field.as_bytes().split(|b| *b == b';') {
            let pair = trim_ascii(pair);
            if let Some(eq) = pair.iter().position(|b| *b == b'=') {
                if &pair[..eq] == name.as_bytes() {
                    return Some(&pair[eq + 1..]);
                }
            }
        }
    }
    None
}

/// The raw (still percent-encoded) value of the first `name=` in a query string.
fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests {
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
        assert_eq!(get("query:k"), Some(b"v%20w".to_vec()));
        assert_eq!(get("query:zz"), None);
        assert_eq!(get("path"), Some(b"/p/q".to_vec()));
        assert_eq!(get("route"), Some(b"api".to_vec()));
        assert_eq!(get("client_ip"), Some(vec![10, 0, 0, 7]));
        assert_eq!(get("header:absent"), None);
    }
}
