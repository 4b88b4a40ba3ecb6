//! The admission engine: one request against all its route's limits.
//!
//! A route lists limits; a request is admitted only if *all* of them admit
//! it. [`admit`] takes each limit's [`Policy`], its state (anything that
//! implements [`Limit`]: local algorithms, adaptive limits, limits in a
//! shared store) and the request's key, at one instant, and returns a
//! [`Verdict`]. It is pure policy: no sockets, no metrics, no Pingora types,
//! so it is tested with scripted limits (see `engine_tests.rs`).
//!
//! # Check all, then commit, with rollback
//! A request refused by its second limit must not have spent a token of its
//! first, or a client over one limit would drain its others for nothing. So
//! the engine, in order:
//!
//! 1. *reads* every limit that can be read (no writes, no new per-key state);
//!    a refusal there costs nothing, not even a round trip;
//! 2. *asks* every limit that cannot be read without counting (a shared
//!    store, whose script counts when it admits), all at once: one round trip
//!    in all, whatever their number; if one refuses, the others' admissions
//!    are undone;
//! 3. *commits* the rest in order. Each commit re-validates (the token
//!    bucket's CAS recomputes from the current TAT; the sliding window and
//!    the concurrency limit count first, then re-read the count with theirs
//!    included), because another request may have taken the last unit
//!    between the read and the commit. If a commit fails, every commit and
//!    ask already made for this request is undone (token given back, count
//!    taken back, slot released, give-back queued to the store) and the
//!    request is refused.
//!
//! The result never admits more than every limit allows; the only
//! imprecision is the reverse: a request may be refused because a concurrent
//! request held a unit it later gave back, which needs two requests of the
//! same keys racing in the same few nanoseconds at the edge of a limit (or,
//! for shared limits, within one round trip). With one limit there is
//! nothing to undo, and the read is skipped.
//!
//! # What is counted
//! [`Verdict::decisions`] says, per limit, what the request cost it, and is
//! what the decision counters count: `Admitted` only for a commit that stuck,
//! `Rejected` only for the one limit that refused the request, and nothing
//! (`None`) for a limit that was only read, never reached, or rolled back.
//! So a request refused by limit A is not also "admitted" by limit B.
//!
//! # Shadow limits
//! A `shadow` limit is evaluated like any other, but a refusal is reported
//! as [`Decision::ShadowRejected`] and the request goes on. The refusal
//! counts nothing in the limit, as an enforced refusal would not, so the
//! shadow limit's log predicts exactly what enforcing it would do. Shadow
//! limits are not advertised in the response headers: clients must not pace
//! to a rule that is not enforced.

use std::borrow::Cow;

use futures::future::join_all;
use smallvec::SmallVec;

use super::headers::{render_policy, render_ratelimit, RateLimitInfo};
use super::limit::{Answer, Key, KeyStatus, Limit, Permit, Priority};
use super::policy::Policy;

/// One limit of the request, as the engine sees it.
pub struct Entry<'a, L> {
    pub policy: &'a Policy,
    pub limit: &'a L,
    /// The request's value of the limit's key, `None` when it lacks one.
    pub value: Option<&'a [u8]>,
    pub class: Priority,
}

/// What one limit counted for one request, for metrics and logs.
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
pub struct Verdict<P> {
    pub outcome: Outcome,
    /// One per limit, in the order given: what it counted (see the module doc).
    pub decisions: SmallVec<[Option<Decision>; 4]>,
    /// What the request holds until it ends.
    pub permits: SmallVec<[P; 2]>,
    /// The enforced limit closest to refusing (smallest `r`), or the one that
    /// refused; `None` when no enforced limit applies.
    pub ratelimit: Option<RateLimitInfo>,
}

impl<P: Permit> Verdict<P> {
    pub fn is_admitted(&self) -> bool {
        self.outcome == Outcome::Admitted
    }

    /// The `RateLimit` field value.
    pub fn ratelimit_header(&self) -> Option<String> {
        self.ratelimit.as_ref().map(render_ratelimit)
    }

