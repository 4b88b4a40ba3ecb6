//! Request keys: which part of a request a limit counts by, or a hash pool sticks on.
//!
//! A key is read from plain `http` types, never from a Pingora session, so that
//! the limiter and the balancer can be tested and benchmarked without sockets.
//! Extraction borrows from the request wherever it can: a header, cookie or
//! query value is a slice of the request, and a client address is its raw
//! octets, so the hot path builds no `String`.
//!
//! A key must name what the backend will read, or a client can spell one
//! value many ways and get a limit per spelling:
//! - a `query:` value is percent-decoded, with `+` read as a space
//!   (the form encoding of the WHATWG URL standard, which every web framework
//!   reads), so `%61bc`, `a%62c` and `abc` are one key; the parameter's name
//!   is matched decoded too. Only a value that has a `%` or `+` is copied;
//! - `header:` and `cookie:` values are compared as sent: no framework decodes
//!   them for the application;
//! - a source sent more than once with different values (`?k=zzz&k=abc`, two
//!   `X-Api-Key` fields, `sid` in two cookies) is [`ambiguous`](KeySpec::is_ambiguous):
//!   the gateway would key on one and the backend may read the other, so the
//!   request is refused instead of guessed at.

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
/// inline (no allocation either way), or a decoded query value.
#[derive(Clone, Debug)]
pub enum KeyValue<'a> {
    Borrowed(&'a [u8]),
    Inline([u8; 16], u8),
    Decoded(Box<[u8]>),
}

impl Deref for KeyValue<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            KeyValue::Borrowed(b) => b,
            KeyValue::Inline(buf, len) => &buf[..*len as usize],
            KeyValue::Decoded(b) => b,
        }
    }
}

/// Values are equal when their bytes are, however they are held.
impl PartialEq for KeyValue<'_> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for KeyValue<'_> {}

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
                .and_then(|q| query_values(q, name).next())
                .map(form_decoded),
            KeySpec::Path => Some(KeyValue::Borrowed(input.uri.path().as_bytes())),
            KeySpec::Route => Some(KeyValue::Borrowed(input.route.as_bytes())),
            KeySpec::Global => Some(KeyValue::Borrowed(b"")),
        }
    }
}

impl KeySpec {
    /// Whether this key's source is sent more than once with different
    /// values, so that the gateway and the backend could read two keys.
    /// The same value twice is one key.
    pub fn is_ambiguous(&self, input: &KeyInput<'_>) -> bool {
        match self {
            KeySpec::Header(name) => {
                let mut values = input.headers.get_all(name).iter();
                let first = values.next();
                values.any(|v| Some(v) != first)
            }
            KeySpec::Cookie(name) => {
                let mut values = cookie_values(input.headers, name);
                let first = values.next();
                values.any(|v| Some(v) != first)
            }
            KeySpec::Query(name) => {
                let Some(q) = input.uri.query() else {
                    return false;
                };
                let mut values = query_values(q, name);
                let Some(first) = values.next() else {
                    return false;
                };
                // Compared decoded: `k=a&k=%61` is one value.
                let first = form_decoded(first);
                values.any(|v| form_decoded(v) != first)
            }
            _ => false,
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

/// Every value of `name` among the `Cookie` headers (RFC 6265 §5.4:
/// `name=value` pairs separated by `; `; a request may carry several Cookie
/// fields under HTTP/2).
fn cookie_values<'a: 'n, 'n>(
    headers: &'a HeaderMap,
    name: &'n str,
) -> impl Iterator<Item = &'a [u8]> + 'n {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|field| field.as_bytes().split(|b| *b == b';'))
        .filter_map(move |pair| {
            let pair = trim_ascii(pair);
            let eq = pair.iter().position(|b| *b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then_some(&pair[eq + 1..])
        })
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    cookie_values(headers, name).next()
}

/// The raw (still encoded) values of every parameter of a query string whose
/// decoded name is `name`.
fn query_values<'a: 'n, 'n>(query: &'a str, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n {
    query.split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (*form_decoded(k.as_bytes()) == *name.as_bytes()).then_some(v.as_bytes())
    })
}

/// `application/x-www-form-urlencoded` decoding (WHATWG URL, §5.1): `+` is a
/// space and `%XX` the byte it names; a `%` not followed by two hex digits
/// stays as it is, as browsers and frameworks leave it. Borrowed when there
/// is nothing to decode.
fn form_decoded(raw: &[u8]) -> KeyValue<'_> {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return KeyValue::Borrowed(raw);
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    KeyValue::Decoded(out.into_boxed_slice())
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
#[path = "keys_tests.rs"]
mod tests;
