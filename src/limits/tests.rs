//! Tests of [`admit`] over the real local limits: several limits, shadow mode, missing keys, headers, bounds.

use std::time::Duration;

use futures::FutureExt;

use super::*;
use crate::keys::KeySpec;

/// Local limits never make admission wait.
fn admit(limits: &[(&Limiter, Option<&[u8]>)], now: u64) -> Verdict {
    super::admit(limits, now)
        .now_or_never()
        .expect("a local limit made admission wait")
}

const SEC: u64 = 1_000_000_000;

fn key(value: &[u8]) -> Option<&[u8]> {
    Some(value)
}

/// A local limit of `algorithm` on the `global` key (shared by the engine's tests).
pub(super) fn spec(name: &str, algorithm: Algorithm) -> LimitSpec {
    LimitSpec {
        name: name.to_string(),
        algorithm,
        key: KeySpec::Global,
        shadow: false,
        on_missing: OnMissing::Shared,
        status: 429,
        store: StoreSpec::Local,
        max_keys: 1_000,
    }
}

fn bucket(name: &str, capacity: f64, fill_rate: f64) -> Limiter {
    Limiter::new(spec(
        name,
        Algorithm::TokenBucket {
            capacity,
            fill_rate,
        },
    ))
}

fn window(name: &str, limit: u64) -> Limiter {
    Limiter::new(spec(
        name,
        Algorithm::SlidingWindow {
            limit,
            window: Duration::from_secs(60),
        },
    ))
}

fn slots(name: &str, max: u64) -> Limiter {
    Limiter::new(spec(name, Algorithm::Concurrency { max }))
}

fn shadow(mut l: LimitSpec) -> Limiter {
    l.shadow = true;
    Limiter::new(l)
}

#[test]
fn a_later_refusal_spends_nothing_of_an_earlier_limit() {
    let a = bucket("a", 5.0, 1.0);
    let b = bucket("b", 1.0, 0.001);
    assert!(admit(&[(&b, key(b"k"))], SEC).is_admitted());
    let v = admit(&[(&a, key(b"k")), (&b, key(b"k"))], SEC);
    assert_eq!(
        v.outcome,
        Outcome::Rejected {
            index: 1,
            status: 429,
            retry_after_secs: Some(1_000)
        }
    );
    assert_eq!(
        v.decisions.as_slice(),
        [None, Some(Decision::Rejected)],
        "a was only read: it counts nothing"
    );
    assert_eq!(a.live_keys(), 0, "a was only read");
    let alone = admit(&[(&a, key(b"k"))], SEC);
    assert_eq!(
        alone.ratelimit.map(|i| i.remaining),
        Some(4),
        "a still holds 5 tokens"
    );
}

#[test]
fn a_later_refusal_counts_nothing_in_an_earlier_sliding_window() {
    let w = window("w", 10);
    let b = bucket("b", 1.0, 0.001);
    admit(&[(&b, key(b"k"))], SEC);
    for _ in 0..5 {
        assert!(!admit(&[(&w, key(b"k")), (&b, key(b"k"))], SEC).is_admitted());
    }
    let v = admit(&[(&w, key(b"k"))], SEC);
    assert_eq!(v.ratelimit.map(|i| i.remaining), Some(9));
}

#[test]
fn a_failed_commit_rolls_back_the_commits_before_it() {
    // The concurrency limit can only refuse at commit time, after the bucket
    // has already been charged: the charge must be given back.
    let a = bucket("a", 3.0, 0.001);
    let c = slots("c", 1);
    let held = admit(&[(&a, key(b"k")), (&c, key(b"k"))], SEC);
    assert!(held.is_admitted());
    assert_eq!(held.permits.len(), 1);
    let v = admit(&[(&a, key(b"k")), (&c, key(b"k"))], SEC);
    assert_eq!(
        v.outcome,
        Outcome::Rejected {
            index: 1,
            status: 429,
            retry_after_secs: Some(1)
        }
    );
    assert!(v.permits.is_empty());
    assert_eq!(
        admit(&[(&a, key(b"k"))], SEC)
            .ratelimit
            .map(|i| i.remaining),
        Some(1)
    );
    drop(held);
    assert!(
        admit(&[(&c, key(b"k"))], SEC).is_admitted(),
        "the slot came back with its guard"
    );
}

