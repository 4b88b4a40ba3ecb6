//! DNS discovery: backends written `host:port` are re-resolved while the
//! gateway runs, and every A/AAAA record becomes a backend.
//!
//! The [`DnsTable`] holds the last good answer per name; a pool is built from
//! it like from literal addresses. The table is written by the live gateway's
//! owner alone: the [`DnsService`] only reads when names are due, resolves
//! them, and hands the answers to the owner (through [`Discovery`]), which
//! records them and, when an answer changed, builds the next generation the
//! way a reload does. One writer is what keeps a reload and a DNS round from
//! undoing each other: the names of the config being installed and the
//! answers for them change in the same place, one input at a time.
//!
//! A changed answer keeps what it can: backends that stay keep their health,
//! in-flight counts and latency (shared by address), new ones join through
//! slow start, and removed ones finish the requests that still hold the old
//! snapshot. A failed or empty answer keeps the last good set: a resolver
//! outage must not empty a pool whose backends are fine.
//!
//! Names are resolved with hickory's asynchronous resolver, never with
//! `getaddrinfo`, which would block a runtime thread for as long as the DNS
//! server takes. Its cache is off: the table is the cache, refreshed every
//! `dns_refresh` or when the records' TTL ends, whichever is sooner.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, Protocol, ResolverConfig, ResolverOpts,
};
use hickory_resolver::TokioAsyncResolver;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::config::Config;

/// A TTL shorter than this is read as this, so a zero TTL cannot turn the
/// refresh into a busy loop.
const MIN_TTL: Duration = Duration::from_secs(1);
/// How often a name with `dns_refresh: off` is retried until it first resolves.
const RETRY_UNRESOLVED: Duration = Duration::from_secs(1);
/// How long one resolution may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Entry {
    /// The last good answer, sorted.
    addrs: Vec<IpAddr>,
    next: Option<Instant>,
    /// Inside a failure episode (logged once, at its start).
    failing: bool,
}

/// The last good answer per host name.
#[derive(Default)]
pub struct DnsTable {
    entries: Mutex<HashMap<String, Entry>>,
}

