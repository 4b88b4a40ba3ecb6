//! Admission for a route that has limits in the shared store.
//!
//! The same promise as [`admit`](super::admit), across two kinds of state: a
//! request refused by one limit has spent nothing of the others. In order:
//!
//! 1. the local limits are *read*: a refusal there costs no round trip;
//! 2. every shared limit is *asked* at once (their scripts commit when they
//!    admit; one round trip in all, whatever their number);
//! 3. if one refuses, the shared admissions are given back and the request is
//!    refused;
//! 4. the local limits are *committed* as `admit` commits them, together with
//!    the local stand-in of any shared limit the store could not decide (its
//!    `on_store_error: local`); if one of those refuses after all (a race), the
//!    local commits are undone and the shared ones given back.
//!
//! Give-backs to the store are queued on its own task: a refused request does
//! not wait for them.

use futures::future::join_all;
use smallvec::SmallVec;

use super::redis_store::{RemoteOutcome, Undo};
use super::spec::OnStoreError;
use super::{Decision, KeyStatus, Limiter, Outcome, Priority, Verdict};

const DENY_RETRY_NS: u64 = 1_000_000_000;

/// Decides one request against local and shared limits. See the module doc.
pub async fn admit_shared(
    limits: &[(&Limiter, Option<&[u8]>)],
    priorities: &[Priority],
    now_nanos: u64,
) -> Verdict {
    let class = |i: usize| priorities.get(i).copied().unwrap_or_default();
    let n = limits.len();
    let keys: SmallVec<[Option<u64>; 4]> = limits.iter().map(|(l, k)| l.resolve(*k)).collect();
    let mut decisions: SmallVec<[Decision; 4]> = SmallVec::from_elem(Decision::Admitted, n);
    let mut refusal: Option<(usize, KeyStatus)> = None;

    // 1. Read the local limits.
    for (i, ((limiter, _), key)) in limits.iter().zip(&keys).enumerate() {
        if limiter.remote().is_some() {
            continue;
        }
        let status = match key {
            Some(k) => limiter.peek(*k, class(i), now_nanos),
            None => KeyStatus::missing_key(),
        };
        if !status.admitted {
            note(&mut refusal, &mut decisions, i, limiter, status);
        }
    }
    if let Some((i, status)) = refusal {
        return Verdict::rejected(limits[i].0, i, &status, decisions, keys[i].is_none());
    }

    // 2. Ask the store, every shared limit at once.
    let asks = limits
        .iter()
        .zip(&keys)
        .map(|((limiter, value), key)| async move {
            match (limiter.remote(), key) {
                (Some(remote), Some(hash)) => Some(remote.acquire(*value, *hash, now_nanos).await),
                _ => None,
            }
        });
    let answers = join_all(asks).await;

    // 3. Read the answers.
    let mut undos: SmallVec<[(usize, Undo); 4]> = SmallVec::new();
    let mut guards = SmallVec::new();
    let mut admitted: SmallVec<[Option<KeyStatus>; 4]> = SmallVec::from_elem(None, n);
    let mut stand_in: SmallVec<[bool; 4]> = SmallVec::from_elem(false, n);
    for (i, answer) in answers.into_iter().enumerate() {
        let limiter = limits[i].0;
        let Some(remote) = limiter.remote() else {
            continue;
        };
        let status = match answer {
            None => KeyStatus::missing_key(),
            Some(RemoteOutcome::Decided {
                status,
                guard,
                undo,
            }) => {
                guards.extend(guard);
                undos.extend(undo.map(|u| (i, u)));
                status
            }
            Some(RemoteOutcome::Failed) => {
                remote.count_fallback();
                match remote.on_error() {
                    OnStoreError::Local => {
                        stand_in[i] = true;
                        continue;
                    }
                    // Admitted with nothing to advertise: no count is known.
                    OnStoreError::Allow => continue,
                    OnStoreError::Deny => KeyStatus::rejected(DENY_RETRY_NS),
                }
            }
        };
        if status.admitted {
            admitted[i] = Some(status);
        } else {
            note(&mut refusal, &mut decisions, i, limiter, status);
        }
    }
    if let Some((i, status)) = refusal {
        give_back(limits, undos);
        drop(guards);
        return Verdict::rejected(limits[i].0, i, &status, decisions, keys[i].is_none());
    }

    // 4. Commit the local limits and the stand-ins.
    let mut committed: SmallVec<[usize; 4]> = SmallVec::new();
    for (i, ((limiter, _), key)) in limits.iter().zip(&keys).enumerate() {
        let local = limiter.remote().is_none() || stand_in[i];
        if !local || decisions[i] == Decision::ShadowRejected {
            continue;
        }
        let (status, guard) = match key {
            Some(k) => limiter.commit(*k, class(i), now_nanos),
            None => (KeyStatus::missing_key(), None),
        };
        if status.admitted {
            committed.push(i);
            guards.extend(guard);
            admitted[i] = Some(status);
        } else if limiter.spec().shadow {
            decisions[i] = Decision::ShadowRejected;
        } else {
            super::roll_back(limits, &keys, &committed, now_nanos);
            give_back(limits, undos);
            drop(guards);
            return Verdict::rejected(limiter, i, &status, decisions, key.is_none());
        }
    }

    let tightest = admitted
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .filter(|(i, _)| !limits[*i].0.spec().shadow)
        .min_by_key(|(_, s)| s.remaining);
    Verdict {
        outcome: Outcome::Admitted,
        decisions,
        guards,
        ratelimit: tightest.map(|(i, status)| limits[i].0.info(&status)),
    }
}

fn give_back(limits: &[(&Limiter, Option<&[u8]>)], undos: SmallVec<[(usize, Undo); 4]>) {
    for (i, undo) in undos {
        if let Some(remote) = limits[i].0.remote() {
            remote.undo(undo);
        }
    }
}

/// Records a refusal: the first enforced one decides the answer.
fn note(
    refusal: &mut Option<(usize, KeyStatus)>,
    decisions: &mut [Decision],
    i: usize,
    limiter: &Limiter,
    status: KeyStatus,
) {
    if limiter.spec().shadow {
        decisions[i] = Decision::ShadowRejected;
    } else if refusal.is_none() {
        *refusal = Some((i, status));
    } else {
        decisions[i] = Decision::Rejected;
    }
}
