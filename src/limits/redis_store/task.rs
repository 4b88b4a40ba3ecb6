//! The store's own thread: connects, probes an open circuit, announces this
//! gateway in the store, and runs the calls no request waits for.
//!
//! It holds only a weak reference to the store: when a reload replaces the
//! store and the last request using the old one ends, the store is dropped,
//! its stop channel closes, and the thread ends and drops its runtime on its
//! own stack (a runtime cannot be dropped from inside another one, which is
//! where the last request would drop it).
//!
//! The store owns the [`Runner`], so this file cannot name the store: it asks
//! of it only what [`Owner`] says (the [link](super::link) to Redis, the
//! [leases](super::held) to renew and the [membership](super::members) to
//! keep), and the store implements that. The thread is generic over its
//! owner, so this costs no indirection.
//!
//! Probes and heartbeats run as tasks of their own, one of each at a time:
//! a slow Redis delays neither the other nor the give-backs queued meanwhile.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::call::Call;
use super::held::Held;
use super::link::Link;
use super::members::{Members, HEARTBEAT_EVERY};

/// How often a missing connection or an open circuit is retried.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// What the thread needs of the store that owns it.
pub trait Owner: Send + Sync + 'static {
    fn link(&self) -> &Link;
    fn leases(&self) -> &Held;
    fn members(&self) -> &Members;
}

pub struct Runner {
    calls: mpsc::UnboundedSender<Call>,
    _stop: oneshot::Sender<()>,
}

impl Runner {
    pub fn start<S: Owner>(store: &Arc<S>) -> Runner {
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

async fn run<S: Owner>(
    store: Weak<S>,
    mut calls: mpsc::UnboundedReceiver<Call>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut probe = tokio::time::interval(PROBE_EVERY);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let renew_every = store
        .upgrade()
        .map_or(Duration::from_secs(10), |s| s.leases().renew_every());
    let mut renew = tokio::time::interval(renew_every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            call = calls.recv() => {
                let (Some(call), Some(s)) = (call, store.upgrade()) else { return };
                tokio::spawn(async move { s.link().run_background(call).await });
            }
            _ = probe.tick() => {
                let Some(s) = store.upgrade() else { return };
                tokio::spawn(async move { s.link().maintain().await });
            }
            _ = heartbeat.tick() => {
                let Some(s) = store.upgrade() else { return };
                tokio::spawn(async move { s.members().beat(s.link()).await });
            }
            _ = renew.tick() => {
                let Some(s) = store.upgrade() else { return };
                for call in s.leases().renewals() {
                    let s = s.clone();
                    tokio::spawn(async move { s.link().run_background(call).await });
                }
            }
        }
    }
}
