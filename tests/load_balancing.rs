//! Load-aware balancing, least connections, passive health, slow start,
//! panic mode and the retry budget, against backends whose latency and
//! failures the test controls.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sluice::echo::Echo;

/// Runs `clients` request loops against `url` for `how_long`; returns
/// requests served per backend name.
async fn drive(url: String, clients: usize, how_long: Duration) -> HashMap<String, u32> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, stop) = (url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut seen: HashMap<String, u32> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, backend) = get_backend(&c, &url).await;
                assert_eq!(status, 200);
                *seen.entry(backend).or_default() += 1;
            }
            seen
        }));
    }
    tokio::time::sleep(how_long).await;
    stop.store(true, Ordering::Relaxed);
    let mut total: HashMap<String, u32> = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    total
}

fn share(counts: &HashMap<String, u32>, name: &str) -> f64 {
    let all: u32 = counts.values().sum();
    *counts.get(name).unwrap_or(&0) as f64 / all.max(1) as f64
}

async fn backends(names: &[&str]) -> (Vec<std::net::SocketAddr>, Vec<Arc<Echo>>) {
    let mut addrs = Vec::new();
    let mut echos = Vec::new();
    for n in names {
        let (a, e) = echo(n).await;
        addrs.push(a);
        echos.push(e);
    }
    (addrs, echos)
}

