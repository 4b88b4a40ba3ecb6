use std::time::Duration;

use super::*;
use crate::filters::Registry;
use crate::keys::KeySpec;
use crate::limits::{Algorithm, OnMissing};

fn errors(yaml: &str) -> Vec<String> {
    match load(yaml, &Registry::builtin()) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

const DESIGN_EXAMPLE: &str = r#"
version: 1
threads: 4
grace_period_seconds: 5
listen:
  - 0.0.0.0:8080
admin: 127.0.0.1:9901
trusted_proxies: [127.0.0.1/32, 10.0.0.1]
upstreams:
  api:
    balance: consistent_hash
    hash_key: header:x-user-id
    backends:
      - 127.0.0.1:9001
      - { address: 127.0.0.1:9002, weight: 3 }
    health_check:
      type: http
      path: /health
      interval: 1s
      timeout: 500ms
      healthy_after: 2
      unhealthy_after: 3
    connect_timeout: 1s
    read_timeout: 30s
    retries: 2
limits:
  per_ip:
    algorithm: token_bucket
    key: client_ip
    capacity: 100
    fill_rate: 0.5
  per_key_minute:
    algorithm: sliding_window
    key: header:x-api-key
    limit: 1000
    window: 60s
    on_missing: reject
  upstream_slots:
    algorithm: concurrency
    key: route
    max: 64
    shadow: true
routes:
  - name: api
    host: "*.example.com"
    path_prefix: /api/
    methods: [GET, post]
    strip_prefix: true
    upstream: api
    limits: [per_ip, per_key_minute]
    filters: [request_id]
"#;

#[test]
fn the_design_example_loads_with_every_value() {
    let loaded = load(DESIGN_EXAMPLE, &Registry::builtin()).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(loaded.server.threads, 4);
    assert_eq!(loaded.server.grace_period_seconds, Some(5));
    let g = loaded.gateway;
    assert_eq!(g.listeners[0].address, "0.0.0.0:8080");
    assert_eq!(
        g.admin.as_ref().map(|a| a.address.as_str()),
        Some("127.0.0.1:9901")
    );
    assert_eq!(g.trusted_proxies.len(), 2);
    let api = &g.upstreams["api"];
    assert_eq!(api.balance, Balance::ConsistentHash);
    assert_eq!(
        api.hash_key,
        KeySpec::Header(http::HeaderName::from_static("x-user-id"))
    );
    assert_eq!(api.backends[1].weight, 3);
    let hc = api.health_check.as_ref().unwrap();
    assert_eq!(hc.timeout, Duration::from_millis(500));
    assert_eq!((hc.healthy_after, hc.unhealthy_after), (2, 3));
    assert!(matches!(&hc.kind, HealthKind::Http { path, .. } if path == "/health"));
    assert_eq!(api.retries, 2);
    assert_eq!(
        g.limits["per_ip"].algorithm,
        Algorithm::TokenBucket {
            capacity: 100.0,
            fill_rate: 0.5
        }
    );
    assert_eq!(g.limits["per_key_minute"].on_missing, OnMissing::Reject);
    assert!(g.limits["upstream_slots"].shadow);
    let r = &g.routes[0];
    assert_eq!(r.host, Some(HostMatch::Wildcard(".example.com".into())));
    assert_eq!(r.methods.as_ref().unwrap()[1], http::Method::POST);
    assert!(r.strip_prefix);
    assert!(g.filters.contains_key("request_id"));
}

#[test]
fn defaults_are_what_an_nginx_user_expects() {
    let loaded = load(
        "listen: [127.0.0.1:1]\nupstreams:\n  u:\n    backends: [127.0.0.1:2]\nroutes:\n  - upstream: u\n",
        &Registry::builtin(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let u = &loaded.gateway.upstreams["u"];
    assert_eq!(u.balance, Balance::RoundRobin);
    assert_eq!(u.retries, 2);
    assert_eq!(u.connect_timeout, Duration::from_secs(1));
    assert!(u.health_check.is_none());
    let r = &loaded.gateway.routes[0];
    assert_eq!(r.path_prefix, "/");
    assert_eq!(r.name, "route0");
    assert!(r.methods.is_none());
}

#[test]
fn errors_carry_key_paths() {
    let errs = errors(
        "listen: [127.0.0.1:1]\nupstreams:\n  u:\n    backends:\n      - 127.0.0.1:2\n      - { address: 127.0.0.1:3, weight: 0 }\n    retries: 99\nroutes:\n  - upstream: u\n    strip_prefix: yes please\n",
    );
    assert!(
        errs.contains(&"upstreams.u.backends[1].weight: must be at least 1".to_string()),
        "{errs:?}"
    );
    assert!(
        errs.contains(&"upstreams.u.retries: must be at most 16".to_string()),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("routes[0].strip_prefix: expected true or false")),
        "{errs:?}"
    );
}

#[test]
fn typos_are_errors_at_every_level() {
    let errs = errors(
        "listen: [127.0.0.1:1]\nupstream:\n  u: {}\nupstreams:\n  u:\n    backends: [127.0.0.1:2]\n    health_check: { type: tcp, intervl: 1s }\nlimits:\n  l: { algorithm: concurrency, max: 1, shadw: true }\nroutes:\n  - upstream: u\n",
    );
    for path in [
        "upstream: unknown key",
        "upstreams.u.health_check.intervl: unknown key",
        "limits.l.shadw: unknown key",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(path)),
            "no `{path}` in {errs:?}"
        );
    }
}

