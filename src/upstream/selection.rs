//! Backend selection: smooth weighted round robin, weighted random, and
//! weighted Ketama consistent hashing, each choosing among the backends a
//! caller deems eligible (healthy, not already tried by this request).
//!
//! Why not Pingora's `Weighted` selectors: its round robin expands weights
//! into a table, so weights 5,1,1 send five requests in a row to one backend
//! (pingora issue #195), and it walks to the *next* table entry when a backend
//! is down, which hands a dead backend's whole share to its neighbour. Here the
//! algorithms skip ineligible backends *inside* the choice, the way nginx's
//! smooth weighted round robin (ngx_http_upstream_get_peer) does, so the
//! remaining backends keep their relative weights.
//!
//! Randomness comes from a caller-provided RNG so tests are reproducible.

use std::net::SocketAddr;
use std::sync::Mutex;

use pingora_ketama::{Bucket, Continuum};
use rand::Rng;

use crate::config::Balance;

pub enum Selector {
    /// nginx's smooth weighted round robin: per pick, every eligible backend's
    /// current weight grows by its weight, the largest wins and pays back the
    /// sum. 5,1,1 yields a a b a c a a. The state is a few integers behind a
    /// lock held for a handful of additions.
    SmoothRoundRobin {
        weights: Vec<i64>,
        current: Mutex<Vec<i64>>,
    },
    /// Weighted random.
    Random { weights: Vec<u64> },
    /// Ketama ring (the libketama layout, Pingora's implementation): removing
    /// a backend only moves the keys that were on it.
    ConsistentHash {
        ring: Continuum,
        addrs: Vec<SocketAddr>,
    },
}

impl Selector {
    pub fn new(balance: Balance, backends: &[(SocketAddr, u32)]) -> Selector {
        match balance {
            Balance::RoundRobin => Selector::SmoothRoundRobin {
                weights: backends.iter().map(|b| b.1 as i64).collect(),
                current: Mutex::new(vec![0; backends.len()]),
            },
            Balance::Random => Selector::Random {
                weights: backends.iter().map(|b| b.1 as u64).collect(),
            },
            Balance::ConsistentHash => {
                let buckets: Vec<Bucket> =
                    backends.iter().map(|(a, w)| Bucket::new(*a, *w)).collect();
                Selector::ConsistentHash {
                    ring: Continuum::new(&buckets),
                    addrs: backends.iter().map(|b| b.0).collect(),
                }
            }
        }
    }

    /// Picks the index of an eligible backend, or `None` if none is eligible.
    pub fn select(
        &self,
        key: &[u8],
        eligible: impl Fn(usize) -> bool,
        rng: &mut impl Rng,
    ) -> Option<usize> {
        match self {
            Selector::SmoothRoundRobin { weights, current } => {
                // A poisoned lock only means another thread panicked mid-pick;
                // the integers are still usable.
                let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (i, w) in weights.iter().enumerate() {
                    if !eligible(i) {
                        continue;
                    }
                    current[i] += w;
                    total += w;
                    if best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                let b = best?;
                current[b] -= total;
                Some(b)
            }
            Selector::Random { weights } => {
                let total: u64 = weights
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| eligible(*i))
                    .map(|(_, w)| w)
                    .sum();
                if total == 0 {
                    return None;
                }
                let mut point = rng.gen_range(0..total);
                for (i, w) in weights.iter().enumerate() {
                    if !eligible(i) {
                        continue;
                    }
                    if point < *w {
                        return Some(i);
                    }
                    point -= w;
                }
                None
            }
            Selector::ConsistentHash { ring, addrs } => {
                // Walk the ring from the key's point to the first eligible
                // backend; bounded so a ring of ineligible points ends.
                let mut idx = ring.node_idx(key);
                let limit = addrs.len() * 160 + 1;
                for _ in 0..limit {
                    let addr = ring.get_addr(&mut idx)?;
                    if let Some(i) = addrs.iter().position(|a| a == addr) {
                        if eligible(i) {
                            return Some(i);
                        }
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn addrs(weights: &[u32]) -> Vec<(SocketAddr, u32)> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| (SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)), *w))
            .collect()
    }

    #[test]
    fn smooth_round_robin_interleaves_like_nginx() {
        let s = Selector::new(Balance::RoundRobin, &addrs(&[5, 1, 1]));
        let mut rng = SmallRng::seed_from_u64(1);
        let picks: String = (0..7)
            .map(|_| (b'a' + s.select(b"", |_| true, &mut rng).unwrap() as u8) as char)
            .collect();
        assert_eq!(picks, "aabacaa");
    }

    #[test]
    fn round_robin_skips_ineligible_and_keeps_ratios() {
        let s = Selector::new(Balance::RoundRobin, &addrs(&[1, 2, 3]));
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = [0; 3];
        for _ in 0..500 {
            counts[s.select(b"", |i| i != 0, &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts, [0, 200, 300]);
        assert_eq!(s.select(b"", |_| false, &mut rng), None);
    }

    #[test]
    fn random_honours_weights() {
        let s = Selector::new(Balance::Random, &addrs(&[1, 3]));
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            counts[s.select(b"", |_| true, &mut rng).unwrap()] += 1;
        }
        let share = counts[1] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "share {share}");
        assert_eq!(s.select(b"", |i| i == 0, &mut rng), Some(0));
    }

    #[test]
    fn consistent_hash_moves_only_keys_of_a_removed_backend() {
        let all = addrs(&[1, 1, 1, 1]);
        let s = Selector::new(Balance::ConsistentHash, &all);
        let mut rng = SmallRng::seed_from_u64(0);
        let keys: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| s.select(k.as_bytes(), |_| true, &mut rng).unwrap())
            .collect();
        // Backend 2 ejected: its keys move, every other key stays.
        for (k, b) in keys.iter().zip(&before) {
            let after = s.select(k.as_bytes(), |i| i != 2, &mut rng).unwrap();
            if *b != 2 {
                assert_eq!(after, *b, "key {k} moved");
            } else {
                assert_ne!(after, 2);
            }
        }
        // And the ring rebuilt without it agrees with skipping it.
        let without: Vec<(SocketAddr, u32)> =
            all.iter().copied().filter(|a| a.0.port() != 9002).collect();
        let s2 = Selector::new(Balance::ConsistentHash, &without);
        let moved = keys
            .iter()
            .zip(&before)
            .filter(|(k, b)| {
                let i = s2.select(k.as_bytes(), |_| true, &mut rng).unwrap();
                without[i].0 != all[**b].0
            })
            .count();
        let on_removed = before.iter().filter(|b| **b == 2).count();
        assert_eq!(moved, on_removed);
    }
}
