//! Admission control: token-bucket, sliding-window and concurrency limits.
//!
//! A route lists limits; a request is admitted only if *all* of them admit it.
//! The proxy reads the clock once, extracts each limit's key, and calls
//! [`admit`], which returns a [`Verdict`]: admitted or rejected (by which limit,
//! with its status and `Retry-After`), each limit's [`Decision`] for metrics,
//! the [`ConcurrencyGuard`]s to keep until the request ends, and what the
//! `RateLimit`/`RateLimit-Policy` fields should say. Nothing here knows about
//! Pingora's proxy types: the module is tested and benchmarked on its own.
//!
//! # Check all, then commit, with rollback
//! A request refused by its second limit must not have spent a token of its
//! first, or a client over one limit would drain its others for nothing. So
//! [`admit`] first *reads* every limit (no writes, no new per-key state), and
//! only if all admit does it *commit* them in order. Each commit re-validates
//! (the token bucket's CAS recomputes from the current TAT; the sliding window
//! and the concurrency limit count first, then re-read the count with theirs
//! included), because another request may have taken the last unit between
//! the read and the commit. If a commit fails, the
//! commits already made for this request are undone (token given back, count
//! taken back, slot released) and the request is rejected. The result never
//! admits more than every limit allows; the only imprecision is the reverse: a
//! request may be refused because a concurrent request held a unit it later
//! gave back, which needs two requests of the same keys racing in the same
//! few nanoseconds at the edge of a limit. With one limit there is nothing to
//! undo, and the read phase is skipped.
//!
//! # Shadow limits and missing keys
//! A `shadow` limit is evaluated and counted like any other, but a refusal is
//! reported as [`Decision::ShadowRejected`] and the request goes on. A refusal is
//! counted as an enforced limit would count it: not at all, so the shadow limit's
//! log predicts exactly what enforcing it would do. Shadow limits are not
//! advertised in the response headers: clients must not pace to a rule that is
//! not enforced. A request without the key's value is counted under one shared
//! "missing" key (distinct from every real key, including the empty one) unless
//! the limit says `on_missing: reject`.
//!
//! # Shared limits
//! A limit with `store: redis` is counted in Redis, shared by every gateway
//! (see [`redis_store`]); a route with one is decided by [`admit_shared`],
//! which keeps the same check-all-then-commit promise across both stores.
//!
//! # Keys
//! Keys are hashed to 64 bits with `ahash`, seeded at random per limiter so
//! that a client cannot precompute values that collide with another client's
//! key; the hash is all any algorithm stores.

pub mod adaptive;
pub mod clock;
pub mod concurrency;
pub mod headers;
mod limiter;
pub mod redis_store;
mod shared;
pub mod sliding_window;
pub mod spec;
pub mod store;
pub mod token_bucket;

use smallvec::SmallVec;

pub use adaptive::Priority;
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use concurrency::{ConcurrencyGuard, ConcurrencyLimit};
pub use headers::{ceil_secs, render_policy, render_ratelimit, QuotaUnit, RateLimitInfo};
pub use limiter::Limiter;
pub use shared::admit_shared;
pub use sliding_window::{SlidingWindow, WindowCounts};
pub use spec::*;
pub use store::{CounterStore, LocalStore};
pub use token_bucket::{Gcra, TokenBucket};

/// One limit's answer for one key at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    pub admitted: bool,
    /// Whole units left (after this request, if it was counted).
    pub remaining: u64,
    /// Nanoseconds until one more unit is available; `None` when unknowable.
    pub wait_ns: Option<u64>,
}

impl KeyStatus {
    fn rejected(wait_ns: u64) -> KeyStatus {
        KeyStatus {
            admitted: false,
            remaining: 0,
            wait_ns: Some(wait_ns),
        }
    }

    fn missing_key() -> KeyStatus {
        KeyStatus {
            admitted: false,
            remaining: 0,
            wait_ns: None,
        }
    }
}

/// What one limit said about one request, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Admitted,
    Rejected,
    /// A shadow limit would have refused; the request was not refused for it.
    ShadowRejected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Admitted,
    Rejected {
        /// Which of the limits given to [`admit`] refused.
        index: usize,
        /// The limit's configured status (429 by default).
        status: u16,
        /// `Retry-After` in whole seconds, rounded up; `None` when waiting
        /// cannot help (the request lacks the key's value).
        retry_after_secs: Option<u64>,
    },
}

#[derive(Debug)]
pub struct Verdict {
    pub outcome: Outcome,
    /// One per limit, in the order given.
    pub decisions: SmallVec<[Decision; 4]>,
    /// Slots of concurrency limits: keep until the request ends.
    pub guards: SmallVec<[ConcurrencyGuard; 2]>,
    /// The enforced limit closest to refusing (smallest `r`), or the one that
    /// refused; `None` when no enforced limit applies.
    pub ratelimit: Option<RateLimitInfo>,
}

impl Verdict {
    pub fn is_admitted(&self) -> bool {
        self.outcome == Outcome::Admitted
    }

    /// The `RateLimit` field value.
    pub fn ratelimit_header(&self) -> Option<String> {
        self.ratelimit.as_ref().map(render_ratelimit)
    }

