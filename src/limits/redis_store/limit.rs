//! One limit kept in the shared store: its script and arguments, the local
//! deny cache, and the reading of the replies.
//!
//! # The deny cache
//! A token bucket that refuses a key says how long until its next token, and
//! nothing any gateway does can bring that instant closer: admissions only
//! push it later, a refusal moves nothing, and a give-back (a token returned
//! because a later limit of the request refused it, on this gateway or any
//! other) is held by the script to the latest instant a refusal promised (see
//! [`scripts`]). So the key is refused here, without asking Redis, until that
//! instant: a client that keeps knocking on a closed bucket costs no round
//! trip at all until its `Retry-After` is up, which is where a shared limiter
//! spends most of its round trips under abuse. The instant is measured from
//! when the request was decided here, before the script ran in Redis, so the
//! cache never refuses past the true instant.
//!
//! The cache could instead have been kept only for a limit alone on its
//! routes, where nothing is given back; but a gateway cannot see the routes
//! of the others sharing the limit, so that would be exact only as long as
//! every gateway ran the same config. Holding give-backs to the promise makes
//! it exact whatever they run. Sliding windows and concurrency limits have
//! no such promise (a window's estimate decays; a lease can be released at
//! any time) and are always asked.
//!
//! # A late decision is squared afterwards
//! A decision that missed `decision_timeout` is still made by Redis when it
//! gets there; meanwhile `on_store_error` decided the request. When the two
//! differ the books are squared once the late reply comes (within a second,
//! in the background): admitted here but refused there, the request is
//! counted in Redis anyway (the scripts' mode `2`); admitted there but
//! refused here, it is given back. On a busy machine a few decisions a
//! second miss a 5 ms deadline while Redis is fine; squared, they cost the
//! shared limit nothing instead of one admission over the limit each.
//! (A token bucket's and a window's; a timed-out lease is released instead.)

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;

use super::call::{Call, Late, StoreFailure, Which};
use super::held::release_call;
use super::keys;
use super::lease::Lease;
use super::scripts::{self, BadReply};
use super::store::RedisStore;
use crate::limits::limit::KeyStatus;
use crate::limits::spec::{Algorithm, LimitSpec, OnStoreError};
use crate::limits::token_bucket::Gcra;
use crate::limits::word_map::{ShardedWordMap, WordMap};

enum Alg {
    TokenBucket {
        gcra: Gcra,
        emission_us: String,
        tolerance_us: String,
        deny: ShardedWordMap,
    },
    SlidingWindow {
        limit: u64,
        window_ns: u64,
        window_us: String,
        limit_arg: String,
    },
    Concurrency {
        max: u64,
        max_arg: String,
        ttl: Duration,
        ttl_us: String,
    },
}

/// What the store said about one request.
pub enum RemoteOutcome {
    Decided {
        status: KeyStatus,
        guard: Option<Lease>,
        /// How to take the admission back if a later limit refuses.
        undo: Option<Undo>,
    },
    /// No answer in time: the limit's `on_store_error` decides, and tells
    /// [`RemoteLimit::reconcile`] what it decided when there is a late reply.
    Failed(Option<Reconcile>),
}

/// A decision that timed out, to square with what Redis made of it.
pub struct Reconcile {
    late: Late,
    which: Which,
    key: String,
    /// The script's arguments before the mode.
    args: Vec<String>,
}

/// How long a late reply is waited for.
const LATE_WAIT: Duration = Duration::from_secs(1);

/// A give-back owed to the store.
pub struct Undo(Call);

pub struct RemoteLimit {
    store: Arc<RedisStore>,
    name: String,
    alg: Alg,
    on_error: OnStoreError,
    fallbacks: IntCounter,
}

