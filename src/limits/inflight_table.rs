//! Exact in-flight counts per key, for the concurrency limit.
//!
//! # Why exact
//! The limit used to count in `pingora_limits::inflight::Inflight`, a fixed
//! count-min sketch of 4 rows × 8192 cells. A sketch never under-counts, so
//! it never lets more than `max` in, but it over-counts as keys share cells:
//! at 30,000 keys in flight with `max: 1`, a client with nothing in flight
//! was refused about 6% of the time, because all four of its cells were
//! already held by others. Refusing a client for other clients' traffic is
//! exactly what a per-key limit must not do, so the counts are exact here.
//!
//! # Memory follows the requests in flight
//! An entry exists only while its key has a request in flight: the release
//! that brings a count to 0 removes it, so the entries never outnumber the
//! requests in flight (which `max_connections` and `h2_max_streams` bound)
//! and an idle table holds none, whatever the number of keys seen. There is
//! nothing to evict and `max_keys` does not apply. A shard's map gives memory
//! back when it falls under 1/8 full (down to a floor of a few dozen slots,
//! so a lone key does not allocate and free per request); like growing, that
//! is amortized O(1) per admission.
//!
//! # Contention
//! [`SHARDS`] shards, each a mutex over a map, on cache lines of their own;
//! an admission or a release holds one shard's lock for one hash-map
//! operation. As in [`super::word_map`], the map is keyed by the seeded 64-bit
//! key hash itself with an identity hasher, and the shard is picked from bits
//! 32.., which hashbrown uses neither for its bucket index nor for its tag at
//! any size a shard can reach. Two keys colliding on all 64 bits would share
//! a count: with the hash seeded per process, a client cannot aim for that,
//! and by chance it is a 2⁻⁶⁴ event per pair of keys in flight.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::word_map::{buckets_for, IdentityHasher};

/// Enough that two cores rarely meet on one lock; 4 KiB of locks in all.
pub const SHARDS: usize = 64;
/// The shard is `(hash >> SHARD_SHIFT) % SHARDS` (see the module doc).
const SHARD_SHIFT: u32 = 32;
/// A shard's map of this many slots or fewer is never shrunk...
const SHRINK_ABOVE: usize = 64;
/// ...and a shrunk one keeps room for this many keys (64 slots).
const KEEP_KEYS: usize = 32;

type Counts = HashMap<u64, u64, BuildHasherDefault<IdentityHasher>>;

#[repr(align(64))]
#[derive(Default)]
struct Shard(Mutex<Counts>);

/// In-flight requests per key, exactly.
pub struct InflightTable {
    shards: Box<[Shard]>,
}

