//! Each balancing algorithm through the real gateway and real backends.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

fn upstream(balance: &str, extra: &str, backends: &[(std::net::SocketAddr, u32)]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(a, w)| format!("      - {{ address: {a}, weight: {w} }}"))
        .collect();
    format!(
        "upstreams:\n  pool:\n    balance: {balance}\n{extra}    backends:\n{}\nroutes:\n  - name: all\n    upstream: pool\n",
        list.join("\n")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_is_smooth_and_exact() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    let (c, _) = echo("c").await;
    let gw = Gateway::start(&upstream("round_robin", "", &[(a, 5), (b, 1), (c, 1)])).await;
    let client = client();
    let mut seq = String::new();
    for _ in 0..70 {
        let (status, backend) = get_backend(&client, &gw.url("/")).await;
        assert_eq!(status, 200);
        seq.push_str(&backend);
    }
    // nginx's smooth weighted round robin: never five a's in a row.
    assert_eq!(&seq[..7], "aabacaa", "sequence {seq}");
    assert_eq!(seq, "aabacaa".repeat(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_random_follows_weights() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    let gw = Gateway::start(&upstream("random", "", &[(a, 1), (b, 3)])).await;
    let client = client();
    let mut counts: HashMap<String, u32> = HashMap::new();
    let n = 2000;
    for _ in 0..n {
        let (status, backend) = get_backend(&client, &gw.url("/")).await;
        assert_eq!(status, 200);
        *counts.entry(backend).or_default() += 1;
    }
    let share_b = counts["b"] as f64 / n as f64;
    assert!(
        (share_b - 0.75).abs() < 0.04,
        "b got {share_b} of traffic: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_sticks_and_remaps_minimally() {
    let mut backends = Vec::new();
    let mut controls = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let (addr, e) = echo(name).await;
        backends.push((addr, 1));
        controls.push(e);
    }
    let extra = "    hash_key: header:x-user-id\n    health_check: { type: http, path: /health, interval: 100ms, timeout: 500ms }\n";
    let gw = Gateway::start(&upstream("consistent_hash", extra, &backends)).await;
    let client = client();
    let lookup = |user: usize| {
        let c = client.clone();
        let url = gw.url("/");
        async move {
            let r = c
                .get(url)
                .header("x-user-id", format!("user-{user}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["x-backend"].to_str().unwrap().to_string()
        }
    };
    let mut before = Vec::new();
    for u in 0..300 {
        before.push(lookup(u).await);
    }
    // Sticky: asking again gives the same answers.
    for u in (0..300).step_by(7) {
        assert_eq!(lookup(u).await, before[u]);
    }
    // Every backend holds some keys.
    for name in ["a", "b", "c", "d"] {
        assert!(before.iter().any(|b| b == name), "{name} got no keys");
    }
    // Eject c: only c's keys move.
    controls[2]
        .control
        .unhealthy
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let c_addr = backends[2].0;
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "pool", c_addr)
            == Some(false))
            .await,
        "c was never ejected"
    );
    for (u, was) in before.iter().enumerate() {
        let now = lookup(u).await;
        if was == "c" {
            assert_ne!(now, "c");
        } else {
            assert_eq!(&now, was, "user-{u} moved from {was} to {now}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_on_cookie_query_and_path() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    for key in ["cookie:sid", "query:user", "path"] {
        let extra = format!("    hash_key: {key}\n");
        let gw = Gateway::start(&upstream("consistent_hash", &extra, &[(a, 1), (b, 1)])).await;
        let client = client();
        let mut seen = std::collections::HashSet::new();
        for i in 0..40 {
            let url = gw.url(&format!("/p{i}?user=u{i}"));
            let first = client
                .get(&url)
                .header("cookie", format!("x=1; sid=s{i}"))
                .send()
                .await
                .unwrap();
            let first = first.headers()["x-backend"].to_str().unwrap().to_string();
            for _ in 0..3 {
                let again = client
                    .get(&url)
                    .header("cookie", format!("sid=s{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    again.headers()["x-backend"].to_str().unwrap(),
                    first,
                    "{key} not sticky"
                );
            }
            seen.insert(first);
        }
        assert_eq!(seen.len(), 2, "{key} sent every key to one backend");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_requests_without_the_key_are_spread_by_weight() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    let extra = "    hash_key: header:x-user-id\n";
    let gw = Gateway::start(&upstream("consistent_hash", extra, &[(a, 1), (b, 3)])).await;
    let c = client();
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..40 {
        let (status, backend) = get_backend(&c, &gw.url("/")).await;
        assert_eq!(status, 200);
        *counts.entry(backend).or_default() += 1;
    }
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&30), "{counts:?}");
}
