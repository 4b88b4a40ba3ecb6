use super::*;
use proptest::prelude::*;

/// The two-number bucket GCRA must equal: credit in nanoseconds, refilled by
/// elapsed time, capped at a full bucket, one token costs `T`.
struct ReferenceBucket {
    full: u64,
    cost: u64,
    credit: u64,
    last: u64,
}

impl ReferenceBucket {
    fn new(g: &Gcra) -> Self {
        let full = g.tolerance_ns() + g.emission_ns();
        ReferenceBucket {
            full,
            cost: g.emission_ns(),
            credit: full,
            last: 0,
        }
    }

    /// Nanoseconds from `now` until the bucket holds a whole token.
    fn wait_for_token(&self, now: u64) -> u64 {
        let credit = (self.credit + (now - self.last)).min(self.full);
        self.cost.saturating_sub(credit)
    }

    fn request(&mut self, now: u64) -> bool {
        self.credit = (self.credit + (now - self.last)).min(self.full);
        self.last = now;
        if self.credit >= self.cost {
            self.credit -= self.cost;
            true
        } else {
            false
        }
    }
}

fn emission_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..=10,                  // 1e8/s and faster
        Just(1_000u64),             // 1e6/s
        1_000_000u64..=100_000_000, // 10/s .. 1000/s
        Just(2_000_000_000u64),     // 0.5/s
        1u64..=5_000_000_000,       // anything up to 0.2/s
    ]
}

fn capacity_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        (1u32..=50).prop_map(f64::from),
        (4u32..=200).prop_map(|q| f64::from(q) / 4.0)
    ]
}

/// Gaps between requests, as a kind and a size scaled to the emission interval
/// so that bursts, partial refills and long idles all occur whatever `T` is.
/// Kinds 4 and 5 land exactly on, and one nanosecond before, the instant the
/// reference bucket next holds a token: where an off-by-one would show.
fn gaps_strategy() -> impl Strategy<Value = Vec<(u8, u64)>> {
    prop::collection::vec((0u8..6, 0u64..2_000), 1..250)
}

fn gap_ns(kind: u8, size: u64, t: u64, token_in: u64) -> u64 {
    let g = match kind {
        0 => 0,
        1 => u128::from(size) * u128::from(t) / 1_000,
        2 => u128::from(size) * u128::from(t) / 100,
        3 => u128::from(size) * u128::from(t),
        4 => u128::from(token_in),
        _ => u128::from(token_in.saturating_sub(1)),
    };
    u64::try_from(g.min(1 << 50)).unwrap_or(1 << 50)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn equals_the_reference_bucket_and_respects_the_bound(
        t in emission_strategy(),
        capacity in capacity_strategy(),
        gaps in gaps_strategy(),
    ) {
        let fill_rate = 1e9 / t as f64;
        let gcra = Gcra::new(capacity, fill_rate);
        prop_assert_eq!(gcra.emission_ns(), t);
        let bucket = TokenBucket::with_words(gcra, ShardedWordMap::new(16));
        let mut reference = ReferenceBucket::new(&gcra);

        let mut now = 0u64;
        let mut times = Vec::with_capacity(gaps.len());
        let mut admitted = Vec::with_capacity(gaps.len());
        for (kind, size) in gaps {
            now += gap_ns(kind, size, t, reference.wait_for_token(now));
            let peeked = bucket.peek(42, now).admitted;
            let got = bucket.try_acquire(42, now).admitted;
            let want = reference.request(now);
            prop_assert_eq!(peeked, got, "peek disagrees with acquire at {}", now);
            prop_assert_eq!(got, want, "at {} ns", now);
            times.push(now);
            admitted.push(u128::from(got));
        }

        // Over every interval [t_i, t_j]: admitted <= capacity + rate * (t_j - t_i).
        let tau = u128::from(gcra.tolerance_ns());
        for i in 0..times.len() {
            let mut n = 0u128;
            for j in i..times.len() {
                n += admitted[j];
                let span = u128::from(times[j] - times[i]);
                prop_assert!(n == 0 || (n - 1) * u128::from(t) <= tau + span,
                    "{} admitted in {} ns", n, span);
                let bound = capacity + fill_rate * span as f64 / 1e9;
                prop_assert!(n as f64 <= bound * (1.0 + 1e-9) + 1e-9,
                    "{} admitted, bound {}", n, bound);
            }
        }
    }
}

proptest! {
    #[test]
    fn division_by_multiplication_is_exact(
        t in prop_oneof![1u64..=3, 1u64..=u64::MAX, Just(u64::MAX), 1u64..=1 << 40],
        x in prop_oneof![0u64..=1_000, any::<u64>(), Just(u64::MAX)],
    ) {
        let g = Gcra::from_parts(t, 0);
        prop_assert_eq!(g.div_emission(x), x / t);
    }
}

const SEC: u64 = 1_000_000_000;

