use std::time::Instant;

use super::*;

const W: u64 = 10_000_000_000; // a 10 s window, in ns

fn counts(prev: u64, curr: u64, fraction: f64) -> WindowCounts {
    WindowCounts {
        prev,
        curr,
        fraction,
    }
}

#[test]
fn the_estimate_weighs_the_previous_window_by_what_is_left_of_it() {
    assert_eq!(counts(10, 0, 0.0).estimate(), 10.0);
    assert_eq!(counts(10, 3, 0.5).estimate(), 8.0);
    assert_eq!(counts(10, 3, 0.9).estimate(), 4.0);
}

#[test]
fn admits_while_one_more_fits() {
    assert!(counts(10, 4, 0.5).admits_one_more(10)); // 5 + 4 + 1 = 10
    assert!(!counts(10, 5, 0.5).admits_one_more(10)); // 11
    assert!(!counts(0, 0, 0.0).admits_one_more(0));
    assert!(counts(0, 0, 0.0).admits_one_more(1));
}

#[test]
fn wait_within_the_current_window() {
    // 5 + 10·(1-f') <= 9  ⇔  f' >= 0.6: a tenth of the window from f = 0.5.
    let c = counts(10, 5, 0.5);
    assert_eq!(c.wait_until_at_most(9.0, W), Some(W / 10));
    assert_eq!(c.status(10, W), (0, Some(W / 10)));
}

#[test]
fn wait_into_the_next_window_when_the_current_count_is_too_high() {
    // 10 in the current window, half gone: wait out the half, then until
    // 10·(1-g) <= 9, a tenth of the next one.
    let c = counts(0, 10, 0.5);
    assert_eq!(c.wait_until_at_most(9.0, W), Some(W / 2 + W / 10));
}

#[test]
fn no_wait_ends_a_zero_limit_and_no_wait_is_needed_below_target() {
    assert_eq!(counts(3, 3, 0.2).wait_until_at_most(-1.0, W), None);
    assert_eq!(counts(3, 3, 0.2).wait_until_at_most(100.0, W), Some(0));
}

#[test]
fn remaining_and_next_unit_after_an_admission() {
    // Estimate 6.5 of 10: 3 left; a 4th once the estimate is 6, when the
    // previous window's 5 weigh 2 instead of 2.5: at f = 0.6.
    let c = counts(5, 4, 0.5);
    let (r, wait) = c.status(10, W);
    assert_eq!(r, 3);
    assert_eq!(wait, Some(W / 10));
}

#[test]
fn reading_counts_nothing_and_only_admissions_are_counted() {
    let w = SlidingWindow::new(5, Duration::from_secs(60), 1_000);
    for _ in 0..100 {
        assert!(w.peek(1).admitted);
    }
    assert_eq!(w.counts(1).curr, 0);
    for i in 0..5 {
        let s = w.try_acquire(1);
        assert!(s.admitted);
        assert_eq!(s.remaining, 4 - i);
    }
    for _ in 0..100 {
        let s = w.try_acquire(1);
        assert!(!s.admitted);
        assert!(s.wait_ns.is_some_and(|ns| ns > 0));
    }
    assert_eq!(w.counts(1).curr, 5, "rejections are not counted");
    assert!(w.try_acquire(2).admitted, "keys are independent");
}

