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
use smallvec::SmallVec;

use crate::config::Balance;

/// What the balancer knows of a backend's load at the moment of a pick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Configured weight, scaled down while the backend is in slow start.
    pub weight: f64,
    pub inflight: u64,
    /// Peak-EWMA response time, in nanoseconds (0 when never measured).
    pub latency: f64,
}

/// The load-aware score of a backend: expected wait (latency × queue) per
/// unit of weight; lower is better. The constant keeps an unmeasured backend
/// from looking free, so it shares traffic by in-flight count until measured.
pub fn load_aware_cost(l: &Load) -> f64 {
    (l.latency + 1_000_000.0) * (l.inflight as f64 + 1.0) / l.weight.max(1e-9)
}

pub enum Selector {
    /// nginx's smooth weighted round robin: per pick, every eligible backend's
    /// current weight grows by its weight, the largest wins and pays back the
    /// sum. 5,1,1 yields a a b a c a a. The state is a few integers behind a
    /// lock held for a handful of additions.
    SmoothRoundRobin { current: Mutex<Vec<i64>> },
    /// Weighted random.
    Random,
    /// Ketama ring (the libketama layout, Pingora's implementation): removing
    /// a backend only moves the keys that were on it.
    /// A request without the key's value (an empty key) has nothing to be
    /// consistent about: it is balanced by smooth round robin on `keyless`,
    /// rather than all such requests landing on the ring's one point for "".
    ConsistentHash {
        ring: Continuum,
        /// A ring point's backend index, found in O(1): the walk past
        /// ineligible backends visits up to 160 points per backend, and a
        /// scan of the pool per point made it quadratic.
        index: ahash::AHashMap<SocketAddr, usize>,
        /// Points on the ring (160 per unit of weight): the walk's bound.
        points: usize,
        keyless: Mutex<Vec<i64>>,
    },
    /// Fewest in-flight requests per unit of weight; ties broken at random
    /// so that equal backends share evenly.
    LeastConn,
    /// Power of two choices on [`load_aware_cost`] (Finagle, linkerd): two
    /// random eligible backends, the cheaper wins. Comparing two instead of
    /// all avoids the herd that always-pick-the-best causes when every
    /// worker sees the same stale "best", and costs O(1).
    LoadAware,
}

impl Selector {
    pub fn new(balance: Balance, backends: &[(SocketAddr, u32)]) -> Selector {
        match balance {
            Balance::RoundRobin => Selector::SmoothRoundRobin {
                current: Mutex::new(vec![0; backends.len()]),
            },
            Balance::Random => Selector::Random,
            Balance::ConsistentHash => {
                let buckets: Vec<Bucket> =
                    backends.iter().map(|(a, w)| Bucket::new(*a, *w)).collect();
                let mut index = ahash::AHashMap::with_capacity(backends.len());
                for (i, (addr, _)) in backends.iter().enumerate() {
                    // A repeated address answers for its first entry.
                    index.entry(*addr).or_insert(i);
                }
                Selector::ConsistentHash {
                    ring: Continuum::new(&buckets),
                    index,
                    points: backends.iter().map(|(_, w)| *w as usize * 160).sum(),
                    keyless: Mutex::new(vec![0; backends.len()]),
                }
            }
            Balance::LeastConn => Selector::LeastConn,
            Balance::LoadAware => Selector::LoadAware,
        }
    }

