//! The limiters' admit and rollback, driven by a sequence of operations
//! decoded from the bytes on a fake clock, each decision checked against a
//! model of what the limit allows.
//!
//! The token bucket's model is the GCRA rule stated over the admissions
//! themselves: with `T` ns per token and tolerance `τ`, a request at `now` is
//! admitted iff, for every earlier admission `a` of the key, the `k`
//! admissions since `a` (itself included) satisfy `k·T <= τ + (now - a)`.
//! That is the same as "never more than `capacity + t/T` in any interval of
//! length `t`" and "admit whenever that allows one more", so the check is exact
//! both ways. A rollback must leave the key as if the request never came;
//! `admit` over several limits must commit all or none of them; a
//! concurrency limit holds at most `max` slots per key; a sliding window (of
//! an hour, so the real clock it reads cannot roll it over during one input)
//! counts at most `limit`.

use std::time::Duration;

use futures::FutureExt;

use super::input::Bytes;
use crate::keys::KeySpec;
use crate::limits::{
    admit, Algorithm, Clock, Decision, Gcra, LimitSpec, Limiter, ManualClock, OnMissing, Outcome,
    SlidingWindow, StoreSpec, TokenBucket, Verdict,
};

/// Operations per input: enough for long bursts, few enough that the
/// quadratic model stays fast.
const MAX_OPS: usize = 512;
/// Four named keys and the shared "missing" key.
const KEYS: usize = 5;
const KEY_NAMES: [Option<&[u8]>; KEYS] = [Some(b"k0"), Some(b"k1"), Some(b"k2"), Some(b""), None];
/// Tokens per second, from slow enough to clamp to fast enough to cap.
const RATES: [f64; 8] = [1e-12, 0.5, 1.0, 3.0, 7.5, 100.0, 1e6, 2e9];

pub fn limiter(data: &[u8]) {
    let mut b = Bytes(data);
    let (capacity, fill_rate) = bucket_params(&mut b);
    let bucket = TokenBucket::new(capacity, fill_rate, 64);
    let mut bucket_model = Model::new(*bucket.gcra());
    let (capacity, fill_rate) = bucket_params(&mut b);
    let shadow = b.u8() & 1 == 1;
    let la = Limiter::new(spec(
        "fuzz_bucket",
        Algorithm::TokenBucket {
            capacity,
            fill_rate,
        },
        shadow,
    ));
    let mut la_model = Model::new(Gcra::new(capacity, fill_rate));
    let max = u64::from(b.u8() % 4) + 1;
    let lc = Limiter::new(spec("fuzz_slots", Algorithm::Concurrency { max }, false));
    let mut held: [Vec<Verdict>; KEYS] = Default::default();
    let window_limit = u64::from(b.u8() % 8) + 1;
    let window = SlidingWindow::new(window_limit, Duration::from_secs(3600), 64);
    let mut window_counts = [0u64; KEYS];
    let clock = ManualClock::new(u64::from(b.u16()));

    for _ in 0..MAX_OPS {
        if b.is_empty() {
            break;
        }
        let op = b.u8();
        let k = usize::from(op >> 3) % KEYS;
        let key = k as u64;
        let now = clock.now_nanos();
        match op & 7 {
            0 => clock.advance(step(b.u8())),
            1 => {
                let peeked = bucket.peek(key, now);
                let status = bucket.try_acquire(key, now);
                assert_eq!(peeked, status, "peek and try_acquire disagree");
                assert_eq!(status.admitted, bucket_model.admit(k, now), "at {now}");
                assert!(status.remaining <= bucket.gcra().quota());
                if !status.admitted {
                    wait_is_exact(&bucket, key, now, status.wait_ns);
                }
            }
            2 => {
                // A later limit refused: the token goes back at the same instant.
                let before = bucket.peek(key, now);
                if bucket.try_acquire(key, now).admitted {
                    bucket.release(key, now);
                }
                assert_eq!(bucket.peek(key, now), before, "rollback at {now}");
            }
            3 => {
                let limits = match b.u8() % 4 {
                    0 => vec![(&la, KEY_NAMES[k])],
                    1 => vec![(&la, KEY_NAMES[k]), (&la, KEY_NAMES[k])],
                    2 => vec![(&lc, KEY_NAMES[k]), (&la, KEY_NAMES[k])],
                    _ => vec![(&la, KEY_NAMES[k]), (&lc, KEY_NAMES[k])],
                };
                let slots_free = (held[k].len() as u64) < max;
                let before = la.probe(KEY_NAMES[k], now);
                let Some(verdict) = admit(&limits, now).now_or_never() else {
                    panic!("a local limit made admission wait");
                };
                let expected = la_model.admit_all(&limits, &la, k, now, shadow, slots_free);
                match expected {
                    Some(decisions) => {
                        assert_eq!(verdict.outcome, Outcome::Admitted);
                        let counted: Vec<_> = decisions.iter().copied().map(Some).collect();
                        assert_eq!(verdict.decisions.as_slice(), counted.as_slice());
                        if limits.iter().any(|(l, _)| std::ptr::eq(*l, &lc)) {
                            assert_eq!(verdict.permits.len(), 1);
                            held[k].push(verdict);
                        }
                    }
                    None => {
                        assert!(!verdict.is_admitted(), "admitted past a limit at {now}");
                        if let Outcome::Rejected { index, .. } = verdict.outcome {
                            assert!(index < limits.len());
                        }
                        assert_eq!(
                            la.probe(KEY_NAMES[k], now),
                            before,
                            "a refused request spent a token at {now}"
                        );
                    }
                }
            }
            4 => drop(held[k].pop()),
            5 => {
                let admitted = window.try_acquire(key).admitted;
                assert_eq!(admitted, window_counts[k] < window_limit, "window count");
                if admitted {
                    window_counts[k] += 1;
                }
            }
            6 => {
                if window_counts[k] > 0 {
                    window.release(key);
                    window_counts[k] -= 1;
                }
            }
            _ => {
                let peeked = la.probe(KEY_NAMES[k], now);
                let later = now.saturating_add(step(b.u8()).as_nanos() as u64);
                // Reading never changes the state, and waiting never hurts.
                assert_eq!(la.probe(KEY_NAMES[k], now), peeked);
                if peeked.is_some_and(|s| s.admitted) {
                    assert!(la.probe(KEY_NAMES[k], later).is_some_and(|s| s.admitted));
                }
            }
        }
    }
}

