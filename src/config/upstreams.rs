//! `upstreams:`: pools of backends, how to balance them, how to check them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_yaml::Value;

use super::model::{
    BackendSpec, Balance, BudgetSpec, HealthCheckSpec, HealthKind, NamedBackend, OutlierSpec,
    UpstreamProtocol, UpstreamSpec,
};
use super::node::{Errors, Node};
use crate::keys::KeySpec;

const UPSTREAM_KEYS: &[&str] = &[
    "balance",
    "hash_key",
    "backends",
    "health_check",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "idle_timeout",
    "retries",
    "tls",
    "sni",
    "protocol",
    "ca",
    "outlier_detection",
    "slow_start",
    "panic_threshold",
    "retry_budget",
    "latency_decay",
    "dns_refresh",
];

pub fn validate(node: &Node, errs: &mut Errors) -> BTreeMap<String, UpstreamSpec> {
    let mut out = BTreeMap::new();
    for (name, value) in node.named_entries(errs) {
        let n = node.child(name, value);
        if let Some(spec) = upstream(name, &n, errs) {
            out.insert(name.to_string(), spec);
        }
    }
    out
}

fn upstream(name: &str, n: &Node, errs: &mut Errors) -> Option<UpstreamSpec> {
    let m = n.mapping(errs, UPSTREAM_KEYS)?;
    let errors_before = errs.0.len();
    let field = |k: &str| n.field(m, k);

    let balance = match field("balance") {
        None => Some(Balance::RoundRobin),
        Some(b) => match b.str(errs)? {
            "round_robin" => Some(Balance::RoundRobin),
            "random" => Some(Balance::Random),
            "consistent_hash" => Some(Balance::ConsistentHash),
            "least_conn" => Some(Balance::LeastConn),
            "load_aware" => Some(Balance::LoadAware),
            other => {
                errs.push(
                    b.path(),
                    format!(
                        "unknown algorithm `{other}` (round_robin, random, consistent_hash, least_conn, load_aware)"
                    ),
                );
                None
            }
        },
    };
    let hash_key = match field("hash_key") {
        None => Some(KeySpec::ClientIp),
        Some(h) => h.str(errs).and_then(|s| match KeySpec::parse(s) {
            Ok(KeySpec::Route | KeySpec::Global) => {
                errs.push(h.path(), "a hash key must vary per request (client_ip, header:N, cookie:N, query:N, path)");
                None
            }
            Ok(k) => Some(k),
            Err(e) => {
                errs.push(h.path(), e);
                None
            }
        }),
    };
    if field("hash_key").is_some() && balance.is_some() && balance != Some(Balance::ConsistentHash)
    {
        errs.push(
            n.key_path("hash_key"),
            "only used with `balance: consistent_hash`",
        );
    }

    let (backends, named) = match field("backends") {
        Some(b) => backends(&b, errs),
        None => {
            errs.push(n.key_path("backends"), "required: at least one backend");
            (Vec::new(), Vec::new())
        }
    };
    let dns_refresh = match field("dns_refresh") {
        None => Some(Some(Duration::from_secs(5))),
        Some(d) if d.value.as_str() == Some("off") => Some(None),
        Some(d) => d
            .duration(errs)
            .map(|v| Some(v.max(Duration::from_millis(100)))),
    };
    let health_check = field("health_check").and_then(|h| super::health_check::validate(&h, errs));
    let dur = |k: &str, default: Duration, errs: &mut Errors| match field(k) {
        None => Some(default),
        Some(d) => d.duration(errs),
    };
    let connect_timeout = dur("connect_timeout", Duration::from_secs(1), errs);
    let read_timeout = dur("read_timeout", Duration::from_secs(30), errs);
    let write_timeout = dur("write_timeout", Duration::from_secs(30), errs);
    let idle_timeout = dur("idle_timeout", Duration::from_secs(60), errs);
    let retries = match field("retries") {
        None => Some(2),
        Some(r) => r.uint(errs, 0, 16).map(|v| v as u32),
    };
    let protocol = match field("protocol") {
        None => Some(UpstreamProtocol::Http1),
        Some(p) => match p.str(errs)? {
            "http1" => Some(UpstreamProtocol::Http1),
            "h2" => Some(UpstreamProtocol::H2),
            "h2c" => Some(UpstreamProtocol::H2c),
            other => {
                errs.push(
                    p.path(),
                    format!("unknown protocol `{other}` (http1, h2, h2c)"),
                );
                None
            }
        },
    };
    // h2 is TLS by definition (ALPN picks it) and h2c plaintext, so `tls`
    // may be left out; a `tls` that contradicts the protocol is an error.
    let tls = match (field("tls"), protocol) {
        (None, p) => Some(p == Some(UpstreamProtocol::H2)),
        (Some(t), p) => t.bool(errs).and_then(|tls| match p {
            Some(UpstreamProtocol::H2) if !tls => {
                errs.push(
                    t.path(),
                    "`protocol: h2` is HTTP/2 over TLS; use h2c for plaintext",
                );
                None
            }
            Some(UpstreamProtocol::H2c) if tls => {
                errs.push(
                    t.path(),
                    "`protocol: h2c` is plaintext; use h2 for HTTP/2 over TLS",
                );
                None
            }
            _ => Some(tls),
        }),
    };
    let ca = field("ca").and_then(|c| {
        let path = c.str(errs)?;
        match std::fs::read(path) {
            Ok(pem) if parse_ca(&pem).is_some() => Some(path.to_string()),
            Ok(_) => {
                errs.push(c.path(), format!("`{path}` holds no PEM certificate"));
                None
            }
            Err(e) => {
                errs.push(c.path(), format!("cannot read `{path}`: {e}"));
                None
            }
        }
    });
    let sni = match field("sni") {
        None => Some(String::new()),
        Some(s) => s.str(errs).map(String::from),
    };

    let outlier = field("outlier_detection").and_then(|o| outlier(&o, errs));
    let slow_start = field("slow_start").and_then(|d| d.duration(errs));
    let panic_threshold = match field("panic_threshold") {
        None => Some(0),
        Some(p) => p.uint(errs, 0, 100).map(|p| p as u32),
    };
    let retry_budget = match field("retry_budget") {
        None => Some(BudgetSpec {
            ratio: 0.2,
            min_per_second: 10.0,
        }),
        Some(b) => budget(&b, errs),
    };
    let latency_decay = dur("latency_decay", Duration::from_secs(1), errs);
    if slow_start.is_some() && balance == Some(Balance::ConsistentHash) {
        errs.push(
            n.key_path("slow_start"),
            "not supported with consistent_hash (a key cannot be partly on a backend)",
        );
    }

    if let (
        Some(HealthCheckSpec {
            kind: HealthKind::Grpc { .. },
            ..
        }),
        Some(UpstreamProtocol::Http1),
    ) = (&health_check, protocol)
    {
        errs.push(
            n.key_path("health_check"),
            "`type: grpc` needs `protocol: h2c` or `protocol: h2`",
        );
    }

    if errs.0.len() > errors_before {
        return None;
    }
    Some(UpstreamSpec {
        name: name.to_string(),
        balance: balance?,
        hash_key: hash_key?,
        backends,
        named,
        dns_refresh: dns_refresh?,
        health_check,
        connect_timeout: connect_timeout?,
        read_timeout: read_timeout?,
        write_timeout: write_timeout?,
        idle_timeout: idle_timeout?,
        retries: retries?,
        tls: tls?,
        protocol: protocol?,
        ca,
        sni: sni?,
        outlier,
        slow_start,
        panic_threshold: panic_threshold?,
        retry_budget: retry_budget?,
        latency_decay: latency_decay?,
    })
}

