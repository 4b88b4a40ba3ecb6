//! Goodput and p99 against offered load, in front of a backend of fixed
//! capacity (8 workers of 20 ms: 400 requests/s), for three configurations
//! of the same release gateway: no limit, a static `concurrency` limit at the
//! true capacity (`max: 8`), and `adaptive_concurrency` with its defaults.
//!
//! `cargo bench --bench adaptive [-- --csv FILE]` (scripts/bench-adaptive.sh
//! runs it, draws the chart and writes its section of BENCHMARKS.md). Offered
//! load is N closed-loop clients; a refused client waits 50 ms before trying
//! again, as one honouring a 503 would. Latency is the client's, of the
//! requests that succeeded.

// The same backend the integration tests use; this run changes no capacity.
#[allow(dead_code)]
#[path = "../tests/common/capacity_backend.rs"]
mod capacity_backend;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capacity_backend::Capacity;

const LOADS: [usize; 6] = [4, 8, 16, 32, 64, 128];
const RUN: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(3);

struct Gw {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

async fn start(backend: SocketAddr, limit: &str) -> Gw {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let limits = if limit.is_empty() {
        String::new()
    } else {
        format!("limits:\n  guard: {limit}\n")
    };
    let route_limits = if limit.is_empty() { "[]" } else { "[guard]" };
    let conf = format!(
        "version: 1\nthreads: 1\nwork_stealing: false\npid_file: {d}/p.pid\nupgrade_sock: {d}/u.sock\n\
         grace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1\n\
         listen: [127.0.0.1:{port}]\n\
         upstreams:\n  app: {{ backends: [{backend}], read_timeout: 60s }}\n{limits}\
         routes:\n  - {{ upstream: app, limits: {route_limits} }}\n",
        d = dir.path().display()
    );
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, conf).expect("write the config");
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/sluice");
    let child = Command::new(&bin)
        .arg("-c")
        .arg(&path)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo build --release first)", bin.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Gw {
        child,
        port,
        _dir: dir,
    }
}

/// `clients` closed loops for `warm + run`; goodput and p99 of the `run` part.
async fn offer(url: &str, clients: usize) -> (f64, f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, stop, measuring, lat, refused) = (
            url.to_string(),
            stop.clone(),
            measuring.clone(),
            lat.clone(),
            refused.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client");
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        if measuring.load(Ordering::Relaxed) {
                            lat.lock().expect("lock").push(t.elapsed().as_secs_f64());
                        }
                    }
                    _ => {
                        if measuring.load(Ordering::Relaxed) {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(WARM_UP).await;
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(RUN).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mut l = lat.lock().expect("lock").clone();
    l.sort_by(f64::total_cmp);
    let p99 = l
        .get((l.len() * 99 / 100).min(l.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    let refused_rate = refused.load(Ordering::Relaxed) as f64 / elapsed;
    (l.len() as f64 / elapsed, p99 * 1e3, refused_rate)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let csv = std::env::args().skip_while(|a| a != "--csv").nth(1);
    let (backend, _cap) = Capacity::start(8, Duration::from_millis(20)).await;
    let configs = [
        ("no limit", ""),
        (
            "static max 8",
            "{ algorithm: concurrency, key: route, max: 8, status: 503 }",
        ),
        (
            "adaptive",
            "{ algorithm: adaptive_concurrency, key: route }",
        ),
    ];
    let mut rows = Vec::new();
    for (name, limit) in configs {
        let gw = start(backend, limit).await;
        let url = format!("http://127.0.0.1:{}/", gw.port);
        for clients in LOADS {
            let (goodput, p99, refused) = offer(&url, clients).await;
            println!(
                "adaptive bench: {name:>12}, {clients:>3} clients: {goodput:6.0} ok/s, p99 {p99:7.1} ms, {refused:6.0} refused/s"
            );
            rows.push(format!(
                "{name},{clients},{goodput:.1},{p99:.2},{refused:.1}"
            ));
        }
    }
    if let Some(path) = csv {
        let mut f = std::fs::File::create(&path).expect("create the csv");
        writeln!(f, "config,clients,goodput,p99_ms,refused_per_s").expect("write");
        for r in rows {
            writeln!(f, "{r}").expect("write");
        }
    }
}
