//! Active health checks eject and restore backends; failover hides a dead
//! backend from idempotent requests; the gateway's own error responses.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_backend_is_ejected_and_comes_back() {
    let (a, ea) = echo("a").await;
    let (b, _) = echo("b").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{a}, {b}]\n    health_check: {{ type: http, path: /health, interval: 100ms, timeout: 500ms, healthy_after: 2, unhealthy_after: 2 }}\nroutes:\n  - upstream: pool\n"
    ))
    .await;
    let client = client();
    ea.control.unhealthy.store(true, Ordering::Relaxed);
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "pool", a)
            == Some(false))
            .await
    );
    let served_before = ea.control.served.load(Ordering::Relaxed);
    for _ in 0..40 {
        assert_eq!(
            get_backend(&client, &gw.url("/")).await,
            (200, "b".to_string())
        );
    }
    assert_eq!(
        ea.control.served.load(Ordering::Relaxed),
        served_before,
        "ejected backend got traffic"
    );

    ea.control.unhealthy.store(false, Ordering::Relaxed);
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "pool", a)
            == Some(true))
            .await
    );
    let mut got_a = 0;
    for _ in 0..20 {
        if get_backend(&client, &gw.url("/")).await.1 == "a" {
            got_a += 1;
        }
    }
    assert_eq!(
        got_a, 10,
        "recovered backend should take its round-robin share"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_another_backend() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    let dead = dead_addr();
    // No health check: the dead backend is never ejected, only retried around.
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{dead}, {a}, {b}]\n    retries: 2\nroutes:\n  - upstream: pool\n"
    ))
    .await;
    let client = client();
    for _ in 0..60 {
        let (status, backend) = get_backend(&client, &gw.url("/")).await;
        assert_eq!(status, 200);
        assert!(backend == "a" || backend == "b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_failing_is_502_with_json() {
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{}, {}]\n    retries: 1\nroutes:\n  - upstream: pool\n",
        dead_addr(),
        dead_addr()
    ))
    .await;
    let r = client()
        .get(gw.url("/x"))
        .header("x-request-id", "req-502")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], "req-502");
    assert!(body["error"].as_str().unwrap().contains("backend"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_backend_is_503_and_no_route_is_404() {
    let (a, ea) = echo("a").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{a}]\n    health_check: {{ type: http, path: /health, interval: 100ms }}\nroutes:\n  - path_prefix: /api/\n    upstream: pool\n"
    ))
    .await;
    let client = client();
    let r = client.get(gw.url("/nothing-here")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(!body["request_id"].as_str().unwrap().is_empty());

    ea.control.unhealthy.store(true, Ordering::Relaxed);
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "pool", a)
            == Some(false))
            .await
    );
    let r = client.get(gw.url("/api/x")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "no healthy backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_health_check_ejects_a_closed_port() {
    let (a, _) = echo("a").await;
    let dead = dead_addr();
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{a}, {dead}]\n    health_check: {{ type: tcp, interval: 100ms, timeout: 200ms }}\nroutes:\n  - upstream: pool\n"
    ))
    .await;
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "pool", dead)
            == Some(false))
            .await
    );
    assert_eq!(healthy(&gw.status().await, "pool", a), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_answers_504() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{a}]\n    read_timeout: 200ms\nroutes:\n  - upstream: pool\n"
    ))
    .await;
    let started = Instant::now();
    let r = client()
        .get(gw.url("/slow?sleep=3000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timeout not applied"
    );
}
