//! The live gateway: a compiled config (route table, pools, filters, limits)
//! behind an atomic pointer.
//!
//! Each request loads one snapshot at its start and uses it to the end, so a
//! reload swaps everything at once and no request sees half a config.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, RouteSpec};
use crate::filters::Filter;
use crate::router::Router;
use crate::upstream::Pool;

/// A route with everything it refers to resolved.
pub struct Route {
    pub spec: RouteSpec,
    pub name: Arc<str>,
    pub pool: Arc<Pool>,
    pub filters: Vec<Arc<dyn Filter>>,
}

pub struct Gateway {
    pub config: Config,
    pub router: Router,
    pub routes: Vec<Route>,
    pub pools: BTreeMap<String, Arc<Pool>>,
}

impl Gateway {
    /// Compiles a validated config. Cannot fail: validation already checked
    /// every reference this resolves.
    pub fn build(config: Config) -> Gateway {
        let pools: BTreeMap<String, Arc<Pool>> = config
            .upstreams
            .values()
            .map(|u| (u.name.clone(), Arc::new(Pool::new(u.clone()))))
            .collect();
        let routes: Vec<Route> = config
            .routes
            .iter()
            .filter_map(|spec| {
                let pool = pools.get(&spec.upstream)?.clone();
                let filters = spec
                    .filters
                    .iter()
                    .filter_map(|f| config.filters.get(f).cloned())
                    .collect();
                Some(Route {
                    spec: spec.clone(),
                    name: Arc::from(spec.name.as_str()),
                    pool,
                    filters,
                })
            })
            .collect();
        // The router indexes `routes`, so build it from exactly that list.
        let specs: Vec<RouteSpec> = routes.iter().map(|r: &Route| r.spec.clone()).collect();
        Gateway {
            router: Router::new(&specs),
            routes,
            pools,
            config,
        }
    }
}

/// The pointer every request and background task reads the live gateway from.
pub struct Shared {
    current: ArcSwap<Gateway>,
}

impl Shared {
    pub fn new(gateway: Gateway) -> Arc<Shared> {
        Arc::new(Shared {
            current: ArcSwap::from_pointee(gateway),
        })
    }

    pub fn load(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    pub fn store(&self, gateway: Gateway) {
        self.current.store(Arc::new(gateway));
    }
}