#[test]
fn cross_references_are_checked() {
    let errs = errors(
        "listen: [127.0.0.1:1]\nupstreams:\n  u:\n    backends: [127.0.0.1:2]\nfilters:\n  h: { type: nosuch }\nroutes:\n  - upstream: v\n    limits: [x]\n    filters: [y]\n",
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("filters.h: unknown filter type `nosuch`")),
        "{errs:?}"
    );
    assert!(errs.contains(&"routes[0].upstream: no upstream named `v`".to_string()));
    assert!(errs.contains(&"routes[0].limits[0]: no limit named `x`".to_string()));
    assert!(errs
        .iter()
        .any(|e| e.starts_with("routes[0].filters[0]: no filter named `y`")));
}

#[test]
fn duplicate_and_shadowed_routes_are_reported() {
    let errs = errors(
        "listen: [127.0.0.1:1]\nupstreams:\n  u:\n    backends: [127.0.0.1:2, 127.0.0.1:2]\nroutes:\n  - { name: a, upstream: u }\n  - { name: a, upstream: u }\n",
    );
    assert!(errs.iter().any(|e| e.contains("listed twice")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("used twice")), "{errs:?}");
    assert!(
        errs.iter().any(|e| e.contains("would never match")),
        "{errs:?}"
    );
}

#[test]
fn a_sliding_window_cannot_ask_for_more_memory_than_it_can_zero() {
    // 100 million keys validated once and, at its first window change,
    // zeroed 12.8 GB and got the gateway killed for its memory.
    let yaml = |algorithm: &str, max_keys: u64| {
        let settings = match algorithm {
            "sliding_window" => "limit: 10, window: 1s",
            _ => "capacity: 10, fill_rate: 1",
        };
        format!(
            "listen: [127.0.0.1:1]\nupstreams:\n  u: {{ backends: [127.0.0.1:2] }}\n\
             limits:\n  l: {{ algorithm: {algorithm}, {settings}, max_keys: {max_keys} }}\n\
             routes:\n  - {{ upstream: u, limits: [l] }}\n"
        )
    };
    let errs = errors(&yaml("sliding_window", 100_000_000));
    assert!(
        errs.iter().any(|e| e
            .starts_with("limits.l.max_keys: at most 1000000 for a sliding_window")
            && e.contains("256 bytes per key")),
        "{errs:?}"
    );
    assert_eq!(
        errors(&yaml("sliding_window", 1_000_000)),
        Vec::<String>::new()
    );
    // A token bucket's memory grows with the keys it sees, not with max_keys.
    assert_eq!(
        errors(&yaml("token_bucket", 100_000_000)),
        Vec::<String>::new()
    );
}

