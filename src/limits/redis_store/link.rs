//! The store's link to Redis: its connections, the circuit in front of them,
//! and running one script on one of them, for a request or in the background.
//!
//! # Failure
//! Every decision's outcome is counted in the [circuit breaker](super::circuit),
//! which opens when more than half of the last second's decisions failed;
//! decisions then skip the store at once (each limit's `on_store_error`
//! decides) until the store's thread sees a probe decision answer in time.
//! An episode is logged once when it starts and once when it ends, with its
//! counts, and counted in `sluice_ratelimit_store_circuit_transitions_total`.
//! A decision that timed out is still made by Redis when it gets there: the
//! call hands its reply on as [`Late`], for the limit to square with what
//! `on_store_error` decided (see [`RemoteLimit`](super::limit::RemoteLimit)).
//!
//! # The probe is a decision
//! `PING` answers on a Redis that is out of memory, demoted to a replica, in
//! a cluster that is down, or slower than `decision_timeout`: a circuit
//! closed by it reopens at once and flaps, each cycle holding requests for a
//! `decision_timeout`. So the probe runs the token bucket's script, which
//! writes, on a [probe key](super::keys::probe_key) of its own, a few times on
//! every connection, and counts as an answer only a reply within
//! `decision_timeout`: what a decision needs.
//!
//! # Why a part of its own
//! This is the state both the requests and the store's thread work on. It
//! knows neither the store around it nor the thread: the request path calls
//! [`Link::call`], the thread calls [`Link::maintain`],
//! [`Link::run_background`] and [`Link::background_script`], and the store
//! holds it inline, so a decision reaches it with no extra pointer to follow.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::{Script, Value};

use super::call::{Call, Late, StoreFailure, StoreMetrics, Which};
use super::circuit::{self, Circuit};
use super::conn::{self, Conn};
use super::keys;
use super::scripts;
use super::spec::RedisSpec;

/// The longest a background call waits.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(1);
/// Probes per connection in one round; all must answer in time to close the
/// circuit, so that a Redis that answers now and then does not flap it.
const PROBES_PER_CONN: usize = 3;
/// The probe's bucket: a token every microsecond, a day of burst; it always
/// admits, so it always writes. (Not finer: at Redis's clock in µs since 1970
/// a double has a quarter-µs grain, and a TAT that does not move past `now`
/// is deleted, not written, which an out-of-memory Redis allows.)
const PROBE_ARGS: [&str; 3] = ["1", "86400000000", "1"];

/// The scripts, hashed once per process: the same for every store, and
/// `'static`, so that a late reply can outlive the request that sent it.
struct Scripts {
    token_bucket: Script,
    sliding_window: Script,
    concurrency: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        token_bucket: Script::new(scripts::TOKEN_BUCKET),
        sliding_window: Script::new(scripts::SLIDING_WINDOW),
        concurrency: Script::new(scripts::CONCURRENCY),
    })
}

pub struct Link {
    spec: RedisSpec,
    metrics: StoreMetrics,
    circuit: Circuit,
    conns: ArcSwapOption<Vec<Conn>>,
    last_error: Mutex<Option<String>>,
    probe_key: String,
    /// A round of probes (or a connect) is under way.
    maintaining: AtomicBool,
    /// "Cannot connect" was logged and not yet followed by "connected".
    down_logged: AtomicBool,
}

impl Link {
    /// A link for `spec`, not connected and with its circuit open.
    pub fn new(spec: RedisSpec, metrics: StoreMetrics) -> Link {
        Link {
            probe_key: keys::probe_key(&spec.prefix),
            maintaining: AtomicBool::new(false),
            down_logged: AtomicBool::new(false),
            spec,
            metrics,
            circuit: Circuit::new_open(),
            conns: ArcSwapOption::empty(),
            last_error: Mutex::new(None),
        }
    }

    pub fn spec(&self) -> &RedisSpec {
        &self.spec
    }

    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// Whether the thread has connected.
    pub fn is_connected(&self) -> bool {
        self.conns.load().is_some()
    }

