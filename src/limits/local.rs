//! The limits counted in this process only, as one [`Limit`]: the token
//! bucket, the sliding window and the concurrency limit. The shared store
//! uses the same type for the local stand-in of a `store: redis` limit.

use super::concurrency::{ConcurrencyGuard, ConcurrencyLimit};
use super::limit::{Answer, Key, KeyStatus, Limit};
use super::sliding_window::SlidingWindow;
use super::spec::{Algorithm, LimitSpec};
use super::token_bucket::TokenBucket;
use super::word_map::WordMap;

pub enum Local {
    TokenBucket(TokenBucket),
    SlidingWindow(SlidingWindow),
    Concurrency(ConcurrencyLimit),
}

/// A local commit to take back: the token or the count (a concurrency slot
/// goes back with its permit instead).
#[derive(Debug)]
pub struct Counted;

impl Local {
    /// The local state of `algorithm`, sized for `spec.max_keys` keys; `None`
    /// for an algorithm that is not local (adaptive).
    pub fn new(algorithm: &Algorithm, spec: &LimitSpec) -> Option<Local> {
        Some(match *algorithm {
            Algorithm::TokenBucket {
                capacity,
                fill_rate,
            } => Local::TokenBucket(TokenBucket::new(capacity, fill_rate, spec.max_keys)),
            Algorithm::SlidingWindow { limit, window } => {
                Local::SlidingWindow(SlidingWindow::new(limit, window, spec.max_keys))
            }
            Algorithm::Concurrency { max } => Local::Concurrency(ConcurrencyLimit::new(max)),
            Algorithm::AdaptiveConcurrency { .. } => return None,
        })
    }

    /// Forgets keys whose state carries no information at `now`: full token
    /// buckets. The sliding window's sketch holds no per-key state, and the
    /// concurrency limit's entries go with their last request.
    pub fn sweep(&self, now: u64) {
        if let Local::TokenBucket(b) = self {
            b.words().sweep(now);
        }
    }

    /// Counts a request the shared store admitted, so that a stand-in keeps
    /// in step with what this gateway spent (concurrency: nothing, a slot
    /// would have to be held for the request's life).
    pub fn spend(&self, key: u64, now: u64) {
        match self {
            Local::TokenBucket(b) => b.spend(key, now),
            Local::SlidingWindow(w) => w.spend(key),
            Local::Concurrency(_) => {}
        }
    }

    /// Keys holding per-key state (the sliding window's sketch has none).
    pub fn live_keys(&self) -> usize {
        match self {
            Local::TokenBucket(b) => b.words().live_keys(),
            Local::SlidingWindow(_) => 0,
            Local::Concurrency(c) => c.live_keys(),
        }
    }

    /// Bytes of counter state: the token bucket's map (grows with live keys,
    /// bounded by `max_keys`), the sliding window's fixed sketches, or the
    /// concurrency limit's table (grows with the keys in flight).
    pub fn state_bytes(&self) -> usize {
        match self {
            Local::TokenBucket(b) => b.words().allocated_bytes(),
            Local::SlidingWindow(w) => w.sketch_bytes(),
            Local::Concurrency(c) => c.state_bytes(),
        }
    }
}

impl Limit for Local {
    type Permit = ConcurrencyGuard;
    type Undo = Counted;

    #[inline]
    fn check(&self, key: Key<'_>, now: u64) -> KeyStatus {
        match self {
            Local::TokenBucket(b) => b.peek(key.hash, now),
            Local::SlidingWindow(w) => w.peek(key.hash),
            Local::Concurrency(c) => c.peek(key.hash),
        }
    }

    #[inline]
    fn commit(&self, key: Key<'_>, now: u64) -> Answer<ConcurrencyGuard, Counted> {
        match self {
            Local::TokenBucket(b) => counted(b.try_acquire(key.hash, now)),
            Local::SlidingWindow(w) => counted(w.try_acquire(key.hash)),
            Local::Concurrency(c) => {
                let (status, permit) = c.try_acquire(key.hash);
                Answer {
                    permit,
                    ..Answer::bare(status)
                }
            }
        }
    }

    fn undo(&self, key: Key<'_>, _: Counted, now: u64) {
        match self {
            Local::TokenBucket(b) => b.release(key.hash, now),
            Local::SlidingWindow(w) => w.release(key.hash),
            Local::Concurrency(_) => {}
        }
    }

    fn retry_hint_secs(&self) -> Option<u64> {
        // The smallest whole value, as a hint: a slot frees up when some
        // request ends. A zero-rate limit has no wait that helps.
        matches!(self, Local::Concurrency(_)).then_some(1)
    }
}

fn counted(status: KeyStatus) -> Answer<ConcurrencyGuard, Counted> {
    Answer {
        undo: status.admitted.then_some(Counted),
        ..Answer::bare(status)
    }
}