#[test]
fn max_request_header_size_has_a_default_and_bounds() {
    let base = "listen: [127.0.0.1:1]\nupstreams:\n  u: { backends: [127.0.0.1:2] }\nroutes:\n  - { upstream: u }\n";
    let loaded = load(base, &Registry::builtin()).ok().unwrap();
    assert_eq!(loaded.gateway.max_request_header_size, 64 * 1024);
    let loaded = load(
        &format!("max_request_header_size: 8192\n{base}"),
        &Registry::builtin(),
    )
    .ok()
    .unwrap();
    assert_eq!(loaded.gateway.max_request_header_size, 8192);
    for (value, message) in [
        ("100", "max_request_header_size: must be at least 1024"),
        (
            "2000000",
            "max_request_header_size: must be at most 1048575",
        ),
        ("64k", "max_request_header_size: expected a whole number"),
    ] {
        let errs = errors(&format!("max_request_header_size: {value}\n{base}"));
        assert!(
            errs.iter().any(|e| e.starts_with(message)),
            "{value}: {errs:?}"
        );
    }
}

#[test]
fn hostile_values_do_not_panic() {
    for yaml in [
        "",
        "~",
        "listen: 5",
        "listen: [{address: 1}]",
        "upstreams: [1, 2]",
        "upstreams: {u: {backends: [{address: [1]}]}}",
        "upstreams: {u: {backends: [{weight: 18446744073709551615}]}}",
        "limits: {l: {algorithm: token_bucket, capacity: .nan, fill_rate: .inf}}",
        "limits: {l: 7}",
        "routes: [{methods: []}]",
        "routes: {a: b}",
        "{1: 2}",
        "listen: [127.0.0.1:1]\nupstreams: {u: {backends: ['[::1]:80'], health_check: {type: http, expect_status: ['500-200', 'x']}}}",
    ] {
        assert!(load(yaml, &Registry::builtin()).is_err(), "accepted {yaml:?}");
    }
}

const SHARED_BASE: &str = "listen: [127.0.0.1:1]\nupstreams:\n  u: { backends: [127.0.0.1:2] }\nroutes:\n  - { upstream: u, limits: [l] }\n";

#[test]
fn the_redis_section_and_shared_limits_load() {
    use crate::limits::redis_store::RedisNodes;
    use crate::limits::{OnStoreError, StoreSpec};
    let yaml = format!(
        "redis:\n  url: redis://127.0.0.1:6379/0\n  decision_timeout: 5ms\n  instances: 3\n\
         limits:\n  l: {{ algorithm: concurrency, max: 8, store: redis, on_store_error: deny, lease_ttl: 10s }}\n\
         {SHARED_BASE}"
    );
    let loaded = load(&yaml, &Registry::builtin()).ok().unwrap();
    let redis = loaded.gateway.redis.unwrap();
    assert_eq!(
        redis.nodes,
        RedisNodes::Single("redis://127.0.0.1:6379/0".into())
    );
    assert_eq!(redis.decision_timeout, Duration::from_millis(5));
    assert_eq!((redis.instances, redis.connections), (3, 2));
    assert_eq!(redis.prefix, "sluice");
    assert_eq!(
        loaded.gateway.limits["l"].store,
        StoreSpec::Redis {
            on_error: OnStoreError::Deny,
            lease_ttl: Duration::from_secs(10)
        }
    );

    let cluster = format!(
        "redis: {{ cluster: [redis://10.0.0.1:7000, redis://10.0.0.2:7000] }}\n\
         limits:\n  l: {{ algorithm: token_bucket, capacity: 5, fill_rate: 1, store: redis }}\n{SHARED_BASE}"
    );
    let loaded = load(&cluster, &Registry::builtin()).ok().unwrap();
    let redis = loaded.gateway.redis.unwrap();
    assert!(matches!(redis.nodes, RedisNodes::Cluster(ref n) if n.len() == 2));
    assert_eq!(redis.decision_timeout, Duration::from_millis(5), "default");
    assert_eq!(redis.instances, 1, "default");
    assert_eq!(
        loaded.gateway.limits["l"].store,
        StoreSpec::Redis {
            on_error: OnStoreError::Local,
            lease_ttl: crate::limits::DEFAULT_LEASE_TTL
        },
        "on_store_error defaults to local"
    );
    let local = format!(
        "limits:\n  l: {{ algorithm: token_bucket, capacity: 5, fill_rate: 1 }}\n{SHARED_BASE}"
    );
    let loaded = load(&local, &Registry::builtin()).ok().unwrap();
    assert_eq!(loaded.gateway.limits["l"].store, StoreSpec::Local);
    assert!(loaded.gateway.redis.is_none());
}

