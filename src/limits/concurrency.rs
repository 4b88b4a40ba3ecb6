//! The concurrency limit: at most `max` requests of one key in flight.
//!
//! # Why a guard
//! A request can end in many ways: a response, an upstream error, a client that
//! hangs up, a filter that answers early, a panic. Releasing the slot in each of
//! those paths is the bug farm; tying it to a value's lifetime is not. The proxy
//! keeps the [`ConcurrencyGuard`] (as the request's permit) in its request context and the slot is freed
//! when the context is dropped, whatever path the request took.
//!
//! # Counting
//! [`pingora_limits::inflight::Inflight`] counts in a fixed count-min sketch of
//! 4 rows × 8192 cells (256 KiB whatever the number of keys), so there is no
//! per-key state to evict and `max_keys` does not apply. It never under-counts;
//! a key is wrongly refused only if, in all four rows, other keys' in-flight
//! requests fill its cell to `max`: with `N` requests in flight in total, at
//! most `(N/(8192·max))^4` (Markov per row), negligible for gateway loads.
//!
//! The slot is taken first and checked after (`Inflight` has no read-only
//! probe), and given back at once if that went over `max`. The check re-reads
//! the count rather than trusting the one `incr` returns: that one is the
//! minimum of four separate `fetch_add`s, and two threads interleaving on the
//! rows can both be told `max` when `max + 1` are in. A read made after one's
//! own increment sees every slot held by a request that read before it, so of
//! the requests holding slots at any instant, the one that read last saw them
//! all: never more than `max` in flight; at worst two racers both back off.
//!
//! # What the headers say
//! `q` is `max` with the quota unit `concurrent-requests` of the draft, no `w`
//! (there is no time window), `r` the free slots after this request, and no `t`
//! (when a slot frees up depends on the upstream). A rejection carries
//! `Retry-After: 1`, the smallest whole value, as a hint only.

use pingora_limits::inflight::{Guard, Inflight};

use super::limit::{KeyStatus, Permit};

/// Memory of `Inflight`'s fixed sketch (4 rows × 8192 eight-byte cells).
pub const SKETCH_BYTES: usize = 4 * 8192 * std::mem::size_of::<isize>();

pub struct ConcurrencyLimit {
    inflight: Inflight,
    max: u64,
}

/// Holds one slot of this process's sketch until dropped.
#[derive(Debug)]
pub struct ConcurrencyGuard(#[allow(dead_code)] Guard);

impl Permit for ConcurrencyGuard {}

impl ConcurrencyLimit {
    pub fn new(max: u64) -> ConcurrencyLimit {
        ConcurrencyLimit {
            inflight: Inflight::new(),
            max,
        }
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// Takes a slot if one is free.
    pub fn try_acquire(&self, key: u64) -> (KeyStatus, Option<ConcurrencyGuard>) {
        let (slot, _) = self.inflight.incr(key, 1);
        // The count includes this request; a negative one means a corrupted
        // sketch cell, treated as full rather than as free.
        match u64::try_from(slot.get()) {
            Ok(count) if count <= self.max => (
                KeyStatus {
                    admitted: true,
                    remaining: self.max - count,
                    wait_ns: None,
                },
                Some(ConcurrencyGuard(slot)),
            ),
            _ => (
                KeyStatus {
                    admitted: false,
                    remaining: 0,
                    wait_ns: None,
                },
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn the_slot_is_released_when_the_guard_is_dropped() {
        let c = ConcurrencyLimit::new(2);
        let (a, ga) = c.try_acquire(1);
        let (b, gb) = c.try_acquire(1);
        assert!(a.admitted && b.admitted);
        assert_eq!((a.remaining, b.remaining), (1, 0));
        let (refused, none) = c.try_acquire(1);
        assert!(!refused.admitted && none.is_none());
        drop(ga);
        let (again, gc) = c.try_acquire(1);
        assert!(again.admitted);
        assert!(
            c.try_acquire(2).0.admitted,
            "other keys have their own slots"
        );
        drop((gb, gc));
        assert_eq!(c.try_acquire(1).0.remaining, 1);
    }

    #[test]
    fn max_holds_across_threads() {
        for max in [1, 3] {
            hammer(max, 4, 2_000);
        }
        // Two threads fighting over one slot: the case where trusting the count
        // `incr` returns let both in.
        hammer(1, 2, 200_000);
    }

    fn hammer(max: u64, threads: usize, rounds: usize) {
        let c = ConcurrencyLimit::new(max);
        let inside = AtomicU64::new(0);
        let peak = AtomicU64::new(0);
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..rounds {
                        let (status, guard) = c.try_acquire(7);
                        if status.admitted {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            std::hint::spin_loop();
                            inside.fetch_sub(1, Ordering::SeqCst);
                        }
                        drop(guard);
                    }
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= max);
        assert!(admitted.load(Ordering::SeqCst) > 0);
        assert_eq!(
            c.try_acquire(7).0.remaining,
            max - 1,
            "every slot came back"
        );
    }
}
