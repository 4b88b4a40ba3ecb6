//! The route table, compiled once per config load.
//!
//! Matching follows what nginx and Envoy users expect:
//! 1. host: an exact host beats the longest matching `*.suffix` wildcard,
//!    which beats routes with no host; a host that matches no host-specific
//!    route falls to the host-less routes;
//! 2. within that host group, the longest `path_prefix` wins (a literal byte
//!    prefix, as in an nginx prefix `location`);
//! 3. a route with `methods` matches only those, and beats a route with the
//!    same prefix and no `methods`; if it does not accept the method, the
//!    next candidate is tried.
//!
//! Routes are grouped by host at compile time and sorted by prefix length, so
//! a lookup is a hash probe plus a short scan and allocates nothing.

use std::collections::HashMap;

use http::Method;

use crate::config::{HostMatch, RouteSpec};

/// Index of a route in the config's `routes` list.
pub type RouteId = usize;

struct Entry {
    prefix: String,
    methods: Option<Vec<Method>>,
    id: RouteId,
}

#[derive(Default)]
pub struct Router {
    exact: HashMap<String, Vec<Entry>>,
    /// Sorted by suffix length, longest first.
    wildcard: Vec<(String, Vec<Entry>)>,
    any_host: Vec<Entry>,
}

impl Router {
    pub fn new(routes: &[RouteSpec]) -> Router {
        let mut r = Router::default();
        for (id, route) in routes.iter().enumerate() {
            let entry = Entry {
                prefix: route.path_prefix.clone(),
                methods: route.methods.clone(),
                id,
            };
            match &route.host {
                None => r.any_host.push(entry),
                Some(HostMatch::Exact(h)) => r.exact.entry(h.clone()).or_default().push(entry),
                Some(HostMatch::Wildcard(s)) => {
                    match r.wildcard.iter_mut().find(|(suffix, _)| suffix == s) {
                        Some((_, list)) => list.push(entry),
                        None => r.wildcard.push((s.clone(), vec![entry])),
                    }
                }
            }
        }
        let by_prefix = |list: &mut Vec<Entry>| {
            // Longer prefix first; at equal prefixes a route that names its
            // methods is the more specific; otherwise the one written first.
            list.sort_by_key(|e| (std::cmp::Reverse(e.prefix.len()), e.methods.is_none()));
        };
        r.exact.values_mut().for_each(by_prefix);
        r.wildcard.iter_mut().for_each(|(_, l)| by_prefix(l));
        by_prefix(&mut r.any_host);
        r.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        r
    }

    /// The route for a request. `host` may carry a port and any case.
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> Option<RouteId> {
        if let Some(host) = host.map(normalize_host) {
            let host = host.as_ref();
            if let Some(list) = self.exact.get(host) {
                if let Some(id) = scan(list, path, method) {
                    return Some(id);
                }
            }
            for (suffix, list) in &self.wildcard {
                // `*.example.com` matches `a.example.com`, not `example.com`.
                if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                    if let Some(id) = scan(list, path, method) {
                        return Some(id);
                    }
                }
            }
        }
        scan(&self.any_host, path, method)
    }
}

fn scan(list: &[Entry], path: &str, method: &Method) -> Option<RouteId> {
    list.iter()
        .find(|e| {
            path.starts_with(e.prefix.as_str())
                && e.methods.as_ref().is_none_or(|ms| ms.contains(method))
        })
        .map(|e| e.id)
}

