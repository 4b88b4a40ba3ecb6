//! Shared test harness: real echo backends on ephemeral ports in this
//! process, and the real `sluice` binary as a child process.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::echo::Echo;

/// Binds port 0, reads the port back and releases it for the gateway (Pingora
/// binds its own listeners by address).
pub fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().unwrap().port()
}

/// An address nothing listens on: connections to it are refused.
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A listening address whose connects never complete, until dropped: its
/// accept queue (backlog 0) is filled and never drained, and Linux drops a
/// SYN to a listener whose queue is full, so a connect there waits out its
/// timeout (on loopback, with no firewall rule).
pub struct SilentAddr {
    pub addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _fillers: Vec<tokio::net::TcpStream>,
}

pub async fn silent_addr() -> SilentAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = socket.local_addr().unwrap();
    let listener = socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        let connect = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(Duration::from_millis(200), connect).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("connect to the silent listener: {e}"),
            // Full: this connect's SYN was dropped.
            Err(_) => {
                return SilentAddr {
                    addr,
                    _listener: listener,
                    _fillers: fillers,
                }
            }
        }
    }
    panic!("the accept queue of {addr} never filled");
}

/// Starts an echo backend named `name` on an ephemeral port.
pub async fn echo(name: &str) -> (SocketAddr, Arc<Echo>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let e = Echo::new(name);
    tokio::spawn(e.clone().serve(listener));
    (addr, e)
}

pub struct Gateway {
    child: Child,
    /// Everything in the config file before the test's sections.
    head: String,
    pub port: u16,
    pub admin_port: u16,
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
}

/// Pingora's server keys every test gateway uses: files in the test's own
/// directory and no grace period, so shutdown is immediate.
fn server_keys(dir: &std::path::Path) -> String {
    format!(
        "version: 1\nthreads: 2\npid_file: {d}/sluice.pid\nupgrade_sock: {d}/upgrade.sock\n\
         grace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1\n",
        d = dir.display()
    )
}

impl Gateway {
    /// Starts the gateway with the given gateway sections (everything but
    /// `listen`/`admin` and Pingora's keys, which the harness adds).
    pub async fn start(sections: &str) -> Gateway {
        Self::start_with_listen(sections, None).await
    }

    pub async fn start_with_listen(sections: &str, listen: Option<String>) -> Gateway {
        Self::start_binary(
            Path::new(env!("CARGO_BIN_EXE_sluice")),
            sections,
            listen,
            None,
            None,
        )
        .await
    }

    /// Like [`Self::start_with_listen`], with the gateway's file-descriptor
    /// limit (soft and hard, so it cannot raise it) set to `nofile`.
    pub async fn start_with_nofile(sections: &str, listen: Option<String>, nofile: u64) -> Gateway {
        Self::start_binary(
            Path::new(env!("CARGO_BIN_EXE_sluice")),
            sections,
            listen,
            None,
            Some(nofile),
        )
        .await
    }

    /// Starts the gateway with its own `admin:` section, in which
    /// `{admin_port}` stands for the admin listener's port.
    pub async fn start_with_admin(sections: &str, admin: &str) -> Gateway {
        Self::start_binary(
            Path::new(env!("CARGO_BIN_EXE_sluice")),
            sections,
            None,
            Some(admin),
            None,
        )
        .await
    }

