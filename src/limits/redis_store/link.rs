//! The store's link to Redis: its connections, the circuit in front of them,
//! and running one script on one of them, for a request or in the background.
//!
//! # Failure
//! Every error or timeout is counted; three in a row open the
//! [circuit breaker](super::circuit), after which decisions skip the store at
//! once (each limit's `on_store_error` decides) until the store's thread sees
//! Redis answer again. An episode is logged once when it starts and once
//! when it ends. A decision that timed out may still have been counted by
//! Redis when it gets there: that errs towards refusing, and a concurrency
//! lease taken that way is removed straight after (or expires with its TTL).
//!
//! # Why a part of its own
//! This is the state both the requests and the store's thread work on. It
//! knows neither the store around it nor the thread: the request path calls
//! [`Link::call`], the thread calls [`Link::maintain`] and
//! [`Link::run_background`], and the store holds it inline, so a decision
//! reaches it with no extra pointer to follow.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::{Script, Value};

use super::call::{Call, StoreFailure, StoreMetrics, Which};
use super::circuit::{self, Circuit};
use super::conn::{self, Conn};
use super::scripts;
use super::spec::RedisSpec;

/// The longest a probe or a background call waits.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(1);

/// The scripts, hashed once.
struct Scripts {
    token_bucket: Script,
    sliding_window: Script,
    concurrency: Script,
}

pub struct Link {
    spec: RedisSpec,
    metrics: StoreMetrics,
    circuit: Circuit,
    conns: ArcSwapOption<Vec<Conn>>,
    last_error: Mutex<Option<String>>,
    scripts: Scripts,
}

impl Link {
    /// A link for `spec`, not connected and with its circuit open.
    pub fn new(spec: RedisSpec, metrics: StoreMetrics) -> Link {
        Link {
            spec,
            metrics,
            circuit: Circuit::new_open(),
            conns: ArcSwapOption::empty(),
            last_error: Mutex::new(None),
            scripts: Scripts {
                token_bucket: Script::new(scripts::TOKEN_BUCKET),
                sliding_window: Script::new(scripts::SLIDING_WINDOW),
                concurrency: Script::new(scripts::CONCURRENCY),
            },
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

    pub fn script(&self, which: Which) -> &Script {
        match which {
            Which::TokenBucket => &self.scripts.token_bucket,
            Which::SlidingWindow => &self.scripts.sliding_window,
            Which::Concurrency => &self.scripts.concurrency,
        }
    }

    /// Loads every script on `conn`; whether all of them loaded.
    pub async fn load_scripts(&self, conn: &mut Conn) -> bool {
        let scripts = [
            &self.scripts.token_bucket,
            &self.scripts.sliding_window,
            &self.scripts.concurrency,
        ];
        let mut ok = true;
        for script in scripts {
            let load = tokio::time::timeout(Duration::from_secs(1), script.load_async(conn));
            ok &= matches!(load.await, Ok(Ok(_)));
        }
        ok
    }

    /// Runs one script for a request on `conns[index]`, within
    /// `decision_timeout`, counting the outcome towards the circuit.
    pub async fn call(
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

    /// Connects if not connected; closes an open circuit once Redis answers.
    pub async fn maintain(&self, down_logged: &mut bool) {
        let Some(conns) = self.conns.load_full() else {
            match tokio::time::timeout(
                BACKGROUND_TIMEOUT * 2,
                conn::connect(&self.spec.nodes, self.spec.connections),
            )
            .await
            {
                Ok(Ok(c)) => {
                    self.conns.store(Some(Arc::new(c)));
                    self.circuit.close();
                    *down_logged = false;
                    log::info!("redis store: connected; shared limits are decided in Redis");
                }
                Ok(Err(e)) => self.still_down(&e.to_string(), down_logged),
                Err(_) => self.still_down("connecting timed out", down_logged),
            }
            return;
        };
        if self.circuit.is_closed() {
            return;
        }
        // Every connection, not only the first: each reconnects on its own
        // after an outage, and decisions are spread over all of them.
        for c in conns.iter() {
            let mut c = c.clone();
            let ping = redis::cmd("PING");
            match tokio::time::timeout(BACKGROUND_TIMEOUT, ping.query_async::<Value>(&mut c)).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return self.set_last_error(&e.to_string()),
                Err(_) => return self.set_last_error("no answer to PING"),
            }
        }
        if self.circuit.close() {
            log::info!("redis store: Redis answers again; shared limits resume");
        }
    }

    fn still_down(&self, message: &str, down_logged: &mut bool) {
        self.set_last_error(message);
        if !*down_logged {
            *down_logged = true;
            log::warn!(
                "redis store: cannot connect ({message}); shared limits decide by their \
                 on_store_error until it can"
            );
        }
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
