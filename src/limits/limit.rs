//! The one interface every kind of limit implements, local, shared or
//! adaptive, and the small types it speaks in.
//!
//! # Why read, commit, undo
//! The [engine](super::engine) must be able to refuse a request without
//! having spent anything of its other limits, so a limit offers three steps
//! instead of one "try": [`Limit::check`] reads without counting,
//! [`Limit::commit`] counts (and re-decides: another request may have taken
//! the last unit since the read), and [`Limit::undo`] gives a commit back. A
//! limit kept in a shared store cannot read without a round trip, and the
//! round trip it makes counts when it admits; such a limit says so
//! ([`Limit::asks`]) and is asked with [`Limit::ask`], which may wait, after
//! every other limit has been read and before any is committed.
//!
//! # Why associated types, not trait objects
//! The engine is generic over the limit, and a route's limits are one enum
//! that implements this trait by delegating. So the local path is plain
//! calls: `ask` returns `impl Future`, and no boxed future or boxed permit is
//! made per request. What a request must hold until it ends (a concurrency
//! slot, a lease, an adaptive slot that learns the attempt's latency) is the
//! limit's [`Permit`]; what a commit owes if a later limit refuses is its
//! `Undo`.

use std::future::Future;

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
    pub fn rejected(wait_ns: u64) -> KeyStatus {
        KeyStatus {
            admitted: false,
            remaining: 0,
            wait_ns: Some(wait_ns),
        }
    }

    /// The refusal of a request that lacks the key's value: no wait helps.
    pub fn missing_key() -> KeyStatus {
        KeyStatus {
            admitted: false,
            remaining: 0,
            wait_ns: None,
        }
    }
}

/// The request classes of `priority:` (only adaptive limits tell them apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Priority {
    Critical,
    #[default]
    Default,
    Sheddable,
}

impl Priority {
    /// `critical`, `sheddable`; anything else (or nothing) is `default`.
    pub fn parse(value: Option<&[u8]>) -> Priority {
        match value.map(<[u8]>::trim_ascii) {
            Some(v) if v.eq_ignore_ascii_case(b"critical") => Priority::Critical,
            Some(v) if v.eq_ignore_ascii_case(b"sheddable") => Priority::Sheddable,
            _ => Priority::Default,
        }
    }
}

/// One request's key for one limit.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    /// The seeded 64-bit hash of the value: what local state is indexed by.
    pub hash: u64,
    /// The value itself (`None` when the request lacks it): a shared store
    /// names its keys by it, so that every gateway finds the same one.
    pub value: Option<&'a [u8]>,
    pub class: Priority,
}

/// What a commit (or an ask) decided.
#[derive(Debug)]
pub struct Answer<P, U> {
    pub status: KeyStatus,
    /// `false` when the limit admitted without knowing its count (a shared
    /// limit whose store did not answer, with `on_store_error: allow`):
    /// there is nothing true to advertise.
    pub known: bool,
    /// Held until the request ends.
    pub permit: Option<P>,
    /// Owed if a later limit refuses the request.
    pub undo: Option<U>,
}

impl<P, U> Answer<P, U> {
    /// An answer that holds nothing and owes nothing.
    pub fn bare(status: KeyStatus) -> Answer<P, U> {
        Answer {
            status,
            known: true,
            permit: None,
            undo: None,
        }
    }
}

/// Something a request holds until it ends (it gives its unit back when
/// dropped), told about each attempt on the way.
pub trait Permit: Send {
    /// One attempt of the request ended (an adaptive limit learns from it).
    fn record_attempt(&self, _rtt_ns: u64, _ok: bool, _now: u64) {}
}

/// A limit's state and the steps the engine drives it through. See the
/// module doc.
pub trait Limit: Sync {
    type Permit: Permit;
    type Undo: Send;

    /// Whether the limit decides by a call that may wait and counts when it
    /// admits (a shared store). Such a limit is never `check`ed or
    /// `commit`ted by the engine, only asked.
    fn asks(&self) -> bool {
        false
    }

    /// What a commit would answer now, counting nothing (and, for the
    /// keyed-map limits, creating no per-key state).
    fn check(&self, key: Key<'_>, now: u64) -> KeyStatus;

    /// Counts the request if the limit admits it, deciding afresh.
    fn commit(&self, key: Key<'_>, now: u64) -> Answer<Self::Permit, Self::Undo>;

    /// [`commit`](Self::commit) for a limit that [`asks`](Self::asks).
    fn ask(
        &self,
        key: Key<'_>,
        now: u64,
    ) -> impl Future<Output = Answer<Self::Permit, Self::Undo>> + Send {
        std::future::ready(self.commit(key, now))
    }

    /// Takes back what a commit counted.
    fn undo(&self, key: Key<'_>, undo: Self::Undo, now: u64);

    /// `Retry-After` for a refusal whose wait is unknown (a slot frees up
    /// when some request ends): a hint, or `None` when waiting cannot help.
    fn retry_hint_secs(&self) -> Option<u64> {
        None
    }

    /// The quota to advertise when it moves (an adaptive limit); `None` for
    /// the configured one.
    fn quota_now(&self) -> Option<u64> {
        None
    }
}