#[test]
fn a_sliding_window_commit_is_rolled_back_too() {
    let w = window("w", 10);
    let c = slots("c", 1);
    let held = admit(&[(&c, key(b"k"))], SEC);
    assert!(!admit(&[(&w, key(b"k")), (&c, key(b"k"))], SEC).is_admitted());
    drop(held);
    let v = admit(&[(&w, key(b"k"))], SEC);
    assert_eq!(v.ratelimit.map(|i| i.remaining), Some(9));
}

#[test]
fn shadow_limits_never_refuse_but_say_they_would_have() {
    let s = shadow(spec(
        "s",
        Algorithm::TokenBucket {
            capacity: 2.0,
            fill_rate: 0.001,
        },
    ));
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let v = admit(&[(&s, key(b"k"))], SEC);
        assert!(v.is_admitted());
        assert_eq!(v.ratelimit, None, "shadow limits are not advertised");
        outcomes.push(v.decisions[0].expect("counted"));
    }
    assert_eq!(
        outcomes,
        [
            Decision::Admitted,
            Decision::Admitted,
            Decision::ShadowRejected,
            Decision::ShadowRejected,
            Decision::ShadowRejected
        ]
    );
    // Would-be refusals are not counted: after one token's refill it admits again.
    let v = admit(&[(&s, key(b"k"))], SEC + 1_000 * SEC);
    assert_eq!(v.decisions[0], Some(Decision::Admitted));
}

#[test]
fn a_shadow_refusal_beside_an_enforced_limit() {
    let s = shadow(spec(
        "s",
        Algorithm::TokenBucket {
            capacity: 1.0,
            fill_rate: 0.001,
        },
    ));
    let e = bucket("e", 10.0, 0.001);
    admit(&[(&s, key(b"k"))], SEC);
    let v = admit(&[(&s, key(b"k")), (&e, key(b"k"))], SEC);
    assert!(v.is_admitted());
    assert_eq!(
        v.decisions.as_slice(),
        [Some(Decision::ShadowRejected), Some(Decision::Admitted)]
    );
    assert_eq!(v.ratelimit.map(|i| i.name), Some("e"));
}

#[test]
fn missing_keys_share_one_bucket_or_are_refused() {
    let shared = bucket("shared", 2.0, 0.001);
    assert!(admit(&[(&shared, None)], SEC).is_admitted());
    assert!(admit(&[(&shared, None)], SEC).is_admitted());
    assert!(
        !admit(&[(&shared, None)], SEC).is_admitted(),
        "one bucket for all missing"
    );
    assert!(
        admit(&[(&shared, key(b""))], SEC).is_admitted(),
        "not the empty key's bucket"
    );

    let mut s = spec(
        "strict",
        Algorithm::TokenBucket {
            capacity: 9.0,
            fill_rate: 1.0,
        },
    );
    s.on_missing = OnMissing::Reject;
    s.status = 400;
    let strict = Limiter::new(s.clone());
    let v = admit(&[(&strict, None)], SEC);
    assert_eq!(
        v.outcome,
        Outcome::Rejected {
            index: 0,
            status: 400,
            retry_after_secs: None
        }
    );
    assert_eq!(v.ratelimit_header(), None);
    let v = admit(&[(&shared, key(b"x")), (&strict, None)], SEC);
    assert_eq!(v.decisions.as_slice(), [None, Some(Decision::Rejected)]);

    s.shadow = true;
    let v = admit(&[(&Limiter::new(s), None)], SEC);
    assert!(v.is_admitted());
    assert_eq!(v.decisions[0], Some(Decision::ShadowRejected));
}

