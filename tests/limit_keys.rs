//! Limit and hash keys name what the backend reads, through the real
//! gateway: every spelling of a query value is one key, a key source sent
//! twice with different values is refused, and a priority is the gateway's
//! side's to set, not the client's.

mod common;
#[allow(dead_code)]
#[path = "common/raw_backend.rs"]
mod raw_backend;
#[path = "common/raw_http.rs"]
mod raw_http;

use std::net::IpAddr;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_query_key_is_one_key() {
    let (addr, _echo) = echo("b").await;
    let gw = Gateway::start(&format!(
        "upstreams:
  u: {{ backends: [{addr}] }}
limits:
  five_a_minute: {{ algorithm: sliding_window, key: 'query:api_key', limit: 5, window: 60s }}
routes:
  - {{ path_prefix: /, upstream: u, limits: [five_a_minute] }}
"
    ))
    .await;
    for i in 0..5 {
        let r = raw_http::get(gw.port, "/x?api_key=abc").await;
        assert_eq!(r.status, 200, "request {i}: {}", r.head);
    }
    for spelling in [
        "/x?api_key=%61bc",
        "/x?api_key=a%62c",
        "/x?api_key=%61%62%63",
        "/x?api_key=ab%63",
        "/x?api%5Fkey=abc",
        "/x?api_key=abc&api_key=%61bc",
        "/x?other=1&api_key=abc",
    ] {
        let r = raw_http::get(gw.port, spelling).await;
        assert_eq!(r.status, 429, "{spelling} is the key `abc`: {}", r.head);
    }
    // `+` is a space, as a form decoder reads it: `a b` and `a+b` are one key.
    for i in 0..5 {
        let spelling = if i % 2 == 0 {
            "/x?api_key=a+b"
        } else {
            "/x?api_key=a%20b"
        };
        assert_eq!(
            raw_http::get(gw.port, spelling).await.status,
            200,
            "{spelling}"
        );
    }
    assert_eq!(raw_http::get(gw.port, "/x?api_key=a+b").await.status, 429);
    let other = raw_http::get(gw.port, "/x?api_key=abd").await;
    assert_eq!(other.status, 200, "another key has its own window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sent_twice_with_different_values_is_refused() {
    let (addr, echo_b) = echo("b").await;
    let gw = Gateway::start(&format!(
        "upstreams:
  u: {{ backends: [{addr}] }}
  hashed: {{ balance: consistent_hash, hash_key: 'query:user', backends: [{addr}] }}
limits:
  by_query: {{ algorithm: token_bucket, key: 'query:api_key', capacity: 1000, fill_rate: 1000 }}
  by_header: {{ algorithm: token_bucket, key: 'header:x-api-key', capacity: 1000, fill_rate: 1000 }}
  by_cookie: {{ algorithm: token_bucket, key: 'cookie:sid', capacity: 1000, fill_rate: 1000 }}
routes:
  - {{ name: query, path_prefix: /q/, upstream: u, limits: [by_query] }}
  - {{ name: header, path_prefix: /h/, upstream: u, limits: [by_header] }}
  - {{ name: cookie, path_prefix: /c/, upstream: u, limits: [by_cookie] }}
  - {{ name: hash, path_prefix: /hash/, upstream: hashed }}
  - {{ name: free, path_prefix: /, upstream: u }}
"
    ))
    .await;
    let send = |target: &str, extra: &str| {
        let req = format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n{extra}\r\n");
        let port = gw.port;
        async move {
            let mut c = raw_http::Conn::open(port).await;
            c.send(req.as_bytes()).await.unwrap();
            c.response().await.expect("an answer")
        }
    };
    let refused = [
        ("/q/x?api_key=zzz&api_key=abc", ""),
        ("/q/x?api_key=abc&api%5fkey=zzz", ""),
        ("/h/x", "X-Api-Key: a\r\nX-Api-Key: b\r\n"),
        ("/c/x", "Cookie: sid=a; sid=b\r\n"),
        ("/c/x", "Cookie: sid=a\r\nCookie: sid=b\r\n"),
        ("/hash/x?user=1&user=2", ""),
    ];
    let before = echo_b
        .control
        .served
        .load(std::sync::atomic::Ordering::Relaxed);
    for (target, extra) in refused {
        let r = send(target, extra).await;
        assert_eq!(r.status, 400, "{target} {extra:?}: {}", r.head);
        assert_eq!(
            r.json()["error"],
            "ambiguous limit key",
            "{target} {extra:?}"
        );
    }
    let after = echo_b
        .control
        .served
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after, before, "no ambiguous request reached the backend");
    let passed = [
        // The same value twice is one key.
        ("/q/x?api_key=abc&api_key=abc", ""),
        ("/h/x", "X-Api-Key: a\r\nX-Api-Key: a\r\n"),
        ("/c/x", "Cookie: sid=a; other=b\r\n"),
        ("/hash/x?user=1&user=%31", ""),
        // A route whose keys do not read the repeated source.
        ("/q/x?api_key=abc&other=1&other=2", ""),
        (
            "/x?api_key=zzz&api_key=abc",
            "X-Api-Key: a\r\nX-Api-Key: b\r\n",
        ),
    ];
    for (target, extra) in passed {
        let r = send(target, extra).await;
        assert_eq!(r.status, 200, "{target} {extra:?}: {}", r.head);
    }
}