/// Every name the config's upstreams use, with the shortest `dns_refresh`
/// asked of it (`None`: resolve once).
pub fn names(config: &Config) -> BTreeMap<String, Option<Duration>> {
    let mut out: BTreeMap<String, Option<Duration>> = BTreeMap::new();
    for up in config.upstreams.values() {
        for n in &up.named {
            let e = out.entry(n.host.clone()).or_insert(up.dns_refresh);
            *e = match (*e, up.dns_refresh) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    out
}

/// What one resolution of a name gave.
pub enum Answer {
    Addrs { addrs: Vec<IpAddr>, ttl: Duration },
    Failed(String),
}

impl DnsTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The backends a name stands for: its addresses with `port`.
    pub fn backends(&self, host: &str, port: u16) -> Vec<SocketAddr> {
        self.lock().get(host).map_or_else(Vec::new, |e| {
            e.addrs
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect()
        })
    }

    /// The names of `wanted` due for resolution at `now`.
    pub fn due(&self, wanted: &BTreeMap<String, Option<Duration>>, now: Instant) -> Vec<String> {
        let entries = self.lock();
        wanted
            .keys()
            .filter(|host| {
                entries
                    .get(*host)
                    .is_none_or(|e| e.next.is_some_and(|t| t <= now))
            })
            .cloned()
            .collect()
    }

    /// Forgets the names `wanted` does not have (the config stopped using them).
    pub fn retain(&self, wanted: &BTreeMap<String, Option<Duration>>) {
        self.lock().retain(|host, _| wanted.contains_key(host));
    }

    /// Records an answer; returns whether the name's addresses changed. A
    /// failed or empty answer keeps the last good set.
    pub fn apply(
        &self,
        host: &str,
        refresh: Option<Duration>,
        answer: Answer,
        now: Instant,
        on_failure: impl FnOnce(),
    ) -> bool {
        let mut entries = self.lock();
        let e = entries.entry(host.to_string()).or_default();
        let (addrs, ttl) = match answer {
            Answer::Addrs { addrs, ttl } if !addrs.is_empty() => (addrs, ttl),
            failed => {
                let why = match failed {
                    Answer::Failed(why) => why,
                    Answer::Addrs { .. } => "no A or AAAA record".to_string(),
                };
                on_failure();
                if !e.failing {
                    e.failing = true;
                    log::warn!(
                        "resolving {host} failed ({why}); keeping its last {} address(es)",
                        e.addrs.len()
                    );
                }
                let retry = if e.addrs.is_empty() {
                    refresh.unwrap_or(RETRY_UNRESOLVED).min(RETRY_UNRESOLVED)
                } else {
                    refresh.unwrap_or(RETRY_UNRESOLVED)
                };
                e.next = Some(now + retry);
                return false;
            }
        };
        if e.failing {
            e.failing = false;
            log::info!("{host} resolves again");
        }
        let mut addrs = addrs;
        addrs.sort();
        addrs.dedup();
        e.next = refresh.map(|r| now + r.min(ttl.max(MIN_TTL)));
        if e.addrs == addrs {
            return false;
        }
        log::info!("{host} now resolves to {addrs:?}");
        e.addrs = addrs;
        true
    }
}

/// A resolver asking `servers`, or the system's configured ones if empty.
pub fn resolver(servers: &[SocketAddr]) -> Result<TokioAsyncResolver, String> {
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.timeout = LOOKUP_TIMEOUT;
    opts.attempts = 1;
    // Both families: every A and every AAAA record is a backend.
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    if servers.is_empty() {
        let (config, mut system) =
            hickory_resolver::system_conf::read_system_conf().map_err(|e| e.to_string())?;
        system.cache_size = 0;
        system.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        return Ok(TokioAsyncResolver::tokio(config, system));
    }
    let mut config = ResolverConfig::new();
    for s in servers {
        config.add_name_server(NameServerConfig::new(*s, Protocol::Udp));
        config.add_name_server(NameServerConfig::new(*s, Protocol::Tcp));
    }
    Ok(TokioAsyncResolver::tokio(config, opts))
}

pub async fn lookup(resolver: &TokioAsyncResolver, host: &str) -> Answer {
    // A fully qualified query, so no search domain is appended.
    let fqdn = format!("{host}.");
    match tokio::time::timeout(LOOKUP_TIMEOUT * 2, resolver.lookup_ip(fqdn)).await {
        Err(_) => Answer::Failed("timed out".into()),
        Ok(Err(e)) => Answer::Failed(e.to_string()),
        Ok(Ok(lookup)) => Answer::Addrs {
            ttl: lookup
                .valid_until()
                .saturating_duration_since(Instant::now()),
            addrs: lookup.iter().collect(),
        },
    }
}

/// Resolves the names of `config` that `table` has never resolved, before
/// the gateway serves them (at start, and for a reload that adds names): the
/// first requests then find the named backends already there. Runs on a
/// runtime of its own, on a thread of its own, so it can be called from
/// anywhere, a runtime thread included; it takes at most a lookup timeout.
pub fn resolve_new(config: &Config, table: &DnsTable, on_failure: impl Fn(&str) + Sync) {
    let mut wanted = names(config);
    {
        let entries = table.lock();
        wanted.retain(|host, _| !entries.contains_key(host));
    }
    if wanted.is_empty() {
        return;
    }
    std::thread::scope(|s| {
        let done = s.spawn(|| resolve_on_own_runtime(config, &wanted, table, &on_failure));
        if done.join().is_err() {
            log::error!("resolving backend names failed");
        }
    });
}

fn resolve_on_own_runtime(
    config: &Config,
    wanted: &BTreeMap<String, Option<Duration>>,
    table: &DnsTable,
    on_failure: &(impl Fn(&str) + Sync),
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot resolve backend names at start: {e}");
            return;
        }
    };
    rt.block_on(async {
        let resolver = match resolver(&config.resolver) {
            Ok(r) => r,
            Err(e) => {
                log::error!("no DNS resolver: {e}");
                return;
            }
        };
        let answers = futures::future::join_all(wanted.keys().map(|h| lookup(&resolver, h))).await;
        let now = Instant::now();
        for ((host, refresh), answer) in wanted.iter().zip(answers) {
            table.apply(host, *refresh, answer, now, || on_failure(host));
        }
    });
}

/// What the DNS service needs of the live gateway: which names it uses now,
/// and where answers go. The live gateway's owner implements it.
pub trait Discovery: Send + Sync {
    /// The live config's names (with their refresh) and its `resolver:` servers.
    fn wanted(&self) -> (BTreeMap<String, Option<Duration>>, Vec<SocketAddr>);
    /// Answers to record; the owner ignores names its config no longer has.
    fn answered(&self, answers: Vec<Resolved>);
}

