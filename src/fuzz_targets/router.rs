//! Path normalisation, then the route table: the normal form is a fixed
//! point with no dot or empty segment and no needless percent-encoding, and
//! for the raw and the normal path alike the compiled table must pick the
//! route a reference picks that states the matching rules directly (see the
//! module doc of [`crate::router`]).
//!
//! Input: route lines `HOST PREFIX METHODS` (`-` for no host or no methods,
//! methods comma-separated), a line `--`, then request lines
//! `HOST METHOD PATH`.

use std::borrow::Cow;
use std::cmp::Reverse;

use http::Method;

use super::input::lines;
use crate::config::{HostMatch, RouteSpec};
use crate::request::escaped_slashes::{apply, EscapedSlashes};
use crate::request::path::{normalize, PathError};
use crate::router::{strip_prefix, Router};

pub fn router(data: &[u8]) {
    let mut input = lines(data);
    let mut routes = Vec::new();
    for line in input.by_ref() {
        if line == b"--" {
            break;
        }
        if let Some(route) = route_line(line, routes.len()) {
            routes.push(route);
        }
    }
    let router = Router::new(&routes);
    for line in input {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let mut words = line.splitn(3, ' ');
        let (Some(host), Some(method), Some(path)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            continue;
        };
        let host = (host != "-").then_some(host);
        route_matches_rules(&router, &routes, host, path, &method);
        if let Some(clean) = normal_form(path) {
            route_matches_rules(&router, &routes, host, &clean, &method);
        }
    }
}

fn route_matches_rules(
    router: &Router,
    routes: &[RouteSpec],
    host: Option<&str>,
    path: &str,
    method: &Method,
) {
    let found = router.find(host, path, method);
    let expected = reference(routes, host, path, method);
    assert_eq!(
        found, expected,
        "{host:?} {method} {path}: the table chose {found:?}, the rules {expected:?}"
    );
    if let Some(id) = found {
        let prefix = &routes[id].path_prefix;
        let stripped = strip_prefix(path, prefix);
        assert!(stripped.starts_with('/'), "stripped to {stripped:?}");
        assert!(stripped.ends_with(&path[prefix.len()..]));
    }
}

/// The path as the gateway routes it, checked to be in normal form; `None`
/// when it is refused, which must be for a reason the path shows.
fn normal_form(path: &str) -> Option<String> {
    let clean = match normalize(path) {
        Ok(clean) => clean,
        Err(PathError::AboveRoot) => {
            let lower = path.to_ascii_lowercase();
            assert!(
                lower.contains("..") || lower.contains("%2e"),
                "{path:?} does not climb"
            );
            return None;
        }
        Err(PathError::Backslash) => {
            assert!(path.contains('\\'), "{path:?} has no backslash");
            return None;
        }
        Err(PathError::DotSegmentParams) => {
            let lower = path.to_ascii_lowercase();
            assert!(
                (lower.contains('.') || lower.contains("%2e"))
                    && (lower.contains(';') || lower.contains("%3b")),
                "{path:?} has no dot segment with parameters"
            );
            return None;
        }
        Err(e) => {
            assert!(path.contains('%'), "{path:?} refused as {e:?}");
            return None;
        }
    };
    assert_eq!(
        normalize(&clean).as_deref(),
        Ok(&*clean),
        "{path:?} normalised to {clean:?}, which normalises further"
    );
    if !path.starts_with('/') {
        assert_eq!(clean, path, "a path without segments is left as it is");
        return Some(clean.into_owned());
    }
    assert!(clean.starts_with('/'), "{path:?} normalised to {clean:?}");
    let segments: Vec<&str> = clean[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(
            (last || !seg.is_empty()) && *seg != "." && *seg != "..",
            "{path:?} normalised to {clean:?}, which keeps a segment {seg:?}"
        );
        assert!(
            !(seg.starts_with(".;") || seg.starts_with("..;") || seg.contains('\\')),
            "{path:?} normalised to {clean:?}, which keeps a segment {seg:?}"
        );
        let bytes = seg.as_bytes();
        for (at, _) in seg.match_indices('%') {
            let Some(hex) = bytes.get(at + 1..at + 3) else {
                panic!("{path:?} normalised to {clean:?}, which ends in a bare %");
            };
            let byte = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16);
            assert!(
                byte.is_ok_and(|b| !(b.is_ascii_alphanumeric() || b"-._~".contains(&b)))
                    && !hex.iter().any(u8::is_ascii_lowercase),
                "{path:?} normalised to {clean:?}, which keeps %{}",
                String::from_utf8_lossy(hex)
            );
        }
    }
    unescaped_form(&clean);
    Some(clean.into_owned())
}

