//! Real redis-server processes for the shared-limit tests: one node, or a
//! three-node cluster, on ephemeral ports, in the test's own directory.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::free_port;

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    cluster_port: Option<u16>,
    dir: tempfile::TempDir,
}

fn spawn(port: u16, cluster_port: Option<u16>, dir: &std::path::Path) -> Child {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(cp) = cluster_port {
        cmd.args([
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &cp.to_string(),
        ])
        .args([
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ]);
    }
    cmd.spawn()
        .expect("start redis-server (scripts/test.sh installs Debian's redis-server)")
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_node(false)
    }

    fn start_node(cluster: bool) -> RedisServer {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let cluster_port = cluster.then(free_port);
            let child = spawn(port, cluster_port, dir.path());
            let mut server = RedisServer {
                child: Some(child),
                port,
                cluster_port,
                dir,
            };
            if server.wait_ready(Duration::from_secs(10)) {
                return server;
            }
            server.kill();
        }
        panic!("redis-server did not start");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if self.query(&["PING"]).is_some_and(|r| r == "PONG") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// One command through redis-cli; its reply's text, or `None` if it failed.
    pub fn query(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// Redis's clock in microseconds (`TIME`).
    pub fn time_micros(&self) -> u64 {
        let text = self.query(&["TIME"]).expect("TIME");
        let mut parts = text.lines().map(|l| l.trim().parse::<u64>().unwrap());
        let secs = parts.next().unwrap();
        let micros = parts.next().unwrap();
        secs * 1_000_000 + micros
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.child = Some(spawn(self.port, self.cluster_port, self.dir.path()));
            if self.wait_ready(Duration::from_secs(5)) {
                return;
            }
            self.kill();
            assert!(Instant::now() < deadline, "redis-server did not restart");
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A frozen server would ignore SIGKILL's effect on the socket
            // until continued; continue it first.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// Three masters, no replicas, the slots split between them.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_node(true)).collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.nodes.iter().all(|n| {
            n.query(&["CLUSTER", "INFO"])
                .is_some_and(|i| i.contains("cluster_state:ok"))
        }) {
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// `cluster: [...]` for the config.
    pub fn yaml_list(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    pub fn time_micros(&self) -> u64 {
        self.nodes[0].time_micros()
    }
}
