//! One generation of the live gateway: a compiled config (route table,
//! pools, filters, limits, the shared store's handle), immutable once built.
//!
//! Each request loads one generation at its start and uses it to the end, so
//! a reload swaps everything at once and no request sees half a config. Only
//! the owner ([`super::owner`]) builds generations and swaps them in.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::{Config, RouteSpec};
use crate::filters::Filter;
use crate::limits::redis_store::RedisStore;
use crate::limits::{Limiter, StoreSpec};
use crate::router::Router;
use crate::telemetry::metrics::{LimitMetrics, Metrics, RouteMetrics};
use crate::telemetry::snapshot::{AdaptiveGauges, BackendGauges, LiveSnapshot, PoolGauges};
use crate::upstream::dns::DnsTable;
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

pub struct Generation {
    pub config: Config,
    pub router: Router,
    pub routes: Vec<Route>,
    pub pools: BTreeMap<String, Arc<Pool>>,
    pub limiters: BTreeMap<String, Arc<Limiter>>,
    /// The shared store of `store: redis` limits, if the config has one.
    pub redis: Option<Arc<RedisStore>>,
}

impl Generation {
    /// Compiles a validated config with nothing to carry over (benchmarks and
    /// tests; the live gateway is built by its owner). Cannot fail:
    /// validation already checked every reference this resolves.
    pub fn compile(config: Config, metrics: &Metrics) -> Generation {
        Self::build(config, None, 0, metrics, &DnsTable::default())
    }