impl Default for InflightTable {
    fn default() -> Self {
        InflightTable {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl InflightTable {
    fn shard(&self, key: u64) -> MutexGuard<'_, Counts> {
        let i = (key >> SHARD_SHIFT) as usize % SHARDS;
        // A panic cannot leave a count half-written (each update is one
        // store), so a poisoned lock's data is still right.
        self.shards[i]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more request of `key` if fewer than `max` are in flight:
    /// `Some(count)` including this one, or `None` (nothing counted) if
    /// `max` are. Every successful call must be matched by one
    /// [`InflightTable::release`].
    pub fn try_acquire(&self, key: u64, max: u64) -> Option<u64> {
        if max == 0 {
            return None;
        }
        match self.shard(key).entry(key) {
            Entry::Occupied(mut e) => {
                let count = e.get_mut();
                if *count >= max {
                    return None;
                }
                *count += 1;
                Some(*count)
            }
            Entry::Vacant(e) => {
                e.insert(1);
                Some(1)
            }
        }
    }

    /// Gives back one request of `key`; the last one removes its entry.
    pub fn release(&self, key: u64) {
        let mut map = self.shard(key);
        let Entry::Occupied(mut e) = map.entry(key) else {
            // Unreachable with matched calls; nothing to give back.
            return;
        };
        if *e.get() > 1 {
            *e.get_mut() -= 1;
            return;
        }
        e.remove();
        if map.capacity() > SHRINK_ABOVE && map.len() * 8 < map.capacity() {
            let keep = (map.len() * 2).max(KEEP_KEYS);
            map.shrink_to(keep);
        }
    }

    /// Requests of `key` in flight now.
    pub fn count(&self, key: u64) -> u64 {
        self.shard(key).get(&key).copied().unwrap_or(0)
    }

    /// Keys with requests in flight now.
    pub fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Bytes held now: the locks and each map's slots (used or not), for
    /// reports.
    pub fn allocated_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(u64, u64)>() + 1;
        let maps: usize = self
            .shards
            .iter()
            .map(|s| {
                let map = s.0.lock().unwrap_or_else(PoisonError::into_inner);
                buckets_for(map.capacity()) * slot
            })
            .sum();
        std::mem::size_of::<Shard>() * SHARDS + maps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Distinct well-spread keys, as the seeded key hash gives them.
    fn key(i: u64) -> u64 {
        ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(i)
    }

    #[test]
    fn an_idle_table_gives_its_memory_back() {
        let t = InflightTable::default();
        for i in 0..20_000 {
            assert_eq!(t.try_acquire(key(i), 1), Some(1));
        }
        let busy = t.allocated_bytes();
        for i in 0..20_000 {
            t.release(key(i));
        }
        assert_eq!(t.keys(), 0, "every entry went with its last request");
        let idle = t.allocated_bytes();
        let floor = std::mem::size_of::<Shard>() * SHARDS + SHARDS * 2 * KEEP_KEYS * 17;
        assert!(idle <= floor, "idle: {idle} bytes, busy: {busy}");
        assert!(busy > 20_000 * 17, "busy: {busy} bytes");
    }

    #[test]
    fn max_zero_admits_nothing_and_keeps_nothing() {
        let t = InflightTable::default();
        assert_eq!(t.try_acquire(key(1), 0), None);
        assert_eq!(t.keys(), 0);
    }

    #[test]
    fn a_release_without_an_acquire_changes_nothing() {
        let t = InflightTable::default();
        t.release(key(1));
        assert_eq!(t.try_acquire(key(1), 1), Some(1));
        t.release(key(2));
        assert_eq!(t.count(key(1)), 1);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Acquire(u8),
        Release(u8),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                (0u8..16).prop_map(Op::Acquire),
                (0u8..16).prop_map(Op::Release),
            ],
            0..400,
        )
    }

    proptest! {
        /// Against a model that counts exactly: every decision is the
        /// model's (a key under `max` is admitted, one at `max` refused, other
        /// keys never matter), and the entries are exactly the keys with
        /// requests in flight.
        #[test]
        fn decisions_match_an_exact_count(max in 1u64..4, ops in ops()) {
            let t = InflightTable::default();
            let mut model = [0u64; 16];
            for op in ops {
                match op {
                    Op::Acquire(k) => {
                        let got = t.try_acquire(key(k.into()), max);
                        let want = (model[k as usize] < max).then(|| {
                            model[k as usize] += 1;
                            model[k as usize]
                        });
                        prop_assert_eq!(got, want);
                    }
                    // Only what was acquired is released, as guards do.
                    Op::Release(k) if model[k as usize] > 0 => {
                        t.release(key(k.into()));
                        model[k as usize] -= 1;
                    }
                    Op::Release(_) => {}
                }
                prop_assert_eq!(t.keys(), model.iter().filter(|c| **c > 0).count());
            }
            for (k, held) in model.iter().enumerate() {
                prop_assert_eq!(t.count(key(k as u64)), *held);
                for _ in 0..*held {
                    t.release(key(k as u64));
                }
            }
            prop_assert_eq!(t.keys(), 0);
        }
    }
}