#[test]
fn fractional_rate_half_a_token_per_second() {
    let b = TokenBucket::new(1.0, 0.5, 16);
    assert!(b.try_acquire(1, 0).admitted);
    let r = b.try_acquire(1, 1_900_000_000);
    assert!(!r.admitted);
    assert_eq!(r.wait_ns, Some(100_000_000));
    assert!(!b.try_acquire(1, 2 * SEC - 1).admitted);
    assert!(b.try_acquire(1, 2 * SEC).admitted);
    assert_eq!(b.gcra().window_secs(), 2);
    assert_eq!(b.gcra().quota(), 1);
}

#[test]
fn huge_rate_a_million_per_second() {
    let b = TokenBucket::new(10.0, 1e6, 16);
    assert_eq!(b.gcra().emission_ns(), 1_000);
    let now = 5 * SEC;
    for i in 0..10 {
        let s = b.try_acquire(7, now);
        assert!(s.admitted, "request {i}");
        assert_eq!(s.remaining, 9 - i);
    }
    let r = b.try_acquire(7, now);
    assert!(!r.admitted);
    assert_eq!(r.wait_ns, Some(1_000));
    assert!(!b.peek(7, now + 999).admitted);
    assert!(b.try_acquire(7, now + 1_000).admitted);
    // A whole second later exactly one full bucket, not a million tokens.
    let later = now + SEC;
    let admitted = (0..20).filter(|_| b.try_acquire(7, later).admitted).count();
    assert_eq!(admitted, 10);
}

#[test]
fn wait_rounds_to_the_instant_a_token_is_back() {
    let b = TokenBucket::new(1.0, 0.25, 16);
    assert!(b.try_acquire(3, 0).admitted);
    assert_eq!(b.peek(3, 0).wait_ns, Some(4 * SEC));
    assert_eq!(b.peek(3, SEC / 2).wait_ns, Some(3 * SEC + SEC / 2));
    assert_eq!(b.peek(3, 4 * SEC - 1).wait_ns, Some(1));
}

#[test]
fn headers_numbers_for_the_design_example() {
    let b = TokenBucket::new(100.0, 50.0, 16);
    assert_eq!((b.gcra().quota(), b.gcra().window_secs()), (100, 2));
    let s = b.try_acquire(1, SEC);
    assert_eq!(s.remaining, 99);
    // The 100th token is back 20 ms later; `t` is that, rounded up to a second.
    assert_eq!(s.wait_ns, Some(20_000_000));
}

#[test]
fn release_gives_the_token_back() {
    let b = TokenBucket::new(2.0, 1.0, 16);
    assert!(b.try_acquire(9, SEC).admitted);
    assert!(b.try_acquire(9, SEC).admitted);
    assert!(!b.peek(9, SEC).admitted);
    b.release(9, SEC);
    assert!(b.try_acquire(9, SEC).admitted);
    assert!(!b.try_acquire(9, SEC).admitted);
    b.release(9, SEC);
    b.release(9, SEC);
    assert_eq!(b.peek(9, SEC).remaining, 1, "a full bucket, nothing more");
}

#[test]
fn a_rollback_at_time_zero_leaves_the_bucket_full() {
    // Found by the limiter fuzz target: the rollback used to leave a TAT of
    // 1 ns, a debt that cost the whole last token of a full bucket.
    let b = TokenBucket::new(4.0, 1.0, 16);
    let before = b.peek(9, 0);
    assert!(b.try_acquire(9, 0).admitted);
    b.release(9, 0);
    assert_eq!(b.peek(9, 0), before);
    assert_eq!(before.remaining, 3);
}

#[test]
fn two_threads_on_a_frozen_clock_take_exactly_the_capacity() {
    let b = TokenBucket::new(1_000.0, 1.0, 16);
    let counts: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    (0..5_000)
                        .filter(|_| b.try_acquire(5, SEC).admitted)
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(counts.iter().sum::<usize>(), 1_000);
}

#[test]
fn full_buckets_are_swept_and_rejections_create_no_state() {
    let b = TokenBucket::new(5.0, 1.0, 1_000);
    for k in 0..100 {
        assert!(b.try_acquire(k, SEC).admitted);
    }
    assert_eq!(b.words().live_keys(), 100);
    b.words().sweep(SEC + SEC / 2);
    assert_eq!(b.words().live_keys(), 100, "still in debt");
    b.words().sweep(2 * SEC);
    assert_eq!(b.words().live_keys(), 0, "full again: nothing to remember");
    for k in 0..100 {
        b.peek(k, 3 * SEC);
    }
    assert_eq!(b.words().live_keys(), 0);
}

#[test]
fn nonsense_parameters_do_not_panic() {
    for (c, r) in [
        (0.0, 1.0),
        (f64::NAN, f64::NAN),
        (-3.0, -1.0),
        (f64::INFINITY, 1e300),
        (1e300, 1e-300),
    ] {
        let b = TokenBucket::new(c, r, 0);
        let s = b.try_acquire(1, u64::MAX - 5);
        assert!(
            s.admitted,
            "a fresh bucket holds at least one token ({c}, {r})"
        );
        let _ = b.try_acquire(1, u64::MAX);
        let _ = b.gcra().window_secs();
    }
}