    /// Picks the index of an eligible backend among `n`, or `None` if none is
    /// eligible. `load(i)` is read only for eligible backends.
    pub fn select(
        &self,
        n: usize,
        key: &[u8],
        eligible: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> Load,
        rng: &mut impl Rng,
    ) -> Option<usize> {
        match self {
            Selector::SmoothRoundRobin { current } => {
                smooth_round_robin(current, n, eligible, load)
            }
            Selector::Random => {
                let weights: SmallVec<[(usize, f64); 16]> = (0..n)
                    .filter(|i| eligible(*i))
                    .map(|i| (i, load(i).weight))
                    .collect();
                let total: f64 = weights.iter().map(|w| w.1).sum();
                if weights.is_empty() || total <= 0.0 {
                    return None;
                }
                let mut point = rng.gen_range(0.0..total);
                for (i, w) in &weights {
                    if point < *w {
                        return Some(*i);
                    }
                    point -= w;
                }
                weights.last().map(|w| w.0)
            }
            Selector::ConsistentHash { keyless, .. } if key.is_empty() => {
                smooth_round_robin(keyless, n, eligible, load)
            }
            Selector::ConsistentHash {
                ring,
                index,
                points,
                ..
            } => {
                // Walk the ring from the key's point to the first eligible
                // backend; bounded so a ring of ineligible points ends.
                let mut idx = ring.node_idx(key);
                for _ in 0..=*points {
                    let addr = ring.get_addr(&mut idx)?;
                    if let Some(&i) = index.get(addr) {
                        if eligible(i) {
                            return Some(i);
                        }
                    }
                }
                None
            }
            Selector::LeastConn => {
                let mut best: SmallVec<[usize; 16]> = SmallVec::new();
                let mut best_score = f64::INFINITY;
                for i in (0..n).filter(|i| eligible(*i)) {
                    let l = load(i);
                    let score = l.inflight as f64 / l.weight.max(1e-9);
                    if score < best_score - 1e-12 {
                        best_score = score;
                        best.clear();
                        best.push(i);
                    } else if (score - best_score).abs() <= 1e-12 {
                        best.push(i);
                    }
                }
                match best.len() {
                    0 => None,
                    1 => Some(best[0]),
                    k => Some(best[rng.gen_range(0..k)]),
                }
            }
            Selector::LoadAware => {
                let candidates: SmallVec<[usize; 16]> = (0..n).filter(|i| eligible(*i)).collect();
                match candidates.len() {
                    0 => None,
                    1 => Some(candidates[0]),
                    k => {
                        let a = rng.gen_range(0..k);
                        let mut b = rng.gen_range(0..k - 1);
                        if b >= a {
                            b += 1;
                        }
                        let (a, b) = (candidates[a], candidates[b]);
                        let (ca, cb) = (load_aware_cost(&load(a)), load_aware_cost(&load(b)));
                        Some(if cb < ca { b } else { a })
                    }
                }
            }
        }
    }
}

