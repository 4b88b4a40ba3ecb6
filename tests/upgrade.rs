//! Zero-downtime upgrade (issue 4): continuous traffic through the gateway
//! while it hands its listening sockets from process to process three times
//! in a row, exactly as `scripts/upgrade.sh` does: start `sluice -u`, wait for
//! it to listen on `upgrade_sock`, SIGQUIT the old process.
//!
//! Traffic: keep-alive clients (one pooled connection each) and clients that
//! open a fresh connection per request, every response checked byte for byte,
//! plus slow requests that are in flight on the old process when it is told to
//! go. Not one request may fail, error or come back short.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const UPGRADES: usize = 3;
const KEEPALIVE_CLIENTS: usize = 8;
const FRESH_CLIENTS: usize = 4;
/// Body sizes the traffic cycles through (the echo backend sends `x` * N).
const SIZES: [usize; 4] = [1024, 65536, 1, 16384];
/// The slow requests outlast the SIGQUIT by about this long.
const SLOW_MS: u64 = 2500;
const SLOW_SIZE: usize = 4096;
/// Successes each phase must reach, so that traffic that silently stalled fails the test.
const MIN_OK_PER_PHASE: u64 = 100;

/// Children the test started; killed on the way out, whatever happened.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the traffic saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// Answered, but not 200 or not the expected body.
    failed: AtomicU64,
    /// No response: refused, reset, closed before the header.
    conn_errors: AtomicU64,
    /// The header came, the body did not (all of it).
    truncated: AtomicU64,
    /// Responses that asked the client to close: served by a draining process.
    closes: AtomicU64,
    samples: Mutex<Vec<String>>,
    /// When the last SIGQUIT was sent, to place each problem in the hand-over.
    quit_at: Mutex<Option<Instant>>,
}

impl Tally {
    fn note(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let since = match *self.quit_at.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(t) => format!("{:.3}s after the last SIGQUIT", t.elapsed().as_secs_f64()),
            None => "before the first SIGQUIT".to_string(),
        };
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() < 20 {
            s.push(format!("{since}: {what}"));
        }
    }

    fn bad(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
            + self.conn_errors.load(Ordering::Relaxed)
            + self.truncated.load(Ordering::Relaxed)
    }

    /// Panics, with what went wrong and the processes' logs, if anything did.
    fn assert_clean(&self, when: &str, dir: &Path) {
        if self.bad() == 0 {
            return;
        }
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n  ");
        panic!(
            "{when}: {}\nfirst problems:\n  {samples}\n{}",
            self.summary(),
            logs(dir)
        );
    }

    fn summary(&self) -> String {
        format!(
            "ok {} / failed {} / connection errors {} / truncated {} (responses with Connection: close: {})",
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.conn_errors.load(Ordering::Relaxed),
            self.truncated.load(Ordering::Relaxed),
            self.closes.load(Ordering::Relaxed),
        )
    }
}

