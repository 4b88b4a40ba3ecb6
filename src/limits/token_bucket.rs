//! The token bucket, kept as GCRA: one `u64` per key.
//!
//! # Why GCRA
//! A textbook token bucket stores two numbers per key (tokens, last refill) and
//! so needs a lock or a double-word CAS. The generic cell rate algorithm stores
//! one: the *theoretical arrival time* (TAT), the instant at which the bucket
//! would be full again. With emission interval `T = 1/fill_rate` and tolerance
//! `τ = (capacity - 1)·T`, a request at `now` is admitted iff `TAT - now <= τ`,
//! and then `TAT := max(TAT, now) + T`. The two are the same bucket: the tokens
//! at `now` are `capacity - (TAT - now)/T`. One word means one CAS loop per
//! decision, no lock, and a state that fits the [word map](super::word_map)'s
//! expiry contract for free: `TAT <= now` is a full bucket, worth forgetting.
//!
//! # Exactness
//! All arithmetic is in integer nanoseconds, so the decision is exact for the
//! bucket whose emission interval is `T` ns: over any interval of length `t` it
//! admits at most `1 + (τ + t)/T = capacity + t/T` requests, and it admits
//! whenever that bucket holds a token (both checked by property tests against a
//! two-number reference bucket). `T` is `1e9/fill_rate` rounded to the nearest
//! nanosecond, so the effective rate differs from the configured one by at most
//! half a nanosecond per token: 0.5/s and 1e6/s are exact, 3/s is off by 1e-9
//! relative, and rates beyond 1e9/s are capped at one token per nanosecond.
//!
//! # What the headers say
//! `q` is the capacity (whole tokens) and `w` the time to refill an empty
//! bucket, `ceil(capacity/fill_rate)` seconds, so a policy of capacity 100 at
//! 50/s reads `q=100;w=2`. `r` is the whole tokens left after this request and
//! `t` the seconds until the next token arrives (on a rejection, the same number
//! as `Retry-After`).

use super::limit::KeyStatus;
use super::word_map::{ShardedWordMap, WordMap};

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Slowest refill: one token per ~31.7 years. Stands in for a zero or invalid rate.
const MAX_EMISSION_NS: u64 = 1_000_000_000_000_000_000;

/// The bucket's parameters and its pure decision function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds per token (`T`).
    emission_ns: u64,
    /// How far the TAT may run ahead of now and still admit (`τ`).
    tolerance_ns: u64,
    /// `floor(2^64 / T)` (0 when `T` is 1), for dividing by `T` with a multiply.
    reciprocal: u64,
}

impl Gcra {
    /// `capacity` is the burst in tokens, `fill_rate` tokens per second. Values
    /// the config should have refused are made harmless instead of panicking: a
    /// capacity below 1 (which could never pay for a request) is taken as 1, and
    /// a non-positive or NaN rate as "never refills".
    pub fn new(capacity: f64, fill_rate: f64) -> Gcra {
        let emission_ns = if fill_rate > 0.0 {
            // `as` saturates; the clamp keeps 1e-30/s and 1e30/s meaningful.
            ((NANOS_PER_SEC as f64 / fill_rate).round() as u64).clamp(1, MAX_EMISSION_NS)
        } else {
            MAX_EMISSION_NS
        };
        let capacity = if capacity >= 1.0 { capacity } else { 1.0 };
        let tolerance_ns = if capacity.fract() == 0.0 && capacity <= (1u64 << 53) as f64 {
            (capacity as u64 - 1).saturating_mul(emission_ns)
        } else {
            // Debts are whole nanoseconds, so `debt <= (capacity-1)·T` holds
            // exactly when `debt <= floor((capacity-1)·T)`: flooring is exact.
            ((capacity - 1.0) * emission_ns as f64).floor() as u64
        };
        Gcra::from_parts(emission_ns, tolerance_ns)
    }

    fn from_parts(emission_ns: u64, tolerance_ns: u64) -> Gcra {
        Gcra {
            emission_ns,
            tolerance_ns,
            reciprocal: if emission_ns > 1 {
                u64::try_from((1u128 << 64) / u128::from(emission_ns)).unwrap_or(0)
            } else {
                0
            },
        }
    }

    /// `x / T`. A 64-bit `div` takes as long as the rest of a decision on
    /// many cores; with `m = floor(2^64/T)`, `x·m >> 64` is `x/T` or one less
    /// (it falls short by `x·(2^64/T - m)/2^64 < 1`), and one multiply tells.
    #[inline]
    pub fn div_emission(&self, x: u64) -> u64 {
        if self.reciprocal == 0 {
            return x;
        }
        let q = ((u128::from(x) * u128::from(self.reciprocal)) >> 64) as u64;
        if x - q * self.emission_ns >= self.emission_ns {
            q + 1
        } else {
            q
        }
    }

    pub fn emission_ns(&self) -> u64 {
        self.emission_ns
    }