/// One name's answer, as the DNS service got it.
pub struct Resolved {
    pub host: String,
    pub refresh: Option<Duration>,
    pub answer: Answer,
    pub at: Instant,
}

/// Resolves the live config's names when due and hands the answers on.
pub struct DnsService {
    pub table: Arc<DnsTable>,
    pub live: Arc<dyn Discovery>,
}

/// How long the loop sleeps at most, so a reload's new names resolve promptly.
const NAP: Duration = Duration::from_millis(100);

#[async_trait]
impl BackgroundService for DnsService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut current: Option<(Vec<SocketAddr>, TokioAsyncResolver)> = None;
        // Logged once until a resolver can be built again.
        let mut complained = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let (wanted, servers) = self.live.wanted();
            let due = self.table.due(&wanted, Instant::now());
            if !due.is_empty() {
                if current.as_ref().is_none_or(|(s, _)| *s != servers) {
                    current = match resolver(&servers) {
                        Ok(r) => {
                            complained = false;
                            Some((servers.clone(), r))
                        }
                        Err(e) => {
                            if !std::mem::replace(&mut complained, true) {
                                log::error!("no DNS resolver: {e}");
                            }
                            None
                        }
                    };
                }
                // Without a resolver every name counts as failed, and backs
                // off like any failed answer.
                let answers = match &current {
                    Some((_, r)) => {
                        futures::future::join_all(due.iter().map(|h| lookup(r, h))).await
                    }
                    None => due
                        .iter()
                        .map(|_| Answer::Failed("no resolver".into()))
                        .collect(),
                };
                let at = Instant::now();
                self.live.answered(
                    due.into_iter()
                        .zip(answers)
                        .map(|(host, answer)| Resolved {
                            refresh: wanted.get(&host).copied().flatten(),
                            host,
                            answer,
                            at,
                        })
                        .collect(),
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(NAP) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_changed_answer_is_reported_and_a_failed_one_keeps_the_last_set() {
        let t = DnsTable::default();
        let now = Instant::now();
        let refresh = Some(Duration::from_secs(5));
        let ok = |a: Vec<IpAddr>| Answer::Addrs {
            addrs: a,
            ttl: Duration::from_secs(300),
        };
        assert!(t.apply("api", refresh, ok(vec![ip(2), ip(1)]), now, || {}));
        assert_eq!(
            t.backends("api", 80),
            vec![SocketAddr::new(ip(1), 80), SocketAddr::new(ip(2), 80)]
        );
        assert!(!t.apply("api", refresh, ok(vec![ip(1), ip(2)]), now, || {}));
        let mut failures = 0;
        assert!(
            !t.apply("api", refresh, Answer::Failed("down".into()), now, || {
                failures += 1
            })
        );
        assert!(!t.apply("api", refresh, ok(vec![]), now, || failures += 1));
        assert_eq!(failures, 2);
        assert_eq!(t.backends("api", 80).len(), 2, "last good set kept");
        assert!(t.apply("api", refresh, ok(vec![ip(3)]), now, || {}));
        assert_eq!(t.backends("api", 80), vec![SocketAddr::new(ip(3), 80)]);
    }

    #[test]
    fn refresh_honours_a_shorter_ttl_and_off_means_once() {
        let t = DnsTable::default();
        let now = Instant::now();
        let mut wanted = BTreeMap::new();
        wanted.insert("a".to_string(), Some(Duration::from_secs(5)));
        wanted.insert("b".to_string(), None);
        assert_eq!(t.due(&wanted, now), vec!["a", "b"]);
        let ttl = |s| Answer::Addrs {
            addrs: vec![ip(1)],
            ttl: Duration::from_secs(s),
        };
        t.apply("a", Some(Duration::from_secs(5)), ttl(2), now, || {});
        t.apply("b", None, ttl(2), now, || {});
        assert!(t.due(&wanted, now + Duration::from_millis(1900)).is_empty());
        assert_eq!(t.due(&wanted, now + Duration::from_secs(2)), vec!["a"]);
        assert!(t
            .due(&wanted, now + Duration::from_secs(3600))
            .contains(&"a".to_string()));
        assert!(!t
            .due(&wanted, now + Duration::from_secs(3600))
            .contains(&"b".to_string()));
        // A name no longer used is forgotten.
        wanted.remove("a");
        t.retain(&wanted);
        assert!(t.backends("a", 80).is_empty());
    }
}
