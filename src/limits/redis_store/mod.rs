//! The shared store: limits counted in Redis, so that every gateway pointing
//! at it enforces one limit together instead of one each.
//!
//! # Shape
//! [`RedisStore`] is one per `redis:` section. It owns a small thread with its
//! own Tokio runtime where the connections live and where everything that no
//! request waits for runs: connecting, probing an open circuit, giving back
//! tokens and leases, renewing leases. Requests only send a script over an
//! existing multiplexed connection and wait for its reply, at most
//! `decision_timeout`. The thread starts on first use, not when the config is
//! built: the config is built before Pingora daemonizes, and a thread started
//! then would not survive the fork.
//!
//! # Failure
//! Every error or timeout is counted; three in a row open the
//! [circuit](circuit), after which decisions skip the store at once (each
//! limit's `on_store_error` decides) until the store's thread sees Redis
//! answer again. An episode is logged once when it starts and once when it
//! ends. A decision that timed out may still have been counted by Redis when
//! it gets there: that errs towards refusing, and a concurrency lease taken
//! that way is removed straight after (or expires with its TTL).
//!
//! [`RemoteLimit`] is the per-limit half: which script, its arguments, the
//! local deny cache, and how a reply reads as a
//! [`KeyStatus`](super::limit::KeyStatus). [`SharedLimit`] is what the
//! admission engine sees: the remote half and its local stand-in behind the
//! one [`Limit`](super::limit::Limit) interface.

mod circuit;
mod conn;
pub mod keys;
mod lease;
mod limit;
pub mod scripts;
mod shared;
mod task;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use prometheus::{Histogram, IntCounter};
use redis::{Script, Value};

pub use circuit::Circuit;
pub use lease::Lease;
pub use limit::{RemoteLimit, RemoteOutcome, Undo};
pub use shared::{SharedLimit, SharedPermit, SharedUndo};

use conn::Conn;

/// The validated `redis:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisSpec {
    pub nodes: RedisNodes,
    /// The longest a request waits for the store.
    pub decision_timeout: Duration,
    /// Gateways sharing the limits: a local fallback enforces `1/instances`.
    pub instances: u32,
    /// Multiplexed connections to a single node.
    pub connections: usize,
    /// First part of every key, so deployments can share one Redis.
    pub prefix: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RedisNodes {
    Single(String),
    Cluster(Vec<String>),
}

pub const DEFAULT_DECISION_TIMEOUT: Duration = Duration::from_millis(5);
pub const DEFAULT_CONNECTIONS: usize = 2;
pub const DEFAULT_PREFIX: &str = "sluice";

/// The connection index of a decision made on the worker thread's own connection.
const THIS_THREAD: usize = usize::MAX;

/// Counters the store reports to `/metrics`.
#[derive(Clone)]
pub struct StoreMetrics {
    pub timeouts: IntCounter,
    pub errors: IntCounter,
    /// Seconds from sending a decision to its reply.
    pub duration: Histogram,
}

/// Why the store gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFailure {
    /// The circuit is open or no connection exists yet: not asked.
    Unavailable,
    Timeout,
    Error(String),
}

/// The scripts, hashed once.
struct Scripts {
    token_bucket: Script,
    sliding_window: Script,
    concurrency: Script,
}

#[derive(Clone, Copy, Debug)]
pub enum Which {
    TokenBucket,
    SlidingWindow,
    Concurrency,
}

/// One script call, owned, for the background task.
pub struct Call {
    pub which: Which,
    pub key: String,
    pub args: Vec<String>,
    /// The connection a related call used, to keep the two in order.
    pub conn: Option<usize>,
}

pub struct RedisStore {
    spec: RedisSpec,
    metrics: StoreMetrics,
    circuit: Circuit,
    conns: ArcSwapOption<Vec<Conn>>,
    next_conn: AtomicUsize,
    runner: OnceLock<task::Runner>,
    last_error: Mutex<Option<String>>,
    scripts: Scripts,
    /// Makes lease ids unique across gateways and restarts.
    instance: String,
    lease_seq: AtomicU64,
    leases: lease::Held,
}

