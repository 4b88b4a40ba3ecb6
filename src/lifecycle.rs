//! Background services that react to the process's life: SIGHUP reloads the
//! config, an upgrade or shutdown starts draining, and idle limiter state is
//! swept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::{ExecutionPhase, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use tokio::sync::broadcast;

use crate::limits::{Clock, MonotonicClock};
use crate::live::{Live, Reloader};

/// Set once an upgrade or shutdown has begun: from then on responses ask
/// clients to close their connections, so that no keep-alive connection is
/// left idle on a process about to drop it.
#[derive(Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Until a handler is installed, SIGHUP would terminate the process; install
/// a no-op one first thing, so a reload sent during start-up is harmless.
/// (Signal dispositions survive Pingora's daemonizing fork.)
pub fn ignore_sighup_until_ready() {
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, flag) {
        log::warn!("cannot install a SIGHUP handler: {e}");
    }
}

/// Reloads on SIGHUP.
pub struct SighupReload(pub Arc<Reloader>);

#[async_trait]
impl BackgroundService for SighupReload {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot listen for SIGHUP, reload only through /reload: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    log::info!("SIGHUP: reloading");
                    let reloader = self.0.clone();
                    // Reading and compiling the file is blocking work.
                    let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Watches Pingora's execution phase and starts draining as soon as an
/// upgrade hands the sockets over or a shutdown begins.
///
/// Pingora closes keep-alive connections that sit idle when the old process
/// stops; a client that sends on one at that moment sees a reset. Answering
/// every response with `Connection: close` from the start of the hand-over
/// moves each client, after its current request, to a fresh connection,
/// which the new process accepts.
pub struct DrainOnUpgrade {
    pub draining: Draining,
    pub phases: std::sync::Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

#[async_trait]
impl BackgroundService for DrainOnUpgrade {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let Some(mut phases) = self.phases.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        // Not tied to the shutdown watch: draining matters most after it fires.
        loop {
            match phases.recv().await {
                Ok(
                    ExecutionPhase::GracefulUpgradeTransferringFds
                    | ExecutionPhase::GracefulUpgradeCloseTimeout
                    | ExecutionPhase::GracefulTerminate
                    | ExecutionPhase::ShutdownStarted,
                ) => {
                    if !self.draining.is_draining() {
                        log::info!("draining: responses now close their connections");
                    }
                    self.draining.start();
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Evicts limiter state of idle keys every second.
pub struct SweepLimits {
    pub live: Live,
    pub clock: MonotonicClock,
}

#[async_trait]
impl BackgroundService for SweepLimits {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            // The shared store connects once the server runs (after any
            // fork), not at its first request; a reloaded one at the next tick.
            if let Some(store) = &self.live.load().redis {
                store.ensure_started();
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            let generation = self.live.load();
            let now = self.clock.now_nanos();
            for limiter in generation.limiters.values() {
                limiter.sweep(now);
            }
        }
    }
}

/// The proxy application with Pingora's shutdown clean-up deferred a moment.
///
/// When a process stops accepting (the end of an upgrade's hand-over, or a
/// shutdown), Pingora's `cleanup()` aborts every connection still waiting for
/// its *first* request. A connection the old process accepted an instant
/// before, whose request bytes are still in flight, is then closed with no
/// answer: a failed request during an upgrade. The accept loop has already
/// stopped when `cleanup()` runs, so waiting a little before it lets those
/// requests arrive and be served (and answered with `Connection: close`),
/// while no new connection can come in. The delay stays within the grace
/// period, which is how long the process keeps running after that point.
pub struct DeferredCleanup<A> {
    pub inner: Arc<A>,
    pub delay: Duration,
}

#[async_trait]
impl<A> pingora_core::apps::ServerApp for DeferredCleanup<A>
where
    A: pingora_core::apps::ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: pingora_core::protocols::Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<pingora_core::protocols::Stream> {
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(self.delay).await;
        self.inner.cleanup().await;
    }
}