/// Capacity 1..=16¾, a rate from [`RATES`].
fn bucket_params(b: &mut Bytes) -> (f64, f64) {
    let capacity = 1.0 + f64::from(b.u8() % 16) + f64::from(b.u8() % 4) * 0.25;
    (capacity, RATES[usize::from(b.u8()) % RATES.len()])
}

/// From a nanosecond to a minute, in four scales.
fn step(byte: u8) -> Duration {
    let n = u64::from(byte >> 2);
    match byte & 3 {
        0 => Duration::from_nanos(n),
        1 => Duration::from_micros(n * 37),
        2 => Duration::from_millis(n * 13),
        _ => Duration::from_secs(n),
    }
}

fn spec(name: &str, algorithm: Algorithm, shadow: bool) -> LimitSpec {
    LimitSpec {
        name: name.into(),
        algorithm,
        key: KeySpec::Global,
        shadow,
        on_missing: OnMissing::Shared,
        status: 429,
        max_keys: 64,
        store: StoreSpec::Local,
    }
}

/// A refusal's wait is exact: one nanosecond sooner is still refused, and
/// then one request is admitted.
fn wait_is_exact(bucket: &TokenBucket, key: u64, now: u64, wait: Option<u64>) {
    let Some(wait) = wait else {
        panic!("a token bucket always knows its wait");
    };
    assert!(wait > 0, "refused with nothing to wait for");
    assert!(
        !bucket.peek(key, now + wait - 1).admitted,
        "wait {wait} is too long"
    );
    assert!(
        bucket.peek(key, now + wait).admitted,
        "wait {wait} is too short"
    );
}

/// The admissions the bucket has made, per key.
struct Model {
    emission: u128,
    tolerance: u128,
    admitted: [Vec<u64>; KEYS],
}

impl Model {
    fn new(gcra: Gcra) -> Model {
        Model {
            emission: u128::from(gcra.emission_ns()),
            tolerance: u128::from(gcra.tolerance_ns()),
            admitted: Default::default(),
        }
    }

    fn fits(&self, times: &[u64], now: u64) -> bool {
        let n = times.len();
        times.iter().enumerate().all(|(i, &a)| {
            let since = (n - i) as u128;
            since * self.emission <= self.tolerance + u128::from(now - a)
        })
    }

    fn admit(&mut self, k: usize, now: u64) -> bool {
        let fits = self.fits(&self.admitted[k], now);
        if fits {
            self.admitted[k].push(now);
        }
        fits
    }

    /// What `admit` must decide for a request whose limits are the bucket
    /// `la` (possibly twice) and the concurrency limit: each limit in turn,
    /// all or nothing; `Some(decisions)` if admitted.
    fn admit_all(
        &mut self,
        limits: &[(&Limiter, Option<&[u8]>)],
        la: &Limiter,
        k: usize,
        now: u64,
        shadow: bool,
        slots_free: bool,
    ) -> Option<Vec<Decision>> {
        let mut tentative = self.admitted[k].clone();
        let mut decisions = Vec::new();
        for (l, _) in limits {
            if !std::ptr::eq(*l, la) {
                if !slots_free {
                    return None;
                }
                decisions.push(Decision::Admitted);
            } else if self.fits(&tentative, now) {
                tentative.push(now);
                decisions.push(Decision::Admitted);
            } else if shadow {
                decisions.push(Decision::ShadowRejected);
            } else {
                return None;
            }
        }
        self.admitted[k] = tentative;
        Some(decisions)
    }
}