/// The host a request is for: the target's authority when it has one (an
/// HTTP/2 `:authority`, RFC 9113 §8.3.1, or an HTTP/1.1 absolute-form target,
/// which RFC 9112 §3.2.2 says wins over `Host`), else the `Host` field.
pub fn request_host<'a>(uri: &'a http::Uri, headers: &'a http::HeaderMap) -> Option<&'a str> {
    uri.authority().map(|a| a.as_str()).or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

/// Drops the port (RFC 9110 §7.2: Host is `uri-host [ ":" port ]`), a trailing
/// dot, and lowercases only when needed.
fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        // IPv6 literal: `[::1]:8080`
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

/// The path sent upstream when a route strips its prefix: what follows the
/// prefix, always starting with `/`, query kept.
pub fn strip_prefix(path_and_query: &str, prefix: &str) -> String {
    let rest = path_and_query
        .strip_prefix(prefix)
        .unwrap_or(path_and_query);
    if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_is_the_host_when_present() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "h1.example.com".parse().unwrap());
        let h2: http::Uri = "https://api.example.com:8443/x".parse().unwrap();
        assert_eq!(request_host(&h2, &headers), Some("api.example.com:8443"));
        let origin: http::Uri = "/x".parse().unwrap();
        assert_eq!(request_host(&origin, &headers), Some("h1.example.com"));
        assert_eq!(request_host(&origin, &http::HeaderMap::new()), None);
    }

    fn route(name: &str, host: Option<&str>, prefix: &str, methods: Option<&[&str]>) -> RouteSpec {
        RouteSpec {
            name: name.into(),
            host: host.map(|h| match h.strip_prefix('*') {
                Some(s) => HostMatch::Wildcard(s.into()),
                None => HostMatch::Exact(h.into()),
            }),
            path_prefix: prefix.into(),
            methods: methods.map(|ms| ms.iter().map(|m| m.parse().unwrap()).collect()),
            strip_prefix: false,
            normalize_path: true,
            escaped_slashes: Default::default(),
            max_body: None,
            upstream: "u".into(),
            limits: vec![],
            filters: vec![],
        }
    }

    fn table() -> (Router, Vec<RouteSpec>) {
        let routes = vec![
            route("root", None, "/", None),
            route("api", None, "/api/", None),
            route("api_v2", None, "/api/v2/", None),
            route("api_write", None, "/api/admin/", Some(&["POST"])),
            route("api_any", None, "/api/any/", None),
            route("api_any_post", None, "/api/any/", Some(&["POST"])),
            route("exact_host", Some("api.example.com"), "/", None),
            route("wild", Some("*.example.com"), "/", None),
            route("wild_deep", Some("*.eu.example.com"), "/", None),
            route("host_api", Some("api.example.com"), "/api/", None),
        ];
        (Router::new(&routes), routes)
    }

    fn name(
        t: &(Router, Vec<RouteSpec>),
        host: Option<&str>,
        path: &str,
        m: &str,
    ) -> Option<String> {
        t.0.find(host, path, &m.parse().unwrap())
            .map(|id| t.1[id].name.clone())
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table();
        assert_eq!(name(&t, None, "/api/v2/users", "GET").unwrap(), "api_v2");
        assert_eq!(name(&t, None, "/api/v1/users", "GET").unwrap(), "api");
        assert_eq!(name(&t, None, "/apix", "GET").unwrap(), "root");
        assert_eq!(name(&t, None, "/", "GET").unwrap(), "root");
    }

    #[test]
    fn methods_filter_then_fall_back_to_shorter_prefix() {
        let t = table();
        assert_eq!(name(&t, None, "/api/admin/x", "POST").unwrap(), "api_write");
        assert_eq!(name(&t, None, "/api/admin/x", "GET").unwrap(), "api");
        // Same prefix: the route naming the method wins whatever the order.
        assert_eq!(
            name(&t, None, "/api/any/x", "POST").unwrap(),
            "api_any_post"
        );
        assert_eq!(name(&t, None, "/api/any/x", "GET").unwrap(), "api_any");
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any() {
        let t = table();
        assert_eq!(
            name(&t, Some("api.example.com"), "/x", "GET").unwrap(),
            "exact_host"
        );
        assert_eq!(
            name(&t, Some("API.Example.com:8080"), "/api/x", "GET").unwrap(),
            "host_api"
        );
        assert_eq!(
            name(&t, Some("www.example.com"), "/x", "GET").unwrap(),
            "wild"
        );
        assert_eq!(
            name(&t, Some("a.eu.example.com"), "/x", "GET").unwrap(),
            "wild_deep"
        );
        // The apex is not a subdomain of itself.
        assert_eq!(name(&t, Some("example.com"), "/x", "GET").unwrap(), "root");
        assert_eq!(
            name(&t, Some("other.org"), "/api/v2/", "GET").unwrap(),
            "api_v2"
        );
    }

    #[test]
    fn no_route_is_none() {
        let routes = vec![route("only", Some("a.test"), "/x/", Some(&["GET"]))];
        let r = Router::new(&routes);
        assert_eq!(r.find(Some("a.test"), "/y", &Method::GET), None);
        assert_eq!(r.find(Some("a.test"), "/x/1", &Method::PUT), None);
        assert_eq!(r.find(None, "/x/1", &Method::GET), None);
        assert_eq!(r.find(Some("a.test"), "/x/1", &Method::GET), Some(0));
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash_and_query() {
        assert_eq!(strip_prefix("/api/users?id=1", "/api/"), "/users?id=1");
        assert_eq!(strip_prefix("/api", "/api"), "/");
        assert_eq!(strip_prefix("/api?x=1", "/api"), "/?x=1");
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(normalize_host("Example.COM."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("a.b:443"), "a.b");
    }
}
