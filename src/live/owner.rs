//! The one owner of the live gateway.
//!
//! Three things change what the gateway runs on: a reload (SIGHUP,
//! `POST /reload`), a DNS answer that moves a named backend, and the health,
//! balancer and limiter state a new generation carries over from the one it
//! replaces. They used to rebuild the gateway from two places, each taking a
//! lock of the other's object, and the order of their steps was not fixed: a
//! reload wrote its new names into the DNS table before it took the lock, the
//! DNS service forgot every name the *live* config lacked in between, and the
//! new upstream came up with no backends (503 until the next DNS round).
//!
//! Here they are inputs over one channel to one task, which alone writes the
//! DNS table, builds the next [`Generation`] (carrying over from the current
//! one) and swaps it in. An input is handled whole before the next is read,
//! so a reload's names, their first answers and the generation built from
//! them change together, and a DNS answer is applied to the config that is
//! live when it arrives, or dropped if that config no longer has the name.
//! The race above has no interleaving left to happen in.
//!
//! Requests never wait on the owner: they load the current generation (one
//! atomic pointer read) and keep it for their whole life. Callers that must
//! know a config is live (a reload answering its caller) wait for the owner's
//! reply; DNS answers are fire-and-forget.
//!
//! The owner runs as a background service, so it starts after Pingora has
//! daemonized (a thread started before `fork` would not survive it); inputs
//! sent before then wait in the channel. The first generation is built before
//! the server starts, by the same code, so the first request finds it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::generation::Generation;
use crate::config::Config;
use crate::limits::{Clock, MonotonicClock};
use crate::telemetry::metrics::Metrics;
use crate::upstream::dns::{self, Discovery, DnsTable, Resolved};

/// How long an install waits for the owner before giving up: the owner
/// resolves a new config's names (a few seconds at worst) and compiles it.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the owner is asked to do.
enum Input {
    /// Make this validated config live; say so on `installed` once it is.
    Install {
        config: Box<Config>,
        installed: mpsc::SyncSender<()>,
    },
    /// Record DNS answers; a changed one builds the next generation.
    Answers(Vec<Resolved>),
}

/// The install did not happen: the owner has stopped or did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotInstalled(pub &'static str);

impl std::fmt::Display for NotInstalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A handle on the live gateway: read the current generation, or send the
/// owner an input. Cheap to clone; every service that needs the live config
/// gets one (or a narrower view made from one).
#[derive(Clone)]
pub struct Live {
    current: Arc<ArcSwap<Generation>>,
    inputs: UnboundedSender<Input>,
}

impl Live {
    /// Builds the first generation from `config` (resolving its backend names
    /// first) and returns the handle with the owner that will keep it. The
    /// owner must be run (see [`Owner`]) for installs and DNS answers to apply.
    pub fn start(config: Config, metrics: Arc<Metrics>, clock: MonotonicClock) -> (Live, Owner) {
        let dns = Arc::new(DnsTable::default());
        resolve_names_of(&config, &dns, &metrics);
        // The first generation: nothing to carry over.
        let first = Generation::build(config, None, 0, &metrics, &dns);
        let state = OwnerState {
            current: Arc::new(ArcSwap::from_pointee(first)),
            dns,
            metrics,
            clock,
        };
        let (tx, rx) = unbounded_channel();
        let live = Live {
            current: state.current.clone(),
            inputs: tx,
        };
        let owner = Owner {
            state: Arc::new(state),
            inputs: Mutex::new(Some(rx)),
        };
        (live, owner)
    }

