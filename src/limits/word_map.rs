//! Per-key state for limits that keep one word per key, and how it stays bounded.
//!
//! # The contract: a state word is an expiry time
//! Every word stored here is a time (nanoseconds on the limiter's clock) after
//! which the key is back in its fresh state: for the token bucket it is the
//! theoretical arrival time, and a bucket whose TAT has passed is full. So a word
//! `<= now` carries no information and can be dropped at any moment, and an
//! absent key reads as `0`, which is always `<= now`. That one rule gives both
//! eviction policies without any per-entry bookkeeping:
//!
//! - [`WordMap::sweep`] drops every expired word (an idle key's bucket
//!   refilled, so forgetting it changes no decision);
//! - when a shard is full, the words that expire soonest go first: they are the
//!   keys with the least debt, so evicting them forgives the least. A flood of
//!   new keys therefore pushes out the near-idle keys, never the heavy hitters.
//!
//! # Why a sharded map of plain atomics
//! The hot path takes a shard's read lock and CASes the key's `AtomicU64` in
//! place: no global lock, no `Arc` per key, no allocation once a key exists.
//! The write lock is taken only to insert a key or evict. The map is keyed by the
//! 64-bit key hash itself (the hash already comes from a seeded `ahash`), so it
//! uses an identity hasher; shards are picked from bits 32.. of the hash, which
//! hashbrown does not use for its bucket index or its 7-bit tag at any size this
//! map can reach. Two distinct keys colliding on 64 bits share a bucket: at 10⁵
//! live keys that is a ~10⁻⁹ event per key, accepted.
//!
//! # Memory
//! An entry is 16 bytes (`u64` key + `AtomicU64`) plus hashbrown's one control
//! byte, at a load factor between 7/16 and 7/8: 19–39 bytes per live key, well
//! under the 64-byte target (see the `entry_layout_fits_the_budget` test).
//! Each shard holds at most `ceil(max_keys / shards)` keys, so the whole map
//! holds fewer than `max_keys + shards` whatever the number of distinct keys seen.
//!
//! # The trait
//! [`WordMap`] is the whole surface the token bucket needs: load, an atomic
//! read-modify-write of one word, sweep. The bucket is written against it
//! only, so its tests can give it a tiny map and watch eviction. (Not to be
//! confused with the shared store: a `store: redis` limit keeps its state in
//! Redis and uses a word map only for its deny cache.)

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A map of per-key state words. Words follow the expiry contract of the
/// module doc: `0` (absent) and anything `<= now` mean "fresh".
pub trait WordMap: Send + Sync {
    /// The key's word, `0` when the map holds none.
    fn load(&self, key: u64) -> u64;
    /// Atomically updates the key's word, like [`AtomicU64::fetch_update`]:
    /// `f` gets the current word (`0` when absent) and returns the new one, or
    /// `None` to leave it; it is called again if another writer got in first.
    /// `Ok(previous)` if a word was stored, `Err(current)` if `f` declined. An
    /// absent key is inserted only when `f` returns a word for it.
    fn fetch_update<F>(&self, key: u64, now: u64, f: F) -> Result<u64, u64>
    where
        F: FnMut(u64) -> Option<u64>;
    /// Drops every word that expired at `now`.
    fn sweep(&self, now: u64);
    /// Keys holding state.
    fn live_keys(&self) -> usize;
}

/// Passes a key that is already a good hash straight through.
#[derive(Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `HashMap<u64, _>`; fold anything else in
        // rather than panic, so a misuse degrades to a slower hash, not a crash.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<u64, AtomicU64, BuildHasherDefault<IdentityHasher>>;

/// The in-process word map: sharded, bounded, lock-free per key once present.
pub struct ShardedWordMap {
    shards: Box<[RwLock<Shard>]>,
    shard_mask: u64,
    /// Most keys one shard may hold.
    shard_cap: usize,
}

/// The most shards a map uses; enough that two cores never queue on one lock,
/// few enough that a small `max_keys` still gives each shard a useful share.
const MAX_SHARDS: usize = 64;
/// A shard under this many keys is not split further.
const MIN_KEYS_PER_SHARD: usize = 256;

