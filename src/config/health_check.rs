//! `health_check:` of an upstream: how its backends are checked.

use std::time::Duration;

use serde_yaml::Value;

use super::model::{HealthCheckSpec, HealthKind};
use super::node::{Errors, Node};

const HEALTH_KEYS: &[&str] = &[
    "type",
    "path",
    "host",
    "expect_status",
    "interval",
    "timeout",
    "healthy_after",
    "unhealthy_after",
    "service",
];

pub fn validate(n: &Node, errs: &mut Errors) -> Option<HealthCheckSpec> {
    let m = n.mapping(errs, HEALTH_KEYS)?;
    let field = |k: &str| n.field(m, k);
    let kind_name = match field("type") {
        None => Some("tcp"),
        Some(t) => t.str(errs),
    };
    let only_for = |keys: &[&str], kind: &str, errs: &mut Errors| {
        for k in keys {
            if m.contains_key(*k) {
                errs.push(n.key_path(k), format!("only used with `type: {kind}`"));
            }
        }
    };
    let kind = match kind_name? {
        "tcp" => {
            only_for(&["path", "host", "expect_status"], "http", errs);
            only_for(&["service"], "grpc", errs);
            Some(HealthKind::Tcp)
        }
        "grpc" => {
            only_for(&["path", "host", "expect_status"], "http", errs);
            let service = match field("service") {
                None => Some(String::new()),
                Some(s) => s.str(errs).map(String::from),
            };
            Some(HealthKind::Grpc { service: service? })
        }
        "http" => {
            let path = match field("path") {
                None => Some("/".to_string()),
                Some(p) => p.absolute_path(errs),
            };
            only_for(&["service"], "grpc", errs);
            let host = field("host").and_then(|h| h.str(errs).map(String::from));
            let statuses = match field("expect_status") {
                None => Some(vec![(200, 399)]),
                Some(s) => statuses(&s, errs),
            };
            Some(HealthKind::Http {
                path: path?,
                host,
                statuses: statuses?,
            })
        }
        other => {
            errs.push(
                n.key_path("type"),
                format!("unknown health check `{other}` (tcp, http, grpc)"),
            );
            None
        }
    };
    let dur = |k: &str, d: Duration, errs: &mut Errors| match field(k) {
        None => Some(d),
        Some(v) => v.duration(errs),
    };
    let interval = dur("interval", Duration::from_secs(5), errs);
    let timeout = dur("timeout", Duration::from_secs(1), errs);
    let count = |k: &str, errs: &mut Errors| match field(k) {
        None => Some(1),
        Some(v) => v.uint(errs, 1, 1000).map(|v| v as u32),
    };
    let healthy_after = count("healthy_after", errs);
    let unhealthy_after = count("unhealthy_after", errs);
    Some(HealthCheckSpec {
        kind: kind?,
        interval: interval?,
        timeout: timeout?,
        healthy_after: healthy_after?,
        unhealthy_after: unhealthy_after?,
    })
}

/// `expect_status: [200, 204]` or `["200-299", 301]`.
fn statuses(n: &Node, errs: &mut Errors) -> Option<Vec<(u16, u16)>> {
    let items = n.seq(errs)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let node = n.item(i, item);
        let range = match item {
            Value::Number(_) => node.uint(errs, 100, 599).map(|s| (s as u16, s as u16)),
            Value::String(s) => {
                let parsed = s.split_once('-').and_then(|(a, b)| {
                    Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
                });
                match parsed {
                    Some((a, b)) if (100..=599).contains(&a) && a <= b && b <= 599 => Some((a, b)),
                    _ => {
                        errs.push(
                            node.path(),
                            format!("`{s}` is not a status or range like 200-299"),
                        );
                        None
                    }
                }
            }
            _ => {
                errs.push(node.path(), "expected a status or a range like \"200-299\"");
                None
            }
        };
        out.extend(range);
    }
    if out.is_empty() {
        errs.push(n.path(), "at least one status is required");
        return None;
    }
    Some(out)
}