    pub fn tolerance_ns(&self) -> u64 {
        self.tolerance_ns
    }

    /// Length of a full bucket in nanoseconds of credit (`τ + T`).
    fn full_ns(&self) -> u64 {
        self.tolerance_ns.saturating_add(self.emission_ns)
    }

    /// The decision for a request at `now` given the key's TAT: `Ok(new TAT)`
    /// when it is admitted, `Err(nanoseconds until it would be)` otherwise.
    #[inline]
    pub fn try_admit(&self, tat: u64, now: u64) -> Result<u64, u64> {
        let debt = tat.saturating_sub(now);
        if debt > self.tolerance_ns {
            Err(debt - self.tolerance_ns)
        } else {
            Ok(now.saturating_add(debt).saturating_add(self.emission_ns))
        }
    }

    /// Whole tokens in the bucket at `now`, and nanoseconds until one more arrives.
    pub fn status(&self, tat: u64, now: u64) -> (u64, u64) {
        let debt = tat.saturating_sub(now);
        let remaining = self.div_emission(self.full_ns().saturating_sub(debt));
        // The (remaining+1)-th token is there once the debt is back to τ - r·T.
        let wait = debt
            .saturating_add(remaining.saturating_mul(self.emission_ns))
            .saturating_sub(self.tolerance_ns);
        (remaining, wait)
    }

    /// `q` of the policy: whole tokens in a full bucket.
    pub fn quota(&self) -> u64 {
        self.full_ns() / self.emission_ns
    }

    /// `w` of the policy: seconds to refill an empty bucket, rounded up.
    pub fn window_secs(&self) -> u64 {
        self.full_ns().div_ceil(NANOS_PER_SEC)
    }
}

/// A keyed token bucket over a [`WordMap`].
pub struct TokenBucket<S: WordMap = ShardedWordMap> {
    gcra: Gcra,
    words: S,
}

impl TokenBucket<ShardedWordMap> {
    pub fn new(capacity: f64, fill_rate: f64, max_keys: usize) -> Self {
        TokenBucket::with_words(
            Gcra::new(capacity, fill_rate),
            ShardedWordMap::new(max_keys),
        )
    }
}

impl<S: WordMap> TokenBucket<S> {
    pub fn with_words(gcra: Gcra, words: S) -> Self {
        TokenBucket { gcra, words }
    }

    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    pub fn words(&self) -> &S {
        &self.words
    }

    /// What [`try_acquire`](Self::try_acquire) would answer now, without taking
    /// a token or creating state for the key.
    pub fn peek(&self, key: u64, now: u64) -> KeyStatus {
        let tat = self.words.load(key);
        match self.gcra.try_admit(tat, now) {
            Ok(new_tat) => self.admitted(new_tat, now),
            Err(wait) => KeyStatus::rejected(wait),
        }
    }

    /// Takes one token if the bucket has one. Lock-free per key: a CAS loop on
    /// the key's TAT, retried only when another request moved it first.
    pub fn try_acquire(&self, key: u64, now: u64) -> KeyStatus {
        // The closure's last run is the decision that stuck.
        let mut decision = Err(0);
        let _ = self.words.fetch_update(key, now, |tat| {
            decision = self.gcra.try_admit(tat, now);
            decision.ok()
        });
        match decision {
            Ok(new_tat) => self.admitted(new_tat, now),
            Err(wait) => KeyStatus::rejected(wait),
        }
    }

    /// Gives back a token taken by [`try_acquire`](Self::try_acquire) (a later
    /// limit of the same request refused it). Exact: `max(TAT, now) + T - T` is
    /// the old TAT or `now`, and every TAT `<= now` is the same full bucket.
    pub fn release(&self, key: u64, now: u64) {
        // An evicted key (word 0) already reads as a full bucket: leave it.
        // A result of 0 is a full bucket too; clamping it up to 1 would leave
        // a debt of 1 ns at `now == 0` and cost a token at capacity.
        let _ = self.words.fetch_update(key, now, |tat| {
            (tat != 0).then(|| tat.saturating_sub(self.gcra.emission_ns))
        });
    }

    /// Counts a token granted elsewhere (by the shared store, for a stand-in
    /// kept in step with it), into debt past an empty bucket if need be, by
    /// at most one more bucket: an empty bucket refills in `τ + T`, one in
    /// full debt in twice that.
    pub fn spend(&self, key: u64, now: u64) {
        let most = now.saturating_add(self.gcra.full_ns().saturating_mul(2));
        let _ = self.words.fetch_update(key, now, |tat| {
            Some(tat.max(now).saturating_add(self.gcra.emission_ns).min(most))
        });
    }

    fn admitted(&self, new_tat: u64, now: u64) -> KeyStatus {
        let (remaining, wait_ns) = self.gcra.status(new_tat, now);
        KeyStatus {
            admitted: true,
            remaining,
            wait_ns: Some(wait_ns),
        }
    }
}

#[cfg(test)]
#[path = "token_bucket_tests.rs"]
mod tests;
