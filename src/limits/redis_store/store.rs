//! [`RedisStore`]: one per `redis:` section, what the limits ask.
//!
//! # Shape
//! The store owns a small thread with its own Tokio runtime where the
//! connections live and where everything that no request waits for runs:
//! connecting, probing an open circuit, giving back tokens and leases,
//! renewing leases. Requests only send a script over an existing multiplexed
//! connection and wait for its reply, at most `decision_timeout`. The thread
//! starts on first use, not when the config is built: the config is built
//! before Pingora daemonizes, and a thread started then would not survive the
//! fork.
//!
//! # Parts
//! The store is the top of this module's parts and holds the others inline:
//! the [link](super::link) to Redis (connections, circuit, scripts), the
//! [leases](super::held) it holds, the [members](super::members) sharing it,
//! and the [thread](super::task) it starts.
//! None of them names the store; the thread asks of it only what
//! [`Owner`] says. What is left here is what needs the store as a whole:
//! picking a connection for a decision (each worker thread's own, see
//! [`thread_conn`](RedisStore::thread_conn)), queueing background calls,
//! naming leases, the share a local fallback enforces, and `/status`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use redis::Value;

use super::call::{Call, Reply, StoreFailure, StoreMetrics, Which};
use super::conn::{self, Conn};
use super::held::Held;
use super::link::Link;
use super::members::{self, Members};
use super::spec::{redact, RedisNodes, RedisSpec};
use super::task::{Owner, Runner};

/// The connection index of a decision made on the worker thread's own
/// connection.
const THIS_THREAD: usize = usize::MAX;

pub struct RedisStore {
    link: Link,
    next_conn: AtomicUsize,
    runner: OnceLock<Runner>,
    /// Makes lease ids unique across gateways and restarts.
    instance: String,
    lease_seq: AtomicU64,
    leases: Held,
    members: Members,
}

impl Owner for RedisStore {
    fn link(&self) -> &Link {
        &self.link
    }

    fn leases(&self) -> &Held {
        &self.leases
    }

    fn members(&self) -> &Members {
        &self.members
    }
}

impl RedisStore {
    /// A store for `spec`. Opens nothing: see the module doc.
    pub fn new(spec: RedisSpec, metrics: StoreMetrics) -> Arc<RedisStore> {
        Arc::new(RedisStore {
            members: Members::new(&spec.prefix),
            link: Link::new(spec, metrics),
            next_conn: AtomicUsize::new(0),
            runner: OnceLock::new(),
            instance: format!("{:016x}", rand::random::<u64>()),
            lease_seq: AtomicU64::new(0),
            leases: Held::default(),
        })
    }

    pub fn spec(&self) -> &RedisSpec {
        self.link.spec()
    }

    /// How many gateways share the store, for a local fallback to enforce its
    /// share: the live members last seen, or `instances` before that.
    pub fn share(&self) -> u32 {
        self.members.live().unwrap_or(self.spec().instances).max(1)
    }

    /// Starts the store's thread if it is not running yet.
    pub fn ensure_started(self: &Arc<Self>) {
        self.runner.get_or_init(|| Runner::start(self));
    }

    /// Whether requests are asking the store now.
    pub fn is_available(&self) -> bool {
        self.link.circuit().is_closed() && self.link.is_connected()
    }

    /// Runs one script for a request, within `decision_timeout`, and says
    /// which connection it used (a follow-up call goes on the same one, so
    /// Redis sees the two in order: see [`follow_up`](Self::follow_up)).
    pub async fn decide(self: &Arc<Self>, which: Which, key: &str, args: &[&str]) -> Reply {
        self.ensure_started();
        let Some(conns) = self.link.ready_conns() else {
            return Reply {
                result: Err(StoreFailure::Unavailable),
                conn: 0,
                late: None,
            };
        };
        if let Some((local, ready)) = self.thread_conn() {
            let (result, late) = self
                .link
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
            return Reply {
                result,
                conn: THIS_THREAD,
                late,
            };
        }
        let index = self.next_conn.fetch_add(1, Ordering::Relaxed) % conns.len().max(1);
        let (result, late) = self.link.call(&conns, index, which, key, args).await;
        Reply {
            result,
            conn: index,
            late,
        }
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
        type Entry = (Weak<RedisStore>, Conn, Arc<AtomicBool>);
        thread_local! {
            static CONNS: std::cell::RefCell<Vec<Entry>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let RedisNodes::Single(url) = &self.spec().nodes else {
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
            let mut invocation = store.link.script(call.which).prepare_invoke();
            invocation.key(&call.key);
            for a in &call.args {
                invocation.arg(a.as_str());
            }
            let reply = tokio::time::timeout(
                Duration::from_secs(1),
                invocation.invoke_async::<Value>(&mut c),
            );
            if !matches!(reply.await, Ok(Ok(_))) {
                store.link.metrics().errors.inc();
            }
        });
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

    /// The leases this process holds, for the [`Lease`](super::lease::Lease)
    /// guard to record and release its own.
    pub(super) fn leases(&self) -> &Held {
        &self.leases
    }

    /// Leases this process holds now.
    pub fn held_leases(&self) -> usize {
        self.leases.len()
    }

    /// The store's state for `/status`. Passwords in URLs are not shown.
    pub fn status(&self) -> serde_json::Value {
        let spec = self.spec();
        let (mode, nodes) = match &spec.nodes {
            RedisNodes::Single(u) => ("single", vec![redact(u)]),
            RedisNodes::Cluster(us) => ("cluster", us.iter().map(|u| redact(u)).collect()),
        };
        let last_error = self.link.last_error();
        serde_json::json!({
            "mode": mode,
            "nodes": nodes,
            "connected": self.link.is_connected(),
            "circuit_open": !self.link.circuit().is_closed(),
            "last_error": last_error,
            "decision_timeout_ms": spec.decision_timeout.as_secs_f64() * 1e3,
            "instances": spec.instances,
            "live_instances": self.share(),
            "member": members::process_id(),
            "members": self.members.list(),
            "leases_held": self.held_leases(),
        })
    }
}

/// Connects a thread's connection and loads the scripts on it, retrying
/// (bounded by the store's life) until both work.
async fn warm_up(store: Weak<RedisStore>, mut conn: Conn, ready: Arc<AtomicBool>) {
    loop {
        let Some(s) = store.upgrade() else {
            return;
        };
        if s.link.load_scripts(&mut conn).await {
            ready.store(true, Ordering::Release);
            return;
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