/// `escaped_slashes: unescape` of a normal path: refused only for what the
/// decoded slashes expose, and otherwise normal, with no encoded slash left.
fn unescaped_form(clean: &str) {
    let Ok(target) = http::Uri::try_from(clean) else {
        return;
    };
    let Ok(mut req) =
        pingora_http::RequestHeader::build("GET", target.to_string().as_bytes(), None)
    else {
        return;
    };
    match apply(EscapedSlashes::Unescape, &mut req) {
        Ok(_) => {
            let out = req.uri.path();
            assert!(
                !out.contains("%2F") && !out.contains("%5C"),
                "{clean:?} unescaped to {out:?}"
            );
            assert_eq!(
                normalize(out).as_deref(),
                Ok(out),
                "{clean:?} unescaped to {out:?}"
            );
        }
        // A `/` decoded in front of a `..` or a `..;` makes it a segment.
        Err(PathError::AboveRoot | PathError::DotSegmentParams) => {}
        Err(e) => panic!("{clean:?} unescaped refused as {e:?}"),
    }
}

/// A route as the config would hand it over: hosts lowercased, `*.` made a
/// suffix, methods parsed.
fn route_line(line: &[u8], index: usize) -> Option<RouteSpec> {
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    let (host, prefix, methods) = (words.next()?, words.next()?, words.next().unwrap_or("-"));
    let host = match host {
        "-" => None,
        h => {
            let h = h.to_ascii_lowercase();
            Some(match h.strip_prefix('*') {
                Some(suffix) => HostMatch::Wildcard(suffix.to_string()),
                None => HostMatch::Exact(h),
            })
        }
    };
    let methods = match methods {
        "-" => None,
        list => Some(
            list.split(',')
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
        ),
    };
    Some(RouteSpec {
        name: format!("r{index}"),
        host,
        path_prefix: prefix.to_string(),
        methods,
        strip_prefix: false,
        normalize_path: true,
        escaped_slashes: Default::default(),
        max_body: None,
        upstream: "u".into(),
        limits: vec![],
        filters: vec![],
    })
}

/// The rules, one candidate at a time: the exact host's routes, then each
/// matching wildcard's from the longest suffix, then the host-less ones; in
/// the first group with a match, the longest prefix, then a route naming
/// methods, then the one written first.
fn reference(
    routes: &[RouteSpec],
    host: Option<&str>,
    path: &str,
    method: &Method,
) -> Option<usize> {
    let host = host.map(plain_host);
    let mut groups: Vec<(u8, usize, Vec<usize>)> = Vec::new();
    for (id, r) in routes.iter().enumerate() {
        let group = match (&r.host, host.as_deref()) {
            (None, _) => Some((2, 0)),
            (Some(HostMatch::Exact(e)), Some(h)) if e == h => Some((0, 0)),
            (Some(HostMatch::Wildcard(s)), Some(h))
                if h.len() > s.len() && h.ends_with(s.as_str()) =>
            {
                Some((1, usize::MAX - s.len()))
            }
            _ => None,
        };
        if let Some((tier, rank)) = group {
            match groups.iter_mut().find(|g| g.0 == tier && g.1 == rank) {
                Some(g) => g.2.push(id),
                None => groups.push((tier, rank, vec![id])),
            }
        }
    }
    groups.sort_by_key(|g| (g.0, g.1));
    groups.iter().find_map(|(_, _, ids)| {
        ids.iter()
            .copied()
            .filter(|&id| {
                let r = &routes[id];
                path.starts_with(&r.path_prefix)
                    && r.methods.as_ref().is_none_or(|ms| ms.contains(method))
            })
            .max_by_key(|&id| {
                let r = &routes[id];
                (r.path_prefix.len(), r.methods.is_some(), Reverse(id))
            })
    })
}

/// `host[:port]`, `[v6]:port`, a trailing dot, any case: the name alone.
fn plain_host(host: &str) -> Cow<'_, str> {
    let name = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    Cow::Owned(name.to_ascii_lowercase())
}