impl RemoteLimit {
    pub fn new(
        store: Arc<RedisStore>,
        spec: &LimitSpec,
        on_error: OnStoreError,
        lease_ttl: Duration,
        fallbacks: IntCounter,
    ) -> RemoteLimit {
        let alg = match spec.algorithm {
            Algorithm::TokenBucket {
                capacity,
                fill_rate,
            } => {
                let gcra = Gcra::new(capacity, fill_rate);
                Alg::TokenBucket {
                    emission_us: micros(gcra.emission_ns()),
                    tolerance_us: micros(gcra.tolerance_ns()),
                    gcra,
                    deny: ShardedWordMap::new(spec.max_keys),
                }
            }
            Algorithm::SlidingWindow { limit, window } => {
                let window_us = window.as_micros().max(1000);
                Alg::SlidingWindow {
                    limit,
                    window_ns: u64::try_from(window_us.saturating_mul(1000)).unwrap_or(u64::MAX),
                    window_us: window_us.to_string(),
                    limit_arg: limit.to_string(),
                }
            }
            // The config keeps adaptive limits local; were one given, it would
            // be held to its `max` like a plain concurrency limit.
            Algorithm::Concurrency { max } | Algorithm::AdaptiveConcurrency { max, .. } => {
                Alg::Concurrency {
                    max,
                    max_arg: max.to_string(),
                    ttl: lease_ttl,
                    ttl_us: lease_ttl.as_micros().max(1).to_string(),
                }
            }
        };
        RemoteLimit {
            store,
            name: spec.name.clone(),
            alg,
            on_error,
            fallbacks,
        }
    }

    pub fn store(&self) -> &Arc<RedisStore> {
        &self.store
    }

    pub fn on_error(&self) -> OnStoreError {
        self.on_error
    }

    /// Counts one decision made by `on_error` instead of the store.
    pub fn count_fallback(&self) {
        self.fallbacks.inc();
    }

    fn key(&self, value: Option<&[u8]>, alg: &str) -> String {
        keys::redis_key(&self.store.spec().prefix, &self.name, value, alg)
    }

    /// Asks the store to admit one request of `value` (whose local hash is
    /// `hash`, for the deny cache) at `now` on the limiter clock.
    pub async fn acquire(&self, value: Option<&[u8]>, hash: u64, now: u64) -> RemoteOutcome {
        match &self.alg {
            Alg::TokenBucket {
                gcra,
                emission_us,
                tolerance_us,
                deny,
            } => {
                let until = deny.load(hash);
                if until > now {
                    return decided(KeyStatus::rejected(until - now), None, None);
                }
                let key = self.key(value, "tb");
                let reply = self
                    .store
                    .decide(Which::TokenBucket, &key, &[emission_us, tolerance_us, "1"])
                    .await;
                let conn = reply.conn;
                let status =
                    match self.read(reply.result, |v| scripts::token_bucket_status(gcra, v)) {
                        Some(s) => s,
                        None => {
                            return failed(reply.late, || {
                                let args = vec![emission_us.clone(), tolerance_us.clone()];
                                (Which::TokenBucket, key, args)
                            })
                        }
                    };
                if !status.admitted {
                    let until = now.saturating_add(status.wait_ns.unwrap_or(0));
                    let _ = deny.fetch_update(hash, now, |w| (until > w).then_some(until));
                    return decided(status, None, None);
                }
                let undo = Call {
                    which: Which::TokenBucket,
                    key,
                    args: vec![emission_us.clone(), tolerance_us.clone(), "0".into()],
                    conn: Some(conn),
                };
                decided(status, None, Some(Undo(undo)))
            }
            Alg::SlidingWindow {
                limit,
                window_ns,
                window_us,
                limit_arg,
            } => {
                let key = self.key(value, "sw");
                let reply = self
                    .store
                    .decide(Which::SlidingWindow, &key, &[window_us, limit_arg, "1"])
                    .await;
                let conn = reply.conn;
                let Some((status, idx)) = self.read(reply.result, |v| {
                    scripts::sliding_window_status(*limit, *window_ns, v)
                }) else {
                    return failed(reply.late, || {
                        let args = vec![window_us.clone(), limit_arg.clone()];
                        (Which::SlidingWindow, key, args)
                    });
                };
                let undo = status.admitted.then(|| {
                    Undo(Call {
                        which: Which::SlidingWindow,
                        key,
                        args: vec![
                            window_us.clone(),
                            limit_arg.clone(),
                            "0".into(),
                            idx.to_string(),
                        ],
                        conn: Some(conn),
                    })
                });
                decided(status, None, undo)
            }
            Alg::Concurrency {
                max,
                max_arg,
                ttl,
                ttl_us,
            } => {
                let key = self.key(value, "cc");
                let member = self.store.new_lease_member();
                let reply = self
                    .store
                    .decide(Which::Concurrency, &key, &[max_arg, ttl_us, &member, "1"])
                    .await;
                let conn = reply.conn;
                let timed_out = matches!(reply.result, Err(StoreFailure::Timeout));
                let Some(status) =
                    self.read(reply.result, |v| scripts::concurrency_status(*max, v))
                else {
                    if timed_out {
                        // The lease may yet be granted when the call gets there.
                        let release =
                            release_call(key, member, max_arg.clone(), ttl_us.clone(), conn);
                        self.store.follow_up(release, conn);
                    }
                    return RemoteOutcome::Failed(None);
                };
                let guard = status
                    .admitted
                    .then(|| Lease::hold(&self.store, key, member, *max, *ttl, conn));
                decided(status, guard, None)
            }
        }
    }