/// `priority:` of an adaptive limit held at 8 in flight: `critical` may
/// overdraw it by a quarter (10), anything else gets 8. The `filtered` route
/// runs a filter that gives the tenant `acme` the priority `critical`.
fn priority_sections(addr: std::net::SocketAddr, trusted: &str) -> String {
    format!(
        "trusted_proxies: [{trusted}]
upstreams:
  u: {{ backends: [{addr}] }}
filters:
  tenants: {{ type: tenant, allowed: [acme], priorities: {{ acme: critical }} }}
limits:
  guard:
    algorithm: adaptive_concurrency
    key: route
    initial: 8
    min: 8
    max: 8
    priority: header:x-priority
routes:
  - {{ name: plain, path_prefix: /plain/, upstream: u, limits: [guard] }}
  - {{ name: filtered, path_prefix: /filtered/, upstream: u, limits: [guard], filters: [tenants] }}
"
    )
}

/// Sends `n` requests at once that the backend holds for a while, from
/// `from`, and counts how many were admitted.
async fn admitted_at_once(gw: &Gateway, from: IpAddr, path: &str, n: usize) -> usize {
    let client = reqwest::Client::builder()
        .no_proxy()
        .local_address(from)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let url = gw.url(&format!("{path}?sleep=1500"));
    let calls = (0..n).map(|_| {
        let (c, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            c.get(url)
                .header("x-priority", "critical")
                .header("x-tenant", "acme")
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    });
    let mut ok = 0;
    for call in calls.collect::<Vec<_>>() {
        match call.await.unwrap() {
            Ok(200) => ok += 1,
            Ok(503) => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_a_trusted_peer_or_a_filter_chooses_the_priority() {
    let (addr, _echo) = echo("b").await;
    // 127.0.0.2 is a trusted proxy; 127.0.0.1 (the usual client) is not.
    // The example binary registers the `tenant` filter, which sets a known
    // tenant's priority.
    let gw =
        Gateway::start_example("custom_filter", &priority_sections(addr, "127.0.0.2/32")).await;
    let untrusted: IpAddr = "127.0.0.1".parse().unwrap();
    let trusted: IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(
        admitted_at_once(&gw, untrusted, "/plain/x", 10).await,
        8,
        "a client's own `critical` counts as default"
    );
    assert_eq!(
        admitted_at_once(&gw, trusted, "/plain/x", 10).await,
        10,
        "a trusted proxy's `critical` overdraws by a quarter"
    );
    assert_eq!(
        admitted_at_once(&gw, untrusted, "/filtered/x", 10).await,
        10,
        "a priority a filter set counts from anyone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_id_is_dropped() {
    let (addr, backend) = raw_backend::RawBackend::start().await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  u: {{ backends: [{addr}] }}\nroutes:\n  - {{ upstream: u }}\n"
    ))
    .await;
    let mut c = raw_http::Conn::open(gw.port).await;
    let req = "GET /x HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: first-id\r\nX-Request-Id: second-id\r\n\r\n";
    c.send(req.as_bytes()).await.unwrap();
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = backend.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-request-id"), vec![b"first-id".as_slice()]);
}