    /// The `RateLimit-Policy` field value: rendered once per limit, or per
    /// response for a limit whose quota moves.
    pub fn policy_header(&self) -> Option<Cow<'static, str>> {
        self.ratelimit.as_ref().map(|info| match info.policy {
            "" => Cow::Owned(render_policy(info)),
            fixed => Cow::Borrowed(fixed),
        })
    }

    /// One attempt of the admitted request ended: adaptive limits learn its
    /// latency and whether it failed.
    pub fn record_attempt(&self, rtt_ns: u64, ok: bool, now: u64) {
        for p in &self.permits {
            p.record_attempt(rtt_ns, ok, now);
        }
    }
}

/// A commit (or an ask) that stuck, and what it owes if a later one fails.
struct Made<U> {
    index: usize,
    hash: u64,
    undo: Option<U>,
}

/// The state of one request's admission, from read to verdict.
struct Admission<'e, 'a, L: Limit> {
    limits: &'e [Entry<'a, L>],
    hashes: SmallVec<[Option<u64>; 4]>,
    decisions: SmallVec<[Option<Decision>; 4]>,
    made: SmallVec<[Made<L::Undo>; 4]>,
    permits: SmallVec<[L::Permit; 2]>,
    tightest: Option<(usize, KeyStatus)>,
    now: u64,
}

/// Decides one request against all its limits at one instant. See the
/// module doc. Only a limit that [`asks`](Limit::asks) makes this wait.
pub async fn admit<L: Limit>(limits: &[Entry<'_, L>], now: u64) -> Verdict<L::Permit> {
    if let [one] = limits {
        return admit_one(one, now).await;
    }
    let mut a = Admission {
        limits,
        hashes: limits.iter().map(|e| e.policy.resolve(e.value)).collect(),
        decisions: SmallVec::from_elem(None, limits.len()),
        made: SmallVec::new(),
        permits: SmallVec::new(),
        tightest: None,
        now,
    };

    // 1. Read.
    let mut refusal = None;
    let mut asking = false;
    for (i, e) in limits.iter().enumerate() {
        let status = match a.key(i) {
            None => KeyStatus::missing_key(),
            Some(_) if e.limit.asks() => {
                asking = true;
                continue;
            }
            Some(key) => e.limit.check(key, now),
        };
        if !status.admitted {
            a.refused(i, status, &mut refusal);
        }
    }
    if let Some((i, status)) = refusal {
        return a.reject(i, &status);
    }

    // 2. Ask, all at once.
    if asking {
        let asks = (0..limits.len()).filter(|&i| limits[i].limit.asks());
        let keyed: SmallVec<[(usize, Key); 4]> =
            asks.filter_map(|i| a.key(i).map(|k| (i, k))).collect();
        let answers = join_all(keyed.iter().map(|&(i, k)| limits[i].limit.ask(k, now))).await;
        for (&(i, key), answer) in keyed.iter().zip(answers) {
            a.answered(i, key.hash, answer, &mut refusal);
        }
        if let Some((i, status)) = refusal {
            return a.reject(i, &status);
        }
    }

    // 3. Commit.
    for (i, e) in limits.iter().enumerate() {
        let Some(key) = a.key(i) else { continue };
        if e.limit.asks() || a.decisions[i].is_some() {
            continue;
        }
        let answer = e.limit.commit(key, now);
        a.answered(i, key.hash, answer, &mut refusal);
        if let Some((i, status)) = refusal {
            return a.reject(i, &status);
        }
    }
    let ratelimit = a
        .tightest
        .map(|(i, s)| limits[i].policy.info(&s, limits[i].limit));
    Verdict {
        outcome: Outcome::Admitted,
        decisions: a.decisions,
        permits: a.permits,
        ratelimit,
    }
}

impl<'a, L: Limit> Admission<'_, 'a, L> {
    fn key(&self, i: usize) -> Option<Key<'a>> {
        let e = &self.limits[i];
        self.hashes[i].map(|hash| Key {
            hash,
            value: e.value,
            class: e.class,
        })
    }

    /// Notes a refusal: the first enforced one decides the answer; a shadow
    /// one is counted as such and passed over.
    fn refused(&mut self, i: usize, status: KeyStatus, refusal: &mut Option<(usize, KeyStatus)>) {
        if self.limits[i].policy.shadow() {
            self.decisions[i] = Some(Decision::ShadowRejected);
        } else if refusal.is_none() {
            *refusal = Some((i, status));
        }
    }

    fn answered(
        &mut self,
        i: usize,
        hash: u64,
        answer: Answer<L::Permit, L::Undo>,
        refusal: &mut Option<(usize, KeyStatus)>,
    ) {
        let status = answer.status;
        if !status.admitted {
            return self.refused(i, status, refusal);
        }
        self.decisions[i] = Some(Decision::Admitted);
        self.made.push(Made {
            index: i,
            hash,
            undo: answer.undo,
        });
        self.permits.extend(answer.permit);
        // Ties go to the limit listed first, whichever step decided it.
        let closer = |(t, ts): (usize, KeyStatus)| {
            status.remaining < ts.remaining || (status.remaining == ts.remaining && i < t)
        };
        if answer.known && !self.limits[i].policy.shadow() && self.tightest.is_none_or(closer) {
            self.tightest = Some((i, status));
        }
    }

    /// Undoes everything this request counted and refuses it for limit `i`.
    fn reject(mut self, i: usize, status: &KeyStatus) -> Verdict<L::Permit> {
        for made in self.made.drain(..) {
            let e = &self.limits[made.index];
            self.decisions[made.index] = None;
            if let Some(undo) = made.undo {
                let key = Key {
                    hash: made.hash,
                    value: e.value,
                    class: e.class,
                };
                e.limit.undo(key, undo, self.now);
            }
        }
        // Slots go back now, not when the verdict is dropped.
        self.permits.clear();
        self.decisions[i] = Some(Decision::Rejected);
        rejected(
            &self.limits[i],
            i,
            status,
            self.hashes[i].is_none(),
            self.decisions,
        )
    }
}

