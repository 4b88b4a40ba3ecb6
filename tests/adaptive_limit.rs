//! `adaptive_concurrency` through the real gateway, in front of a backend of
//! fixed capacity under 8x overload: the limit finds the capacity, keeps the
//! queue short, follows capacity changes, and sheds the sheddable first.

#[path = "common/capacity_backend.rs"]
mod capacity_backend;
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capacity_backend::Capacity;
use common::{client, Gateway};

const SERVICE: Duration = Duration::from_millis(20);

/// The overload tests measure latency against a 20 ms service time: run
/// one at a time, so that they do not load the machine for each other.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The load generator stands for a trusted proxy: only from one is a
/// client-sent `x-priority` believed.
fn sections(backend: std::net::SocketAddr, limit: &str) -> String {
    format!(
        "trusted_proxies: [127.0.0.1/32]\n\
         upstreams:\n  app: {{ backends: [{backend}], read_timeout: 30s }}\n\
         limits:\n  guard: {limit}\n\
         routes:\n  - {{ upstream: app, limits: [guard] }}\n"
    )
}

/// `clients` loops sending GETs (with `x-priority: class`) until `stop`;
/// a refused client waits 50 ms, as a client honouring 503 would.
fn load(
    gw: &Gateway,
    clients: usize,
    class: &'static str,
    stop: &Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    for _ in 0..clients {
        let (url, stop, ok, refused) = (gw.url("/"), stop.clone(), ok.clone(), refused.clone());
        tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).header("x-priority", class).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        assert_eq!(r.status(), 503, "a refusal is the limit's status");
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
    }
    (ok, refused)
}

async fn current_limit(gw: &Gateway) -> f64 {
    gw.status().await["limits"]["guard"]["current"]["limit"]
        .as_f64()
        .unwrap_or(f64::NAN)
}