#[test]
fn shared_limit_mistakes_are_named_by_key_path() {
    let limit = |extra: &str| {
        format!(
            "limits:\n  l: {{ algorithm: token_bucket, capacity: 5, fill_rate: 1{extra} }}\n{SHARED_BASE}"
        )
    };
    let cases = [
        (
            limit(", store: redis"),
            "limits.l.store: `store: redis` needs a top-level `redis:` section",
        ),
        (
            format!(
                "redis: {{ url: redis://h:1 }}\n{}",
                limit(", store: memcached")
            ),
            "limits.l.store: unknown store `memcached`",
        ),
        (
            format!(
                "redis: {{ url: redis://h:1 }}\n{}",
                limit(", store: redis, on_store_error: panic")
            ),
            "limits.l.on_store_error: unknown `panic`",
        ),
        (
            limit(", on_store_error: deny"),
            "limits.l.on_store_error: applies only with `store: redis`",
        ),
        (
            format!(
                "redis: {{ url: redis://h:1 }}\n{}",
                limit(", store: redis, lease_ttl: 5s")
            ),
            "limits.l.lease_ttl: unknown key",
        ),
        (
            format!("redis: {{ url: http://h:1 }}\n{}", limit("")),
            "redis.url: `http://h:1` is not a redis:// URL",
        ),
        (
            format!(
                "redis: {{ url: redis://h:1, cluster: [redis://h:2] }}\n{}",
                limit("")
            ),
            "redis.cluster: give either `url` (one Redis) or `cluster`, not both",
        ),
        (
            format!("redis: {{ instances: 2 }}\n{}", limit("")),
            "redis.url: required",
        ),
        (
            format!(
                "redis: {{ url: redis://h:1, decision_timeout: 1m }}\n{}",
                limit("")
            ),
            "redis.decision_timeout: at most 10s",
        ),
        (
            format!("redis: {{ url: redis://h:1, instances: 0 }}\n{}", limit("")),
            "redis.instances: must be at least 1",
        ),
        (
            format!(
                "redis: {{ url: redis://h:1, prefix: 'a{{b' }}\n{}",
                limit("")
            ),
            "redis.prefix: must be non-empty",
        ),
        (
            format!("redis: {{ url: redis://h:1, urll: x }}\n{}", limit("")),
            "redis.urll: unknown key",
        ),
        (
            format!("redis: {{ cluster: [] }}\n{}", limit("")),
            "redis.cluster: at least one node is required",
        ),
    ];
    for (yaml, message) in cases {
        let errs = errors(&yaml);
        assert!(
            errs.iter().any(|e| e.starts_with(message)),
            "want {message:?}, got {errs:?}"
        );
    }
    let lease = format!(
        "redis: {{ url: redis://h:1 }}\nlimits:\n  l: {{ algorithm: concurrency, max: 1, store: redis, lease_ttl: 100ms }}\n{SHARED_BASE}"
    );
    assert!(errors(&lease)
        .iter()
        .any(|e| e.starts_with("limits.l.lease_ttl: must be between 1s and 24h")));
}

#[test]
fn a_shared_limit_falls_back_to_its_share() {
    let a = Algorithm::TokenBucket {
        capacity: 100.0,
        fill_rate: 50.0,
    };
    assert_eq!(
        a.scaled_down(4),
        Algorithm::TokenBucket {
            capacity: 25.0,
            fill_rate: 12.5
        }
    );
    let w = Algorithm::SlidingWindow {
        limit: 10,
        window: Duration::from_secs(1),
    };
    assert_eq!(
        w.scaled_down(3),
        Algorithm::SlidingWindow {
            limit: 4,
            window: Duration::from_secs(1)
        },
        "rounded up"
    );
    assert_eq!(
        Algorithm::Concurrency { max: 2 }.scaled_down(5),
        Algorithm::Concurrency { max: 1 },
        "never below one request"
    );
}

