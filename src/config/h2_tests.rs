//! The HTTP/2 and gRPC keys: listeners' `h2c`, `h2_max_streams`, upstreams'
//! `protocol` and `ca`, and `health_check: { type: grpc }`.

use super::*;
use crate::filters::Registry;

fn gateway(yaml: &str) -> Config {
    load(yaml, &Registry::builtin())
        .unwrap_or_else(|e| panic!("{e:?}"))
        .gateway
}

fn errors(yaml: &str) -> Vec<String> {
    match load(yaml, &Registry::builtin()) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

const ROUTE: &str = "routes:\n  - upstream: u\n";

#[test]
fn h2c_and_stream_limits_have_defaults() {
    let g = gateway(&format!(
        "listen:\n  - 127.0.0.1:1\n  - {{ address: 127.0.0.1:2, h2c: true }}\n\
         upstreams:\n  u:\n    backends: [127.0.0.1:3]\n{ROUTE}"
    ));
    assert!(!g.listeners[0].h2c);
    assert!(g.listeners[1].h2c);
    assert_eq!(g.h2_max_streams, 100);
    let u = &g.upstreams["u"];
    assert_eq!(u.protocol, UpstreamProtocol::Http1);
    assert!(!u.tls);

    let g = gateway(&format!(
        "h2_max_streams: 8\nlisten: [127.0.0.1:1]\nupstreams:\n  u:\n    backends: [127.0.0.1:3]\n{ROUTE}"
    ));
    assert_eq!(g.h2_max_streams, 8);
}

#[test]
fn protocol_decides_tls_unless_told_otherwise() {
    let g = gateway(&format!(
        "listen: [127.0.0.1:1]\nupstreams:\n  u:\n    protocol: h2\n    backends: [127.0.0.1:3]\n\
         \x20 c:\n    protocol: h2c\n    backends: [127.0.0.1:4]\n    health_check: {{ type: grpc, service: pkg.Svc }}\n{ROUTE}"
    ));
    assert_eq!(g.upstreams["u"].protocol, UpstreamProtocol::H2);
    assert!(g.upstreams["u"].tls);
    assert!(!g.upstreams["c"].tls);
    let hc = g.upstreams["c"].health_check.as_ref().unwrap();
    assert_eq!(
        hc.kind,
        HealthKind::Grpc {
            service: "pkg.Svc".into()
        }
    );
}

#[test]
fn contradictions_are_errors_at_their_key() {
    let errs = errors(&format!(
        "h2_max_streams: 0\nlisten:\n  - address: 127.0.0.1:1\n    h2c: true\n    tls: {{ cert: /nonexistent, key: /nonexistent }}\n\
         upstreams:\n  u:\n    protocol: h2\n    tls: false\n    backends: [127.0.0.1:3]\n\
         \x20 c:\n    protocol: h2c\n    tls: true\n    backends: [127.0.0.1:4]\n\
         \x20 g:\n    backends: [127.0.0.1:5]\n    health_check: {{ type: grpc }}\n\
         \x20 p:\n    protocol: http3\n    backends: [127.0.0.1:6]\n\
         \x20 a:\n    ca: /nonexistent/ca.pem\n    backends: [127.0.0.1:7]\n{ROUTE}"
    ));
    let has = |prefix: &str| errs.iter().any(|e| e.starts_with(prefix));
    assert!(has("h2_max_streams: must be at least 1"), "{errs:?}");
    assert!(
        has("listen[0].h2c: only for plaintext listeners"),
        "{errs:?}"
    );
    assert!(
        has("upstreams.u.tls: `protocol: h2` is HTTP/2 over TLS"),
        "{errs:?}"
    );
    assert!(
        has("upstreams.c.tls: `protocol: h2c` is plaintext"),
        "{errs:?}"
    );
    assert!(
        has("upstreams.g.health_check: `type: grpc` needs"),
        "{errs:?}"
    );
    assert!(
        has("upstreams.p.protocol: unknown protocol `http3`"),
        "{errs:?}"
    );
    assert!(has("upstreams.a.ca: cannot read"), "{errs:?}");
}

#[test]
fn a_ca_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let good = dir.path().join("good.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&good, cert.cert.pem()).unwrap();
    let yaml = |ca: &std::path::Path| {
        format!(
            "listen: [127.0.0.1:1]\nupstreams:\n  u:\n    protocol: h2\n    ca: {}\n    backends: [127.0.0.1:3]\n{ROUTE}",
            ca.display()
        )
    };
    let errs = errors(&yaml(&bad));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("upstreams.u.ca:") && e.contains("no PEM certificate")),
        "{errs:?}"
    );
    assert_eq!(
        gateway(&yaml(&good)).upstreams["u"].ca.as_deref(),
        good.to_str()
    );
}
