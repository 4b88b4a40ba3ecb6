//! The gateway's sections as a whole: listeners, admin, trusted proxies and
//! filters here; upstreams, limits and routes in their own files. Cross-section
//! references (a route naming an upstream, limit or filter) are checked last.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde_yaml::{Mapping, Value};

use super::model::{AccessLogFormat, AccessLogSpec, Config, ListenerSpec, TlsSpec};
use super::node::{Errors, Node};
use crate::filters::{Filter, Registry};
use crate::request::header_size::{DEFAULT_MAX_REQUEST_HEADER_SIZE, MAX_REQUEST_HEADER_SIZE};

/// Pingora's own default, and nginx's `http2_max_concurrent_streams`.
const DEFAULT_H2_MAX_STREAMS: u32 = 100;

pub fn validate(top: &Mapping, registry: &Registry, errs: &mut Errors) -> Option<Config> {
    let root_value = Value::Mapping(top.clone());
    let root = Node::root(&root_value);
    let field = |key: &str| top.get(key).map(|v| root.child(key, v));

    let listeners = match field("listen") {
        Some(n) => listeners(&n, errs),
        None => {
            errs.push("listen", "at least one listener is required");
            Vec::new()
        }
    };
    let admin = field("admin").and_then(|n| super::admin::validate(&n, errs));
    let trusted_proxies = field("trusted_proxies")
        .map(|n| trusted(&n, errs))
        .unwrap_or_default();
    let max_request_header_size = match field("max_request_header_size") {
        None => Some(DEFAULT_MAX_REQUEST_HEADER_SIZE),
        Some(n) => n.uint(errs, 1024, MAX_REQUEST_HEADER_SIZE),
    };
    let max_body = field("max_body")
        .and_then(|n| super::routes::max_body(&n, errs))
        .flatten();
    let h2_max_streams = match field("h2_max_streams") {
        None => Some(DEFAULT_H2_MAX_STREAMS),
        Some(n) => n.uint(errs, 1, u32::MAX as u64).map(|v| v as u32),
    };
    let clients = super::clients::validate(top, &root, errs);
    let access_log = field("access_log").and_then(|n| access_log(&n, errs));
    let upstreams = field("upstreams")
        .map(|n| super::upstreams::validate(&n, errs))
        .unwrap_or_default();
    let redis = field("redis").and_then(|n| super::redis::validate(&n, errs));
    let resolver = field("resolver").map_or_else(Vec::new, |n| resolver(&n, errs));
    let limits = field("limits")
        .map(|n| super::limits::validate(&n, top.contains_key("redis"), errs))
        .unwrap_or_default();
    let mut filters = field("filters")
        .map(|n| declared_filters(&n, registry, errs))
        .unwrap_or_default();
    let routes = match field("routes") {
        Some(n) => super::routes::validate(&n, max_body, errs),
        None => {
            errs.push("routes", "at least one route is required");
            Vec::new()
        }
    };

    // Check references against the names declared, not only the valid ones: a
    // broken upstream is reported once, at its own path, not again per route.
    let declared = |section: &str| -> Vec<String> {
        top.get(section)
            .and_then(Value::as_mapping)
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let upstream_names = declared("upstreams");
    let limit_names = declared("limits");
    let filter_names = declared("filters");

    // A route may name a declared filter, or a registered kind directly.
    for (i, route) in routes.iter().enumerate() {
        let at = |key: &str, j: usize| format!("routes[{i}].{key}[{j}]");
        if !route.upstream.is_empty() && !upstream_names.contains(&route.upstream) {
            errs.push(
                format!("routes[{i}].upstream"),
                format!("no upstream named `{}`", route.upstream),
            );
        }
        for (j, name) in route.limits.iter().enumerate() {
            if !limit_names.contains(name) {
                errs.push(at("limits", j), format!("no limit named `{name}`"));
            }
        }
        for (j, name) in route.filters.iter().enumerate() {
            if filters.contains_key(name) || filter_names.contains(name) {
                continue;
            }
            if registry.contains(name) {
                match registry.build(name, &Value::Null) {
                    Ok(f) => {
                        filters.insert(name.clone(), f);
                    }
                    Err(e) => errs.push(at("filters", j), e),
                }
            } else {
                errs.push(
                    at("filters", j),
                    format!(
                        "no filter named `{name}` (declare it under `filters:` or use a registered kind: {})",
                        registry.kinds().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }

    Some(Config {
        listeners,
        admin,
        trusted_proxies,
        max_request_header_size: max_request_header_size? as usize,
        max_body,
        h2_max_streams: h2_max_streams?,
        clients: clients?,
        upstreams,
        limits,
        filters,
        routes,
        access_log,
        redis,
        resolver,
    })
}

/// `resolver: 10.0.0.2:53` or a list; a bare IP means port 53.
fn resolver(node: &Node, errs: &mut Errors) -> Vec<SocketAddr> {
    let items: Vec<Node> = match node.value {
        Value::Sequence(seq) => seq
            .iter()
            .enumerate()
            .map(|(i, v)| node.item(i, v))
            .collect(),
        _ => vec![node.clone()],
    };
    let before = errs.0.len();
    let mut out = Vec::new();
    for n in items {
        let Some(text) = n.str(errs) else { continue };
        match text.parse::<SocketAddr>().or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        }) {
            Ok(a) => out.push(a),
            Err(_) => errs.push(
                n.path(),
                format!("`{text}` is not a DNS server address like 10.0.0.2:53"),
            ),
        }
    }
    if out.is_empty() && errs.0.len() == before {
        errs.push(node.path(), "at least one DNS server is required");
    }
    out
}

/// `access_log: /var/log/sluice/access.log` or `{ path: ..., format: json }`.
fn access_log(node: &Node, errs: &mut Errors) -> Option<AccessLogSpec> {
    if let Value::String(path) = node.value {
        return Some(AccessLogSpec {
            path: path.clone(),
            format: AccessLogFormat::Text,
        });
    }
    let m = node.mapping(errs, &["path", "format"])?;
    let path = match node.field(m, "path") {
        Some(p) => p.str(errs)?.to_string(),
        None => {
            errs.push(
                node.key_path("path"),
                "required: a file, or `-` for standard output",
            );
            return None;
        }
    };
    let format = match node.field(m, "format") {
        None => AccessLogFormat::Text,
        Some(f) => match f.str(errs)? {
            "text" => AccessLogFormat::Text,
            "json" => AccessLogFormat::Json,
            other => {
                errs.push(f.path(), format!("unknown format `{other}` (text, json)"));
                return None;
            }
        },
    };
    Some(AccessLogSpec { path, format })
}

fn listeners(node: &Node, errs: &mut Errors) -> Vec<ListenerSpec> {
    let mut out = Vec::new();
    let Some(items) = node.seq(errs) else {
        return out;
    };
    if items.is_empty() {
        errs.push(node.path(), "at least one listener is required");
    }
    for (i, item) in items.iter().enumerate() {
        let n = node.item(i, item);
        let spec = match item {
            Value::String(_) => n.str(errs).map(|a| (a, None, false)),
            _ => n.mapping(errs, &["address", "tls", "h2c"]).and_then(|m| {
                let address = match n.field(m, "address") {
                    Some(a) => a.str(errs),
                    None => {
                        errs.push(n.key_path("address"), "required");
                        None
                    }
                };
                let tls = n.field(m, "tls").and_then(|t| {
                    let tm = t.mapping(errs, &["cert", "key"])?;
                    let mut file = |key: &str| match t.field(tm, key) {
                        Some(f) => f.str(errs).map(String::from),
                        None => {
                            errs.push(t.key_path(key), "required");
                            None
                        }
                    };
                    let cert = file("cert");
                    let key = file("key");
                    for (k, p) in [("cert", &cert), ("key", &key)] {
                        if let Some(p) = p {
                            if let Err(e) = std::fs::metadata(p) {
                                errs.push(t.key_path(k), format!("cannot read `{p}`: {e}"));
                            }
                        }
                    }
                    Some(TlsSpec {
                        cert: cert?,
                        key: key?,
                    })
                });
                let h2c = match n.field(m, "h2c") {
                    None => false,
                    Some(h) => h.bool(errs).unwrap_or(false),
                };
                if h2c && m.contains_key("tls") {
                    errs.push(
                        n.key_path("h2c"),
                        "only for plaintext listeners (a TLS listener offers h2 by ALPN)",
                    );
                }
                address.map(|a| (a, tls, h2c))
            }),
        };
        if let Some((address, tls, h2c)) = spec {
            if address.parse::<SocketAddr>().is_err() {
                errs.push(
                    n.path(),
                    format!("`{address}` is not an address such as 0.0.0.0:8080"),
                );
                continue;
            }
            out.push(ListenerSpec {
                address: address.to_string(),
                tls,
                h2c,
            });
        }
    }
    out
}

fn trusted(node: &Node, errs: &mut Errors) -> Vec<IpNet> {
    node.str_list(errs)
        .into_iter()
        .filter_map(|(n, s)| {
            // A bare address means that one host.
            let parsed = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => Some(net),
                Err(_) => {
                    errs.push(n.path(), format!("`{s}` is not an address or CIDR block"));
                    None
                }
            }
        })
        .collect()
}

fn declared_filters(
    node: &Node,
    registry: &Registry,
    errs: &mut Errors,
) -> BTreeMap<String, Arc<dyn Filter>> {
    let mut out = BTreeMap::new();
    for (name, value) in node.named_entries(errs) {
        let n = node.child(name, value);
        let Value::Mapping(m) = value else {
            errs.push(n.path(), "expected a mapping with a `type`");
            continue;
        };
        let Some(kind) = m.get("type").and_then(Value::as_str) else {
            errs.push(n.key_path("type"), "required: the filter's registered kind");
            continue;
        };
        let mut settings = m.clone();
        settings.remove("type");
        match registry.build(kind, &Value::Mapping(settings)) {
            Ok(f) => {
                out.insert(name.to_string(), f);
            }
            Err(e) => errs.push(n.path(), e),
        }
    }
    out
}