#[test]
fn admitted_responses_advertise_the_tightest_limit() {
    let per_ip = bucket("per_ip", 100.0, 50.0);
    let per_key = window("per_key", 3);
    let v = admit(&[(&per_ip, key(b"1.2.3.4")), (&per_key, key(b"k"))], SEC);
    assert!(v.is_admitted());
    assert_eq!(v.policy_header().as_deref(), Some("\"per_key\";q=3;w=60"));
    // The 3rd unit is back only once this request has decayed out of both
    // windows: up to two windows away.
    let t = v.ratelimit.as_ref().and_then(|i| i.reset_secs);
    assert!(t.is_some_and(|t| (60..=120).contains(&t)), "{t:?}");
    assert!(v
        .ratelimit_header()
        .is_some_and(|h| h.starts_with("\"per_key\";r=2;t=")));

    let v = admit(&[(&per_ip, key(b"1.2.3.4"))], SEC);
    assert_eq!(v.policy_header().as_deref(), Some("\"per_ip\";q=100;w=2"));
    assert_eq!(v.ratelimit_header().as_deref(), Some("\"per_ip\";r=98;t=1"));
}

#[test]
fn a_refusal_carries_retry_after_and_the_refusing_policy() {
    let l = bucket("per_ip", 2.0, 0.4); // a token every 2.5 s
    admit(&[(&l, key(b"ip"))], 0);
    admit(&[(&l, key(b"ip"))], 0);
    let v = admit(&[(&l, key(b"ip"))], SEC / 10);
    assert_eq!(
        v.outcome,
        Outcome::Rejected {
            index: 0,
            status: 429,
            retry_after_secs: Some(3) // 2.4 s, rounded up
        }
    );
    assert_eq!(v.ratelimit_header().as_deref(), Some("\"per_ip\";r=0;t=3"));
    assert_eq!(v.policy_header().as_deref(), Some("\"per_ip\";q=2;w=5"));
}

#[test]
fn concurrency_limits_advertise_free_slots() {
    let c = slots("upstream_slots", 64);
    let v = admit(&[(&c, key(b"api"))], SEC);
    assert_eq!(
        v.policy_header().as_deref(),
        Some("\"upstream_slots\";q=64;qu=\"concurrent-requests\"")
    );
    assert_eq!(
        v.ratelimit_header().as_deref(),
        Some("\"upstream_slots\";r=63")
    );
}

#[test]
fn two_threads_two_limits_never_exceed_the_tighter() {
    let a = bucket("a", 500.0, 0.001);
    let b = window("b", 300);
    let admitted: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    (0..1_000)
                        .filter(|_| admit(&[(&a, key(b"k")), (&b, key(b"k"))], SEC).is_admitted())
                        .count()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(admitted <= 300, "{admitted}");
    assert!(admitted >= 290, "{admitted}");
    let left = admit(&[(&a, key(b"k"))], SEC)
        .ratelimit
        .map(|i| i.remaining);
    assert_eq!(
        left,
        Some(500 - admitted as u64 - 1),
        "a charged once per admission"
    );
}

#[test]
fn a_million_distinct_keys_keep_state_bounded() {
    let mut s = spec(
        "per_ip",
        Algorithm::TokenBucket {
            capacity: 10.0,
            fill_rate: 1.0,
        },
    );
    s.max_keys = 10_000;
    let l = Limiter::new(s);
    let mut peak = 0;
    for i in 0..1_000_000u64 {
        let now = SEC + i * 1_000; // 1 ms of traffic per thousand keys
        assert!(admit(&[(&l, key(&i.to_le_bytes()))], now).is_admitted());
        if i % 4_096 == 0 {
            peak = peak.max(l.live_keys());
        }
    }
    assert!(peak.max(l.live_keys()) <= 10_000 + 64, "peak {peak}");
    l.sweep(SEC + 1_000_000 * 1_000 + 2 * SEC);
    assert_eq!(
        l.live_keys(),
        0,
        "every bucket refilled: nothing left to remember"
    );
}
