//! Per-decision latency of the shared store, against a real redis-server on
//! loopback: what a request on a `store: redis` limit waits for its answer.
//!
//! `cargo bench --bench redis_store` starts its own `redis-server` on an
//! ephemeral port, then drives the same `RemoteLimit::acquire` the gateway
//! calls, one request at a time (the latency a decision adds) and 16 at once
//! (a busy gateway: decisions queue on the connection), on one current-thread
//! runtime (the gateway's `threads: 1`), for each algorithm; it prints p50,
//! p99 and the decisions per second, and with `--csv FILE` appends them as CSV
//! rows.
//! A criterion harness would report means; a decision's tail is the point.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounter};
use sluice::keys::KeySpec;
use sluice::limits::redis_store::{
    RedisNodes, RedisSpec, RedisStore, RemoteLimit, RemoteOutcome, StoreMetrics,
};
use sluice::limits::{Algorithm, LimitSpec, OnMissing, OnStoreError, StoreSpec};

const CONCURRENCY: [usize; 2] = [1, 16];
const DECISIONS: usize = 40_000;

fn main() {
    let csv = std::env::args().skip_while(|a| a != "--csv").nth(1);
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port");
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/setup.sh installs it)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rows = rt.block_on(run(port));
    let _ = redis.kill();
    let _ = redis.wait();
    for (name, p50, p99, rate) in &rows {
        println!(
            "redis_store {name}: p50 {:.3} ms, p99 {:.3} ms, {rate:.0} decisions/s",
            p50 * 1e3,
            p99 * 1e3
        );
    }
    if let Some(path) = csv {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open the csv");
        for (name, p50, p99, rate) in &rows {
            writeln!(f, "{name},{:.4},{:.4},{rate:.0}", p50 * 1e3, p99 * 1e3)
                .expect("write the csv");
        }
    }
}

fn metrics() -> StoreMetrics {
    StoreMetrics {
        timeouts: IntCounter::new("t", "t").expect("metric"),
        errors: IntCounter::new("e", "e").expect("metric"),
        duration: Histogram::with_opts(HistogramOpts::new("d", "d")).expect("metric"),
        opened: IntCounter::new("o", "o").expect("metric"),
        closed: IntCounter::new("c", "c").expect("metric"),
    }
}

async fn run(port: u16) -> Vec<(String, f64, f64, f64)> {
    let store = RedisStore::new(
        RedisSpec {
            nodes: RedisNodes::Single(format!("redis://127.0.0.1:{port}/0")),
            decision_timeout: Duration::from_secs(1),
            instances: 1,
            connections: 2,
            prefix: "bench".into(),
        },
        metrics(),
    );
    store.ensure_started();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.is_available() {
        assert!(
            Instant::now() < deadline,
            "could not connect to redis-server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let algorithms = [
        (
            "token_bucket",
            Algorithm::TokenBucket {
                capacity: 1e12,
                fill_rate: 1e9,
            },
        ),
        (
            "sliding_window",
            Algorithm::SlidingWindow {
                limit: 4_000_000_000,
                window: Duration::from_secs(60),
            },
        ),
        ("concurrency", Algorithm::Concurrency { max: 1_000_000 }),
    ];
    let mut rows = Vec::new();
    for (alg, algorithm) in algorithms {
        let spec = LimitSpec {
            name: alg.to_string(),
            algorithm,
            key: KeySpec::ClientIp,
            shadow: false,
            on_missing: OnMissing::Shared,
            status: 429,
            max_keys: 100_000,
            store: StoreSpec::Redis {
                on_error: OnStoreError::Local,
                lease_ttl: Duration::from_secs(30),
            },
        };
        let limit = Arc::new(RemoteLimit::new(
            store.clone(),
            &spec,
            OnStoreError::Local,
            Duration::from_secs(30),
            IntCounter::new("f", "f").expect("metric"),
        ));
        // Warm up: loads the script and fills the connections' buffers.
        decide_all(&limit, 2_000, 16).await;
        for concurrency in CONCURRENCY {
            let started = Instant::now();
            let mut latencies = decide_all(&limit, DECISIONS, concurrency).await;
            let elapsed = started.elapsed().as_secs_f64();
            latencies.sort_by(f64::total_cmp);
            let at = |q: f64| {
                latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)]
            };
            rows.push((
                format!("{alg} {concurrency} at once"),
                at(0.5),
                at(0.99),
                DECISIONS as f64 / elapsed,
            ));
        }
    }
    rows
}

/// `n` decisions, `concurrency` at a time, over 1000 client keys; each one's seconds.
async fn decide_all(limit: &Arc<RemoteLimit>, n: usize, concurrency: usize) -> Vec<f64> {
    let per_task = n / concurrency;
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let limit = limit.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let key = format!("10.0.{}.{}", t, i % 1000);
                let t0 = Instant::now();
                match limit.acquire(Some(key.as_bytes()), i as u64, 0).await {
                    RemoteOutcome::Decided { .. } => {}
                    RemoteOutcome::Failed(_) => panic!("the store failed to decide"),
                }
                out.push(t0.elapsed().as_secs_f64());
            }
            out
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all
}