fn asks_close(r: &reqwest::Response) -> bool {
    r.headers()
        .get("connection")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

fn body_ok(body: &[u8], size: usize) -> bool {
    body.len() == size && body.iter().all(|&b| b == b'x')
}

/// One client task: requests in a loop until `stop`, each checked.
async fn traffic(
    client: reqwest::Client,
    base: String,
    seed: usize,
    kind: &'static str,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut i = seed;
    while !stop.load(Ordering::Relaxed) {
        let size = SIZES[i % SIZES.len()];
        i += 1;
        let url = format!("{base}/data?size={size}");
        let resp = match client.get(&url).send().await {
            Ok(r) => r,
            Err(e) => {
                tally.note(&tally.conn_errors, format!("{kind} {url}: {e:?}"));
                continue;
            }
        };
        let status = resp.status();
        if asks_close(&resp) {
            tally.closes.fetch_add(1, Ordering::Relaxed);
        }
        match resp.bytes().await {
            Err(e) => tally.note(&tally.truncated, format!("{kind} {url}: body: {e:?}")),
            Ok(body) if body.len() < size && status == 200 => tally.note(
                &tally.truncated,
                format!("{kind} {url}: {} of {size} bytes", body.len()),
            ),
            Ok(body) if status != 200 || !body_ok(&body, size) => tally.note(
                &tally.failed,
                format!("{kind} {url}: status {status}, {} bytes", body.len()),
            ),
            Ok(_) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A slow request's outcome: status, body intact, `Connection: close`, when it ended.
struct Slow {
    status: u16,
    body_ok: bool,
    closed: bool,
    finished: Instant,
}

async fn slow_request(base: String) -> Result<Slow, String> {
    // Its own client: a fresh connection, accepted by whichever process
    // holds the listener now.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let url = format!("{base}/slow/x?sleep={SLOW_MS}&size={SLOW_SIZE}");
    let r = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e:?}"))?;
    let status = r.status().as_u16();
    let closed = asks_close(&r);
    let body = r.bytes().await.map_err(|e| format!("{url}: body: {e:?}"))?;
    Ok(Slow {
        status,
        body_ok: body_ok(&body, SLOW_SIZE),
        closed,
        finished: Instant::now(),
    })
}

fn spawn_sluice(conf: &Path, log: PathBuf, upgrade: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("-c").arg(conf);
    if upgrade {
        cmd.arg("-u");
    }
    cmd.env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start sluice")
}

fn sigquit(pid: u32) {
    let status = Command::new("kill")
        .args(["-QUIT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -QUIT {pid} failed");
}

/// Polls `cond` every 25 ms for at most `limit`.
async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for n in 0..=UPGRADES {
        let text = std::fs::read_to_string(dir.join(format!("sluice-{n}.log"))).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        out.push_str(&format!("--- sluice-{n}.log (last lines) ---\n"));
        for line in tail.iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Waits until `ok` has grown by at least `MIN_OK_PER_PHASE` since `from`; bounded.
async fn traffic_flows(tally: &Tally, from: u64, phase: &str) {
    let ok = wait_until(Duration::from_secs(10), || {
        tally.ok.load(Ordering::Relaxed) >= from + MIN_OK_PER_PHASE
    })
    .await;
    let now = tally.ok.load(Ordering::Relaxed);
    assert!(
        ok,
        "{phase}: only {} requests succeeded; {}",
        now - from,
        tally.summary()
    );
}

/// Writes the config and starts the first process; a reserved port can be
/// taken by someone else before sluice binds it, so this tries a few.
async fn start_first(
    children: &mut Children,
    data_addr: SocketAddr,
    slow_addr: SocketAddr,
) -> (tempfile::TempDir, PathBuf, u16) {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin_port) = (free_port(), free_port());
        let conf = dir.path().join("gateway.yaml");
        let text = format!(
            "version: 1\nthreads: 2\npid_file: {d}/sluice.pid\nupgrade_sock: {d}/upgrade.sock\n\
             grace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 10\n\
             listen: [127.0.0.1:{port}]\nadmin: 127.0.0.1:{admin_port}\n\
             upstreams:\n  data: {{ backends: [{data_addr}] }}\n  slow: {{ backends: [{slow_addr}] }}\n\
             routes:\n  - name: slow\n    path_prefix: /slow/\n    upstream: slow\n\
             \x20 - name: data\n    path_prefix: /\n    upstream: data\n",
            d = dir.path().display()
        );
        std::fs::write(&conf, text).unwrap();
        let mut first = spawn_sluice(&conf, dir.path().join("sluice-0.log"), false);
        let probe = client();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && first.try_wait().unwrap().is_none() {
            let admin = probe
                .get(format!("http://127.0.0.1:{admin_port}/healthz"))
                .send()
                .await;
            if admin.is_ok_and(|r| r.status() == 200)
                && tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            {
                children.0.push(first);
                return (dir, conf, port);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = first.kill();
        let _ = first.wait();
        let log = logs(dir.path());
        assert!(log.contains("in use"), "sluice did not start:\n{log}");
    }
    panic!("sluice did not start on free ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_upgrades_under_traffic_lose_nothing() {
    let started = Instant::now();
    let (data_addr, _data) = echo("data").await;
    let (slow_addr, slow_echo) = echo("slow").await;

    let mut children = Children(Vec::new());
    let (dir, conf, port) = start_first(&mut children, data_addr, slow_addr).await;
    let base = format!("http://127.0.0.1:{port}");
    let sock = dir.path().join("upgrade.sock");

    // Traffic, until the end of the test.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for i in 0..KEEPALIVE_CLIENTS + FRESH_CLIENTS {
        let builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20));
        let c = if i < KEEPALIVE_CLIENTS {
            builder.build().unwrap()
        } else {
            builder.pool_max_idle_per_host(0).build().unwrap()
        };
        tasks.push(tokio::spawn(traffic(
            c,
            base.clone(),
            i,
            if i < KEEPALIVE_CLIENTS {
                "keep-alive"
            } else {
                "fresh"
            },
            stop.clone(),
            tally.clone(),
        )));
    }
    traffic_flows(&tally, 0, "before the first upgrade").await;

    for n in 1..=UPGRADES {
        let phase_start = Instant::now();
        // Slow requests, in flight on the old process: the new one does not
        // hold the listener yet, so the old one accepted them.
        let slow: Vec<_> = (0..2)
            .map(|_| tokio::spawn(slow_request(base.clone())))
            .collect();
        let in_flight = wait_until(Duration::from_secs(5), || {
            slow_echo.control.in_flight.load(Ordering::SeqCst) >= 2
        })
        .await;
        assert!(
            in_flight,
            "upgrade {n}: the slow requests did not reach the backend"
        );

        // The new process binds `upgrade_sock` and waits there for the sockets.
        let mut new = spawn_sluice(&conf, dir.path().join(format!("sluice-{n}.log")), true);
        let listening = wait_until(Duration::from_secs(5), || {
            sock.exists() || new.try_wait().ok().flatten().is_some()
        })
        .await;
        assert!(
            listening && sock.exists(),
            "upgrade {n}: the new process did not open {}:\n{}",
            sock.display(),
            logs(dir.path())
        );
        children.0.push(new);

        let old_index = children.0.len() - 2;
        let quit_at = Instant::now();
        *tally.quit_at.lock().unwrap() = Some(quit_at);
        let ok_at_quit = tally.ok.load(Ordering::Relaxed);
        sigquit(children.0[old_index].id());
        let exited = wait_until(Duration::from_secs(20), || {
            matches!(children.0[old_index].try_wait(), Ok(Some(_)))
        })
        .await;
        assert!(
            exited,
            "upgrade {n}: the old process did not exit within 20 s"
        );
        let old_lived = quit_at.elapsed();
        // Traffic kept flowing through the whole hand-over.
        let ok_at_exit = tally.ok.load(Ordering::Relaxed);
        let during = ok_at_exit - ok_at_quit;
        assert!(
            during >= MIN_OK_PER_PHASE,
            "upgrade {n}: only {during} requests succeeded while the old process drained; {}",
            tally.summary()
        );
        let status = children.0[old_index].wait().unwrap();
        assert!(
            status.success(),
            "upgrade {n}: the old process exited with {status}"
        );
        let new = children.0.last_mut().unwrap();
        assert!(
            new.try_wait().unwrap().is_none(),
            "upgrade {n}: the new process died:\n{}",
            logs(dir.path())
        );

        for s in slow {
            let s = s
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("upgrade {n}: slow request failed: {e}"));
            assert_eq!(s.status, 200, "upgrade {n}: slow request status");
            assert!(s.body_ok, "upgrade {n}: slow request body");
            // Finished after the old process was told to go, and it was
            // answered by a draining process: the old one.
            assert!(
                s.finished > quit_at,
                "upgrade {n}: slow request ended before SIGQUIT"
            );
            assert!(
                s.closed,
                "upgrade {n}: slow request not answered by the draining process"
            );
        }
        // And keeps flowing with the new process alone.
        traffic_flows(&tally, ok_at_exit, &format!("after upgrade {n}")).await;
        println!(
            "upgrade {n}: old process exited {:.1}s after SIGQUIT, {during} requests ok meanwhile \
             (phase {:.1}s); so far {}",
            old_lived.as_secs_f64(),
            phase_start.elapsed().as_secs_f64(),
            tally.summary()
        );
        tally.assert_clean(&format!("upgrade {n}"), dir.path());
    }

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(25), t)
            .await
            .expect("a traffic task hung")
            .unwrap();
    }
    println!(
        "{UPGRADES} upgrades in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        tally.summary()
    );
    tally.assert_clean("after the last upgrade", dir.path());
    assert!(
        tally.closes.load(Ordering::Relaxed) > 0,
        "no response asked to close: draining never happened"
    );
    drop(children);
}