fn rejected<L: Limit>(
    e: &Entry<'_, L>,
    index: usize,
    status: &KeyStatus,
    key_missing: bool,
    decisions: SmallVec<[Option<Decision>; 4]>,
) -> Verdict<L::Permit> {
    Verdict {
        outcome: Outcome::Rejected {
            index,
            status: e.policy.spec().status,
            retry_after_secs: if key_missing {
                None
            } else {
                e.policy.retry_after_secs(status, e.limit)
            },
        },
        decisions,
        permits: SmallVec::new(),
        ratelimit: (!key_missing).then(|| e.policy.info(status, e.limit)),
    }
}

/// [`admit`] for the common route with one limit: nothing to read first,
/// nothing to undo.
async fn admit_one<L: Limit>(e: &Entry<'_, L>, now: u64) -> Verdict<L::Permit> {
    let hash = e.policy.resolve(e.value);
    let answer = match hash {
        None => Answer::bare(KeyStatus::missing_key()),
        Some(hash) => {
            let key = Key {
                hash,
                value: e.value,
                class: e.class,
            };
            if e.limit.asks() {
                e.limit.ask(key, now).await
            } else {
                e.limit.commit(key, now)
            }
        }
    };
    let one = |d| SmallVec::from_buf_and_len([Some(d); 4], 1);
    let shadow = e.policy.shadow();
    if answer.status.admitted {
        return Verdict {
            outcome: Outcome::Admitted,
            decisions: one(Decision::Admitted),
            permits: answer.permit.into_iter().collect(),
            ratelimit: (answer.known && !shadow).then(|| e.policy.info(&answer.status, e.limit)),
        };
    }
    if shadow {
        return Verdict {
            outcome: Outcome::Admitted,
            decisions: one(Decision::ShadowRejected),
            permits: SmallVec::new(),
            ratelimit: None,
        };
    }
    rejected(
        e,
        0,
        &answer.status,
        hash.is_none(),
        one(Decision::Rejected),
    )
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
