//! A `store: redis` limit as the admission engine sees it: asked in the
//! store, and decided by its `on_store_error` when the store cannot answer.
//!
//! Its script counts when it admits, so it cannot be read first: it
//! [`asks`](Limit::asks), and the engine asks every such limit of a request
//! at once after the local ones were read (one round trip in all). An
//! admission is given back by a call queued on the store's own task: a
//! refused request does not wait for it. With `on_store_error: local` the
//! local stand-in (the limit at `1/instances` of its size) decides in the
//! store's place, and is undone like any local limit.

use super::lease::Lease;
use super::limit::{RemoteLimit, RemoteOutcome, Undo};
use crate::limits::concurrency::ConcurrencyGuard;
use crate::limits::limit::{Answer, Key, KeyStatus, Limit, Permit};
use crate::limits::local::{Counted, Local};
use crate::limits::spec::OnStoreError;

/// `Retry-After` of a refusal by `on_store_error: deny`.
const DENY_RETRY_NS: u64 = 1_000_000_000;

pub struct SharedLimit {
    remote: RemoteLimit,
    stand_in: Local,
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
    pub fn new(remote: RemoteLimit, stand_in: Local) -> SharedLimit {
        SharedLimit { remote, stand_in }
    }

    pub fn remote(&self) -> &RemoteLimit {
        &self.remote
    }

    pub fn stand_in(&self) -> &Local {
        &self.stand_in
    }

    /// Forgets expired deny-cache entries and idle stand-in state.
    pub fn sweep(&self, now: u64) {
        self.stand_in.sweep(now);
        self.remote.sweep(now);
    }

    fn stand_in_commit(&self, key: Key<'_>, now: u64) -> Answer<SharedPermit, SharedUndo> {
        let a = self.stand_in.commit(key, now);
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
        self.stand_in.check(key, now)
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
            } => Answer {
                status,
                known: true,
                permit: guard.map(SharedPermit::Lease),
                undo: undo.map(SharedUndo::Store),
            },
            RemoteOutcome::Failed => {
                self.remote.count_fallback();
                match self.remote.on_error() {
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
                }
            }
        }
    }

    fn undo(&self, key: Key<'_>, undo: SharedUndo, now: u64) {
        match undo {
            SharedUndo::Store(u) => self.remote.undo(u),
            SharedUndo::StandIn(c) => self.stand_in.undo(key, c, now),
        }
    }

    fn retry_hint_secs(&self) -> Option<u64> {
        self.stand_in.retry_hint_secs()
    }
}
