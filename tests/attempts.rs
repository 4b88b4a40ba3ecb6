//! Every attempt at a backend is counted once and classified: a backend that
//! accepts connections and never answers times out, and those timeouts eject
//! it like connect failures do.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use tokio::io::AsyncReadExt;

/// A backend that accepts every connection, reads what it is sent and never
/// answers. Counts the connections it accepted.
async fn hanging_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (addr, accepted)
}

fn ejected(status: &serde_json::Value, up: &str, addr: SocketAddr) -> Option<bool> {
    status["upstreams"][up]["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == addr.to_string())
        .and_then(|b| b["ejected"].as_bool())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_hangs_is_ejected_after_consecutive_timeouts() {
    let (good, _) = echo("good").await;
    let (hang, accepted) = hanging_backend().await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{good}, {hang}]\n    read_timeout: 300ms\n    \
         outlier_detection: {{ consecutive_failures: 3, base_ejection: 30s }}\n\
         routes:\n  - upstream: pool\n"
    ))
    .await;
    let c = client();
    let mut timeouts = 0;
    // Round robin alternates, so three timeouts come within six requests;
    // after them the hanging backend must get nothing.
    for _ in 0..6 {
        let (status, backend) = get_backend(&c, &gw.url("/")).await;
        match status {
            200 => assert_eq!(backend, "good"),
            504 => timeouts += 1,
            other => panic!("unexpected status {other}:\n{}", gw.log()),
        }
    }
    assert_eq!(
        timeouts, 3,
        "one timeout per request sent to the hanging one"
    );
    assert_eq!(
        ejected(&gw.status().await, "pool", hang),
        Some(true),
        "{}",
        gw.log()
    );
    let accepted_before = accepted.load(Ordering::Relaxed);
    for _ in 0..20 {
        assert_eq!(
            get_backend(&c, &gw.url("/")).await,
            (200, "good".to_string())
        );
    }
    assert_eq!(accepted.load(Ordering::Relaxed), accepted_before);
    // Each timeout counted once, under its own outcome.
    let label = |outcome: &str, addr: SocketAddr| {
        format!(
            "sluice_upstream_requests_total{{backend=\"{addr}\",outcome=\"{outcome}\",upstream=\"pool\"}}"
        )
    };
    assert_eq!(gw.metric(&label("timeout", hang)).await, Some(3.0));
    assert_eq!(gw.metric(&label("error", hang)).await, Some(0.0));
    assert_eq!(gw.metric(&label("ok", good)).await, Some(23.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_aware_learns_from_a_timeout_that_a_backend_is_slow() {
    let (good, _) = echo("good").await;
    let (hang, accepted) = hanging_backend().await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    balance: load_aware\n    latency_decay: 10s\n    \
         backends: [{good}, {hang}]\n    read_timeout: 300ms\n    retries: 0\n\
         routes:\n  - upstream: pool\n"
    ))
    .await;
    let c = client();
    let mut timeouts = 0;
    for _ in 0..40 {
        if get_backend(&c, &gw.url("/")).await.0 == 504 {
            timeouts += 1;
        }
    }
    // The first timeout is a 300 ms sample: the hanging backend then loses
    // every two-way comparison until it has aged for several decays.
    assert!(timeouts >= 1, "the hanging backend was never tried");
    assert!(
        timeouts <= 2,
        "{timeouts} of 40 requests went to the hanging backend ({} connections)",
        accepted.load(Ordering::Relaxed)
    );
}