impl ShardedWordMap {
    /// A map holding state for at most about `max_keys` keys (fewer than
    /// `max_keys + shards`). `max_keys` of 0 is taken as 1.
    pub fn new(max_keys: usize) -> ShardedWordMap {
        let max_keys = max_keys.max(1);
        let shards = (max_keys / MIN_KEYS_PER_SHARD)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two()
            .min(MAX_SHARDS);
        ShardedWordMap {
            shards: (0..shards).map(|_| RwLock::new(Shard::default())).collect(),
            shard_mask: shards as u64 - 1,
            shard_cap: max_keys.div_ceil(shards),
        }
    }

    /// The hard bound on [`WordMap::live_keys`].
    pub fn capacity(&self) -> usize {
        self.shard_cap * self.shards.len()
    }

    /// Bytes the maps hold now (buckets allocated, used or not), for reports.
    pub fn allocated_bytes(&self) -> usize {
        let bucket = std::mem::size_of::<(u64, AtomicU64)>() + 1;
        self.shards
            .iter()
            .map(|s| buckets_for(read(s).capacity()) * bucket)
            .sum()
    }

    fn shard(&self, key: u64) -> &RwLock<Shard> {
        // Bits 32.. are independent of hashbrown's index (low bits) and tag (top 7).
        let index = ((key >> 32) & self.shard_mask) as usize;
        &self.shards[index]
    }

    /// Makes room for one more key in a full shard: expired words first, then the
    /// soonest-expiring eighth. Evicting a batch keeps the O(n) scan amortised.
    fn make_room(&self, map: &mut Shard, now: u64) {
        if map.len() < self.shard_cap {
            return;
        }
        map.retain(|_, word| word.load(Ordering::Relaxed) > now);
        if map.len() < self.shard_cap {
            return;
        }
        let evict = (self.shard_cap / 8).max(1);
        let mut words: Vec<u64> = map.values().map(|w| w.load(Ordering::Relaxed)).collect();
        let (_, &mut threshold, _) = words.select_nth_unstable(evict - 1);
        // Many keys may share the threshold word (keys first seen at the same
        // instant); remove only as many of those as the batch needs.
        let below = words.iter().filter(|w| **w < threshold).count();
        let mut at_threshold = evict - below;
        map.retain(|_, word| {
            let w = word.load(Ordering::Relaxed);
            if w < threshold {
                false
            } else if w == threshold && at_threshold > 0 {
                at_threshold -= 1;
                false
            } else {
                true
            }
        });
    }
}

impl WordMap for ShardedWordMap {
    fn load(&self, key: u64) -> u64 {
        read(self.shard(key))
            .get(&key)
            .map_or(0, |w| w.load(Ordering::Acquire))
    }

    fn fetch_update<F>(&self, key: u64, now: u64, mut f: F) -> Result<u64, u64>
    where
        F: FnMut(u64) -> Option<u64>,
    {
        let shard = self.shard(key);
        {
            let map = read(shard);
            if let Some(word) = map.get(&key) {
                return word.fetch_update(Ordering::AcqRel, Ordering::Acquire, &mut f);
            }
        }
        let Some(new) = f(0) else {
            return Err(0);
        };
        let mut map = write(shard);
        if let Some(word) = map.get(&key) {
            // Inserted by another thread between our two locks: decide again.
            return word.fetch_update(Ordering::AcqRel, Ordering::Acquire, f);
        }
        self.make_room(&mut map, now);
        map.insert(key, AtomicU64::new(new));
        Ok(0)
    }

    fn sweep(&self, now: u64) {
        for shard in self.shards.iter() {
            let mut map = write(shard);
            map.retain(|_, word| word.load(Ordering::Relaxed) > now);
            // Give memory back after a burst of keys has gone idle.
            if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                map.shrink_to_fit();
            }
        }
    }

    fn live_keys(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }
}

/// hashbrown's bucket count for a given usable capacity (load factor 7/8).
pub(super) fn buckets_for(capacity: usize) -> usize {
    match capacity {
        0 => 0,
        c if c < 8 => (c + 1).next_power_of_two(),
        c => (c * 8 / 7).next_power_of_two(),
    }
}

