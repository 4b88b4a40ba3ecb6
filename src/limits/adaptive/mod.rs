//! `adaptive_concurrency`: a concurrency limit that finds its `max` from
//! measured latency (see [`controller`] for the control law and why).
//!
//! Each key (usually `route` or `global`) has one controller and one
//! in-flight count behind a mutex: the decision (count against the limit for
//! the request's priority) and the bookkeeping it feeds are a few dozen
//! instructions, and exactness matters more here than for a rate. The
//! request's [`AdaptiveGuard`] carries the latency of its attempts back to the
//! controller and gives the slot back when dropped.

pub mod controller;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use controller::{admits, Controller, Params, Priority, Sample};

use super::limit::{Answer, Key, KeyStatus, Limit, Permit};

/// One key's controller and in-flight count.
pub struct KeyState {
    inner: Mutex<Inner>,
    /// The limit's name, for the log.
    name: Arc<str>,
}

struct Inner {
    ctl: Controller,
    in_flight: u64,
}

/// What `/status` and `/metrics` show of one key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    pub limit: f64,
    pub in_flight: u64,
    pub min_rtt_ns: Option<u64>,
    pub recent_rtt_ns: Option<u64>,
    pub probing: bool,
}

impl KeyState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        Snapshot {
            limit: g.ctl.limit(),
            in_flight: g.in_flight,
            min_rtt_ns: g.ctl.min_rtt_ns(),
            recent_rtt_ns: g.ctl.recent_rtt_ns(),
            probing: g.ctl.is_probing(),
        }
    }
}

pub struct AdaptiveLimit {
    params: Params,
    name: Arc<str>,
    keys: Mutex<HashMap<u64, Arc<KeyState>>>,
    max_keys: usize,
}

/// Holds one slot of an adaptive limit; reports the request's attempts.
pub struct AdaptiveGuard {
    state: Arc<KeyState>,
    epoch: u64,
}

impl std::fmt::Debug for AdaptiveGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdaptiveGuard")
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl AdaptiveGuard {
    /// One attempt of the request ended: how long the backend took, and
    /// whether it answered without failing.
    pub fn record(&self, rtt_ns: u64, ok: bool, now: u64) {
        let mut g = self.state.lock();
        let before = g.ctl.limit();
        let sample = Sample {
            rtt_ns,
            ok,
            epoch: self.epoch,
        };
        if let Some(after) = g.ctl.on_sample(sample, now) {
            if (after - before).abs() > before * 0.2 {
                log::info!(
                    "adaptive limit {}: {before:.1} -> {after:.1} (min latency {:?} ms, recent {:?} ms)",
                    self.state.name,
                    g.ctl.min_rtt_ns().map(|n| n / 1_000_000),
                    g.ctl.recent_rtt_ns().map(|n| n / 1_000_000),
                );
            }
        }
    }
}

impl Permit for AdaptiveGuard {
    fn record_attempt(&self, rtt_ns: u64, ok: bool, now: u64) {
        self.record(rtt_ns, ok, now);
    }
}

impl Drop for AdaptiveGuard {
    fn drop(&mut self) {
        let mut g = self.state.lock();
        g.in_flight = g.in_flight.saturating_sub(1);
    }
}

impl AdaptiveLimit {
    pub fn new(name: &str, params: Params, max_keys: usize) -> AdaptiveLimit {
        AdaptiveLimit {
            params,
            name: Arc::from(name),
            keys: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    fn key_state(&self, key: u64, now: u64) -> Arc<KeyState> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = keys.get(&key) {
            return s.clone();
        }
        if keys.len() >= self.max_keys {
            // Forget keys with nothing in flight; they start over if they return.
            keys.retain(|_, s| s.lock().in_flight > 0);
        }
        let state = Arc::new(KeyState {
            inner: Mutex::new(Inner {
                ctl: Controller::new(self.params, now, key),
                in_flight: 0,
            }),
            name: self.name.clone(),
        });
        keys.insert(key, state.clone());
        state
    }

    /// What a request of `priority` would be told now, taking nothing.
    pub fn peek(&self, key: u64, priority: Priority, now: u64) -> KeyStatus {
        let state = self.key_state(key, now);
        let g = state.lock();
        status(g.ctl.limit(), g.in_flight, priority)
    }

    /// Takes a slot if the limit for `priority` has one.
    pub fn try_acquire(
        &self,
        key: u64,
        priority: Priority,
        now: u64,
    ) -> (KeyStatus, Option<AdaptiveGuard>) {
        let state = self.key_state(key, now);
        let mut g = state.lock();
        let limit = g.ctl.limit();
        let s = status(limit, g.in_flight, priority);
        if !s.admitted {
            return (s, None);
        }
        g.in_flight += 1;
        let in_flight = g.in_flight;
        g.ctl.on_admit(in_flight, now);
        let epoch = g.ctl.epoch();
        drop(g);
        (
            KeyStatus {
                remaining: s.remaining.saturating_sub(1),
                ..s
            },
            Some(AdaptiveGuard { state, epoch }),
        )
    }

    /// The busiest key's state (most in flight), and how many keys there are.
    pub fn busiest(&self) -> Option<(Snapshot, usize)> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let n = keys.len();
        keys.values()
            .map(|s| s.snapshot())
            .max_by(|a, b| {
                a.in_flight
                    .cmp(&b.in_flight)
                    .then(a.limit.total_cmp(&b.limit))
            })
            .map(|s| (s, n))
    }

    /// The limit advertised as `q`: the busiest key's, whole.
    pub fn current_quota(&self) -> u64 {
        self.busiest()
            .map_or(self.params.initial as u64, |(s, _)| s.limit.floor() as u64)
    }
}

/// The slot goes back with its permit: a commit owes nothing else.
impl Limit for AdaptiveLimit {
    type Permit = AdaptiveGuard;
    type Undo = std::convert::Infallible;

    fn check(&self, key: Key<'_>, now: u64) -> KeyStatus {
        self.peek(key.hash, key.class, now)
    }

    fn commit(&self, key: Key<'_>, now: u64) -> Answer<AdaptiveGuard, Self::Undo> {
        let (status, permit) = self.try_acquire(key.hash, key.class, now);
        Answer {
            permit,
            ..Answer::bare(status)
        }
    }

    fn undo(&self, _: Key<'_>, never: Self::Undo, _: u64) {
        match never {}
    }

    fn retry_hint_secs(&self) -> Option<u64> {
        Some(1)
    }

    /// `q` is what the limit allows now, so it is rendered per response.
    fn quota_now(&self) -> Option<u64> {
        Some(self.current_quota())
    }
}

fn status(limit: f64, in_flight: u64, priority: Priority) -> KeyStatus {
    let whole = limit.floor().max(1.0) as u64;
    KeyStatus {
        admitted: admits(limit, in_flight, priority),
        remaining: whole.saturating_sub(in_flight),
        wait_ns: None,
    }
}
