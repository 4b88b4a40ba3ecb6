//! The store's own thread: connects, probes an open circuit, and runs the
//! calls no request waits for.
//!
//! It holds only a weak reference to the store: when a reload replaces the
//! store and the last request using the old one ends, the store is dropped,
//! its stop channel closes, and the thread ends and drops its runtime on its
//! own stack (a runtime cannot be dropped from inside another one, which is
//! where the last request would drop it).

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::Value;
use tokio::sync::{mpsc, oneshot};

use super::{conn, Call, RedisStore};

/// How often a missing connection or an open circuit is retried.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// The longest a probe or a background call waits.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Runner {
    calls: mpsc::UnboundedSender<Call>,
    _stop: oneshot::Sender<()>,
}

impl Runner {
    pub fn start(store: &Arc<RedisStore>) -> Runner {
        let (calls, calls_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel();
        let weak = Arc::downgrade(store);
        let spawned = std::thread::Builder::new()
            .name("sluice-redis".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        log::error!("redis store: cannot start its runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(run(weak, calls_rx, stop_rx));
            });
        if let Err(e) = spawned {
            log::error!("redis store: cannot start its thread: {e}");
        }
        Runner { calls, _stop: stop }
    }

    pub fn send(&self, call: Call) {
        // Fails only once the thread has stopped, when nothing is owed any more.
        let _ = self.calls.send(call);
    }
}

async fn run(
    store: Weak<RedisStore>,
    mut calls: mpsc::UnboundedReceiver<Call>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut probe = tokio::time::interval(PROBE_EVERY);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let renew_every = store
        .upgrade()
        .map_or(Duration::from_secs(10), |s| s.leases.renew_every());
    let mut renew = tokio::time::interval(renew_every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut down_logged = false;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            call = calls.recv() => {
                let (Some(call), Some(s)) = (call, store.upgrade()) else { return };
                tokio::spawn(async move { s.run_background(call).await });
            }
            _ = probe.tick() => {
                let Some(s) = store.upgrade() else { return };
                s.maintain(&mut down_logged).await;
            }
            _ = renew.tick() => {
                let Some(s) = store.upgrade() else { return };
                for call in s.leases.renewals() {
                    let s = s.clone();
                    tokio::spawn(async move { s.run_background(call).await });
                }
            }
        }
    }
}

impl RedisStore {
    /// Connects if not connected; closes an open circuit once Redis answers.
    async fn maintain(self: &Arc<Self>, down_logged: &mut bool) {
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

    async fn run_background(self: Arc<Self>, call: Call) {
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