// A panic elsewhere while holding a shard lock leaves only atomics behind, which
// are always in a valid state, so a poisoned lock is safe to keep using.
fn read(lock: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(lock: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stores `new` unconditionally, as the tests below need.
    fn put(s: &ShardedWordMap, key: u64, new: u64, now: u64) {
        let _ = s.fetch_update(key, now, |_| Some(new));
    }

    #[test]
    fn absent_reads_zero_and_is_inserted_only_when_written() {
        let s = ShardedWordMap::new(100);
        assert_eq!(s.load(7), 0);
        assert_eq!(s.fetch_update(7, 0, |_| None), Err(0));
        assert_eq!(s.live_keys(), 0, "declining creates no state");
        assert_eq!(s.fetch_update(7, 0, |w| Some(w + 9)), Ok(0));
        assert_eq!(s.load(7), 9);
        assert_eq!(s.fetch_update(7, 0, |w| Some(w + 2)), Ok(9));
        assert_eq!(s.fetch_update(7, 0, |w| (w < 5).then_some(0)), Err(11));
        assert_eq!(s.load(7), 11);
        assert_eq!(s.live_keys(), 1);
    }

    #[test]
    fn concurrent_updates_are_not_lost() {
        let s = ShardedWordMap::new(100);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        let _ = s.fetch_update(3, 0, |w| Some(w + 1));
                    }
                });
            }
        });
        assert_eq!(s.load(3), 20_000);
    }

    #[test]
    fn sweep_drops_only_expired_words() {
        let s = ShardedWordMap::new(100);
        for k in 0..10u64 {
            put(&s, k << 32 | k, 100 + k, 0);
        }
        s.sweep(104);
        assert_eq!(s.live_keys(), 5);
        assert_eq!(s.load(9 << 32 | 9), 109);
        assert_eq!(s.load(2 << 32 | 2), 0);
    }

    #[test]
    fn full_shard_evicts_the_soonest_expiring_first() {
        let s = ShardedWordMap::new(16); // one shard of 16
        for k in 0..16u64 {
            put(&s, k, 1_000 + k, 0);
        }
        put(&s, 99, 5_000, 0);
        assert!(s.live_keys() <= 16);
        assert_eq!(s.load(0), 0, "least debt is evicted first");
        assert_eq!(s.load(15), 1_015, "most debt survives");
        assert_eq!(s.load(99), 5_000);
    }

    #[test]
    fn equal_words_are_evicted_one_batch_at_a_time() {
        let s = ShardedWordMap::new(64);
        for k in 0..64u64 {
            put(&s, k, 10, 0);
        }
        put(&s, 1000, 10, 0);
        assert_eq!(s.live_keys(), 64 - 8 + 1);
    }

    #[test]
    fn a_million_distinct_keys_stay_within_the_bound() {
        let s = ShardedWordMap::new(10_000);
        let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let mut peak = 0;
        for i in 0..1_000_000u64 {
            let k = hasher.hash_one(i);
            // Every key stays in debt far beyond the test, so nothing expires.
            put(&s, k, u64::MAX / 2 + i, i);
            if i % 10_000 == 0 {
                peak = peak.max(s.live_keys());
            }
        }
        peak = peak.max(s.live_keys());
        assert!(peak <= s.capacity(), "peak {peak} > {}", s.capacity());
        assert!(s.capacity() < 10_000 + MAX_SHARDS);
    }

    #[test]
    fn entry_layout_fits_the_budget() {
        let entry = std::mem::size_of::<(u64, AtomicU64)>() + 1;
        assert_eq!(entry, 17);
        // Worst case right after a table doubles: load factor 7/16.
        let worst = entry as f64 / (7.0 / 16.0);
        assert!(worst <= 64.0, "{worst} bytes per key");
        let s = ShardedWordMap::new(100_000);
        let hasher = ahash::RandomState::with_seeds(5, 6, 7, 8);
        for i in 0..100_000u64 {
            put(&s, hasher.hash_one(i), u64::MAX / 2, 0);
        }
        let per_key = s.allocated_bytes() as f64 / s.live_keys() as f64;
        assert!(per_key <= 64.0, "{per_key} bytes per live key");
    }
}