#[test]
fn adaptive_limits_have_working_defaults_and_checked_bounds() {
    let with = |limit: &str| format!("limits:\n  l: {limit}\n{SHARED_BASE}");
    let loaded = load(
        &with("{ algorithm: adaptive_concurrency }"),
        &Registry::builtin(),
    )
    .ok()
    .unwrap();
    let spec = &loaded.gateway.limits["l"];
    assert_eq!(
        spec.algorithm,
        Algorithm::AdaptiveConcurrency {
            initial: 20,
            min: 1,
            max: 1000,
            priority: None
        }
    );
    assert_eq!(spec.status, 503, "shedding defaults to 503");
    let loaded = load(
        &with("{ algorithm: adaptive_concurrency, priority: 'header:x-priority', status: 429 }"),
        &Registry::builtin(),
    )
    .ok()
    .unwrap();
    assert!(matches!(
        loaded.gateway.limits["l"].algorithm,
        Algorithm::AdaptiveConcurrency {
            priority: Some(KeySpec::Header(_)),
            ..
        }
    ));
    assert_eq!(loaded.gateway.limits["l"].status, 429);
    for (limit, message) in [
        (
            "{ algorithm: adaptive_concurrency, min: 50, max: 10 }",
            "limits.l.min: must not exceed max",
        ),
        (
            "{ algorithm: adaptive_concurrency, initial: 5000 }",
            "limits.l.initial: must be between",
        ),
        (
            "{ algorithm: adaptive_concurrency, max: 0 }",
            "limits.l.max: must be at least 1",
        ),
        (
            "{ algorithm: adaptive_concurrency, priority: 'nope:x' }",
            "limits.l.priority",
        ),
        (
            "{ algorithm: adaptive_concurrency, capacity: 3 }",
            "limits.l.capacity: unknown key",
        ),
    ] {
        let errs = errors(&with(limit));
        assert!(
            errs.iter().any(|e| e.starts_with(message)),
            "{limit}: {errs:?}"
        );
    }
    let shared = format!(
        "redis: {{ url: redis://h:1 }}\n{}",
        with("{ algorithm: adaptive_concurrency, store: redis }")
    );
    assert!(errors(&shared)
        .iter()
        .any(|e| e.starts_with("limits.l.store: an adaptive limit measures")));
}

#[test]
fn durations_past_sane_bounds_are_refused_by_key_path() {
    let base = "listen: [127.0.0.1:1]\nroutes:\n  - { upstream: u }\n";
    let errs = errors(&format!(
        "upstreams:\n  u: {{ backends: [127.0.0.1:2], connect_timeout: 9999999999h }}\n{base}"
    ));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("upstreams.u.connect_timeout: must be at most 365d")),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "upstreams:\n  u: {{ backends: [127.0.0.1:2] }}\n\
         limits:\n  w: {{ algorithm: sliding_window, limit: 5, window: 500ms }}\n{base}"
    ));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("limits.w.window: must be at least 1s")),
        "{errs:?}"
    );
}

#[test]
fn a_route_host_is_one_a_request_can_have() {
    // Found by the config fuzz target: a host with a port or a space was
    // accepted and never matched, since a request's host is matched
    // without its port.
    let route = |host: &str| {
        format!(
            "listen: [127.0.0.1:1]\nupstreams:\n  u: {{ backends: [127.0.0.1:2] }}\nroutes:\n  - {{ upstream: u, host: '{host}' }}\n"
        )
    };
    for bad in [
        "api.example.com:8443",
        "a b.example.com",
        "*.example.com:80",
        "a..b",
        "::1",
        "[::1]:80",
        "*.",
        "bücher.de",
    ] {
        let errs = errors(&route(bad));
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert!(errs[0].starts_with("routes[0].host: "), "{bad}: {errs:?}");
    }
    let host = |written: &str| {
        load(&route(written), &Registry::builtin())
            .unwrap_or_else(|e| panic!("{written}: {e:?}"))
            .gateway
            .routes[0]
            .host
            .clone()
    };
    assert_eq!(
        host("API.Example.com."),
        Some(HostMatch::Exact("api.example.com".into()))
    );
    assert_eq!(
        host("*.Example.com."),
        Some(HostMatch::Wildcard(".example.com".into()))
    );
    assert_eq!(host("[::1]"), Some(HostMatch::Exact("[::1]".into())));
    assert_eq!(host("10.0.0.1"), Some(HostMatch::Exact("10.0.0.1".into())));
    assert_eq!(
        host("my_host-1.internal"),
        Some(HostMatch::Exact("my_host-1.internal".into()))
    );
}
