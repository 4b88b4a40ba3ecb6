//! A `store: redis` limit as the admission engine sees it: asked in the
//! store, and decided by its `on_store_error` when the store cannot answer.
//!
//! Its script counts when it admits, so it cannot be read first: it
//! [`asks`](Limit::asks), and the engine asks every such limit of a request
//! at once after the local ones were read (one round trip in all). An
//! admission is given back by a call queued on the store's own task: a
//! refused request does not wait for it. With `on_store_error: local` the
//! local stand-in decides in the store's place, and is undone like any local
//! limit.
//!
//! The stand-in is the limit at `1/N` of its size, `N` the gateways sharing
//! the store; [`StandIn`] keeps it sized as `N` changes.
//!
//! # The stand-in keeps in step
//! A token bucket's or a window's stand-in also counts each admission Redis
//! grants, past its own limit if need be (a token bucket by at most one
//! bucket of debt), so that it holds what this gateway has spent of its
//! share: a gateway that got more than its share of Redis's admissions owes
//! it, one that got less has it left, and over all gateways the two cancel.
//! A stand-in that counted only when the store failed would be full whenever
//! it is asked: an outage that starts under load would begin with every
//! gateway's full burst on top of what Redis already granted, and a failure
//! while the limit is exhausted (an error, or a timeout whose late reply
//! never comes, which cannot be [squared](super::limit)) would be admitted.
//! (A give-back to Redis, when a later limit of the request refuses, is not
//! given back to the stand-in: that errs towards refusing.) Concurrency
//! stand-ins are not kept in step (that would hold a local slot for each
//! shared lease): they are bounded by their `max/N` in flight either way.

use std::sync::Arc;

use super::lease::Lease;
use super::limit::{RemoteLimit, RemoteOutcome, Undo};
use super::stand_in::StandIn;
use crate::limits::concurrency::ConcurrencyGuard;
use crate::limits::limit::{Answer, Key, KeyStatus, Limit, Permit};
use crate::limits::local::{Counted, Local};
use crate::limits::spec::{LimitSpec, OnStoreError};

/// `Retry-After` of a refusal by `on_store_error: deny`.
const DENY_RETRY_NS: u64 = 1_000_000_000;

pub struct SharedLimit {
    remote: RemoteLimit,
    stand_in: StandIn,
}

/// A shared concurrency limit's slot: a lease in the store, or one of the
/// stand-in's.
#[derive(Debug)]
pub enum SharedPermit {
    Lease(#[allow(dead_code)] Lease),
    StandIn(#[allow(dead_code)] ConcurrencyGuard),
}

impl Permit for SharedPermit {}

/// What a shared admission owes if a later limit refuses.
pub enum SharedUndo {
    Store(Undo),
    StandIn(Counted),
}

impl SharedLimit {
    /// `stand_in` is `spec`'s limit at `1/instances` of its size.
    pub fn new(remote: RemoteLimit, stand_in: Local, spec: &LimitSpec) -> SharedLimit {
        let share = remote.store().spec().instances;
        SharedLimit {
            remote,
            stand_in: StandIn::new(stand_in, spec, share),
        }
    }

    pub fn remote(&self) -> &RemoteLimit {
        &self.remote
    }

    /// The stand-in as it is now.
    pub fn stand_in(&self) -> Arc<Local> {
        self.stand_in.load_full()
    }

    /// The stand-in, asked to be sized for the gateways sharing the store now.
    fn current(&self) -> arc_swap::Guard<Arc<Local>> {
        self.stand_in.for_share(self.remote.store().share())
    }

    /// Forgets expired deny-cache entries and idle stand-in state.
    pub fn sweep(&self, now: u64) {
        self.stand_in.now().sweep(now);
        self.remote.sweep(now);
    }

    fn stand_in_commit(&self, key: Key<'_>, now: u64) -> Answer<SharedPermit, SharedUndo> {
        let a = self.current().commit(key, now);
        Answer {
            status: a.status,
            known: a.known,
            permit: a.permit.map(SharedPermit::StandIn),
            undo: a.undo.map(SharedUndo::StandIn),
        }
    }
}

impl Limit for SharedLimit {
    type Permit = SharedPermit;
    type Undo = SharedUndo;

    fn asks(&self) -> bool {
        true
    }

    /// What the stand-in would say (the engine never reads a limit that asks).
    fn check(&self, key: Key<'_>, now: u64) -> KeyStatus {
        self.current().check(key, now)
    }

    /// The stand-in's commit: what `on_store_error: local` decides.
    fn commit(&self, key: Key<'_>, now: u64) -> Answer<SharedPermit, SharedUndo> {
        self.stand_in_commit(key, now)
    }

    async fn ask(&self, key: Key<'_>, now: u64) -> Answer<SharedPermit, SharedUndo> {
        match self.remote.acquire(key.value, key.hash, now).await {
            RemoteOutcome::Decided {
                status,
                guard,
                undo,
            } => {
                if status.admitted && self.remote.on_error() == OnStoreError::Local {
                    // Spent in Redis, so spent of this gateway's share.
                    self.current().spend(key.hash, now);
                }
                Answer {
                    status,
                    known: true,
                    permit: guard.map(SharedPermit::Lease),
                    undo: undo.map(SharedUndo::Store),
                }
            }
            RemoteOutcome::Failed(late) => {
                self.remote.count_fallback();
                let answer = match self.remote.on_error() {
                    OnStoreError::Local => self.stand_in_commit(key, now),
                    // Admitted with nothing to advertise: no count is known.
                    OnStoreError::Allow => Answer {
                        known: false,
                        ..Answer::bare(KeyStatus {
                            admitted: true,
                            remaining: 0,
                            wait_ns: None,
                        })
                    },
                    OnStoreError::Deny => Answer::bare(KeyStatus::rejected(DENY_RETRY_NS)),
                };
                if let Some(late) = late {
                    self.remote.reconcile(late, answer.status.admitted);
                }
                answer
            }
        }
    }

    fn undo(&self, key: Key<'_>, undo: SharedUndo, now: u64) {
        match undo {
            SharedUndo::Store(u) => self.remote.undo(u),
            SharedUndo::StandIn(c) => self.stand_in.now().undo(key, c, now),
        }
    }

    fn retry_hint_secs(&self) -> Option<u64> {
        self.stand_in.now().retry_hint_secs()
    }
}