/// One pick of nginx's smooth weighted round robin over `current`.
fn smooth_round_robin(
    current: &Mutex<Vec<i64>>,
    n: usize,
    eligible: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> Load,
) -> Option<usize> {
    // A poisoned lock only means another thread panicked mid-pick; the
    // integers are still usable.
    let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    for i in 0..n.min(current.len()) {
        if !eligible(i) {
            continue;
        }
        // Hundredths, so a slow-start ramp moves weights smoothly.
        let w = (load(i).weight * 100.0).round().max(1.0) as i64;
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn flat(weights: &[u32]) -> impl Fn(usize) -> Load + '_ {
        move |i| Load {
            weight: weights[i] as f64,
            inflight: 0,
            latency: 0.0,
        }
    }

    fn addrs(weights: &[u32]) -> Vec<(SocketAddr, u32)> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| (SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)), *w))
            .collect()
    }

    #[test]
    fn smooth_round_robin_interleaves_like_nginx() {
        let w = [5, 1, 1];
        let s = Selector::new(Balance::RoundRobin, &addrs(&w));
        let mut rng = SmallRng::seed_from_u64(1);
        let picks: String = (0..7)
            .map(|_| (b'a' + s.select(3, b"", |_| true, flat(&w), &mut rng).unwrap() as u8) as char)
            .collect();
        assert_eq!(picks, "aabacaa");
    }

    #[test]
    fn round_robin_skips_ineligible_and_keeps_ratios() {
        let w = [1, 2, 3];
        let s = Selector::new(Balance::RoundRobin, &addrs(&w));
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = [0; 3];
        for _ in 0..500 {
            counts[s.select(3, b"", |i| i != 0, flat(&w), &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts, [0, 200, 300]);
        assert_eq!(s.select(3, b"", |_| false, flat(&w), &mut rng), None);
    }

    #[test]
    fn random_honours_weights() {
        let w = [1, 3];
        let s = Selector::new(Balance::Random, &addrs(&w));
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            counts[s.select(2, b"", |_| true, flat(&w), &mut rng).unwrap()] += 1;
        }
        let share = counts[1] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "share {share}");
        assert_eq!(s.select(2, b"", |i| i == 0, flat(&w), &mut rng), Some(0));
    }

    #[test]
    fn consistent_hash_walks_past_every_point_of_heavy_ineligible_backends() {
        // Two backends of weight 50 hold 16,000 of the ring's 16,160 points.
        let w = [50, 50, 1];
        let s = Selector::new(Balance::ConsistentHash, &addrs(&w));
        let mut rng = SmallRng::seed_from_u64(0);
        for i in 0..2000 {
            let key = format!("user-{i}");
            let pick = s.select(3, key.as_bytes(), |i| i == 2, flat(&w), &mut rng);
            assert_eq!(pick, Some(2), "key {key}");
        }
    }

    #[test]
    fn consistent_hash_moves_only_keys_of_a_removed_backend() {
        let w = [1, 1, 1, 1];
        let all = addrs(&w);
        let s = Selector::new(Balance::ConsistentHash, &all);
        let mut rng = SmallRng::seed_from_u64(0);
        let keys: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| {
                s.select(4, k.as_bytes(), |_| true, flat(&w), &mut rng)
                    .unwrap()
            })
            .collect();
        // Backend 2 ejected: its keys move, every other key stays.
        for (k, b) in keys.iter().zip(&before) {
            let after = s
                .select(4, k.as_bytes(), |i| i != 2, flat(&w), &mut rng)
                .unwrap();
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
                let i = s2
                    .select(3, k.as_bytes(), |_| true, flat(&w), &mut rng)
                    .unwrap();
                without[i].0 != all[**b].0
            })
            .count();
        let on_removed = before.iter().filter(|b| **b == 2).count();
        assert_eq!(moved, on_removed);
    }

    #[test]
    fn consistent_hash_without_a_key_is_balanced_like_round_robin() {
        let w = [1, 1, 2];
        let s = Selector::new(Balance::ConsistentHash, &addrs(&w));
        let mut rng = SmallRng::seed_from_u64(0);
        let mut counts = [0; 3];
        for _ in 0..400 {
            counts[s.select(3, b"", |_| true, flat(&w), &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 200]);
        // Still skipping the ineligible, still consistent with a key.
        assert_ne!(s.select(3, b"", |i| i != 2, flat(&w), &mut rng), Some(2));
        let keyed = s.select(3, b"user-1", |_| true, flat(&w), &mut rng);
        for _ in 0..10 {
            assert_eq!(s.select(3, b"user-1", |_| true, flat(&w), &mut rng), keyed);
        }
    }

    #[test]
    fn smooth_round_robin_follows_ramping_weights() {
        let s = Selector::new(Balance::RoundRobin, &addrs(&[1, 1]));
        let mut rng = SmallRng::seed_from_u64(1);
        // Backend 1 at a tenth of its weight (early in slow start).
        let ramp = |i: usize| Load {
            weight: if i == 1 { 0.1 } else { 1.0 },
            inflight: 0,
            latency: 0.0,
        };
        let mut counts = [0; 2];
        for _ in 0..1100 {
            counts[s.select(2, b"", |_| true, ramp, &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts, [1000, 100]);
    }

    #[test]
    fn least_conn_picks_the_least_loaded_per_weight_and_breaks_ties_randomly() {
        let s = Selector::new(Balance::LeastConn, &addrs(&[1, 1, 2]));
        let mut rng = SmallRng::seed_from_u64(3);
        let inflight = [3u64, 1, 3];
        let weights = [1.0, 1.0, 2.0];
        let load = |i: usize| Load {
            weight: weights[i],
            inflight: inflight[i],
            latency: 0.0,
        };
        // 3/1, 1/1, 3/2: backend 1 is least loaded.
        assert_eq!(s.select(3, b"", |_| true, load, &mut rng), Some(1));
        // Without it, 3/2 beats 3/1.
        assert_eq!(s.select(3, b"", |i| i != 1, load, &mut rng), Some(2));
        // Equal loads: every backend gets picked.
        let even = |_| Load {
            weight: 1.0,
            inflight: 2,
            latency: 0.0,
        };
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[s.select(3, b"", |_| true, even, &mut rng).unwrap()] += 1;
        }
        assert!(seen.iter().all(|c| *c > 60), "{seen:?}");
    }

    #[test]
    fn load_aware_sends_little_to_a_ten_times_slower_backend() {
        let s = Selector::new(Balance::LoadAware, &addrs(&[1, 1, 1]));
        let mut rng = SmallRng::seed_from_u64(11);
        let latency = [5e6, 5e6, 50e6];
        let load = |i: usize| Load {
            weight: 1.0,
            inflight: 1,
            latency: latency[i],
        };
        let mut counts = [0u32; 3];
        for _ in 0..3000 {
            counts[s.select(3, b"", |_| true, load, &mut rng).unwrap()] += 1;
        }
        // The slow one wins only against itself, which P2C never draws.
        assert_eq!(counts[2], 0, "{counts:?}");
        assert!(counts[0] > 1200 && counts[1] > 1200, "{counts:?}");
        // With one eligible backend, it is the answer whatever its cost.
        assert_eq!(s.select(3, b"", |i| i == 2, load, &mut rng), Some(2));
    }
}
