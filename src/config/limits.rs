//! `limits:`: named admission limits that routes refer to.

use std::collections::BTreeMap;

use super::node::{Errors, Node};
use crate::keys::KeySpec;
use crate::limits::{
    Algorithm, LimitSpec, OnMissing, OnStoreError, StoreSpec, DEFAULT_LEASE_TTL, DEFAULT_MAX_KEYS,
};

/// A sliding window's count-min sketches are sized from `max_keys` up front
/// (256 bytes per key) and zeroed whole at each window change: beyond this,
/// a config that validates could be killed for its memory, or stall a worker
/// for tens of milliseconds per window.
const SLIDING_WINDOW_MAX_KEYS: u64 = 1_000_000;

const COMMON: &[&str] = &[
    "algorithm",
    "key",
    "shadow",
    "on_missing",
    "status",
    "max_keys",
    "store",
    "on_store_error",
];

/// `has_redis`: whether the file has a `redis:` section for `store: redis`.
pub fn validate(node: &Node, has_redis: bool, errs: &mut Errors) -> BTreeMap<String, LimitSpec> {
    let mut out = BTreeMap::new();
    for (name, value) in node.named_entries(errs) {
        let n = node.child(name, value);
        if let Some(spec) = limit(name, &n, has_redis, errs) {
            out.insert(name.to_string(), spec);
        }
    }
    out
}

fn limit(name: &str, n: &Node, has_redis: bool, errs: &mut Errors) -> Option<LimitSpec> {
    // The algorithm decides which keys are allowed, so read it first.
    let Some(map) = n.value.as_mapping() else {
        n.mapping(errs, COMMON);
        return None;
    };
    let algorithm_name = match n.field(map, "algorithm") {
        Some(a) => a.str(errs)?,
        None => {
            errs.push(
                n.key_path("algorithm"),
                "required: token_bucket, sliding_window, concurrency or adaptive_concurrency",
            );
            return None;
        }
    };
    let specific: &[&str] = match algorithm_name {
        "token_bucket" => &["capacity", "fill_rate"],
        "sliding_window" => &["limit", "window"],
        "concurrency" => &["max", "lease_ttl"],
        "adaptive_concurrency" => &["initial", "min", "max", "priority"],
        other => {
            errs.push(
                n.key_path("algorithm"),
                format!(
                    "unknown algorithm `{other}` (token_bucket, sliding_window, concurrency, \
                     adaptive_concurrency)"
                ),
            );
            return None;
        }
    };
    let allowed: Vec<&str> = COMMON.iter().chain(specific).copied().collect();
    let m = n.mapping(errs, &allowed)?;
    let field = |k: &str| n.field(m, k);
    let required = |k: &str, errs: &mut Errors| {
        let f = field(k);
        if f.is_none() {
            errs.push(n.key_path(k), "required");
        }
        f
    };

    let algorithm = match algorithm_name {
        "token_bucket" => {
            let capacity = required("capacity", errs).and_then(|c| c.positive(errs));
            let fill_rate = required("fill_rate", errs).and_then(|c| c.positive(errs));
            if let Some(c) = capacity {
                if c < 1.0 {
                    errs.push(
                        n.key_path("capacity"),
                        "must be at least 1 (one request's cost)",
                    );
                }
            }
            Some(Algorithm::TokenBucket {
                capacity: capacity?,
                fill_rate: fill_rate?,
            })
        }
        "sliding_window" => {
            let limit = required("limit", errs).and_then(|l| l.uint(errs, 1, u32::MAX as u64));
            let window = required("window", errs).and_then(|w| {
                let d = w.duration(errs)?;
                // pingora-limits' `Rate` can compute a negative elapsed time
                // when a window turns over under contention (a debug assert,
                // a spurious reset in release); a second makes that a rare,
                // harmless event, as the sliding-window module doc explains.
                if d < std::time::Duration::from_secs(1) {
                    errs.push(w.path(), "must be at least 1s");
                    return None;
                }
                Some(d)
            });
            Some(Algorithm::SlidingWindow {
                limit: limit?,
                window: window?,
            })
        }
        "adaptive_concurrency" => adaptive(n, m, errs),
        _ => {
            let max = required("max", errs).and_then(|m| m.uint(errs, 1, u32::MAX as u64));
            Some(Algorithm::Concurrency { max: max? })
        }
    };
    let key = match field("key") {
        None => Some(KeySpec::ClientIp),
        Some(k) => k.str(errs).and_then(|s| match KeySpec::parse(s) {
            Ok(key) => Some(key),
            Err(e) => {
                errs.push(k.path(), e);
                None
            }
        }),
    };
    let shadow = match field("shadow") {
        None => Some(false),
        Some(s) => s.bool(errs),
    };
    let on_missing = match field("on_missing") {
        None => Some(OnMissing::Shared),
        Some(o) => match o.str(errs)? {
            "admit" | "shared" => Some(OnMissing::Shared),
            "reject" => Some(OnMissing::Reject),
            other => {
                errs.push(o.path(), format!("unknown `{other}` (admit, reject)"));
                None
            }
        },
    };
    let status = match field("status") {
        // Shedding load is the server's condition, not the client's fault.
        None if algorithm_name == "adaptive_concurrency" => Some(503),
        None => Some(429),
        Some(s) => s.uint(errs, 400, 599).map(|s| s as u16),
    };
    let max_keys = match field("max_keys") {
        None => Some(DEFAULT_MAX_KEYS),
        Some(k)
            if algorithm_name == "sliding_window"
                && k.value
                    .as_u64()
                    .is_some_and(|v| v > SLIDING_WINDOW_MAX_KEYS) =>
        {
            // A bare range error would not say why this bound is lower.
            errs.push(
                k.path(),
                format!(
                    "at most {SLIDING_WINDOW_MAX_KEYS} for a sliding_window: its counters take \
                     256 bytes per key (256 MB at the most), allocated when the config loads \
                     and zeroed at every window change"
                ),
            );
            None
        }
        Some(k) => k.uint(errs, 1, 100_000_000).map(|k| k as usize),
    };
    let store = store(n, m, has_redis, errs);
    if algorithm_name == "adaptive_concurrency" && matches!(store, Some(StoreSpec::Redis { .. })) {
        errs.push(
            n.key_path("store"),
            "an adaptive limit measures this gateway's own latency: it cannot be shared",
        );
        return None;
    }
    Some(LimitSpec {
        store: store?,
        name: name.to_string(),
        algorithm: algorithm?,
        key: key?,
        shadow: shadow?,
        on_missing: on_missing?,
        status: status?,
        max_keys: max_keys?,
    })
}

