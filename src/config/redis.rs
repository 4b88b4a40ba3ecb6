//! `redis:`: the shared store that `store: redis` limits are counted in.
//!
//! ```yaml
//! redis:
//!   url: redis://127.0.0.1:6379/0        # or cluster: [redis://10.0.0.1:7000, ...]
//!   decision_timeout: 5ms
//!   instances: 3
//! ```

use std::time::Duration;

use redis::IntoConnectionInfo;
use serde_yaml::Value;

use super::node::{Errors, Node};
use crate::limits::redis_store::{
    RedisNodes, RedisSpec, DEFAULT_CONNECTIONS, DEFAULT_DECISION_TIMEOUT, DEFAULT_PREFIX,
};

const KEYS: &[&str] = &[
    "url",
    "cluster",
    "decision_timeout",
    "instances",
    "connections",
    "prefix",
];

/// A decision that may wait longer than this is not a rate-limit decision any more.
const MAX_DECISION_TIMEOUT: Duration = Duration::from_secs(10);

pub fn validate(node: &Node, errs: &mut Errors) -> Option<RedisSpec> {
    let m = node.mapping(errs, KEYS)?;
    let url = node.field(m, "url");
    let cluster = node.field(m, "cluster");
    let nodes = match (url, cluster) {
        (Some(_), Some(c)) => {
            errs.push(
                c.path(),
                "give either `url` (one Redis) or `cluster`, not both",
            );
            None
        }
        (None, None) => {
            errs.push(
                node.key_path("url"),
                "required: `url: redis://host:6379/0`, or `cluster: [redis://host:7000, ...]`",
            );
            None
        }
        (Some(u), None) => u
            .str(errs)
            .and_then(|s| checked_url(&u, s, errs))
            .map(RedisNodes::Single),
        (None, Some(c)) => {
            let urls: Vec<Option<String>> = c
                .str_list(errs)
                .into_iter()
                .map(|(n, s)| checked_url(&n, s, errs))
                .collect();
            if urls.is_empty() && matches!(c.value, Value::Sequence(_)) {
                errs.push(c.path(), "at least one node is required");
            }
            urls.into_iter()
                .collect::<Option<Vec<_>>>()
                .filter(|u| !u.is_empty())
                .map(RedisNodes::Cluster)
        }
    };
    let decision_timeout = match node.field(m, "decision_timeout") {
        None => Some(DEFAULT_DECISION_TIMEOUT),
        Some(t) => t.duration(errs).and_then(|d| {
            if d > MAX_DECISION_TIMEOUT {
                errs.push(
                    t.path(),
                    "at most 10s: every request on a shared limit may wait this long",
                );
                None
            } else {
                Some(d)
            }
        }),
    };
    let instances = match node.field(m, "instances") {
        None => Some(1),
        Some(i) => i.uint(errs, 1, 10_000).map(|i| i as u32),
    };
    let connections = match node.field(m, "connections") {
        None => Some(DEFAULT_CONNECTIONS),
        Some(c) => c.uint(errs, 1, 64).map(|c| c as usize),
    };
    let prefix = match node.field(m, "prefix") {
        None => Some(DEFAULT_PREFIX.to_string()),
        Some(p) => p.str(errs).and_then(|s| {
            if s.is_empty() || s.contains(['{', '}']) || s.chars().any(char::is_whitespace) {
                errs.push(p.path(), "must be non-empty, without braces or spaces");
                None
            } else {
                Some(s.to_string())
            }
        }),
    };
    Some(RedisSpec {
        nodes: nodes?,
        decision_timeout: decision_timeout?,
        instances: instances?,
        connections: connections?,
        prefix: prefix?,
    })
}

fn checked_url(node: &Node, url: &str, errs: &mut Errors) -> Option<String> {
    if !url.starts_with("redis://")
        && !url.starts_with("redis+unix://")
        && !url.starts_with("unix://")
    {
        errs.push(
            node.path(),
            format!("`{url}` is not a redis:// URL (TLS, rediss://, is not supported)"),
        );
        return None;
    }
    match url.into_connection_info() {
        Ok(_) => Some(url.to_string()),
        Err(e) => {
            errs.push(node.path(), format!("`{url}`: {e}"));
            None
        }
    }
}