    /// Starts an example binary that runs `sluice::cli::run`, as
    /// `cargo build --examples` leaves it (scripts/test.sh builds them first;
    /// `cargo test --examples` alone builds examples as test harnesses).
    pub async fn start_example(name: &str, sections: &str) -> Gateway {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join("examples")
            .join(name);
        // Cargo rebuilds the sluice library for every integration test run
        // but builds examples only for `cargo test` without target filters:
        // an example older than the newest library build is from older sources.
        let built = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let deps = exe.parent().unwrap();
        let newest_lib = std::fs::read_dir(deps)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libsluice-") && n.ends_with(".rlib"))
            })
            .filter_map(|p| built(&p))
            .max();
        let example = built(&bin);
        assert!(
            example.is_some() && example >= newest_lib,
            "{} is missing or older than the sluice library: build it with \
             `cargo build --example {name}` (scripts/test.sh does)",
            bin.display()
        );
        Self::start_binary(&bin, sections, None, None, None).await
    }

    async fn start_binary(
        bin: &Path,
        sections: &str,
        listen: Option<String>,
        admin: Option<&str>,
        nofile: Option<u64>,
    ) -> Gateway {
        let mut last_err = String::new();
        // A reserved port can be taken by someone else before the gateway
        // binds it; try a few fresh ones.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let admin_port = free_port();
            let listen_yaml = match &listen {
                Some(l) => l.replace("{port}", &port.to_string()),
                None => format!("listen: [127.0.0.1:{port}]\n"),
            };
            let admin_yaml = admin
                .unwrap_or("admin: 127.0.0.1:{admin_port}\n")
                .replace("{admin_port}", &admin_port.to_string());
            let head = format!("{}{listen_yaml}{admin_yaml}", server_keys(dir.path()));
            let text = format!("{head}{sections}");
            let conf = dir.path().join("gateway.yaml");
            std::fs::write(&conf, &text).unwrap();
            let log = std::fs::File::create(dir.path().join("sluice.log")).unwrap();
            let mut command = Command::new(bin);
            if let Some(n) = nofile {
                use std::os::unix::process::CommandExt;
                // SAFETY: between fork and exec the child only calls
                // setrlimit(2), which is async-signal-safe.
                unsafe {
                    command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, n, n));
                }
            }
            let child = command
                .arg("-c")
                .arg(&conf)
                .env(
                    "RUST_LOG",
                    std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start sluice");
            let mut gw = Gateway {
                child,
                head,
                port,
                admin_port,
                dir,
                conf,
            };
            if gw.wait_ready(Duration::from_secs(20)).await {
                return gw;
            }
            last_err = gw.log();
            if !last_err.contains("in use") {
                break;
            }
        }
        panic!("gateway did not become ready:\n{last_err}");
    }

    /// Polls the admin `/healthz` and a TCP connect to the proxy port.
    async fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let admin_ok = reqwest::get(format!("http://127.0.0.1:{}/healthz", self.admin_port))
                .await
                .is_ok_and(|r| r.status() == 200);
            let proxy_ok = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok();
            // Something answering on the ports is not enough: a test running
            // alongside may have been handed the same free port and bound it
            // first, and then this gateway is about to exit with "in use".
            if admin_ok
                && proxy_ok
                && self.listens_on(self.port)
                && self.listens_on(self.admin_port)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    /// Whether this gateway's process holds a socket listening on `port`
    /// (Linux: /proc/net/tcp{,6} for the listener's inode, the process's fds
    /// for the inode).
    fn listens_on(&self, port: u16) -> bool {
        let mut inodes = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                // local_address is ADDR:PORT in hex; state 0A is LISTEN.
                let local_port = f
                    .get(1)
                    .and_then(|a| a.rsplit_once(':'))
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                if local_port == Some(port) && f.get(3) == Some(&"0A") {
                    if let Some(inode) = f.get(9) {
                        inodes.push(format!("socket:[{inode}]"));
                    }
                }
            }
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.child.id())) else {
            return false;
        };
        fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    }

    /// Rewrites the config file with new gateway sections (same listeners),
    /// for reload tests.
    pub fn rewrite(&self, sections: &str) {
        std::fs::write(&self.conf, format!("{}{sections}", self.head)).unwrap();
    }

    /// `POST /reload`: (status, JSON answer).
    pub async fn reload(&self) -> (u16, serde_json::Value) {
        let r = client().post(self.admin("/reload")).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    /// The value of one sample in `/metrics`, e.g.
    /// `sluice_requests_total{route="a",status="200"}` (labels in the
    /// exposition's order, which is alphabetical).
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = reqwest::get(self.admin("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines().find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sluice.log")).unwrap_or_default()
    }

    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(self.admin("/status"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls `/status` until `pred` holds; bounded in time.
    pub async fn wait_status(
        &self,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if pred(&self.status().await) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the gateway process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether backend `addr` of upstream `up` is healthy per `/status`.
pub fn healthy(status: &serde_json::Value, up: &str, addr: SocketAddr) -> Option<bool> {
    status["upstreams"][up]["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == addr.to_string())
        .and_then(|b| b["healthy"].as_bool())
}

/// A TCP connection to the gateway's `port` from the loopback address
/// `local` (all of 127/8 is loopback on Linux), so that one test can be
/// several client IPs.
pub async fn connect_from(local: [u8; 4], port: u16) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((local, 0))).unwrap();
    sock.connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// A client that never keeps a connection (each request a new one) or one that does.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GETs `url` with one extra header and returns the status.
pub async fn status_with(c: &reqwest::Client, url: &str, header: &str, value: &str) -> u16 {
    c.get(url)
        .header(header, value)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// GETs `url` and returns (status, x-backend header).
pub async fn get_backend(c: &reqwest::Client, url: &str) -> (u16, String) {
    let r = c.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    let backend = r
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let _ = r.bytes().await;
    (status, backend)
}

/// A self-signed certificate for `names`, its PEM files in a directory of
/// its own, and the `listen:` section of a TLS listener serving it (with the
/// `{port}` placeholder `Gateway::start_with_listen` fills in).
pub struct TlsListener {
    pub cert: rcgen::CertifiedKey,
    pub dir: tempfile::TempDir,
    pub listen: String,
}

pub fn tls_listener(names: &[&str]) -> TlsListener {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::generate_simple_self_signed(names).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let listen = format!(
        "listen:\n  - address: 127.0.0.1:{{port}}\n    tls: {{ cert: {}, key: {} }}\n",
        cert_path.display(),
        key_path.display()
    );
    TlsListener { cert, dir, listen }
}

/// A rustls client config that trusts only `cert` and offers one ALPN protocol.
pub fn tls_client_config(
    cert: &rcgen::CertifiedKey,
    alpn: &[u8],
) -> Arc<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// Waits for `n` JSON lines in the access log at `path`.
pub async fn access_log_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "access log has {} of {n} lines",
            lines.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