    /// The store's connections, if requests may ask them now: the circuit is
    /// closed and they exist.
    pub fn ready_conns(&self) -> Option<Arc<Vec<Conn>>> {
        if !self.circuit.is_closed() {
            self.circuit.skipped();
            return None;
        }
        self.conns.load_full()
    }

    /// The last error seen, for `/status`.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn script(&self, which: Which) -> &'static Script {
        let s = scripts();
        match which {
            Which::TokenBucket => &s.token_bucket,
            Which::SlidingWindow => &s.sliding_window,
            Which::Concurrency => &s.concurrency,
        }
    }

    /// Loads every script on `conn`; whether all of them loaded.
    pub async fn load_scripts(&self, conn: &mut Conn) -> bool {
        let s = scripts();
        let mut ok = true;
        for script in [&s.token_bucket, &s.sliding_window, &s.concurrency] {
            let load = tokio::time::timeout(Duration::from_secs(1), script.load_async(conn));
            ok &= matches!(load.await, Ok(Ok(_)));
        }
        ok
    }

    /// Runs one script for a request on `conns[index]`, within
    /// `decision_timeout`, counting the outcome towards the circuit. A call
    /// that timed out comes with its [`Late`] reply.
    pub async fn call(
        &self,
        conns: &[Conn],
        index: usize,
        which: Which,
        key: &str,
        args: &[&str],
    ) -> (Result<Value, StoreFailure>, Option<Late>) {
        let Some(conn) = conns.get(index) else {
            return (Err(StoreFailure::Unavailable), None);
        };
        let mut conn = conn.clone();
        let mut invocation = self.script(which).prepare_invoke();
        invocation.key(key);
        for a in args {
            invocation.arg(*a);
        }
        let started = Instant::now();
        // Owned, so that it can be handed on if it misses the deadline.
        let mut reply = Late(Box::pin(async move {
            invocation.invoke_async::<Value>(&mut conn).await
        }));
        let mut result = tokio::time::timeout(self.spec.decision_timeout, &mut reply.0).await;
        if result.is_err() {
            // The deadline and the reply can become ready in one turn of a
            // thread that was descheduled (a busy machine): the timer wakes
            // this task before the connection's own task has read the reply
            // off the socket. Let that task run once (a yield lets the
            // runtime poll its I/O first) and take a reply that is there.
            tokio::task::yield_now().await;
            result = tokio::time::timeout(Duration::ZERO, &mut reply.0).await;
        }
        match result {
            Ok(Ok(value)) => {
                self.metrics
                    .duration
                    .observe(started.elapsed().as_secs_f64());
                self.circuit.success();
                (Ok(value), None)
            }
            Ok(Err(e)) => {
                self.metrics.errors.inc();
                let message = e.to_string();
                self.failed(&message);
                (Err(StoreFailure::Error(message)), None)
            }
            Err(_) => {
                self.metrics.timeouts.inc();
                self.failed("no answer within decision_timeout");
                (Err(StoreFailure::Timeout), Some(reply))
            }
        }
    }

    fn failed(&self, message: &str) {
        log::debug!("redis store: decision failed: {message}");
        self.set_last_error(message);
        if let Some(opened) = self.circuit.failure() {
            self.metrics.opened.inc();
            log::warn!(
                "redis store: circuit open: {} of the last {} decisions within {} ms failed \
                 (last: {message}); shared limits decide by their on_store_error until a probe \
                 decision answers within decision_timeout",
                opened.failed,
                opened.decisions,
                circuit::WINDOW_MS
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

    /// Connects if not connected; closes an open circuit once a round of
    /// probe decisions answered in time. One round at a time: a call while
    /// one is under way returns at once.
    pub async fn maintain(&self) {
        if self.maintaining.swap(true, Ordering::AcqRel) {
            return;
        }
        self.maintain_once().await;
        self.maintaining.store(false, Ordering::Release);
    }

    async fn maintain_once(&self) {
        let Some(conns) = self.conns.load_full() else {
            match tokio::time::timeout(
                BACKGROUND_TIMEOUT * 2,
                conn::connect(&self.spec.nodes, self.spec.connections),
            )
            .await
            {
                Ok(Ok(c)) => {
                    self.conns.store(Some(Arc::new(c)));
                    if self.circuit.close().is_some() {
                        self.metrics.closed.inc();
                    }
                    self.down_logged.store(false, Ordering::Relaxed);
                    log::info!("redis store: connected; shared limits are decided in Redis");
                }
                Ok(Err(e)) => self.still_down(&e.to_string()),
                Err(_) => self.still_down("connecting timed out"),
            }
            return;
        };
        if self.circuit.is_closed() {
            return;
        }
        // Every connection, not only the first: each reconnects on its own
        // after an outage, and decisions are spread over all of them.
        for c in conns.iter() {
            for _ in 0..PROBES_PER_CONN {
                if let Err(e) = self.probe(c).await {
                    self.circuit.probe_failed();
                    return self.set_last_error(&e);
                }
            }
        }
        if let Some(e) = self.circuit.close() {
            self.metrics.closed.inc();
            log::info!(
                "redis store: circuit closed after {:.1} s: {} decisions failed, {} decided by \
                 on_store_error without asking, {} probes failed; shared limits are decided in \
                 Redis again",
                e.lasted.as_secs_f64(),
                e.failed,
                e.skipped,
                e.probes_failed
            );
        }
    }

    /// One probe decision on `conn`, within `decision_timeout`.
    async fn probe(&self, conn: &Conn) -> Result<(), String> {
        let mut c = conn.clone();
        let mut invocation = scripts().token_bucket.prepare_invoke();
        invocation.key(&self.probe_key);
        for a in PROBE_ARGS {
            invocation.arg(a);
        }
        let reply = tokio::time::timeout(
            self.spec.decision_timeout,
            invocation.invoke_async::<Value>(&mut c),
        );
        match reply.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer to a probe decision within decision_timeout".into()),
        }
    }

    fn still_down(&self, message: &str) {
        self.set_last_error(message);
        if !self.down_logged.swap(true, Ordering::Relaxed) {
            log::warn!(
                "redis store: cannot connect ({message}); shared limits decide by their \
                 on_store_error until it can"
            );
        }
    }

    /// Runs `script` on the store's first connection, for the store's own
    /// bookkeeping (the membership heartbeat); `None` if not connected.
    pub async fn background_script(
        &self,
        script: &Script,
        key: &str,
        args: &[&str],
    ) -> Option<Result<Value, String>> {
        let mut c = self.conns.load_full()?.first()?.clone();
        let mut invocation = script.prepare_invoke();
        invocation.key(key);
        for a in args {
            invocation.arg(*a);
        }
        let reply =
            tokio::time::timeout(BACKGROUND_TIMEOUT, invocation.invoke_async::<Value>(&mut c));
        Some(match reply.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 1 s".into()),
        })
    }

    /// Runs a call no request waits for on the connection it names.
    pub async fn run_background(&self, call: Call) {
        let Some(conns) = self.conns.load_full() else {
            return;
        };
        let index = call.conn.unwrap_or(0) % conns.len().max(1);
        let Some(mut c) = conns.get(index).cloned() else {
            return;
        };
        let mut invocation = self.script(call.which).prepare_invoke();
        invocation.key(&call.key);
        for a in &call.args {
            invocation.arg(a.as_str());
        }
        match tokio::time::timeout(BACKGROUND_TIMEOUT, invocation.invoke_async::<Value>(&mut c))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                self.metrics.errors.inc();
                log::debug!("redis store: background call on {} failed: {e}", call.key);
            }
            Err(_) => {
                self.metrics.timeouts.inc();
                log::debug!("redis store: background call on {} timed out", call.key);
            }
        }
    }
}
