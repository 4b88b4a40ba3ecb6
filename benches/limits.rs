//! One admission decision per algorithm, beside `governor`'s keyed limiter on
//! the same workloads: (a) one hot key, (b) 100k keys round-robin, (c) two
//! threads on one key. Every decision reads the real clock, as in the proxy
//! (governor reads its own clock inside `check_key`). Limits are set so that
//! every request is admitted: the admitted path is the one that writes state.
//!
//! Run: `cargo bench --bench limits -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use futures::FutureExt;
use governor::clock::FakeRelativeClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sluice::keys::KeySpec;
use sluice::limits::{
    Algorithm, Clock, LimitSpec, Limiter, MonotonicClock, OnMissing, StoreSpec, TokenBucket,
};

const KEYS: usize = 100_000;

/// One decision by the admission engine. A local limit never makes it wait,
/// so the future is ready when first polled.
fn admit(limits: &[(&Limiter, Option<&[u8]>)], now: u64) -> bool {
    sluice::limits::admit(limits, now)
        .now_or_never()
        .is_some_and(|v| v.is_admitted())
}

fn limiter(name: &str, algorithm: Algorithm) -> Limiter {
    Limiter::new(LimitSpec {
        name: name.to_string(),
        algorithm,
        key: KeySpec::ClientIp,
        shadow: false,
        on_missing: OnMissing::Shared,
        status: 429,
        store: StoreSpec::Local,
        max_keys: 2 * KEYS,
    })
}

fn keys() -> Vec<Vec<u8>> {
    (0..KEYS)
        .map(|i| format!("client-{i:08}").into_bytes())
        .collect()
}

/// Runs the three workloads for one decision function, given a key's index
/// (each contender looks the key up in its own table, at the same cost).
fn workloads<F>(c: &mut Criterion, name: &str, decide: F)
where
    F: Fn(usize) -> bool + Sync,
{
    let mut group = c.benchmark_group(name);
    group.bench_function("hot_key", |b| b.iter(|| black_box(decide(black_box(0)))));
    group.bench_function("100k_keys", |b| {
        let mut i = 0;
        b.iter(|| {
            i = if i + 1 == KEYS { 0 } else { i + 1 };
            black_box(decide(black_box(i)))
        })
    });
    group.bench_function("2_threads_one_key", |b| {
        b.iter_custom(|iters| two_threads(iters, || decide(black_box(1))))
    });
    group.finish();
}

/// Wall time for each of two threads to make `iters` decisions at once: the
/// per-decision figure is the latency under contention on one key.
fn two_threads(iters: u64, decide: impl Fn() -> bool + Sync) -> Duration {
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        let run = || {
            start.wait();
            let t = Instant::now();
            for _ in 0..iters {
                black_box(decide());
            }
            t.elapsed()
        };
        let other = s.spawn(run);
        let mine = run();
        mine.max(other.join().unwrap_or(mine))
    })
}

fn token_bucket(c: &mut Criterion) {
    let clock = MonotonicClock::new();
    let l = limiter(
        "token_bucket",
        Algorithm::TokenBucket {
            capacity: 1e9,
            fill_rate: 1e9,
        },
    );
    let keys = keys();
    workloads(c, "token_bucket", |i| {
        admit(&[(&l, Some(&keys[i]))], clock.now_nanos())
    });
    report_state(&l);

    // The decision alone, the clock read taken out (compare governor_fake_clock).
    let frozen = limiter(
        "token_bucket_frozen",
        Algorithm::TokenBucket {
            capacity: 1e18,
            fill_rate: 1e9,
        },
    );
    workloads(c, "token_bucket_no_clock", |i| {
        admit(&[(&frozen, Some(&keys[i]))], 1_000_000_000)
    });

    // The bucket alone, under `admit`: hash the key, one CAS on its TAT.
    let core = TokenBucket::new(1e18, 1e9, 2 * KEYS);
    let hasher = ahash::RandomState::new();
    workloads(c, "token_bucket_core_no_clock", |i| {
        core.try_acquire(hasher.hash_one(&keys[i]), 1_000_000_000)
            .admitted
    });
}

fn sliding_window(c: &mut Criterion) {
    let clock = MonotonicClock::new();
    let l = limiter(
        "sliding_window",
        Algorithm::SlidingWindow {
            limit: u64::MAX / 2,
            window: Duration::from_secs(3600),
        },
    );
    let keys = keys();
    workloads(c, "sliding_window", |i| {
        admit(&[(&l, Some(&keys[i]))], clock.now_nanos())
    });
    report_state(&l);
}

fn concurrency(c: &mut Criterion) {
    let clock = MonotonicClock::new();
    let l = limiter("concurrency", Algorithm::Concurrency { max: 1 << 40 });
    // Acquire and release: the verdict (and its guard) is dropped at once.
    let keys = keys();
    workloads(c, "concurrency", |i| {
        admit(&[(&l, Some(&keys[i]))], clock.now_nanos())
    });
}

fn governor_keyed(c: &mut Criterion) {
    let rate = NonZeroU32::new(1_000_000_000).unwrap_or(NonZeroU32::MIN);
    let g: DefaultKeyedRateLimiter<Vec<u8>> = RateLimiter::keyed(Quota::per_second(rate));
    let keys = keys();
    workloads(c, "governor_keyed", |i| g.check_key(&keys[i]).is_ok());

    // Same store on a clock that is one atomic load: its decision alone.
    let fake: RateLimiter<
        Vec<u8>,
        DefaultKeyedStateStore<Vec<u8>>,
        FakeRelativeClock,
        NoOpMiddleware<Nanos>,
    > = RateLimiter::new(
        Quota::per_second(rate).allow_burst(NonZeroU32::MAX),
        DefaultKeyedStateStore::default(),
        FakeRelativeClock::default(),
    );
    workloads(c, "governor_fake_clock", |i| {
        fake.check_key(&keys[i]).is_ok()
    });
}

fn report_state(l: &Limiter) {
    let keys = l.live_keys();
    let bytes = l.state_bytes();
    if keys > 0 {
        eprintln!(
            "{}: {keys} live keys, {bytes} bytes of state, {:.1} bytes/key",
            l.name(),
            bytes as f64 / keys as f64
        );
    } else {
        eprintln!("{}: {bytes} bytes of state (fixed sketch)", l.name());
    }
}

criterion_group!(
    benches,
    token_bucket,
    sliding_window,
    concurrency,
    governor_keyed
);
criterion_main!(benches);
