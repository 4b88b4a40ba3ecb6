//! `sluice -t -c FILE`: every error, with its key path; never a panic.

use std::process::Command;

fn validate(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "validation panicked:\n{text}");
    (out.status.code().unwrap_or(-1), text)
}

const GOOD: &str = "listen: [127.0.0.1:8080]
upstreams:
  api:
    backends: [127.0.0.1:9001]
routes:
  - upstream: api
";

#[test]
fn shipped_config_is_valid() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/gateway.yaml")).unwrap();
    let (code, out) = validate(&text);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_minimal_config_is_valid() {
    let (code, out) = validate(GOOD);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid"));
}

/// Each bad config, and a message the output must contain.
const BAD: &[(&str, &str)] = &[
    (
        "listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends:\n      - 127.0.0.1:9001\n      - { address: 127.0.0.1:9002, weight: 0 }\nroutes:\n  - upstream: api\n",
        "upstreams.api.backends[1].weight: must be at least 1",
    ),
    ("listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: nope\n", "routes[0].upstream: no upstream named `nope`"),
    ("listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: api\n    limits: [missing]\n", "routes[0].limits[0]: no limit named `missing`"),
    ("listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: api\n    filters: [nope]\n", "routes[0].filters[0]: no filter named `nope`"),
    ("listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\n    balanse: random\nroutes:\n  - upstream: api\n", "upstreams.api.balanse: unknown key"),
    ("listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\n    connect_timeout: 5\nroutes:\n  - upstream: api\n", "upstreams.api.connect_timeout: a duration needs a unit"),
    ("listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [not-an-address]\nroutes:\n  - upstream: api\n", "upstreams.api.backends[0]: `not-an-address` needs a port"),
    ("listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\n    balance: fastest\nroutes:\n  - upstream: api\n", "upstreams.api.balance: unknown algorithm `fastest`"),
    ("listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nlimits:\n  l:\n    algorithm: token_bucket\n    capacity: 10\n    fill_rate: -1\nroutes:\n  - upstream: api\n    limits: [l]\n", "limits.l.fill_rate: must be a number greater than 0"),
    ("listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nlimits:\n  l:\n    algorithm: sliding_window\n    limit: 10\n    window: 1s\n    capacity: 3\nroutes:\n  - upstream: api\n", "limits.l.capacity: unknown key"),
    ("listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: api\n    host: 'a.*.com'\n", "routes[0].host: expected a host name"),
    ("listen: [127.0.0.1:8080]\nthreads: two\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: api\n", "Pingora server settings"),
    ("listen: [127.0.0.1:8080]\nthread: 2\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: api\n", "thread: unknown key"),
    ("listen: [localhost]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: api\n", "listen[0]: `localhost` is not an address"),
    ("listen: [127.0.0.1:8080]\nupstreams: {}\n", "routes: at least one route is required"),
    ("listen: [127.0.0.1:8080\n", "not valid YAML"),
    ("- just\n- a list\n", "must be a YAML mapping"),
    ("listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\n    health_check: { type: icmp }\nroutes:\n  - upstream: api\n", "upstreams.api.health_check.type: unknown health check `icmp`"),
    ("listen: [127.0.0.1:8080]\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nlimits:\n  l: { algorithm: token_bucket, capacity: 10, fill_rate: 1, store: redis }\nroutes:\n  - { upstream: api, limits: [l] }\n", "limits.l.store: `store: redis` needs a top-level `redis:` section"),
    ("listen: [127.0.0.1:8080]\nredis: { url: 'redis://127.0.0.1:6379/0', decision_timeout: 5 }\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: api\n", "redis.decision_timeout: a duration needs a unit"),
    ("listen: [127.0.0.1:8080]\nadmin: 0.0.0.0:9901\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: api\n", "admin: `0.0.0.0:9901` is reachable from other hosts"),
    ("listen: [127.0.0.1:8080]\nadmin: { address: 0.0.0.0:9901 }\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: api\n", "admin.address: `0.0.0.0:9901` is reachable from other hosts"),
    ("listen: [127.0.0.1:8080]\nadmin: { address: 127.0.0.1:9901, token_file: /nonexistent/token }\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: api\n", "admin.token_file: cannot read `/nonexistent/token`"),
    ("listen:\n  - address: 127.0.0.1:8443\n    tls: { cert: /nonexistent/cert.pem, key: /nonexistent/key.pem }\nupstreams:\n  api:\n    backends: [127.0.0.1:9001]\nroutes:\n  - upstream: api\n", "listen[0].tls.cert: cannot read"),
];

#[test]
fn each_bad_config_is_rejected_with_its_key_path() {
    for (yaml, expected) in BAD {
        let (code, out) = validate(yaml);
        assert_ne!(code, 0, "accepted:\n{yaml}");
        assert!(
            out.contains(expected),
            "expected `{expected}` in:\n{out}\nfor:\n{yaml}"
        );
    }
}

#[test]
fn a_public_admin_address_is_accepted_with_a_token_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "s3cret\n").unwrap();
    for admin in [
        format!(
            "{{ address: 0.0.0.0:9901, token_file: {} }}",
            token.display()
        ),
        "{ address: 0.0.0.0:9901, insecure: true }".to_string(),
    ] {
        let (code, out) = validate(&format!("{GOOD}admin: {admin}\n"));
        assert_eq!(code, 0, "{admin}: {out}");
    }
}

#[test]
fn every_error_is_listed_at_once() {
    let yaml = "listen: [127.0.0.1:8080]
upstreams:
  api:
    balance: round_robbin
    backends:
      - { address: 127.0.0.1:9002, weight: 0 }
routes:
  - upstream: nope
    methodz: [GET]
";
    let (code, out) = validate(yaml);
    assert_eq!(code, 1);
    for expected in [
        "upstreams.api.balance: unknown algorithm",
        "upstreams.api.backends[0].weight: must be at least 1",
        "routes[0].upstream: no upstream named `nope`",
        "routes[0].methodz: unknown key",
        "4 error(s)",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["-t", "-c", "/nonexistent/gateway.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
