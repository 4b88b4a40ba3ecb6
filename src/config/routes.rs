//! `routes:`: which requests go to which upstream, through which limits and filters.

use std::collections::BTreeSet;

use http::Method;

use super::model::{HostMatch, RouteSpec};
use super::node::{Errors, Node};
use crate::request::escaped_slashes::EscapedSlashes;
use crate::request::path::{self, PathError};

const ROUTE_KEYS: &[&str] = &[
    "name",
    "host",
    "path_prefix",
    "methods",
    "strip_prefix",
    "upstream",
    "limits",
    "filters",
    "normalize_path",
    "max_body",
];

/// `max_body:` at the top level or on a route: a size, or `off` for no limit.
/// `None`: not written, or wrong (and reported).
pub(super) fn max_body(node: &Node, errs: &mut Errors) -> Option<Option<u64>> {
    if node.value.as_str() == Some("off") {
        return Some(None);
    }
    node.size(errs).map(Some)
}

/// `default_max_body` is the top-level `max_body`, for routes that set none.
pub fn validate(node: &Node, default_max_body: Option<u64>, errs: &mut Errors) -> Vec<RouteSpec> {
    let mut out = Vec::new();
    let Some(items) = node.seq(errs) else {
        return out;
    };
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let n = node.item(i, item);
        let Some(route) = route(i, &n, default_max_body, errs) else {
            continue;
        };
        if !names.insert(route.name.clone()) {
            errs.push(
                n.key_path("name"),
                format!("route name `{}` is used twice", route.name),
            );
        }
        // Two routes with the same host, prefix and methods: the second could never match.
        let signature = (
            route.host.clone(),
            route.path_prefix.clone(),
            format!("{:?}", route.methods),
        );
        if !seen.insert(signature) {
            errs.push(
                n.path(),
                "same host, path_prefix and methods as an earlier route: it would never match",
            );
        }
        out.push(route);
    }
    out
}

fn route(
    i: usize,
    n: &Node,
    default_max_body: Option<u64>,
    errs: &mut Errors,
) -> Option<RouteSpec> {
    let m = n.mapping(errs, ROUTE_KEYS)?;
    let field = |k: &str| n.field(m, k);
    let name = match field("name") {
        None => Some(format!("route{i}")),
        Some(v) => v.str(errs).map(String::from),
    };
    let host = field("host").and_then(|h| {
        let s = h.str(errs)?.to_ascii_lowercase();
        // A request's host is matched without its port or trailing dot.
        let s = s.strip_suffix('.').unwrap_or(&s);
        if let Some(suffix) = s.strip_prefix("*.") {
            if !is_host_name(suffix) {
                errs.push(h.path(), "a wildcard host looks like `*.example.com`");
                return None;
            }
            Some(HostMatch::Wildcard(format!(".{suffix}")))
        } else if is_host_name(s) || is_ipv6_literal(s) {
            Some(HostMatch::Exact(s.to_string()))
        } else {
            errs.push(
                h.path(),
                "expected a host name without a port (`api.example.com`, `[::1]`), or `*.example.com`",
            );
            None
        }
    });
    let path_prefix = match field("path_prefix") {
        None => Some("/".to_string()),
        Some(p) => p.absolute_path(errs),
    };
    let methods = field("methods").and_then(|mn| {
        let list = mn.str_list(errs);
        let mut out = Vec::new();
        for (node, s) in list {
            match Method::from_bytes(s.to_ascii_uppercase().as_bytes()) {
                Ok(m) => out.push(m),
                Err(_) => errs.push(node.path(), format!("`{s}` is not an HTTP method")),
            }
        }
        if out.is_empty() {
            errs.push(
                mn.path(),
                "an empty list would match nothing; leave `methods` out to match all",
            );
            return None;
        }
        Some(out)
    });
    let strip_prefix = match field("strip_prefix") {
        None => Some(false),
        Some(s) => s.bool(errs),
    };
    let (normalize_path, escaped_slashes) = match field("normalize_path") {
        None => (Some(true), EscapedSlashes::Keep),
        Some(s) => normalize_path(&s, errs),
    };
    // Request paths are normalised before routing: a prefix that is not in
    // normal form (`/api//`, `/a/./b`, `/%7Euser`) would never match.
    if let (Some(p), Some(prefix), Some(true)) =
        (field("path_prefix"), &path_prefix, normalize_path)
    {
        match path::normalize(prefix) {
            Ok(clean) if clean != prefix.as_str() => errs.push(
                p.path(),
                format!(
                    "request paths are normalised first, so this would never match: \
                     write `{clean}` (or set normalize_path: false)"
                ),
            ),
            Ok(_) => {}
            Err(PathError::AboveRoot) => errs.push(p.path(), "climbs above the root"),
            Err(_) => errs.push(p.path(), "a `%` must be followed by two hex digits"),
        }
    }
    let max_body = field("max_body")
        .and_then(|b| max_body(&b, errs))
        .unwrap_or(default_max_body);
    let upstream = match field("upstream") {
        Some(u) => u.str(errs).map(String::from),
        None => {
            errs.push(n.key_path("upstream"), "required");
            None
        }
    };
    let names = |k: &str, errs: &mut Errors| -> Vec<String> {
        field(k)
            .map(|l| {
                l.str_list(errs)
                    .into_iter()
                    .map(|(_, s)| s.to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let limits = names("limits", errs);
    let filters = names("filters", errs);
    // Invalid fields were reported; fill them with defaults so the route's
    // references (upstream, limits, filters) are still checked. A config with
    // any error is never used.
    Some(RouteSpec {
        name: name.unwrap_or_else(|| format!("route{i}")),
        host,
        path_prefix: path_prefix.unwrap_or_else(|| "/".into()),
        methods,
        strip_prefix: strip_prefix.unwrap_or(false),
        normalize_path: normalize_path.unwrap_or(true),
        escaped_slashes,
        max_body,
        upstream: upstream.unwrap_or_default(),
        limits,
        filters,
    })
}

/// `normalize_path: true | false | { escaped_slashes: keep | reject | unescape }`.
/// The mapping form normalises; only it chooses what encoded slashes mean.
fn normalize_path(node: &Node, errs: &mut Errors) -> (Option<bool>, EscapedSlashes) {
    if !node.value.is_mapping() {
        return (node.bool(errs), EscapedSlashes::Keep);
    }
    let Some(m) = node.mapping(errs, &["escaped_slashes"]) else {
        return (None, EscapedSlashes::Keep);
    };
    let choice = node.field(m, "escaped_slashes").and_then(|v| {
        let text = v.str(errs)?;
        let parsed = EscapedSlashes::parse(text);
        if parsed.is_none() {
            errs.push(
                v.path(),
                format!("expected keep, reject or unescape, found `{text}`"),
            );
        }
        parsed
    });
    (Some(true), choice.unwrap_or_default())
}

/// Letters, digits, `-`, `_` and dots between labels: what a request's host
/// can be once its port and trailing dot are dropped. Anything else (a port,
/// a space, a `*` inside) could never equal one, and the route would be dead.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `[::1]`: how an IPv6 address is written as a host (RFC 3986 §3.2.2).
fn is_ipv6_literal(s: &str) -> bool {
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
}