    fn read<T>(
        &self,
        reply: Result<redis::Value, StoreFailure>,
        parse: impl FnOnce(&redis::Value) -> Result<T, BadReply>,
    ) -> Option<T> {
        match parse(&reply.ok()?) {
            Ok(t) => Some(t),
            Err(BadReply(e)) => {
                log::warn!("redis store: unexpected reply for limit {}: {e}", self.name);
                None
            }
        }
    }

    /// Squares a decision that timed out with what Redis made of it, once
    /// its reply comes: `admitted` is what `on_store_error` decided.
    pub fn reconcile(&self, r: Reconcile, admitted: bool) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let Ok(Ok(reply)) = tokio::time::timeout(LATE_WAIT, r.late.0).await else {
                return;
            };
            let Ok((admitted_there, window)) = scripts::acquire_outcome(&reply) else {
                return;
            };
            let mut args = r.args;
            match (admitted_there, admitted) {
                (true, false) => {
                    args.push("0".into());
                    args.extend(window.map(|w| w.to_string()));
                }
                (false, true) => args.push("2".into()),
                _ => return,
            }
            log::debug!(
                "redis store: squaring a late decision on {} (admitted there: {admitted_there})",
                r.key
            );
            store.background(Call {
                which: r.which,
                key: r.key,
                args,
                conn: None,
            });
        });
    }

    /// Gives back an admission (a later limit of the request refused it).
    pub fn undo(&self, undo: Undo) {
        self.store.background(undo.0);
    }

    /// Forgets deny-cache entries that have expired.
    pub fn sweep(&self, now: u64) {
        if let Alg::TokenBucket { deny, .. } = &self.alg {
            deny.sweep(now);
        }
    }
}

/// A failed decision; what squaring it needs is made only if it timed out.
fn failed(
    late: Option<Late>,
    call: impl FnOnce() -> (Which, String, Vec<String>),
) -> RemoteOutcome {
    RemoteOutcome::Failed(late.map(|late| {
        let (which, key, args) = call();
        Reconcile {
            late,
            which,
            key,
            args,
        }
    }))
}

fn decided(status: KeyStatus, guard: Option<Lease>, undo: Option<Undo>) -> RemoteOutcome {
    RemoteOutcome::Decided {
        status,
        guard,
        undo,
    }
}

/// Nanoseconds as microseconds with three decimals, for the script.
fn micros(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_arguments_keep_nanosecond_precision() {
        assert_eq!(micros(333_333_333), "333333.333");
        assert_eq!(micros(1), "0.001");
        assert_eq!(micros(10_000_000), "10000.000");
    }
}