impl RedisStore {
    /// A store for `spec`. Opens nothing: see the module doc.
    pub fn new(spec: RedisSpec, metrics: StoreMetrics) -> Arc<RedisStore> {
        Arc::new(RedisStore {
            spec,
            metrics,
            circuit: Circuit::new_open(),
            conns: ArcSwapOption::empty(),
            next_conn: AtomicUsize::new(0),
            runner: OnceLock::new(),
            last_error: Mutex::new(None),
            scripts: Scripts {
                token_bucket: Script::new(scripts::TOKEN_BUCKET),
                sliding_window: Script::new(scripts::SLIDING_WINDOW),
                concurrency: Script::new(scripts::CONCURRENCY),
            },
            instance: format!("{:016x}", rand::random::<u64>()),
            lease_seq: AtomicU64::new(0),
            leases: lease::Held::default(),
        })
    }

    pub fn spec(&self) -> &RedisSpec {
        &self.spec
    }

    /// Starts the store's thread if it is not running yet.
    pub fn ensure_started(self: &Arc<Self>) {
        self.runner.get_or_init(|| task::Runner::start(self));
    }

    /// Whether requests are asking the store now.
    pub fn is_available(&self) -> bool {
        self.circuit.is_closed() && self.conns.load().is_some()
    }

    fn script(&self, which: Which) -> &Script {
        match which {
            Which::TokenBucket => &self.scripts.token_bucket,
            Which::SlidingWindow => &self.scripts.sliding_window,
            Which::Concurrency => &self.scripts.concurrency,
        }
    }

