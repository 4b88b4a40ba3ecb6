//! The YAML loader and validator, then the route table built from what it
//! accepts: whatever the file says, loading returns a config or a non-empty
//! list of errors, each with a message, and never panics; and every route it
//! accepts can be reached by some request.

use http::Method;

use crate::config::{self, HostMatch};
use crate::filters::Registry;
use crate::request::path::normalize;
use crate::router::Router;

pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = match config::load(text, &Registry::builtin()) {
        Ok(loaded) => loaded,
        Err(errors) => {
            assert!(!errors.is_empty(), "refused with no error");
            for e in &errors {
                assert!(
                    !e.message.is_empty(),
                    "an error without a message at {:?}",
                    e.path
                );
            }
            return;
        }
    };
    let routes = &loaded.gateway.routes;
    let router = Router::new(routes);
    for (id, route) in routes.iter().enumerate() {
        // Requests are routed by their normal path, so only a prefix in
        // normal form can ever match one.
        if route.normalize_path {
            assert_eq!(
                normalize(&route.path_prefix).as_deref(),
                Ok(route.path_prefix.as_str()),
                "route {id} ({}) has a prefix no normalised path starts with",
                route.name
            );
        }
        let host = match &route.host {
            None => None,
            Some(HostMatch::Exact(h)) => Some(h.clone()),
            Some(HostMatch::Wildcard(suffix)) => Some(format!("a{suffix}")),
        };
        // An exact host beats a wildcard by design: probe a wildcard route
        // with a subdomain no exact route claims.
        let claimed = |h: &str| {
            routes
                .iter()
                .any(|r| matches!(&r.host, Some(HostMatch::Exact(e)) if e == h))
        };
        if matches!(route.host, Some(HostMatch::Wildcard(_)))
            && host.as_deref().is_some_and(claimed)
        {
            continue;
        }
        let method = route
            .methods
            .as_ref()
            .and_then(|ms| ms.first().cloned())
            .unwrap_or(Method::GET);
        // A route is reachable through its own prefix, or shadowed by a route
        // at least as specific: never by a shorter prefix.
        let found = router.find(host.as_deref(), &route.path_prefix, &method);
        let Some(found) = found else {
            panic!("route {id} ({}) is not found by its own prefix", route.name);
        };
        assert!(
            routes[found].path_prefix.len() >= route.path_prefix.len(),
            "route {id} ({}) is shadowed by the shorter prefix of {found}",
            route.name
        );
    }
}