fn upstream_requests(up: &str, addr: SocketAddr, outcome: &str) -> String {
    format!(
        "sluice_upstream_requests_total{{backend=\"{addr}\",outcome=\"{outcome}\",upstream=\"{up}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_connect_failures_are_each_counted_once_and_give_back_in_flight() {
    let (good, _) = echo("good").await;
    let dead = dead_addr();
    let (gone_a, gone_b) = (dead_addr(), dead_addr());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let gw = Gateway::start(&format!(
        "access_log: {{ path: {}, format: json }}\n\
         upstreams:\n  pool:\n    balance: least_conn\n    backends: [{dead}, {good}]\n    retries: 1\n  \
         gone:\n    backends: [{gone_a}, {gone_b}]\n    retries: 1\n\
         routes:\n  - path_prefix: /gone/\n    upstream: gone\n  - upstream: pool\n",
        path.display()
    ))
    .await;
    let c = client();
    for i in 0..6 {
        let r = c
            .get(gw.url("/"))
            .header("x-request-id", format!("ok-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", gw.log());
    }
    let r = c
        .get(gw.url("/gone/"))
        .header("x-request-id", "gone")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);

    let lines = common::access_log_lines(&path, 7).await;
    let mut retried = 0;
    for line in lines.iter().filter(|l| l["upstream"] == "pool") {
        assert_eq!(line["backend"], good.to_string(), "{line}");
        let attempts = line["attempts"].as_u64().unwrap();
        assert!(attempts == 1 || attempts == 2, "{line}");
        retried += attempts - 1;
    }
    // least_conn breaks ties at random, so the dead backend was tried first
    // by some of the requests: each of those is one retry and one failure.
    let dead_failures = gw
        .metric(&upstream_requests("pool", dead, "connect_failure"))
        .await;
    assert_eq!(dead_failures, Some(retried as f64));
    assert_eq!(
        gw.metric("sluice_retries_total{upstream=\"pool\"}").await,
        Some(retried as f64)
    );
    assert_eq!(
        gw.metric(&upstream_requests("pool", good, "ok")).await,
        Some(6.0)
    );

    // Both attempts failed: two attempts, the last one named, one retry.
    let gone = lines.iter().find(|l| l["request_id"] == "gone").unwrap();
    assert_eq!(gone["status"], 502);
    assert_eq!(gone["attempts"], 2);
    let last = gone["backend"].as_str().unwrap();
    assert!(
        last == gone_a.to_string() || last == gone_b.to_string(),
        "{gone}"
    );
    for addr in [gone_a, gone_b] {
        assert_eq!(
            gw.metric(&upstream_requests("gone", addr, "connect_failure"))
                .await,
            Some(1.0)
        );
    }
    assert_eq!(
        gw.metric("sluice_retries_total{upstream=\"gone\"}").await,
        Some(1.0)
    );

    let released = gw
        .wait_status(std::time::Duration::from_secs(5), |s| {
            ["pool", "gone"].iter().all(|up| {
                s["upstreams"][up]["backends"]
                    .as_array()
                    .is_some_and(|bs| bs.iter().all(|b| b["in_flight"] == 0))
            })
        })
        .await;
    assert!(released, "in-flight left behind: {}", gw.status().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_times_out_is_a_502_and_a_connect_failure() {
    let (good, _) = echo("good").await;
    let silent = silent_addr().await;
    let s = silent.addr;
    let gw = Gateway::start(&format!(
        "upstreams:\n  alone:\n    backends: [{s}]\n    connect_timeout: 200ms\n    retries: 0\n  \
         pool:\n    balance: least_conn\n    backends: [{s}, {good}]\n    connect_timeout: 200ms\n    retries: 1\n\
         routes:\n  - path_prefix: /alone/\n    upstream: alone\n  - upstream: pool\n"
    ))
    .await;
    let c = client();
    // Nothing was sent: "every connect attempt failed" is a 502, not 504.
    let r = c.get(gw.url("/alone/")).send().await.unwrap();
    assert_eq!(r.status(), 502, "{}", gw.log());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "could not reach a backend");
    // To a gRPC call: UNAVAILABLE, which its client retries.
    let r = c
        .post(gw.url("/alone/pkg.Service/Method"))
        .header("content-type", "application/grpc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["grpc-status"], "14");
    assert_eq!(
        gw.metric(&upstream_requests("alone", s, "connect_failure"))
            .await,
        Some(2.0)
    );
    assert_eq!(
        gw.metric(&upstream_requests("alone", s, "timeout")).await,
        Some(0.0)
    );
    // Like a refused connect, it is retried on another backend.
    for _ in 0..4 {
        assert_eq!(
            get_backend(&c, &gw.url("/")).await,
            (200, "good".to_string()),
            "{}",
            gw.log()
        );
    }
}