fn outlier(n: &Node, errs: &mut Errors) -> Option<OutlierSpec> {
    let m = n.mapping(
        errs,
        &[
            "consecutive_failures",
            "base_ejection",
            "max_ejection",
            "max_ejected_percent",
        ],
    )?;
    let failures = match n.field(m, "consecutive_failures") {
        None => Some(5),
        Some(v) => v.uint(errs, 1, 1000).map(|v| v as u32),
    };
    let dur = |k: &str, d: Duration, errs: &mut Errors| match n.field(m, k) {
        None => Some(d),
        Some(v) => v.duration(errs),
    };
    let base = dur("base_ejection", Duration::from_secs(10), errs);
    let max = dur("max_ejection", Duration::from_secs(300), errs);
    let percent = match n.field(m, "max_ejected_percent") {
        None => Some(50),
        Some(v) => v.uint(errs, 0, 100).map(|v| v as u32),
    };
    if let (Some(b), Some(x)) = (base, max) {
        if x < b {
            errs.push(n.key_path("max_ejection"), "must be at least base_ejection");
            return None;
        }
    }
    Some(OutlierSpec {
        consecutive_failures: failures?,
        base_ejection: base?,
        max_ejection: max?,
        max_ejected_percent: percent?,
    })
}

fn budget(n: &Node, errs: &mut Errors) -> Option<BudgetSpec> {
    let m = n.mapping(errs, &["ratio", "min_per_second"])?;
    let number = |k: &str, default: f64, errs: &mut Errors| match n.field(m, k) {
        None => Some(default),
        Some(v) => match v.value.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Some(x),
            _ => {
                errs.push(v.path(), "must be a number, 0 or more");
                None
            }
        },
    };
    let ratio = number("ratio", 0.2, errs);
    let min = number("min_per_second", 10.0, errs);
    Some(BudgetSpec {
        ratio: ratio?,
        min_per_second: min?,
    })
}