    /// The generation live now. A request keeps the one it loaded.
    pub fn load(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Makes `config` live and returns once it is (blocking: call it off the
    /// async runtime, as reloads do).
    pub fn install(&self, config: Config) -> Result<(), NotInstalled> {
        let (installed, done) = mpsc::sync_channel(1);
        self.inputs
            .send(Input::Install {
                config: Box::new(config),
                installed,
            })
            .map_err(|_| NotInstalled("the live gateway's owner has stopped"))?;
        match done.recv_timeout(INSTALL_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(NotInstalled(
                "the live gateway's owner did not answer in time",
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(NotInstalled(
                "the live gateway's owner failed to build the config",
            )),
        }
    }
}

impl Discovery for Live {
    fn wanted(&self) -> (BTreeMap<String, Option<Duration>>, Vec<SocketAddr>) {
        let generation = self.load();
        (
            dns::names(&generation.config),
            generation.config.resolver.clone(),
        )
    }

    fn answered(&self, answers: Vec<Resolved>) {
        // Only fails once the owner has stopped, when nothing is to be done.
        let _ = self.inputs.send(Input::Answers(answers));
    }
}

/// The owner: the background service that applies inputs, one at a time.
pub struct Owner {
    state: Arc<OwnerState>,
    inputs: Mutex<Option<UnboundedReceiver<Input>>>,
}

impl Owner {
    /// The DNS table the owner writes, for the DNS service to read when names
    /// are due.
    pub fn dns_table(&self) -> Arc<DnsTable> {
        self.state.dns.clone()
    }
}

#[async_trait]
impl BackgroundService for Owner {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let Some(mut inputs) = self.inputs.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        // Not tied to the shutdown watch: a reload sent while the process
        // drains still gets its answer.
        while let Some(input) = inputs.recv().await {
            let state = self.state.clone();
            // Resolving names and compiling a config are blocking work. One
            // input at a time: the next is read only when this one is done.
            if tokio::task::spawn_blocking(move || state.handle(input))
                .await
                .is_err()
            {
                log::error!("building the next generation failed; the live one stays");
            }
        }
    }
}

/// What only the owner writes.
struct OwnerState {
    current: Arc<ArcSwap<Generation>>,
    dns: Arc<DnsTable>,
    metrics: Arc<Metrics>,
    clock: MonotonicClock,
}

impl OwnerState {
    fn handle(&self, input: Input) {
        match input {
            Input::Install { config, installed } => {
                self.install(*config);
                let _ = installed.send(());
            }
            Input::Answers(answers) => self.record(answers),
        }
    }

    fn install(&self, config: Config) {
        resolve_names_of(&config, &self.dns, &self.metrics);
        let previous = self.current.load_full();
        self.swap_in(config, &previous);
    }

    /// Applies DNS answers to the live config; a changed answer builds the
    /// next generation from that same config.
    fn record(&self, answers: Vec<Resolved>) {
        let live = self.current.load_full();
        let wanted = dns::names(&live.config);
        let mut changed = false;
        for r in answers {
            // Asked for under a config that has since been replaced.
            if !wanted.contains_key(&r.host) {
                continue;
            }
            changed |= self.dns.apply(&r.host, r.refresh, r.answer, r.at, || {
                self.metrics
                    .dns_failures
                    .with_label_values(&[&r.host])
                    .inc()
            });
        }
        if changed {
            self.swap_in(live.config.clone(), &live);
        }
    }

    fn swap_in(&self, config: Config, previous: &Generation) {
        let next = Generation::build(
            config,
            Some(previous),
            self.clock.now_nanos(),
            &self.metrics,
            &self.dns,
        );
        self.current.store(Arc::new(next));
    }
}

/// Gives the names `config` adds their addresses before it goes live, so its
/// first requests find the named backends there, and forgets the names it no
/// longer uses. Only the owner calls it (and [`Live::start`], before there is
/// an owner to race with).
fn resolve_names_of(config: &Config, table: &DnsTable, metrics: &Metrics) {
    dns::resolve_new(config, table, |host| {
        metrics.dns_failures.with_label_values(&[host]).inc()
    });
    table.retain(&dns::names(config));
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Instant;

    use super::*;
    use crate::filters::Registry;
    use crate::upstream::dns::Answer;

    fn config(upstreams: &str) -> Config {
        let yaml = format!(
            "listen: [127.0.0.1:1]\nupstreams:\n{upstreams}\nroutes:\n  - {{ upstream: a }}\n"
        );
        match crate::config::load(&yaml, &Registry::builtin()) {
            Ok(loaded) => loaded.gateway,
            Err(e) => panic!("test config does not load: {e:?}"),
        }
    }

    fn start(config: Config) -> (Live, Owner) {
        Live::start(config, Arc::new(Metrics::new()), MonotonicClock::new())
    }

    /// Runs the owner on a runtime of its own, as Pingora runs a background
    /// service, for as long as the test holds the runtime.
    fn run(owner: Owner) -> tokio::runtime::Runtime {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("no runtime: {e}"),
        };
        let (_tx, rx) = tokio::sync::watch::channel(false);
        rt.spawn(async move { owner.start(rx).await });
        rt
    }

    #[test]
    fn an_install_goes_live_before_it_returns_and_keeps_an_unchanged_pool() {
        let one = "  a: { backends: [127.0.0.1:2] }\n";
        let (live, owner) = start(config(one));
        let _rt = run(owner);
        let before = live.load();
        let two = format!("{one}  b: {{ backends: [127.0.0.1:3] }}\n");
        assert_eq!(live.install(config(&two)), Ok(()));
        let after = live.load();
        assert!(after.pools.contains_key("b"), "the new upstream is live");
        assert!(
            Arc::ptr_eq(&before.pools["a"], &after.pools["a"]),
            "an unchanged pool is carried over whole (health, balancer, in-flight)"
        );
    }

    #[test]
    fn an_answer_for_a_name_the_live_config_lacks_changes_nothing() {
        let (live, owner) = start(config("  a: { backends: [127.0.0.1:2] }\n"));
        let table = owner.dns_table();
        let _rt = run(owner);
        let before = live.load();
        live.answered(vec![Resolved {
            host: "gone.test".into(),
            refresh: None,
            answer: Answer::Addrs {
                addrs: vec![IpAddr::from([127, 0, 0, 9])],
                ttl: Duration::from_secs(60),
            },
            at: Instant::now(),
        }]);
        // Inputs are handled in order: once an install behind the answer is
        // live, the answer has been handled.
        assert_eq!(
            live.install(config("  a: { backends: [127.0.0.1:2] }\n")),
            Ok(())
        );
        assert!(table.backends("gone.test", 80).is_empty(), "not recorded");
        assert!(Arc::ptr_eq(&before.pools["a"], &live.load().pools["a"]));
    }

    #[test]
    fn an_install_without_an_owner_says_so_instead_of_hanging() {
        let (live, owner) = start(config("  a: { backends: [127.0.0.1:2] }\n"));
        drop(owner);
        assert!(live
            .install(config("  a: { backends: [127.0.0.1:3] }\n"))
            .is_err());
        assert!(live.load().pools["a"]
            .targets()
            .iter()
            .any(|t| t.addr.port() == 2));
    }
}