    /// Runs one script for a request, within `decision_timeout`, and says
    /// which connection it used (a follow-up call goes on the same one, so
    /// Redis sees the two in order: see [`follow_up`](Self::follow_up)).
    pub async fn decide(
        self: &Arc<Self>,
        which: Which,
        key: &str,
        args: &[&str],
    ) -> (Result<Value, StoreFailure>, usize) {
        self.ensure_started();
        if !self.circuit.is_closed() {
            return (Err(StoreFailure::Unavailable), 0);
        }
        let Some(conns) = self.conns.load_full() else {
            return (Err(StoreFailure::Unavailable), 0);
        };
        if let Some((local, ready)) = self.thread_conn() {
            let result = self
                .call(std::slice::from_ref(&local), 0, which, key, args)
                .await;
            // A failed thread connection (Redis restarted, say) serves no
            // decision until it has been warmed up again: the store's own
            // connections, which the probe checked, carry them meanwhile.
            if result.is_err()
                && ready
                    .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                tokio::spawn(warm_up(Arc::downgrade(self), local, ready));
            }
            return (result, THIS_THREAD);
        }
        let index = self.next_conn.fetch_add(1, Ordering::Relaxed) % conns.len().max(1);
        (self.call(&conns, index, which, key, args).await, index)
    }

    /// This thread's own connection to a single node, made on first use.
    ///
    /// A connection's reader and writer run as a task on the runtime that
    /// made it. Requests run on Pingora's runtimes, one per worker thread; a
    /// connection made on the store's own thread would cost every decision
    /// two wake-ups across threads (there and back) and a context switch on
    /// a busy core. So each worker thread gets its own multiplexed
    /// connection, driven by its own runtime, and the store's connections
    /// serve only the store's thread (probes, give-backs, renewals). A
    /// cluster keeps one shared cluster connection: it is one per node already.
    ///
    /// A new thread connection is first connected and given the scripts in
    /// the background; until then the thread's decisions use the store's
    /// connections, so no request pays for a connect within its
    /// `decision_timeout`.
    fn thread_conn(self: &Arc<Self>) -> Option<(Conn, Arc<AtomicBool>)> {
        type Entry = (std::sync::Weak<RedisStore>, Conn, Arc<AtomicBool>);
        thread_local! {
            static CONNS: std::cell::RefCell<Vec<Entry>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let RedisNodes::Single(url) = &self.spec.nodes else {
            return None;
        };
        tokio::runtime::Handle::try_current().ok()?;
        CONNS.with(|cell| {
            let mut conns = cell.borrow_mut();
            // A store replaced by a reload leaves its connections here until
            // the next decision on this thread.
            conns.retain(|(store, _, _)| store.strong_count() > 0);
            if let Some((_, c, ready)) = conns
                .iter()
                .find(|(store, _, _)| std::ptr::eq(store.as_ptr(), Arc::as_ptr(self)))
            {
                return ready
                    .load(Ordering::Acquire)
                    .then(|| (c.clone(), ready.clone()));
            }
            let c = conn::lazy_single(url).ok()?;
            let ready = Arc::new(AtomicBool::new(false));
            conns.push((Arc::downgrade(self), c.clone(), ready.clone()));
            tokio::spawn(warm_up(Arc::downgrade(self), c, ready));
            None
        })
    }

    /// Sends `call` after a decision made on connection `conn`, in order
    /// after it.
    pub fn follow_up(self: &Arc<Self>, mut call: Call, conn: usize) {
        if conn != THIS_THREAD {
            call.conn = Some(conn);
            return self.background(call);
        }
        let Some((mut c, _)) = self.thread_conn() else {
            return self.background(call);
        };
        let store = self.clone();
        tokio::spawn(async move {
            let mut invocation = store.script(call.which).prepare_invoke();
            invocation.key(&call.key);
            for a in &call.args {
                invocation.arg(a.as_str());
            }
            let reply = tokio::time::timeout(
                Duration::from_secs(1),
                invocation.invoke_async::<Value>(&mut c),
            );
            if !matches!(reply.await, Ok(Ok(_))) {
                store.metrics.errors.inc();
            }
        });
    }

    async fn call(
        &self,
        conns: &[Conn],
        index: usize,
        which: Which,
        key: &str,
        args: &[&str],
    ) -> Result<Value, StoreFailure> {
        let Some(conn) = conns.get(index) else {
            return Err(StoreFailure::Unavailable);
        };
        let mut conn = conn.clone();
        let script = self.script(which);
        let mut invocation = script.prepare_invoke();
        invocation.key(key);
        for a in args {
            invocation.arg(*a);
        }
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.spec.decision_timeout,
            invocation.invoke_async::<Value>(&mut conn),
        )
        .await;
        match result {
            Ok(Ok(value)) => {
                self.metrics
                    .duration
                    .observe(started.elapsed().as_secs_f64());
                self.circuit.success();
                Ok(value)
            }
            Ok(Err(e)) => {
                self.metrics.errors.inc();
                let message = e.to_string();
                self.failed(&message);
                Err(StoreFailure::Error(message))
            }
            Err(_) => {
                self.metrics.timeouts.inc();
                self.failed("no answer within decision_timeout");
                Err(StoreFailure::Timeout)
            }
        }
    }

    fn failed(&self, message: &str) {
        log::debug!("redis store: decision failed: {message}");
        self.set_last_error(message);
        if self.circuit.failure() {
            log::warn!(
                "redis store: circuit open after {} failures in a row ({message}); shared limits \
                 decide by their on_store_error until Redis answers again",
                circuit::THRESHOLD
            );
        }
    }

    fn set_last_error(&self, message: &str) {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.as_deref() != Some(message) {
            *last = Some(message.to_string());
        }
    }

    /// Queues a call no request waits for (a give-back, a lease release).
    pub fn background(self: &Arc<Self>, call: Call) {
        self.ensure_started();
        if let Some(runner) = self.runner.get() {
            runner.send(call);
        }
    }

    /// A lease id no other gateway uses.
    pub fn new_lease_member(&self) -> String {
        let n = self.lease_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}:{n}", self.instance)
    }

    /// Leases this process holds now.
    pub fn held_leases(&self) -> usize {
        self.leases.len()
    }

    /// The store's state for `/status`. Passwords in URLs are not shown.
    pub fn status(&self) -> serde_json::Value {
        let (mode, nodes) = match &self.spec.nodes {
            RedisNodes::Single(u) => ("single", vec![redact(u)]),
            RedisNodes::Cluster(us) => ("cluster", us.iter().map(|u| redact(u)).collect()),
        };
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        serde_json::json!({
            "mode": mode,
            "nodes": nodes,
            "connected": self.conns.load().is_some(),
            "circuit_open": !self.circuit.is_closed(),
            "last_error": last_error,
            "decision_timeout_ms": self.spec.decision_timeout.as_secs_f64() * 1e3,
            "instances": self.spec.instances,
            "leases_held": self.held_leases(),
        })
    }
}

/// Connects a thread's connection and loads the scripts on it, retrying
/// (bounded by the store's life) until both work.
async fn warm_up(store: std::sync::Weak<RedisStore>, mut conn: Conn, ready: Arc<AtomicBool>) {
    loop {
        let Some(s) = store.upgrade() else {
            return;
        };
        let scripts = [
            &s.scripts.token_bucket,
            &s.scripts.sliding_window,
            &s.scripts.concurrency,
        ];
        let mut ok = true;
        for script in scripts {
            let load = tokio::time::timeout(Duration::from_secs(1), script.load_async(&mut conn));
            ok &= matches!(load.await, Ok(Ok(_)));
        }
        if ok {
            ready.store(true, Ordering::Release);
            return;
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme_end + 3], &rest[at..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("redis://:hunter2@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://app:pw@h:1"), "redis://app:***@h:1");
    }
}