fn backends(node: &Node, errs: &mut Errors) -> (Vec<BackendSpec>, Vec<NamedBackend>) {
    let mut out: Vec<BackendSpec> = Vec::new();
    let mut named: Vec<NamedBackend> = Vec::new();
    let Some(items) = node.seq(errs) else {
        return (out, named);
    };
    if items.is_empty() {
        errs.push(node.path(), "at least one backend is required");
    }
    for (i, item) in items.iter().enumerate() {
        let n = node.item(i, item);
        let (addr_node, weight) = match item {
            Value::Mapping(_) => {
                let Some(m) = n.mapping(errs, &["address", "weight"]) else {
                    continue;
                };
                let weight = match n.field(m, "weight") {
                    // Pingora panics on weight 0; here it is a config error.
                    Some(w) => w.uint(errs, 1, 1_000_000).map(|w| w as u32),
                    None => Some(1),
                };
                match n.field(m, "address") {
                    Some(a) => (a, weight),
                    None => {
                        errs.push(n.key_path("address"), "required");
                        continue;
                    }
                }
            }
            _ => (n.clone(), Some(1)),
        };
        let target = addr_node.str(errs).and_then(|s| match target(s) {
            Ok(a) => Some(a),
            Err(e) => {
                errs.push(addr_node.path(), e);
                None
            }
        });
        if let (Some(Err((host, port))), Some(weight)) = (&target, weight) {
            if named.iter().any(|b| b.host == *host && b.port == *port) {
                errs.push(n.path(), format!("{host}:{port} is listed twice"));
                continue;
            }
            named.push(NamedBackend {
                host: host.clone(),
                port: *port,
                weight,
            });
            continue;
        }
        if let (Some(Ok(address)), Some(weight)) = (target, weight) {
            if out.iter().any(|b| b.address == address) {
                errs.push(n.path(), format!("{address} is listed twice"));
                continue;
            }
            out.push(BackendSpec { address, weight });
        }
    }
    (out, named)
}

/// `ip:port` (Ok), or `host:port` (Err((host, port))), a name re-resolved
/// while the gateway runs.
type Target = Result<SocketAddr, (String, u16)>;

fn target(text: &str) -> Result<Target, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(Ok(a));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("`{text}` needs a port, e.g. `{text}:80`"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{text}`: `{port}` is not a port"))?;
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(format!(
            "`{text}` is not an address or a host name with a port"
        ));
    }
    Ok(Err((host.to_ascii_lowercase(), port)))
}

/// The certificates of a PEM file, or `None` if it holds none: what `ca:`
/// must hold to validate, and what the pool's peers trust.
pub fn parse_ca(pem: &[u8]) -> Option<std::sync::Arc<pingora_core::protocols::tls::CaType>> {
    let certs = pingora_core::tls::x509::X509::stack_from_pem(pem).ok()?;
    (!certs.is_empty()).then(|| std::sync::Arc::new(certs.into_boxed_slice()))
}
