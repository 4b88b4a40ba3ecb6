//! One configured limit: its [`Policy`] plus the state that counts it, which
//! is one of the three kinds of [`Limit`]: local, adaptive, or shared.
//!
//! This file stands above the others: it is the only one that knows every
//! kind, so that the engine and the local algorithms need not know the
//! optional ones (adaptive, the shared store), which in turn only import the
//! core. [`Kind`] implements [`Limit`] by delegating, so a route's limits are
//! one type and the engine is compiled once for them, with no boxing.
//!
//! A limit kept in the shared store has both halves: the remote one that
//! asks Redis, and a local algorithm at `1/N` of the limit's size (`N` the
//! gateways sharing the store) that decides in its place when Redis cannot
//! answer and the limit says `on_store_error: local`. The policy it advertises is always the limit as
//! configured, whichever half decided.

use std::sync::Arc;

use prometheus::IntCounter;

use super::adaptive::{AdaptiveGuard, AdaptiveLimit, Params, Snapshot};
use super::concurrency::ConcurrencyGuard;
use super::engine::{self, Entry};
use super::limit::{Answer, Key, KeyStatus, Limit, Permit, Priority};
use super::local::{Counted, Local};
use super::policy::Policy;
use super::redis_store::{RedisStore, RemoteLimit, SharedLimit, SharedPermit, SharedUndo};
use super::spec::{Algorithm, LimitSpec, StoreSpec};

/// What a request admitted by a route's limits holds until it ends.
pub type Verdict = engine::Verdict<Held>;

/// One configured limit and its state.
pub struct Limiter {
    policy: Policy,
    kind: Kind,
}

/// The state of a limit, whichever kind it is.
pub enum Kind {
    Local(Local),
    Adaptive(AdaptiveLimit),
    Shared(SharedLimit),
}

/// A permit of any kind of limit.
#[derive(Debug)]
pub enum Held {
    Local(#[allow(dead_code)] ConcurrencyGuard),
    Adaptive(AdaptiveGuard),
    Shared(#[allow(dead_code)] SharedPermit),
}

/// What a commit of any kind of limit owes.
pub enum Owed {
    Local(Counted),
    Shared(SharedUndo),
}

impl Limiter {
    /// A limit counted in this process only.
    pub fn new(spec: LimitSpec) -> Limiter {
        Limiter::build(spec, None)
    }

    /// A limit in `store` if its spec says `store: redis` (and a store is
    /// given), else local. `fallbacks` counts its `on_store_error` decisions.
    pub fn with_store(
        spec: LimitSpec,
        store: Option<&Arc<RedisStore>>,
        fallbacks: IntCounter,
    ) -> Limiter {
        let remote = match (&spec.store, store) {
            (
                StoreSpec::Redis {
                    on_error,
                    lease_ttl,
                },
                Some(store),
            ) => Some(RemoteLimit::new(
                store.clone(),
                &spec,
                *on_error,
                *lease_ttl,
                fallbacks,
            )),
            _ => None,
        };
        Limiter::build(spec, remote)
    }

    fn build(spec: LimitSpec, remote: Option<RemoteLimit>) -> Limiter {
        // The local state of a shared limit is its stand-in's share.
        let algorithm = match &remote {
            Some(r) => spec.algorithm.scaled_down(r.store().spec().instances),
            None => spec.algorithm.clone(),
        };
        let kind = match (Local::new(&algorithm, &spec), remote) {
            (Some(local), Some(remote)) => Kind::Shared(SharedLimit::new(remote, local, &spec)),
            (Some(local), None) => Kind::Local(local),
            // The config keeps adaptive limits local.
            (None, _) => Kind::Adaptive(AdaptiveLimit::new(
                &spec.name,
                adaptive_params(&algorithm),
                spec.max_keys,
            )),
        };
        Limiter {
            policy: Policy::new(spec),
            kind,
        }
    }

    /// This limit, a request's value of its key and the request's class, for
    /// the engine.
    #[inline]
    pub fn entry<'a>(&'a self, value: Option<&'a [u8]>, class: Priority) -> Entry<'a, Kind> {
        Entry {
            policy: &self.policy,
            limit: &self.kind,
            value,
            class,
        }
    }

    /// The busiest key of an adaptive limit, and the number of keys.
    pub fn adaptive(&self) -> Option<(Snapshot, usize)> {
        match &self.kind {
            Kind::Adaptive(a) => a.busiest(),
            _ => None,
        }
    }

    /// The request class this limit reads from `priority:`, if it has one.
    pub fn priority_key(&self) -> Option<&crate::keys::KeySpec> {
        match &self.policy.spec().algorithm {
            Algorithm::AdaptiveConcurrency { priority, .. } => priority.as_ref(),
            _ => None,
        }
    }

    /// The shared half, for a `store: redis` limit.
    pub fn remote(&self) -> Option<&RemoteLimit> {
        match &self.kind {
            Kind::Shared(s) => Some(s.remote()),
            _ => None,
        }
    }

    pub fn spec(&self) -> &LimitSpec {
        self.policy.spec()
    }

    pub fn name(&self) -> &'static str {
        self.policy.name()
    }

    /// Forgets keys whose state carries no information at `now_nanos`: full
    /// token buckets. Call it every few seconds; the sketch-based limits hold
    /// no per-key state and have nothing to sweep.
    pub fn sweep(&self, now_nanos: u64) {
        match &self.kind {
            Kind::Local(l) => l.sweep(now_nanos),
            Kind::Shared(s) => s.sweep(now_nanos),
            Kind::Adaptive(_) => {}
        }
    }

    /// Keys holding per-key state (token buckets only; sketches have none).
    pub fn live_keys(&self) -> usize {
        match &self.kind {
            Kind::Local(l) => l.live_keys(),
            Kind::Shared(s) => s.stand_in().live_keys(),
            Kind::Adaptive(a) => a.busiest().map_or(0, |(_, n)| n),
        }
    }

    /// Bytes of counter state this limit holds now: the token bucket's map
    /// (grows with live keys, bounded by `max_keys`), or the fixed sketches.
    pub fn state_bytes(&self) -> usize {
        match &self.kind {
            Kind::Local(l) => l.state_bytes(),
            Kind::Shared(s) => s.stand_in().state_bytes(),
            Kind::Adaptive(a) => a.busiest().map_or(0, |(_, n)| n) * 512,
        }
    }

    /// What a request with this key's value would be told at `now` (by the
    /// local state), counting nothing; `None` for a missing key this limit
    /// refuses.
    pub fn probe(&self, value: Option<&[u8]>, now: u64) -> Option<KeyStatus> {
        self.policy.resolve(value).map(|hash| {
            let key = Key {
                hash,
                value,
                class: Priority::default(),
            };
            self.kind.check(key, now)
        })
    }
}

/// Decides one request against configured limits, each with its key's value
/// (`None` when the request lacks it), in the default class. Only a shared
/// limit makes it wait.
pub async fn admit(limits: &[(&Limiter, Option<&[u8]>)], now_nanos: u64) -> Verdict {
    admit_classed(limits, &[], now_nanos).await
}

/// [`admit`] with each limit's reading of the request's class (only
/// `adaptive_concurrency` limits use it; a missing entry is `default`).
pub async fn admit_classed(
    limits: &[(&Limiter, Option<&[u8]>)],
    classes: &[Priority],
    now_nanos: u64,
) -> Verdict {
    let entries: smallvec::SmallVec<[Entry<Kind>; 4]> = limits
        .iter()
        .enumerate()
        .map(|(i, (l, value))| l.entry(*value, classes.get(i).copied().unwrap_or_default()))
        .collect();
    engine::admit(&entries, now_nanos).await
}

impl Permit for Held {
    fn record_attempt(&self, rtt_ns: u64, ok: bool, now: u64) {
        if let Held::Adaptive(g) = self {
            g.record_attempt(rtt_ns, ok, now);
        }
    }
}

impl Limit for Kind {
    type Permit = Held;
    type Undo = Owed;