/// Polls until the limit is within `range`; bounded by `within`.
async fn settles(
    gw: &Gateway,
    range: std::ops::RangeInclusive<f64>,
    within: Duration,
) -> Result<f64, f64> {
    let deadline = Instant::now() + within;
    let mut last = f64::NAN;
    while Instant::now() < deadline {
        last = current_limit(gw).await;
        if range.contains(&last) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limit_finds_the_capacity_and_follows_it() {
    let _one_at_a_time = HEAVY.lock().await;
    // 8 workers of 20 ms: 400 requests/s; 64 clients are 8x that concurrency.
    let (backend, cap) = Capacity::start(8, SERVICE).await;
    let gw = Gateway::start(&sections(
        backend,
        "{ algorithm: adaptive_concurrency, key: route }",
    ))
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (_ok, refused) = load(&gw, 64, "default", &stop);

    let started = Instant::now();
    let settled = settles(&gw, 4.0..=16.0, Duration::from_secs(5)).await;
    assert!(
        settled.is_ok(),
        "limit {:?} after 5 s, want 4..=16",
        settled
    );
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(started.elapsed())).await;

    // Over the next seconds: a short queue, and the backend kept busy.
    let since = Instant::now();
    let served_before = cap.served.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let goodput =
        (cap.served.load(Ordering::Relaxed) - served_before) as f64 / since.elapsed().as_secs_f64();
    let (p99, n) = cap.p99_since(since);
    assert!(n > 100, "{n} requests measured");
    assert!(
        p99 <= SERVICE * 3,
        "backend p99 {p99:?} (queue + service) past 3x the service time"
    );
    assert!(
        goodput >= 0.8 * 400.0,
        "goodput {goodput:.0}/s of a capacity of 400/s"
    );
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the overload was refused, not queued"
    );
    let status = gw.status().await;
    let current = &status["limits"]["guard"]["current"];
    let min_ms = current["min_latency_ms"].as_f64().unwrap();
    assert!(
        (20.0..30.0).contains(&min_ms),
        "min latency {min_ms} ms for a 20 ms backend"
    );
    assert!(current["recent_latency_ms"].as_f64().is_some());
    assert!(gw
        .metric("sluice_adaptive_limit{limit=\"guard\"}")
        .await
        .is_some());

    // Capacity halves: the limit follows it down...
    cap.remove_workers(4).await;
    let halved = settles(&gw, 2.0..=8.0, Duration::from_secs(10)).await;
    assert!(
        halved.is_ok(),
        "limit {halved:?} 10 s after capacity halved, want 2..=8"
    );
    // ...and back up when it doubles.
    cap.add_workers(4);
    let doubled = settles(&gw, 4.0..=16.0, Duration::from_secs(10)).await;
    assert!(
        doubled.is_ok(),
        "limit {doubled:?} 10 s after capacity doubled, want 4..=16"
    );
    stop.store(true, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sheddable_requests_absorb_the_refusals() {
    let _one_at_a_time = HEAVY.lock().await;
    let (backend, _cap) = Capacity::start(8, SERVICE).await;
    let gw = Gateway::start(&sections(
        backend,
        "{ algorithm: adaptive_concurrency, key: route, priority: 'header:x-priority' }",
    ))
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let shed = load(&gw, 60, "sheddable", &stop);
    let warm = load(&gw, 4, "critical", &stop);
    // After the start-up probe (3 in flight for everyone) and a few windows...
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let current = gw.status().await["limits"]["guard"]["current"].clone();
        if current["probing"] == false && current["recent_latency_ms"].is_number() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the limit never left its start-up probe: {current}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (crit_ok0, crit_refused0) = (
        warm.0.load(Ordering::Relaxed),
        warm.1.load(Ordering::Relaxed),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let crit_ok = warm.0.load(Ordering::Relaxed) - crit_ok0;
    let crit_refused = warm.1.load(Ordering::Relaxed) - crit_refused0;
    let shed_refused = shed.1.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    assert!(
        shed_refused > 100,
        "the sheddable absorbed the refusals ({shed_refused})"
    );
    let success = crit_ok as f64 / (crit_ok + crit_refused).max(1) as f64;
    assert!(crit_ok > 100, "{crit_ok} critical requests served");
    assert!(
        success >= 0.95,
        "critical success {:.1}% ({crit_refused} refused)",
        success * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_adaptive_limit_computes_but_never_refuses() {
    let _one_at_a_time = HEAVY.lock().await;
    let (backend, _cap) = Capacity::start(4, SERVICE).await;
    let gw = Gateway::start(&sections(
        backend,
        "{ algorithm: adaptive_concurrency, key: route, shadow: true }",
    ))
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused) = load(&gw, 16, "default", &stop);
    let deadline = Instant::now() + Duration::from_secs(8);
    let measured = loop {
        let current = gw.status().await["limits"]["guard"]["current"].clone();
        if current["probing"] == false && current["recent_latency_ms"].is_number() {
            break current;
        }
        assert!(
            Instant::now() < deadline,
            "a shadow limit still measures: {current}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(true, Ordering::Relaxed);
    assert!(
        measured["min_latency_ms"]
            .as_f64()
            .is_some_and(|m| m >= 20.0),
        "{measured}"
    );
    assert_eq!(
        refused.load(Ordering::Relaxed),
        0,
        "a shadow limit refuses nothing"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    // During its start-up probe (3 in flight) it would have refused most.
    let shadowed = gw
        .metric("sluice_ratelimit_decisions_total{decision=\"shadow_rejected\",limit=\"guard\"}")
        .await
        .unwrap_or(0.0);
    assert!(shadowed > 0.0, "what it would have refused is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_says_when_to_retry_and_what_the_limit_is() {
    let (backend, _cap) = Capacity::start(1, Duration::from_millis(300)).await;
    let gw = Gateway::start(&sections(
        backend,
        "{ algorithm: adaptive_concurrency, key: route, initial: 1, min: 1, max: 1 }",
    ))
    .await;
    // Four at once on one slot: one is served, the others refused.
    let mut calls = Vec::new();
    for _ in 0..4 {
        let url = gw.url("/");
        calls.push(tokio::spawn(async move {
            client().get(&url).send().await.unwrap()
        }));
    }
    let mut refusals = Vec::new();
    for c in calls {
        let r = c.await.unwrap();
        if r.status() == 503 {
            refusals.push(r);
        }
    }
    assert_eq!(refusals.len(), 3);
    let r = &refusals[0];
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        r.headers()["ratelimit-policy"],
        "\"guard\";q=1;qu=\"concurrent-requests\""
    );
    assert!(r.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"guard\";r=0"));
}
