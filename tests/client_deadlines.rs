//! Only the backend's failures are the backend's: a deadline the client
//! chose (`grpc-timeout`), or a client that hangs up, ends the client's
//! request but never ejects a healthy backend. And only gRPC calls get a
//! deadline from `grpc-timeout`: `application/grpc-web` is not gRPC.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

/// How long every backend takes to answer.
const SLOW: Duration = Duration::from_millis(300);

/// Three backends that answer in `SLOW`, behind a pool that ejects after
/// three failures in a row.
async fn slow_pool() -> (Gateway, Vec<SocketAddr>) {
    let mut addrs = Vec::new();
    for name in ["a", "b", "c"] {
        let (addr, e) = echo(name).await;
        e.control
            .delay_ms
            .store(SLOW.as_millis() as u64, Ordering::Relaxed);
        addrs.push(addr);
    }
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{}, {}, {}]\n    read_timeout: 5s\n    \
         outlier_detection: {{ consecutive_failures: 3, base_ejection: 60s }}\n\
         routes:\n  - upstream: pool\n",
        addrs[0], addrs[1], addrs[2]
    ))
    .await;
    (gw, addrs)
}

fn ejected(status: &serde_json::Value) -> Vec<String> {
    status["upstreams"]["pool"]["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["ejected"] == true)
        .map(|b| b["address"].to_string())
        .collect()
}

fn outcome(addr: SocketAddr, outcome: &str) -> String {
    format!(
        "sluice_upstream_requests_total{{backend=\"{addr}\",outcome=\"{outcome}\",upstream=\"pool\"}}"
    )
}

/// Sends nine plain requests at once and returns how many each backend
/// answered: all three must be in rotation still.
async fn spread(gw: &Gateway) -> BTreeMap<String, usize> {
    let (c, url) = (client(), gw.url("/"));
    let requests = (0..9).map(|_| get_backend(&c, &url));
    let mut seen = BTreeMap::new();
    for (status, backend) in futures::future::join_all(requests).await {
        assert_eq!(status, 200, "{}", gw.log());
        *seen.entry(backend).or_insert(0) += 1;
    }
    seen
}

/// Polls until the attempts at `addrs` counted under `label` add up to `n`.
async fn wait_counted(gw: &Gateway, addrs: &[SocketAddr], label: &str, n: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut sum = 0.0;
        for a in addrs {
            sum += gw.metric(&outcome(*a, label)).await.unwrap_or(0.0);
        }
        if sum >= n || Instant::now() > deadline {
            return sum;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_short_grpc_deadlines_ejects_no_backend() {
    let (gw, addrs) = slow_pool().await;
    let c = client();
    for i in 0..30 {
        let r = c
            .post(gw.url("/pkg.Service/Method"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", "20m")
            .body(vec![0u8; 5])
            .send()
            .await
            .expect("request");
        // Without the deadline the backend's plain answer would come back
        // after 300 ms (read_timeout is 5 s), with no grpc-status.
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(
            r.headers().get("grpc-status").map(|v| v.to_str().unwrap()),
            Some("4"),
            "request {i}: DEADLINE_EXCEEDED, {:?}",
            r.headers()
        );
    }
    assert_eq!(
        ejected(&gw.status().await),
        Vec::<String>::new(),
        "{}",
        gw.log()
    );
    // Each deadline counted once, under its own outcome, none as the
    // backend's timeout.
    assert_eq!(
        wait_counted(&gw, &addrs, "client_deadline", 30.0).await,
        30.0
    );
    assert_eq!(wait_counted(&gw, &addrs, "timeout", 0.0).await, 0.0);
    let seen = spread(&gw).await;
    assert_eq!(seen.len(), 3, "every backend still gets traffic: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_gets_no_deadline_from_grpc_timeout() {
    let (gw, _) = slow_pool().await;
    let c = client();
    for content_type in ["application/grpc-web", "application/grpc-web+proto"] {
        let r = c
            .post(gw.url("/pkg.Service/Method"))
            .header("content-type", content_type)
            .header("grpc-timeout", "20m")
            .body(vec![0u8; 5])
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{content_type}");
        assert_eq!(r.headers().get("grpc-status"), None, "{content_type}");
        // The backend's own answer, after its 300 ms.
        assert!(r.headers().get("x-backend").is_some(), "{content_type}");
    }
}

/// Polls until no request is in flight at any of `addrs`.
async fn wait_idle(gw: &Gateway, addrs: &[SocketAddr]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut busy = 0.0;
        for a in addrs {
            let gauge =
                format!("sluice_upstream_backend_in_flight{{backend=\"{a}\",upstream=\"pool\"}}");
            busy += gw.metric(&gauge).await.unwrap_or(1.0);
        }
        if busy == 0.0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_eject_no_backend() {
    let (gw, addrs) = slow_pool().await;
    for i in 0..30 {
        // Each from a connection of its own, dropped after 100 ms, long
        // before the backend's answer.
        let c = client();
        let r = c
            .get(gw.url("/"))
            .timeout(Duration::from_millis(100))
            .send()
            .await;
        assert!(r.is_err(), "request {i} was answered within 100 ms");
    }
    assert!(wait_idle(&gw, &addrs).await, "{}", gw.log());
    // The gateway saw each hang-up and counted it as the client's: at each
    // backend more of them than the three failures in a row that eject.
    for a in &addrs {
        let errors = gw.metric(&outcome(*a, "error")).await.unwrap_or(0.0);
        assert!(
            errors >= 3.0,
            "{a}: {errors} hang-ups counted\n{}",
            gw.log()
        );
        assert_eq!(gw.metric(&outcome(*a, "ok")).await, Some(0.0), "{a}");
    }
    assert_eq!(
        ejected(&gw.status().await),
        Vec::<String>::new(),
        "{}",
        gw.log()
    );
    let seen = spread(&gw).await;
    assert_eq!(seen.len(), 3, "every backend still gets traffic: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_deadline_has_passed_is_not_sent() {
    let (gw, addrs) = slow_pool().await;
    let r = client()
        .post(gw.url("/pkg.Service/Method"))
        .header("content-type", "application/grpc+proto")
        .header("grpc-timeout", "0n")
        .body(vec![0u8; 5])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["grpc-status"], "4", "{:?}", r.headers());
    for a in &addrs {
        for label in ["ok", "client_deadline", "timeout", "error"] {
            assert_eq!(
                gw.metric(&outcome(*a, label)).await,
                Some(0.0),
                "{a} {label}"
            );
        }
    }
}
