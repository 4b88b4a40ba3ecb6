//! Admission limits through the real gateway.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn sections(a: std::net::SocketAddr, limits: &str, route_limits: &str) -> String {
    format!(
        "upstreams:\n  pool:\n    backends: [{a}]\nlimits:\n{limits}routes:\n  - name: api\n    upstream: pool\n    limits: [{route_limits}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_at_three_times_the_rate_admits_capacity_plus_rate_times_t() {
    let (a, _) = echo("a").await;
    let (capacity, fill_rate) = (50.0, 100.0);
    let gw = Gateway::start(&sections(
        a,
        &format!("  bucket:\n    algorithm: token_bucket\n    key: global\n    capacity: {capacity}\n    fill_rate: {fill_rate}\n"),
        "bucket",
    ))
    .await;
    let c = client();
    let admitted = Arc::new(AtomicU32::new(0));
    let rejected = Arc::new(AtomicU32::new(0));
    // 3 s at 300 requests/s, paced, each request on its own task.
    let mut tick = tokio::time::interval(Duration::from_micros(3_333));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..900 {
        tick.tick().await;
        let (c, url, admitted, rejected) =
            (c.clone(), gw.url("/"), admitted.clone(), rejected.clone());
        tasks.push(tokio::spawn(async move {
            match c.get(url).send().await.map(|r| r.status().as_u16()) {
                Ok(200) => admitted.fetch_add(1, Ordering::Relaxed),
                Ok(429) => rejected.fetch_add(1, Ordering::Relaxed),
                other => panic!("unexpected answer {other:?}"),
            };
        }));
    }
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        t.await.unwrap();
    }
    let admitted = admitted.load(Ordering::Relaxed) as f64;
    let expected = capacity + fill_rate * elapsed;
    let error = (admitted - expected).abs() / expected;
    println!(
        "admitted {admitted}, expected {expected:.0} over {elapsed:.2}s, rejected {}",
        rejected.load(Ordering::Relaxed)
    );
    assert!(
        error <= 0.03,
        "admitted {admitted}, expected {expected:.0} (±3%)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_carry_retry_after_and_ietf_fields() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start(&sections(
        a,
        "  per_ip:\n    algorithm: token_bucket\n    key: client_ip\n    capacity: 2\n    fill_rate: 0.5\n",
        "per_ip",
    ))
    .await;
    let c = client();
    let first = c.get(gw.url("/")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["ratelimit"], "\"per_ip\";r=1;t=2");
    let _ = c.get(gw.url("/")).send().await.unwrap();
    let r = c.get(gw.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let h = r.headers().clone();
    // One token every 2 s: wait 2 whole seconds.
    assert_eq!(h["retry-after"], "2");
    assert_eq!(h["ratelimit-policy"], "\"per_ip\";q=2;w=4");
    assert_eq!(h["ratelimit"], "\"per_ip\";r=0;t=2");
    assert_eq!(h["content-type"], "application/json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("per_ip"));
    assert!(!body["request_id"].as_str().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keys_have_independent_budgets() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start(&sections(
        a,
        "  per_key:\n    algorithm: sliding_window\n    key: header:x-api-key\n    limit: 3\n    window: 60s\n",
        "per_key",
    ))
    .await;
    let c = client();
    let url = gw.url("/");
    let send = |key: &'static str| status_with(&c, &url, "x-api-key", key);
    for _ in 0..3 {
        assert_eq!(send("alice").await, 200);
    }
    assert_eq!(send("alice").await, 429);
    for _ in 0..3 {
        assert_eq!(send("bob").await, 200, "bob's budget is his own");
    }
    assert_eq!(send("bob").await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_limit_caps_requests_at_a_slow_backend() {
    let (a, ea) = echo("a").await;
    let gw = Gateway::start(&sections(
        a,
        "  slots:\n    algorithm: concurrency\n    key: route\n    max: 3\n",
        "slots",
    ))
    .await;
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (c, url) = (c.clone(), gw.url("/?sleep=400"));
        tasks.push(tokio::spawn(async move {
            c.get(url).send().await.unwrap().status().as_u16()
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("status {other}"),
        }
    }
    assert!(
        ea.control.max_in_flight.load(Ordering::SeqCst) <= 3,
        "more than max reached the backend"
    );
    assert!(ok >= 3 && limited >= 1, "ok {ok}, limited {limited}");
    // Slots come back when requests end, whatever the path.
    for _ in 0..3 {
        assert_eq!(get_backend(&c, &gw.url("/")).await.0, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_gives_its_slot_back() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start(&sections(
        a,
        "  slots:\n    algorithm: concurrency\n    key: route\n    max: 1\n",
        "slots",
    ))
    .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    assert!(impatient.get(gw.url("/?sleep=600")).send().await.is_err());
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_backend(&c, &gw.url("/")).await.0 != 200 {
        assert!(Instant::now() < deadline, "slot never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_limit_rejects_nothing_but_counts() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start(&sections(
        a,
        "  trial:\n    algorithm: token_bucket\n    key: global\n    capacity: 1\n    fill_rate: 0.01\n    shadow: true\n",
        "trial",
    ))
    .await;
    let c = client();
    for _ in 0..10 {
        assert_eq!(get_backend(&c, &gw.url("/")).await.0, 200);
    }
    assert_eq!(
        gw.metric("sluice_ratelimit_decisions_total{decision=\"shadow_rejected\",limit=\"trial\"}")
            .await,
        Some(9.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_by_a_later_limit_spends_nothing_of_an_earlier_one() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start(&sections(
        a,
        "  wide:\n    algorithm: token_bucket\n    key: global\n    capacity: 3\n    fill_rate: 0.01\n  \
         strict:\n    algorithm: token_bucket\n    key: header:x-user\n    capacity: 1\n    fill_rate: 0.01\n",
        "wide, strict",
    ))
    .await;
    let c = client();
    let url = gw.url("/");
    let send = |user: &'static str| status_with(&c, &url, "x-user", user);
    assert_eq!(send("u1").await, 200);
    for _ in 0..5 {
        assert_eq!(send("u1").await, 429, "strict refuses u1");
    }
    // `wide` still has 2 of its 3 tokens.
    assert_eq!(send("u2").await, 200);
    assert_eq!(send("u3").await, 200);
    assert_eq!(send("u4").await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_shared_or_rejected_as_configured() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{a}]\nlimits:\n  shared:\n    algorithm: token_bucket\n    key: header:x-key\n    capacity: 2\n    fill_rate: 0.01\n  strict:\n    algorithm: token_bucket\n    key: header:x-key\n    capacity: 5\n    fill_rate: 0.01\n    on_missing: reject\n\
         routes:\n  - name: s\n    path_prefix: /s/\n    upstream: pool\n    limits: [shared]\n  - name: r\n    path_prefix: /r/\n    upstream: pool\n    limits: [strict]\n"
    ))
    .await;
    let c = client();
    assert_eq!(get_backend(&c, &gw.url("/s/")).await.0, 200);
    assert_eq!(get_backend(&c, &gw.url("/s/")).await.0, 200);
    assert_eq!(
        get_backend(&c, &gw.url("/s/")).await.0,
        429,
        "keyless requests share one budget"
    );
    let r = c.get(gw.url("/r/")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(
        r.headers().get("retry-after").is_none(),
        "waiting cannot help a request without the key"
    );
    let r = c
        .get(gw.url("/r/"))
        .header("x-key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