    #[inline]
    fn asks(&self) -> bool {
        matches!(self, Kind::Shared(_))
    }

    #[inline]
    fn check(&self, key: Key<'_>, now: u64) -> KeyStatus {
        match self {
            Kind::Local(l) => l.check(key, now),
            Kind::Adaptive(a) => a.check(key, now),
            Kind::Shared(s) => s.check(key, now),
        }
    }

    #[inline]
    fn commit(&self, key: Key<'_>, now: u64) -> Answer<Held, Owed> {
        match self {
            Kind::Local(l) => map(l.commit(key, now), Held::Local, Owed::Local),
            Kind::Adaptive(a) => map(a.commit(key, now), Held::Adaptive, |never| match never {}),
            Kind::Shared(s) => map(s.commit(key, now), Held::Shared, Owed::Shared),
        }
    }

    async fn ask(&self, key: Key<'_>, now: u64) -> Answer<Held, Owed> {
        match self {
            Kind::Shared(s) => map(s.ask(key, now).await, Held::Shared, Owed::Shared),
            _ => self.commit(key, now),
        }
    }

    fn undo(&self, key: Key<'_>, undo: Owed, now: u64) {
        match (self, undo) {
            (Kind::Local(l), Owed::Local(c)) => l.undo(key, c, now),
            (Kind::Shared(s), Owed::Shared(u)) => s.undo(key, u, now),
            _ => {}
        }
    }

    fn retry_hint_secs(&self) -> Option<u64> {
        match self {
            Kind::Local(l) => l.retry_hint_secs(),
            Kind::Adaptive(a) => a.retry_hint_secs(),
            Kind::Shared(s) => s.retry_hint_secs(),
        }
    }

    fn quota_now(&self) -> Option<u64> {
        match self {
            Kind::Adaptive(a) => a.quota_now(),
            _ => None,
        }
    }
}

fn map<P, U>(
    a: Answer<P, U>,
    permit: impl FnOnce(P) -> Held,
    undo: impl FnOnce(U) -> Owed,
) -> Answer<Held, Owed> {
    Answer {
        status: a.status,
        known: a.known,
        permit: a.permit.map(permit),
        undo: a.undo.map(undo),
    }
}

fn adaptive_params(algorithm: &Algorithm) -> Params {
    match *algorithm {
        Algorithm::AdaptiveConcurrency {
            initial, min, max, ..
        } => Params {
            initial: initial as f64,
            min: min as f64,
            max: max as f64,
            ..Params::default()
        },
        _ => Params::default(),
    }
}