fn list(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_aware_starves_a_slow_backend_and_restores_it() {
    let (addrs, echos) = backends(&["a", "b", "slow"]).await;
    for e in &echos {
        e.control.delay_ms.store(3, Ordering::Relaxed);
    }
    echos[2].control.delay_ms.store(30, Ordering::Relaxed);
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    balance: load_aware\n    backends: [{}]\nroutes:\n  - upstream: pool\n",
        list(&addrs)
    ))
    .await;
    let slow_phase = drive(gw.url("/"), 8, Duration::from_secs(3)).await;
    println!("slow phase: {slow_phase:?}");
    assert!(
        share(&slow_phase, "slow") < 0.15,
        "10x slower backend got {:.1}%",
        share(&slow_phase, "slow") * 100.0
    );

    let status = gw.status().await;
    let weights: Vec<f64> = status["upstreams"]["pool"]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["effective_weight"].as_f64().unwrap())
        .collect();
    println!("effective weights while slow: {weights:?}");

    echos[2].control.delay_ms.store(3, Ordering::Relaxed);
    // Give it a moment to be probed, then it must take its share again.
    let _ = drive(gw.url("/"), 8, Duration::from_secs(2)).await;
    let recovered = drive(gw.url("/"), 8, Duration::from_secs(2)).await;
    println!("recovered: {recovered:?}");
    assert!(
        share(&recovered, "slow") > 0.2,
        "recovered backend got {:.1}%",
        share(&recovered, "slow") * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_conn_keeps_in_flight_counts_within_one() {
    let (addrs, echos) = backends(&["a", "b", "slow"]).await;
    echos[0].control.delay_ms.store(10, Ordering::Relaxed);
    echos[1].control.delay_ms.store(10, Ordering::Relaxed);
    // Round robin would pile requests up on this one.
    echos[2].control.delay_ms.store(40, Ordering::Relaxed);
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    balance: least_conn\n    backends: [{}]\nroutes:\n  - upstream: pool\n",
        list(&addrs)
    ))
    .await;
    let load = tokio::spawn(drive(gw.url("/"), 9, Duration::from_secs(3)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Each sample is three counters read one after another while requests
    // start and end, so a single sample can be off by a request in flight;
    // the time-average per backend is what least_conn controls.
    let mut sums = [0u64; 3];
    let mut samples = 0u64;
    let mut within_one = 0u64;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let s = gw.status().await;
        let counts: Vec<u64> = s["upstreams"]["pool"]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["in_flight"].as_u64().unwrap())
            .collect();
        for (sum, c) in sums.iter_mut().zip(&counts) {
            *sum += c;
        }
        samples += 1;
        if counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1 {
            within_one += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    load.await.unwrap();
    let means: Vec<f64> = sums.iter().map(|s| *s as f64 / samples as f64).collect();
    println!("mean in flight {means:?}; {within_one}/{samples} samples within one");
    assert!(samples >= 20);
    let spread = means.iter().cloned().fold(f64::MIN, f64::max)
        - means.iter().cloned().fold(f64::MAX, f64::min);
    // Round robin would keep about four times as many requests at the slow backend.
    assert!(spread <= 1.0, "mean in-flight counts {means:?}");
    assert!(
        within_one * 4 >= samples * 3,
        "only {within_one}/{samples} samples within one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_answering_500s_is_ejected_and_returns_after_the_ejection_time() {
    let (addrs, echos) = backends(&["a", "bad"]).await;
    echos[1].control.failing.store(true, Ordering::Relaxed);
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{}]\n    outlier_detection: {{ consecutive_failures: 3, base_ejection: 1s, max_ejection: 10s, max_ejected_percent: 50 }}\nroutes:\n  - upstream: pool\n",
        list(&addrs)
    ))
    .await;
    let c = client();
    let mut fives = 0;
    for _ in 0..6 {
        if get_backend(&c, &gw.url("/")).await.0 == 500 {
            fives += 1;
        }
    }
    assert_eq!(fives, 3, "ejected after exactly three 500s");
    let ejected_at = Instant::now();
    let s = gw.status().await;
    assert_eq!(
        s["upstreams"]["pool"]["backends"][1]["ejected"], true,
        "{s}"
    );
    for _ in 0..20 {
        assert_eq!(get_backend(&c, &gw.url("/")).await, (200, "a".into()));
    }
    echos[1].control.failing.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if get_backend(&c, &gw.url("/")).await.1 == "bad" {
            break;
        }
        assert!(Instant::now() < deadline, "never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out_for = ejected_at.elapsed();
    assert!(
        out_for >= Duration::from_millis(800),
        "back after only {out_for:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ramps_a_new_backend_up() {
    let (addrs, _echos) = backends(&["old", "new"]).await;
    let sections = |list: &str| {
        format!("upstreams:\n  pool:\n    backends: [{list}]\n    slow_start: 3s\nroutes:\n  - upstream: pool\n")
    };
    let gw = Gateway::start(&sections(&addrs[0].to_string())).await;
    gw.rewrite(&sections(&list(&addrs)));
    assert_eq!(gw.reload().await.0, 200);
    let mut shares = Vec::new();
    for _ in 0..3 {
        let counts = drive(gw.url("/"), 2, Duration::from_secs(1)).await;
        shares.push(share(&counts, "new"));
    }
    println!("new backend's share per second: {shares:?}");
    assert!(shares[0] < 0.3, "started at full share: {shares:?}");
    assert!(
        shares[0] < shares[1] && shares[1] < shares[2],
        "no ramp: {shares:?}"
    );
    let settled = drive(gw.url("/"), 2, Duration::from_secs(1)).await;
    assert!(
        (share(&settled, "new") - 0.5).abs() < 0.05,
        "after the window: {settled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_mode_starts_below_its_threshold() {
    let (addrs, echos) = backends(&["a", "b", "c", "d"]).await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{}]\n    panic_threshold: 50\n    health_check: {{ type: http, path: /health, interval: 100ms }}\nroutes:\n  - upstream: pool\n",
        list(&addrs)
    ))
    .await;
    let c = client();
    let unhealthy = |i: usize| echos[i].control.unhealthy.store(true, Ordering::Relaxed);
    unhealthy(2);
    unhealthy(3);
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| s["upstreams"]["pool"]
            ["healthy"]
            == 2)
            .await
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        seen.insert(get_backend(&c, &gw.url("/")).await.1);
    }
    assert_eq!(
        seen,
        ["a", "b"].iter().map(|s| s.to_string()).collect(),
        "half healthy is not below 50%"
    );
    assert_eq!(
        gw.metric("sluice_upstream_panic_mode{upstream=\"pool\"}")
            .await,
        Some(0.0)
    );

    unhealthy(1);
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| s["upstreams"]["pool"]
            ["healthy"]
            == 1)
            .await
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        let (status, backend) = get_backend(&c, &gw.url("/")).await;
        assert_eq!(status, 200);
        seen.insert(backend);
    }
    assert_eq!(seen.len(), 4, "panic mode balances across all: {seen:?}");
    assert_eq!(
        gw.metric("sluice_upstream_panic_mode{upstream=\"pool\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_when_the_budget_is_spent() {
    let (a, _) = echo("a").await;
    let dead = dead_addr();
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{a}, {dead}]\n    retries: 1\n    retry_budget: {{ ratio: 0, min_per_second: 0.5 }}\nroutes:\n  - upstream: pool\n"
    ))
    .await;
    let c = client();
    let mut bad_gateway = 0;
    for _ in 0..40 {
        match get_backend(&c, &gw.url("/")).await.0 {
            200 => {}
            502 => bad_gateway += 1,
            other => panic!("status {other}"),
        }
    }
    // Round robin sends 20 requests to the dead backend first; the budget's
    // floor (0.5/s over 10 s) retries 5 of them.
    assert_eq!(
        gw.metric("sluice_retries_total{upstream=\"pool\"}").await,
        Some(5.0)
    );
    assert_eq!(bad_gateway, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_check_that_recovers_ends_a_passive_ejection_early() {
    let (addrs, echos) = backends(&["a", "bad"]).await;
    echos[1].control.failing.store(true, Ordering::Relaxed);
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{}]\n    health_check: {{ type: http, path: /health, interval: 100ms }}\n    outlier_detection: {{ consecutive_failures: 2, base_ejection: 60s, max_ejected_percent: 50 }}\nroutes:\n  - upstream: pool\n",
        list(&addrs)
    ))
    .await;
    let c = client();
    for _ in 0..4 {
        get_backend(&c, &gw.url("/")).await;
    }
    assert!(gw.status().await["upstreams"]["pool"]["backends"][1]["ejected"] == true);
    // The backend goes down for its health check too, then recovers fully.
    echos[1].control.unhealthy.store(true, Ordering::Relaxed);
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "pool", addrs[1])
            == Some(false))
            .await
    );
    echos[1].control.failing.store(false, Ordering::Relaxed);
    echos[1].control.unhealthy.store(false, Ordering::Relaxed);
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| s["upstreams"]["pool"]
            ["backends"][1]["ejected"]
            == false)
            .await,
        "still ejected although its health check recovered"
    );
    let mut seen_bad = false;
    for _ in 0..10 {
        seen_bad |= get_backend(&c, &gw.url("/")).await == (200, "bad".into());
    }
    assert!(seen_bad, "recovered backend got no traffic");
}
