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

/// GETs `/` until backend `want` answers it, at most `tries` times 50 ms
/// apart; otherwise the statuses seen on the way.
async fn poll_until_served_by(gw: &Gateway, want: &str, tries: usize) -> Result<(), Vec<u16>> {
    let c = client();
    let mut seen = Vec::new();
    for _ in 0..tries {
        let (status, backend) = get_backend(&c, &gw.url("/")).await;
        if status == 200 && backend == want {
            return Ok(());
        }
        seen.push(status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(seen)
}

/// An upstream of the one backend `a`, with `check` as its health check
/// section (or none).
fn one_backend(a: std::net::SocketAddr, check: &str) -> String {
    format!("upstreams:\n  pool:\n    backends: [{a}]\n{check}routes:\n  - upstream: pool\n")
}

const FAST_CHECK: &str = "    health_check: { type: http, path: /health, interval: 100ms, timeout: 500ms, unhealthy_after: 1 }\n";

/// Makes `a` unhealthy by failing its health endpoint, until the upstream
/// (its only backend) answers 503.
async fn take_down(gw: &Gateway, ea: &sluice::echo::Echo, a: std::net::SocketAddr) {
    ea.control.unhealthy.store(true, Ordering::Relaxed);
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "pool", a)
            == Some(false))
            .await
    );
    assert_eq!(get_backend(&client(), &gw.url("/")).await.0, 503);
}

/// The backend serves requests again but its health endpoint stays broken
/// (why an operator deletes the check), so no check can bring it back: only
/// the reload can. Before, it stayed down for good and the upstream answered
/// 503 until a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_health_check_brings_a_down_backend_back() {
    let (a, ea) = echo("a").await;
    let gw = Gateway::start(&one_backend(a, FAST_CHECK)).await;
    take_down(&gw, &ea, a).await;

    gw.rewrite(&one_backend(a, ""));
    assert_eq!(gw.reload().await.0, 200);
    if let Err(seen) = poll_until_served_by(&gw, "a", 100).await {
        panic!(
            "the backend never took traffic again: {seen:?}\n{}",
            gw.log()
        );
    }
    assert_eq!(healthy(&gw.status().await, "pool", a), Some(true));
    let c = client();
    for _ in 0..10 {
        assert_eq!(get_backend(&c, &gw.url("/")).await, (200, "a".into()));
    }
}

/// A check added back starts as at start (healthy until `unhealthy_after`
/// failures say otherwise), not from the verdict of the check removed before,
/// and it runs: the still broken health endpoint takes the backend out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_added_back_starts_from_the_usual_state() {
    let (a, ea) = echo("a").await;
    let gw = Gateway::start(&one_backend(a, FAST_CHECK)).await;
    take_down(&gw, &ea, a).await;

    gw.rewrite(&one_backend(a, ""));
    assert_eq!(gw.reload().await.0, 200);
    // Two failures 2 s apart to eject: healthy for the first two seconds.
    gw.rewrite(&one_backend(
        a,
        "    health_check: { type: http, path: /health, interval: 2s, timeout: 500ms, unhealthy_after: 2 }\n",
    ));
    assert_eq!(gw.reload().await.0, 200);
    let status = gw.status().await;
    assert_eq!(healthy(&status, "pool", a), Some(true), "{status}");
    assert_eq!(
        get_backend(&client(), &gw.url("/")).await,
        (200, "a".into())
    );

    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "pool", a)
            == Some(false))
            .await,
        "the added check never ran"
    );
    assert_eq!(get_backend(&client(), &gw.url("/")).await.0, 503);
}
