//! The scripts and the limits around them against a real redis-server: what
//! several gateways sharing one key see of one another's calls. Each
//! [`RedisStore`] here stands for one gateway.
//!
//! They need `redis-server` on the `PATH` (scripts/setup.sh installs it), as
//! the shared-limit integration tests do.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounter};

use super::call::StoreMetrics;
use super::limit::{RemoteLimit, RemoteOutcome, Undo};
use super::spec::{RedisNodes, RedisSpec};
use super::store::RedisStore;
use crate::keys::KeySpec;
use crate::limits::limit::KeyStatus;
use crate::limits::spec::{Algorithm, LimitSpec, OnMissing, OnStoreError, StoreSpec};

struct TestRedis {
    child: Child,
    port: u16,
    started: Instant,
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestRedis {
    fn start() -> TestRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("an ephemeral port");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (scripts/setup.sh installs it)");
        TestRedis {
            child,
            port,
            started: Instant::now(),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A store of its own, as one gateway has, once it has connected.
    async fn store(&self) -> Arc<RedisStore> {
        let metric = |name: &str| IntCounter::new(name, name).expect("metric");
        let store = RedisStore::new(
            RedisSpec {
                nodes: RedisNodes::Single(self.url()),
                decision_timeout: Duration::from_secs(2),
                instances: 1,
                connections: 1,
                prefix: "t".into(),
            },
            StoreMetrics {
                timeouts: metric("timeouts"),
                errors: metric("errors"),
                duration: Histogram::with_opts(HistogramOpts::new("d", "d")).expect("metric"),
                opened: metric("opened"),
                closed: metric("closed"),
            },
        );
        store.ensure_started();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !store.is_available() {
            assert!(
                Instant::now() < deadline,
                "could not connect to redis-server"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store
    }

    /// `spec` kept in a store of its own.
    async fn limit(&self, spec: &LimitSpec, lease_ttl: Duration) -> RemoteLimit {
        RemoteLimit::new(
            self.store().await,
            spec,
            OnStoreError::Deny,
            lease_ttl,
            IntCounter::new("f", "f").expect("metric"),
        )
    }

    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis-server")
    }

    /// Scripts Redis has run to the end (`EVALSHA` and `EVAL` calls, less
    /// those that failed: an `EVALSHA` of a script not loaded yet fails with
    /// `NOSCRIPT` and is sent again as `EVAL`).
    async fn scripts_run(&self) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.conn().await)
            .await
            .expect("INFO");
        let field = |stats: &str, name: &str| {
            stats
                .split(',')
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ["evalsha", "eval"]
            .iter()
            .filter_map(|c| {
                let stats = info
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("cmdstat_{c}:")))?;
                let ran = field(stats, "calls");
                Some(ran - field(stats, "failed_calls").min(ran))
            })
            .sum()
    }

    /// Waits (bounded) until Redis has run `n` scripts in all: a call
    /// queued in the background has been made.
    async fn wait_scripts(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.scripts_run().await < n {
            assert!(Instant::now() < deadline, "Redis never ran {n} scripts");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The limiter clock the deny cache reads: nanoseconds, never 0.
    fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64 + 1
    }
}

fn spec(name: &str, algorithm: Algorithm) -> LimitSpec {
    LimitSpec {
        name: name.into(),
        algorithm,
        key: KeySpec::ClientIp,
        shadow: false,
        on_missing: OnMissing::Shared,
        status: 429,
        max_keys: 1000,
        store: StoreSpec::Redis {
            on_error: OnStoreError::Deny,
            lease_ttl: Duration::from_secs(30),
        },
    }
}

/// One token, refilled once every 100 s: nothing refills during a test.
fn one_token() -> LimitSpec {
    spec(
        "bucket",
        Algorithm::TokenBucket {
            capacity: 1.0,
            fill_rate: 0.01,
        },
    )
}

async fn decide(limit: &RemoteLimit, hash: u64, now: u64) -> (KeyStatus, Option<Undo>) {
    match limit.acquire(Some(&b"u"[..]), hash, now).await {
        RemoteOutcome::Decided { status, undo, .. } => (status, undo),
        RemoteOutcome::Failed(_) => panic!("the store did not decide"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_give_back_by_another_gateway_leaves_a_cached_refusal_right() {
    let redis = TestRedis::start();
    // Gateway `a` has the limit on a route with another limit, so it gives
    // tokens back; `b` caches its refusals; `c` asks Redis afterwards.
    let a = redis.limit(&one_token(), Duration::ZERO).await;
    let b = redis.limit(&one_token(), Duration::ZERO).await;
    let c = redis.limit(&one_token(), Duration::ZERO).await;
    let (taken, undo) = decide(&a, 1, redis.now()).await;
    assert!(taken.admitted);
    let (refused, _) = decide(&b, 1, redis.now()).await;
    assert!(!refused.admitted, "the one token is spent");
    // Another limit of `a`'s route refused that request: the token goes back.
    a.undo(undo.expect("an admission owes a give-back"));
    redis.wait_scripts(3).await;
    // `b` still refuses from its cache (it asks Redis nothing)...
    let (cached, _) = decide(&b, 1, redis.now()).await;
    assert!(!cached.admitted);
    assert_eq!(
        redis.scripts_run().await,
        3,
        "the refusal came from the cache"
    );
    // ...and Redis says the same to anyone who asks it.
    let (asked, _) = decide(&c, 1, redis.now()).await;
    assert_eq!(
        asked.admitted, cached.admitted,
        "a give-back made the cached refusal wrong: Redis admits what the cache refuses"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_give_back_nobody_was_refused_for_is_a_whole_token() {
    let redis = TestRedis::start();
    let a = redis.limit(&one_token(), Duration::ZERO).await;
    let b = redis.limit(&one_token(), Duration::ZERO).await;
    let (taken, undo) = decide(&a, 1, redis.now()).await;
    assert!(taken.admitted);
    a.undo(undo.expect("an admission owes a give-back"));
    redis.wait_scripts(2).await;
    let (again, _) = decide(&b, 1, redis.now()).await;
    assert!(again.admitted, "the token given back is there to take");
}