    /// The `RateLimit-Policy` field value: rendered once per limit, or per
    /// response for a limit whose quota moves.
    pub fn policy_header(&self) -> Option<std::borrow::Cow<'static, str>> {
        self.ratelimit.as_ref().map(|info| match info.policy {
            "" => std::borrow::Cow::Owned(render_policy(info)),
            fixed => std::borrow::Cow::Borrowed(fixed),
        })
    }

    /// One attempt of the admitted request ended: adaptive limits learn its
    /// latency and whether it failed.
    pub fn record_attempt(&self, rtt_ns: u64, ok: bool, now: u64) {
        for g in &self.guards {
            g.record_attempt(rtt_ns, ok, now);
        }
    }

    fn rejected(
        limiter: &Limiter,
        index: usize,
        status: &KeyStatus,
        mut decisions: SmallVec<[Decision; 4]>,
        key_missing: bool,
    ) -> Verdict {
        decisions[index] = Decision::Rejected;
        Verdict {
            outcome: Outcome::Rejected {
                index,
                status: limiter.spec().status,
                retry_after_secs: if key_missing {
                    None
                } else {
                    limiter.retry_after_secs(status)
                },
            },
            decisions,
            guards: SmallVec::new(),
            ratelimit: (!key_missing).then(|| limiter.info(status)),
        }
    }
}

/// Decides one request against all its limits, each with its key's value
/// (`None` when the request lacks it), at one instant. See the module doc for
/// why it reads all limits before committing any.
pub fn admit(limits: &[(&Limiter, Option<&[u8]>)], now_nanos: u64) -> Verdict {
    admit_classed(limits, &[], now_nanos)
}

/// [`admit`] with each limit's reading of the request's class (only
/// `adaptive_concurrency` limits use it; a missing entry is `default`).
pub fn admit_classed(
    limits: &[(&Limiter, Option<&[u8]>)],
    priorities: &[Priority],
    now_nanos: u64,
) -> Verdict {
    let class = |i: usize| priorities.get(i).copied().unwrap_or_default();
    if let [(limiter, key)] = limits {
        return admit_one(limiter, *key, class(0), now_nanos);
    }
    let keys: SmallVec<[Option<u64>; 4]> = limits.iter().map(|(l, k)| l.resolve(*k)).collect();
    let mut decisions: SmallVec<[Decision; 4]> =
        SmallVec::from_elem(Decision::Admitted, limits.len());

    if limits.len() > 1 {
        let mut refusal = None;
        for (i, ((limiter, _), key)) in limits.iter().zip(&keys).enumerate() {
            let status = match key {
                Some(k) => limiter.peek(*k, class(i), now_nanos),
                None => KeyStatus::missing_key(),
            };
            if status.admitted {
                continue;
            }
            if limiter.spec().shadow {
                decisions[i] = Decision::ShadowRejected;
            } else if refusal.is_none() {
                refusal = Some((i, status));
            } else {
                decisions[i] = Decision::Rejected;
            }
        }
        if let Some((i, status)) = refusal {
            return Verdict::rejected(limits[i].0, i, &status, decisions, keys[i].is_none());
        }
    }

    let mut committed: SmallVec<[usize; 4]> = SmallVec::new();
    let mut guards = SmallVec::new();
    let mut tightest: Option<(usize, KeyStatus)> = None;
    for (i, ((limiter, _), key)) in limits.iter().zip(&keys).enumerate() {
        if decisions[i] == Decision::ShadowRejected {
            continue;
        }
        let (status, guard) = match key {
            Some(k) => limiter.commit(*k, class(i), now_nanos),
            None => (KeyStatus::missing_key(), None),
        };
        if status.admitted {
            committed.push(i);
            guards.extend(guard);
            if !limiter.spec().shadow
                && tightest.is_none_or(|(_, t)| status.remaining < t.remaining)
            {
                tightest = Some((i, status));
            }
        } else if limiter.spec().shadow {
            decisions[i] = Decision::ShadowRejected;
        } else {
            roll_back(limits, &keys, &committed, now_nanos);
            drop(guards);
            return Verdict::rejected(limiter, i, &status, decisions, key.is_none());
        }
    }
    Verdict {
        outcome: Outcome::Admitted,
        decisions,
        guards,
        ratelimit: tightest.map(|(i, status)| limits[i].0.info(&status)),
    }
}

/// Undoes the local commits made for a request that a later limit refused.
fn roll_back(
    limits: &[(&Limiter, Option<&[u8]>)],
    keys: &[Option<u64>],
    committed: &[usize],
    now_nanos: u64,
) {
    for &j in committed {
        if let Some(k) = keys[j] {
            limits[j].0.rollback(k, now_nanos);
        }
    }
}

/// [`admit`] for the common route with one limit: nothing to read first,
/// nothing to undo.
fn admit_one(limiter: &Limiter, key: Option<&[u8]>, priority: Priority, now_nanos: u64) -> Verdict {
    let key = limiter.resolve(key);
    let (status, guard) = match key {
        Some(k) => limiter.commit(k, priority, now_nanos),
        None => (KeyStatus::missing_key(), None),
    };
    let decisions = SmallVec::from_buf_and_len([Decision::Admitted; 4], 1);
    if status.admitted {
        return Verdict {
            outcome: Outcome::Admitted,
            decisions,
            guards: guard.into_iter().collect(),
            ratelimit: (!limiter.spec().shadow).then(|| limiter.info(&status)),
        };
    }
    if limiter.spec().shadow {
        return Verdict {
            outcome: Outcome::Admitted,
            decisions: SmallVec::from_buf_and_len([Decision::ShadowRejected; 4], 1),
            guards: SmallVec::new(),
            ratelimit: None,
        };
    }
    Verdict::rejected(limiter, 0, &status, decisions, key.is_none())
}

#[cfg(test)]
mod tests;
