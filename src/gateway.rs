//! The live gateway: a compiled config (route table, pools, filters, limits)
//! behind an atomic pointer, and the process-wide state that outlives any one
//! config (metrics, the limiter clock, whether the process is draining).
//!
//! Each request loads one snapshot at its start and uses it to the end, so a
//! reload swaps everything at once and no request sees half a config.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use crate::config::{Config, RouteSpec};
use crate::filters::Filter;
use crate::limits::redis_store::RedisStore;
use crate::limits::{Clock, Limiter, MonotonicClock, StoreSpec};
use crate::router::Router;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::{LimitMetrics, Metrics, RouteMetrics};
use crate::upstream::dns::{self, DnsTable};
use crate::upstream::{pool_targets, Pool};

/// A route with everything it refers to resolved.
pub struct Route {
    pub spec: RouteSpec,
    pub name: Arc<str>,
    pub pool: Arc<Pool>,
    pub filters: Vec<Arc<dyn Filter>>,
    pub limits: Vec<Arc<Limiter>>,
    /// Decision counters, one per entry of `limits`.
    pub limit_metrics: Vec<LimitMetrics>,
    pub metrics: RouteMetrics,
}

pub struct Gateway {
    pub config: Config,
    pub router: Router,
    pub routes: Vec<Route>,
    pub pools: BTreeMap<String, Arc<Pool>>,
    pub limiters: BTreeMap<String, Arc<Limiter>>,
    /// The shared store of `store: redis` limits, if the config has one.
    pub redis: Option<Arc<RedisStore>>,
}

impl Gateway {
    /// Compiles a validated config. Cannot fail: validation already checked
    /// every reference this resolves.
    pub fn build(config: Config, metrics: &Metrics) -> Gateway {
        Self::rebuild(config, None, 0, metrics, &DnsTable::default())
    }

    /// Compiles `config`, keeping what `previous` learned where the config
    /// did not change: an unchanged pool is reused whole (health, balancer
    /// position, in-flight counts); a changed pool keeps the health of the
    /// backends it still has; an unchanged limit keeps its counters.
    /// `now` is the limiter clock's reading, when new backends start their
    /// slow start. Backends given by name are the addresses `dns` holds.
    pub fn rebuild(
        config: Config,
        previous: Option<&Gateway>,
        now: u64,
        metrics: &Metrics,
        dns: &DnsTable,
    ) -> Gateway {
        let pools: BTreeMap<String, Arc<Pool>> = config
            .upstreams
            .values()
            .map(|spec| {
                let old = previous.and_then(|p| p.pools.get(&spec.name));
                let targets = pool_targets(spec, dns);
                let pool = match old {
                    Some(old) if old.spec == *spec && old.targets() == targets => old.clone(),
                    _ => Arc::new(Pool::rebuild(
                        spec.clone(),
                        targets,
                        old.map(|p| p.as_ref()),
                        now,
                        metrics,
                    )),
                };
                (spec.name.clone(), pool)
            })
            .collect();
        // An unchanged `redis:` section keeps its connections and circuit.
        let redis =
            config
                .redis
                .as_ref()
                .map(|spec| match previous.and_then(|p| p.redis.as_ref()) {
                    Some(old) if old.spec() == spec => old.clone(),
                    _ => RedisStore::new(spec.clone(), metrics.store()),
                });
        let same_store = |old: &Limiter| match (old.remote(), &redis) {
            (None, _) => true,
            (Some(r), Some(store)) => Arc::ptr_eq(r.store(), store),
            (Some(_), None) => false,
        };
        let limiters: BTreeMap<String, Arc<Limiter>> = config
            .limits
            .iter()
            .map(|(name, spec)| {
                let old = previous.and_then(|p| p.limiters.get(name));
                let limiter = match old {
                    Some(old) if old.spec() == spec && same_store(old) => old.clone(),
                    _ => {
                        let mode = match &spec.store {
                            StoreSpec::Redis { on_error, .. } => on_error.as_str(),
                            StoreSpec::Local => "local",
                        };
                        Arc::new(Limiter::with_store(
                            spec.clone(),
                            redis.as_ref(),
                            metrics.store_fallback(name, mode),
                        ))
                    }
                };
                (name.clone(), limiter)
            })
            .collect();
        let routes: Vec<Route> = config
            .routes
            .iter()
            .filter_map(|spec| {
                // Each limit with its counters, so the two lists cannot drift apart.
                let (limits, limit_metrics) = spec
                    .limits
                    .iter()
                    .filter_map(|l| Some((limiters.get(l)?.clone(), metrics.limit(l))))
                    .unzip();
                Some(Route {
                    spec: spec.clone(),
                    name: Arc::from(spec.name.as_str()),
                    pool: pools.get(&spec.upstream)?.clone(),
                    filters: spec
                        .filters
                        .iter()
                        .filter_map(|f| config.filters.get(f).cloned())
                        .collect(),
                    limits,
                    limit_metrics,
                    metrics: metrics.route(&spec.name),
                })
            })
            .collect();
        // The router indexes `routes`, so build it from exactly that list.
        let specs: Vec<RouteSpec> = routes.iter().map(|r| r.spec.clone()).collect();
        Gateway {
            router: Router::new(&specs),
            routes,
            pools,
            limiters,
            redis,
            config,
        }
    }
}

/// Process-wide state every request and background task reads.
pub struct Shared {
    current: ArcSwap<Gateway>,
    draining: AtomicBool,
    pub metrics: Metrics,
    /// The one clock limiters are read with, so state kept across reloads
    /// keeps its meaning.
    pub clock: MonotonicClock,
    pub access_log: Option<AccessLog>,
    /// The last good answer for each backend name.
    pub dns: DnsTable,
    /// Open client connections, for `max_connections(_per_ip)`.
    pub clients: Arc<crate::transport::conn::ConnCounts>,
    /// Reloads and DNS refreshes each rebuild the gateway from the live one:
    /// one at a time, or one would undo the other.
    rebuild: Mutex<()>,
}

impl Shared {
    pub fn new(config: Config, access_log: Option<AccessLog>) -> Arc<Shared> {
        let metrics = Metrics::new();
        let table = DnsTable::default();
        dns::resolve_new(&config, &table, |host| {
            metrics.dns_failures.with_label_values(&[host]).inc()
        });
        Arc::new(Shared {
            current: ArcSwap::from_pointee(Gateway::rebuild(config, None, 0, &metrics, &table)),
            draining: AtomicBool::new(false),
            clients: Arc::default(),
            metrics,
            clock: MonotonicClock::new(),
            access_log,
            dns: table,
            rebuild: Mutex::new(()),
        })
    }

    pub fn rebuild_lock(&self) -> MutexGuard<'_, ()> {
        self.rebuild.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn load(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    pub fn store(&self, gateway: Gateway) {
        self.current.store(Arc::new(gateway));
    }

    pub fn now_nanos(&self) -> u64 {
        self.clock.now_nanos()
    }

    /// Set once an upgrade or shutdown has begun: from then on responses ask
    /// clients to close their connections, so that no keep-alive connection
    /// is left idle on a process about to drop it.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}