    /// Compiles `config`, keeping what `previous` learned where the config
    /// did not change: an unchanged pool is reused whole (health, balancer
    /// position, in-flight counts); a changed pool keeps the in-flight
    /// counts, latency and ejections of the backends it still has, and their
    /// active health while it is still checked (see `upstream::view`); an
    /// unchanged limit keeps its counters. The metric series of backends
    /// and upstreams `config` no longer has are dropped: a generation built
    /// with a `previous` is always the next to go live.
    /// `now` is the limiter clock's reading, when new backends start their
    /// slow start. Backends given by name are the addresses `dns` holds.
    pub(crate) fn build(
        config: Config,
        previous: Option<&Generation>,
        now: u64,
        metrics: &Metrics,
        dns: &DnsTable,
    ) -> Generation {
        let pools: BTreeMap<String, Arc<Pool>> = config
            .upstreams
            .values()
            .map(|spec| {
                let old = previous.and_then(|p| p.pools.get(&spec.name));
                let targets = pool_targets(spec, dns);
                let pool = match old {
                    Some(old) if old.spec == *spec && old.targets() == targets => old.clone(),
                    _ => Arc::new(Pool::succeeding(
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
        if let Some(previous) = previous {
            forget_departed(&previous.pools, &pools, metrics);
        }
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
        Generation {
            router: Router::new(&specs),
            routes,
            pools,
            limiters,
            redis,
            config,
        }
    }

    /// What `/metrics` shows of this generation at `now` (limiter clock).
    /// Gauges are computed here per scrape, so a departed backend simply is
    /// not in it; its counters are dropped by [`forget_departed`].
    pub fn snapshot(&self, now: u64, open_connections: u32) -> LiveSnapshot {
        let pools = self
            .pools
            .iter()
            .map(|(name, pool)| PoolGauges {
                name: name.clone(),
                panic_mode: pool.in_panic(),
                backends: pool
                    .backends
                    .iter()
                    .enumerate()
                    .map(|(i, b)| BackendGauges {
                        addr: b.addr.to_string(),
                        healthy: pool.is_healthy(i),
                        ejected: pool.is_ejected(i, now),
                        in_flight: b.stats.inflight.load(Ordering::Relaxed),
                    })
                    .collect(),
            })
            .collect();
        let adaptive = self
            .limiters
            .iter()
            .filter_map(|(name, limiter)| {
                let (s, _) = limiter.adaptive()?;
                Some(AdaptiveGauges {
                    name: name.clone(),
                    limit: s.limit,
                    in_flight: s.in_flight,
                })
            })
            .collect();
        LiveSnapshot {
            pools,
            adaptive,
            store_circuit_open: self.redis.as_ref().map(|s| !s.is_available()),
            open_connections,
        }
    }
}

/// Drops the counters of every backend of `old` that `new` lacks (an edit or
/// a DNS answer removed it, or its whole upstream went), and of every
/// upstream `new` lacks. A backend is its (upstream, address) pair: an
/// address moved to another upstream leaves its old upstream's series.
fn forget_departed(
    old: &BTreeMap<String, Arc<Pool>>,
    new: &BTreeMap<String, Arc<Pool>>,
    metrics: &Metrics,
) {
    for (name, pool) in old {
        let kept: HashSet<SocketAddr> = match new.get(name) {
            Some(p) if Arc::ptr_eq(p, pool) => continue,
            Some(p) => p.backends.iter().map(|b| b.addr).collect(),
            None => {
                metrics.forget_upstream(name);
                HashSet::new()
            }
        };
        for b in pool.backends.iter().filter(|b| !kept.contains(&b.addr)) {
            metrics.forget_backend(name, &b.addr.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::filters::Registry;
    use crate::upstream::dns::Answer;

    const SEC: u64 = 1_000_000_000;

    fn config(upstreams: &str) -> Config {
        let yaml = format!(
            "listen: [127.0.0.1:1]\nupstreams:\n{upstreams}routes:\n  - {{ upstream: up }}\n"
        );
        match crate::config::load(&yaml, &Registry::builtin()) {
            Ok(loaded) => loaded.gateway,
            Err(e) => panic!("test config does not load: {e:?}"),
        }
    }

    /// Upstream `up` of backends :9001 and :9002 with `extra` settings.
    fn up(extra: &str) -> Config {
        config(&format!(
            "  up:\n    backends: [127.0.0.1:9001, 127.0.0.1:9002]\n    outlier_detection: {{ consecutive_failures: 1, base_ejection: 1h, max_ejection: 2h }}\n{extra}"
        ))
    }

    fn next(config: Config, previous: &Generation, metrics: &Metrics) -> Generation {
        Generation::build(config, Some(previous), SEC, metrics, &DnsTable::default())
    }

    const CHECK: &str = "    health_check: { type: tcp, interval: 1h, unhealthy_after: 1 }\n";

    #[test]
    fn active_health_follows_the_config_and_ejections_carry() {
        let metrics = Metrics::new();
        let first = Generation::build(up(CHECK), None, SEC, &metrics, &DnsTable::default());
        let pool = &first.pools["up"];
        let (Some(hc), Some(od)) = (&pool.spec.health_check, &pool.spec.outlier) else {
            panic!("the test config has a check and outlier detection");
        };
        pool.backends[0].health.observe(false, hc);
        assert!(pool.backends[1].stats.outlier.record_failure(od, SEC, true));
        assert!(!pool.is_healthy(0) && pool.is_ejected(1, SEC));

        let edited = next(
            up("    health_check: { type: tcp, interval: 2h, unhealthy_after: 3 }\n"),
            &first,
            &metrics,
        );
        assert!(
            !edited.pools["up"].is_healthy(0),
            "an edited check keeps the verdict"
        );

        let unchecked = next(up(""), &edited, &metrics);
        let pool = &unchecked.pools["up"];
        assert!(pool.is_healthy(0), "no health_check: healthy again");
        assert!(pool.is_available(0, SEC));
        assert!(pool.is_ejected(1, SEC), "a passive ejection carries over");
        assert_eq!(pool.healthy_count(), 2);

        let rechecked = next(up(CHECK), &unchecked, &metrics);
        let pool = &rechecked.pools["up"];
        assert!(
            pool.is_healthy(0),
            "a check added starts healthy, as at start"
        );
        assert!(pool
            .health_view()
            .next_check()
            .is_some_and(|t| t <= Instant::now()));
        assert!(pool.is_ejected(1, SEC));
    }

    /// Every line of `/metrics` that names `needle`.
    fn series(metrics: &Metrics, generation: &Generation, needle: &str) -> Vec<String> {
        let text = metrics.render(&generation.snapshot(SEC, 0));
        String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn series_of_departed_backends_and_upstreams_are_dropped() {
        let metrics = Metrics::new();
        let first = Generation::build(
            config(
                "  up: { backends: [127.0.0.1:9001, 127.0.0.1:9002] }\n  old: { backends: [127.0.0.1:9003] }\n",
            ),
            None,
            SEC,
            &metrics,
            &DnsTable::default(),
        );
        first.pools["up"].backends[1].metrics.count("ok");
        assert!(!series(&metrics, &first, "127.0.0.1:9002").is_empty());
        assert!(!series(&metrics, &first, "upstream=\"old\"").is_empty());

        let second = next(
            config("  up: { backends: [127.0.0.1:9001] }\n"),
            &first,
            &metrics,
        );
        assert_eq!(
            series(&metrics, &second, "127.0.0.1:9002"),
            Vec::<String>::new()
        );
        assert_eq!(
            series(&metrics, &second, "upstream=\"old\""),
            Vec::<String>::new()
        );
        assert!(
            series(&metrics, &second, "127.0.0.1:9001").len() >= 5,
            "the backend that stays keeps its series"
        );
    }

    #[test]
    fn a_dns_answer_that_drops_an_address_drops_its_series() {
        let metrics = Metrics::new();
        let dns = DnsTable::default();
        let answer = |last: &[u8]| Answer::Addrs {
            addrs: last.iter().map(|l| IpAddr::from([127, 0, 0, *l])).collect(),
            ttl: Duration::from_secs(60),
        };
        let now = Instant::now();
        dns.apply("api.test", None, answer(&[1, 2]), now, || {});
        let yaml = "  up: { backends: [api.test:9000] }\n";
        let first = Generation::build(config(yaml), None, SEC, &metrics, &dns);
        assert!(!series(&metrics, &first, "127.0.0.2:9000").is_empty());

        assert!(dns.apply("api.test", None, answer(&[1]), now, || {}));
        let second = Generation::build(config(yaml), Some(&first), SEC, &metrics, &dns);
        assert_eq!(
            series(&metrics, &second, "127.0.0.2:9000"),
            Vec::<String>::new()
        );
        assert!(!series(&metrics, &second, "127.0.0.1:9000").is_empty());
    }
}