#[test]
fn a_real_window_closes_and_reopens() {
    let window = Duration::from_millis(300);
    let started = Instant::now();
    let w = SlidingWindow::new(3, window, 1_000);
    for _ in 0..3 {
        assert!(w.try_acquire(9).admitted);
    }
    assert!(!w.try_acquire(9).admitted);
    // Bounded polling: the estimate must let a request through within two
    // windows (the previous window's weight reaches zero by then).
    let deadline = Instant::now() + 3 * window;
    let mut reopened = None;
    while Instant::now() < deadline {
        if w.try_acquire(9).admitted {
            reopened = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let reopened = reopened.expect("the window never reopened");
    // 3 counted in window 0; one more fits once 3·(1-f) <= 2, at f = 1/3 of
    // window 1: about 400 ms after start.
    assert!(reopened >= window, "reopened after {reopened:?}");
    let counted = w.counts(9);
    if started.elapsed() < 2 * window - Duration::from_millis(20) {
        assert_eq!(counted.prev, 3, "only the 3 admitted were carried over");
        assert_eq!(counted.curr, 1);
    }
}

#[test]
fn two_threads_never_take_more_than_the_limit() {
    let w = SlidingWindow::new(1_000, Duration::from_secs(60), 1_000);
    let admitted: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| (0..3_000).filter(|_| w.try_acquire(4).admitted).count()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(admitted <= 1_000, "{admitted}");
    assert!(
        admitted >= 990,
        "re-checks may refuse a few, not many: {admitted}"
    );
}

#[test]
fn an_idle_key_is_admitted_among_100k_active_keys() {
    let w = SlidingWindow::new(3, Duration::from_secs(60), 100_000);
    assert_eq!(w.sketch_bytes(), 2 * 4 * 400_000 * 8);
    // Typical traffic: 100k keys, each well under its limit.
    for k in 0..100_000u64 {
        assert!(w.try_acquire(k).admitted);
    }
    let wrongly_refused = (1_000_000..1_010_000u64)
        .filter(|k| !w.peek(*k).admitted)
        .count();
    assert_eq!(wrongly_refused, 0);
}

#[test]
fn worst_case_wrong_refusals_stay_under_the_documented_bound() {
    // Every one of 100k keys at its limit of 1: N = max_keys·limit, the bound
    // is (N/(w·limit))^4 = 4^-4 ≈ 0.39% (Poisson predicts 0.24%).
    let w = SlidingWindow::new(1, Duration::from_secs(60), 100_000);
    for k in 0..100_000u64 {
        w.try_acquire(k);
    }
    let probes = 40_000u64;
    let refused = (1_000_000..1_000_000 + probes)
        .filter(|k| !w.peek(*k).admitted)
        .count();
    let rate = refused as f64 / probes as f64;
    assert!(
        rate <= 1.0 / 256.0,
        "{refused} of {probes} idle keys refused"
    );
}

#[test]
fn over_count_is_within_the_count_min_bound() {
    let max_keys = 1_000;
    let w = SlidingWindow::new(u64::MAX, Duration::from_secs(60), max_keys);
    let slots = sketch_slots(max_keys) as f64;
    let mut total = 0u64;
    let truth: Vec<u64> = (0..2_000u64).map(|k| (k * 7919) % 23 + 1).collect();
    for (k, n) in truth.iter().enumerate() {
        for _ in 0..*n {
            w.try_acquire(k as u64);
        }
        total += n;
    }
    let epsilon_n = std::f64::consts::E * total as f64 / slots;
    let mut beyond = 0;
    for (k, n) in truth.iter().enumerate() {
        let est = w.counts(k as u64).curr;
        assert!(est >= *n, "a count-min sketch never under-counts");
        if (est - n) as f64 > epsilon_n {
            beyond += 1;
        }
    }
    // P(over-count > e·N/w) <= e^-4 ≈ 1.8% per key.
    assert!(
        beyond as f64 <= 0.018 * truth.len() as f64,
        "{beyond} keys beyond e·N/w"
    );
}

#[test]
fn degenerate_windows_do_not_panic() {
    for window in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
        let w = SlidingWindow::new(2, window, 0);
        assert!(w.try_acquire(1).admitted);
        let _ = w.peek(1);
    }
    let zero = SlidingWindow::new(0, Duration::from_secs(1), 0);
    let s = zero.try_acquire(1);
    assert!(!s.admitted);
    assert_eq!(s.wait_ns, None, "no wait lets a zero limit through");
}