/// `store`, `on_store_error` and (concurrency) `lease_ttl`.
fn store(
    n: &Node,
    m: &serde_yaml::Mapping,
    has_redis: bool,
    errs: &mut Errors,
) -> Option<StoreSpec> {
    let redis = match n.field(m, "store") {
        None => false,
        Some(s) => match s.str(errs)? {
            "local" => false,
            "redis" => {
                if !has_redis {
                    errs.push(
                        s.path(),
                        "`store: redis` needs a top-level `redis:` section (url or cluster)",
                    );
                    return None;
                }
                true
            }
            other => {
                errs.push(s.path(), format!("unknown store `{other}` (local, redis)"));
                return None;
            }
        },
    };
    let on_error = match n.field(m, "on_store_error") {
        None => OnStoreError::Local,
        Some(o) => match o.str(errs)? {
            "local" => OnStoreError::Local,
            "allow" => OnStoreError::Allow,
            "deny" => OnStoreError::Deny,
            other => {
                errs.push(o.path(), format!("unknown `{other}` (local, allow, deny)"));
                return None;
            }
        },
    };
    let lease_ttl = match n.field(m, "lease_ttl") {
        None => DEFAULT_LEASE_TTL,
        Some(t) => {
            let d = t.duration(errs)?;
            if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(86_400) {
                errs.push(t.path(), "must be between 1s and 24h");
                return None;
            }
            d
        }
    };
    if !redis {
        for key in ["on_store_error", "lease_ttl"] {
            if n.field(m, key).is_some() {
                errs.push(n.key_path(key), "applies only with `store: redis`");
            }
        }
        return Some(StoreSpec::Local);
    }
    Some(StoreSpec::Redis {
        on_error,
        lease_ttl,
    })
}

/// `initial`, `min`, `max` (all optional: 20, 1, 1000) and `priority`.
fn adaptive(n: &Node, m: &serde_yaml::Mapping, errs: &mut Errors) -> Option<Algorithm> {
    let count = |key: &str, default: u64, errs: &mut Errors| match n.field(m, key) {
        None => Some(default),
        Some(v) => v.uint(errs, 1, 1_000_000),
    };
    let initial = count("initial", 20, errs);
    let min = count("min", 1, errs);
    let max = count("max", 1000, errs);
    let priority = match n.field(m, "priority") {
        None => Some(None),
        Some(p) => p.str(errs).and_then(|s| match KeySpec::parse(s) {
            Ok(key) => Some(Some(key)),
            Err(e) => {
                errs.push(p.path(), e);
                None
            }
        }),
    };
    let (initial, min, max) = (initial?, min?, max?);
    if min > max {
        errs.push(n.key_path("min"), format!("must not exceed max ({max})"));
        return None;
    }
    if !(min..=max).contains(&initial) {
        errs.push(
            n.key_path("initial"),
            format!("must be between min ({min}) and max ({max})"),
        );
        return None;
    }
    Some(Algorithm::AdaptiveConcurrency {
        initial,
        min,
        max,
        priority: priority?,
    })
}
