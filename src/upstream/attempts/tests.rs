//! The request-level events in every order Pingora sends them, on a real pool
//! without sockets: in-flight counts return to zero and each attempt settles
//! once.

use std::sync::atomic::Ordering;

use pingora_error::{Error, ErrorType};

use super::*;
use crate::filters::Registry;
use crate::telemetry::metrics::Metrics;
use crate::upstream::attempt::Ending;
use crate::upstream::dns::DnsTable;
use crate::upstream::pool_targets;

const MS: u64 = 1_000_000;
const STARTED: u64 = 1_000 * MS;

/// A pool of three backends (which never get a socket) with `settings`
/// added to its section.
fn pool(settings: &str) -> Arc<Pool> {
    let text = format!(
        "listen: [127.0.0.1:8080]\nupstreams:\n  up:\n    backends: [127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003]\n\
         {settings}routes:\n  - upstream: up\n"
    );
    let loaded = match crate::config::load(&text, &Registry::builtin()) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("test config: {errors:?}"),
    };
    let spec = loaded.gateway.upstreams["up"].clone();
    let targets = pool_targets(&spec, &DnsTable::default());
    Arc::new(Pool::succeeding(spec, targets, None, 0, &Metrics::new()))
}

fn inflight(pool: &Pool) -> Vec<u64> {
    pool.backends
        .iter()
        .map(|b| b.stats.inflight.load(Ordering::Relaxed))
        .collect()
}

/// Every settlement a sequence of events yields, in order.
#[derive(Default)]
struct Ledger(Vec<Settled>);

impl Ledger {
    fn note(&mut self, settled: Option<Settled>) {
        self.0.extend(settled);
    }

    fn endings(&self) -> Vec<(usize, Ending)> {
        self.0.iter().map(|s| (s.backend, s.ending)).collect()
    }
}

fn up(t: ErrorType) -> Box<Error> {
    Error::new_up(t)
}

#[test]
fn an_answered_request_holds_in_flight_until_it_finishes() {
    let pool = pool("");
    let mut a = Attempts::new(pool.clone(), STARTED);
    let mut ledger = Ledger::default();
    let now = a.picking(|| unreachable!("the first pick reads no clock"));
    assert_eq!(now, STARTED);
    ledger.note(a.picked(1, now));
    assert_eq!(inflight(&pool), [0, 1, 0]);
    assert!(a.is_open());
    ledger.note(a.answered(200, now + 5 * MS));
    assert!(!a.is_open());
    // The body is still streaming: the backend is still busy.
    assert_eq!(inflight(&pool), [0, 1, 0]);
    ledger.note(a.finish(None, now + 9 * MS));
    assert_eq!(inflight(&pool), [0, 0, 0]);
    assert_eq!(ledger.endings(), [(1, Ending::Answered { status: 200 })]);
    assert_eq!(ledger.0[0].waited_nanos, 5 * MS);
    assert_eq!((a.count(), a.backend()), (1, Some(pool.backends[1].addr)));
    drop(a);
    assert_eq!(inflight(&pool), [0, 0, 0], "nothing given back twice");
}

#[test]
fn a_connect_failure_is_retried_on_another_backend() {
    let pool = pool("    retries: 2\n");
    let mut a = Attempts::new(pool.clone(), STARTED);
    let mut ledger = Ledger::default();
    let now = a.picking(|| 0);
    ledger.note(a.picked(0, now));
    let failed = a.connect_failed(now + MS);
    assert!(failed.retry);
    ledger.note(failed.settled);
    assert_eq!(inflight(&pool), [0, 0, 0], "given back at the failure");
    assert_eq!(pool.retries.get(), 1);

    let now = a.picking(|| STARTED + 2 * MS);
    assert_eq!(now, STARTED + 2 * MS, "a retry reads the clock");
    assert_eq!(a.tried(), [0], "the pick must avoid the failed backend");
    ledger.note(a.picked(2, now));
    assert_eq!(inflight(&pool), [0, 0, 1]);
    ledger.note(a.answered(200, now + MS));
    ledger.note(a.finish(None, now + 2 * MS));
    assert_eq!(inflight(&pool), [0, 0, 0]);
    assert_eq!(
        ledger.endings(),
        [
            (0, Ending::ConnectFailed),
            (2, Ending::Answered { status: 200 })
        ]
    );
    assert_eq!((a.count(), a.backend()), (2, Some(pool.backends[2].addr)));
}

#[test]
fn connect_failures_stop_at_retries_and_the_budget() {
    // `retries: 1`: the second failure is final.
    let pool1 = pool("    retries: 1\n");
    let mut a = Attempts::new(pool1.clone(), STARTED);
    let mut ledger = Ledger::default();
    for (backend, retry) in [(0, true), (1, false)] {
        let now = a.picking(|| STARTED + MS);
        ledger.note(a.picked(backend, now));
        let failed = a.connect_failed(now);
        assert_eq!(failed.retry, retry, "after backend {backend}");
        ledger.note(failed.settled);
    }
    ledger.note(a.finish(Some(&up(ErrorType::ConnectRefused)), STARTED + 2 * MS));
    assert_eq!(
        ledger.endings(),
        [(0, Ending::ConnectFailed), (1, Ending::ConnectFailed)]
    );
    assert_eq!((inflight(&pool1), pool1.retries.get()), (vec![0, 0, 0], 1));

    // An empty budget refuses even the first retry.
    let pool0 = pool("    retries: 2\n    retry_budget: { ratio: 0, min_per_second: 0 }\n");
    let mut a = Attempts::new(pool0.clone(), STARTED);
    let now = a.picking(|| 0);
    let _ = a.picked(0, now);
    assert!(!a.connect_failed(now).retry);
    assert_eq!((inflight(&pool0), pool0.retries.get()), (vec![0, 0, 0], 0));
}

#[test]
fn a_stale_pooled_connection_is_retried_on_the_same_backend() {
    let pool = pool("    retries: 0\n");
    let mut a = Attempts::new(pool.clone(), STARTED);
    let mut ledger = Ledger::default();
    let now = a.picking(|| 0);
    ledger.note(a.picked(1, now));
    let stale = Failure::classify(&up(ErrorType::ConnectionClosed), true);
    ledger.note(a.failed(stale, now + MS));
    assert_eq!(
        a.tried(),
        [] as [usize; 0],
        "the backend may be picked again"
    );
    assert_eq!(inflight(&pool), [0, 0, 0]);
    assert_eq!(pool.retries.get(), 1);

    let now = a.picking(|| now + 2 * MS);
    ledger.note(a.picked(1, now));
    assert_eq!(inflight(&pool), [0, 1, 0]);
    ledger.note(a.answered(200, now + MS));
    ledger.note(a.finish(None, now + 2 * MS));
    assert_eq!(inflight(&pool), [0, 0, 0]);
    assert_eq!(
        ledger.endings(),
        [(1, Ending::Stale), (1, Ending::Answered { status: 200 })]
    );
    // Two attempts, one backend; a stale retry costs none of `retries: 0`.
    assert_eq!((a.count(), a.tried()), (2, &[1][..]));
}

#[test]
fn a_timeout_settles_once_though_logging_sees_it_again() {
    let pool = pool("");
    let mut a = Attempts::new(pool.clone(), STARTED);
    let mut ledger = Ledger::default();
    let now = a.picking(|| 0);
    ledger.note(a.picked(2, now));
    let e = up(ErrorType::ReadTimedout);
    ledger.note(a.failed(Failure::classify(&e, false), now + 300 * MS));
    assert_eq!(inflight(&pool), [0, 0, 1], "held until the request ends");
    ledger.note(a.finish(Some(&e), now + 301 * MS));
    assert_eq!(inflight(&pool), [0, 0, 0]);
    assert_eq!(ledger.endings(), [(2, Ending::TimedOut)]);
    assert_eq!(ledger.0[0].latency_sample(), Some(300 * MS));
    assert_eq!(pool.retries.get(), 0);
}

#[test]
fn a_5xx_is_one_answer_held_against_the_backend() {
    let pool = pool("");
    let mut a = Attempts::new(pool.clone(), STARTED);
    let mut ledger = Ledger::default();
    let now = a.picking(|| 0);
    ledger.note(a.picked(0, now));
    ledger.note(a.answered(503, now + MS));
    // A second header (Pingora calls the filter again) is no new attempt.
    assert!(!a.is_open());
    ledger.note(a.answered(503, now + 2 * MS));
    ledger.note(a.finish(None, now + 3 * MS));
    assert_eq!(ledger.endings(), [(0, Ending::Answered { status: 503 })]);
    assert_eq!(ledger.0[0].backend_failed(), Some(true));
    assert_eq!(inflight(&pool), [0, 0, 0]);
}

#[test]
fn a_client_gone_is_settled_without_blame() {
    let pool = pool("");
    for at_the_end_only in [false, true] {
        let mut a = Attempts::new(pool.clone(), STARTED);
        let mut ledger = Ledger::default();
        let now = a.picking(|| 0);
        ledger.note(a.picked(0, now));
        let mut e = Error::new(ErrorType::WriteError);
        e.as_down();
        if !at_the_end_only {
            ledger.note(a.failed(Failure::classify(&e, false), now + MS));
        }
        ledger.note(a.finish(Some(&e), now + 2 * MS));
        assert_eq!(ledger.endings(), [(0, Ending::ClientGone)]);
        assert_eq!(ledger.0[0].backend_failed(), None);
        assert_eq!(inflight(&pool), [0, 0, 0]);
    }
}

#[test]
fn a_request_that_finishes_without_a_pick_counts_nothing() {
    let pool = pool("");
    let mut a = Attempts::new(pool.clone(), STARTED);
    // No healthy backend: Pingora goes from `upstream_peer` to `logging`.
    let _ = a.picking(|| 0);
    assert!(!a.is_open());
    assert_eq!(
        a.finish(Some(&up(ErrorType::HTTPStatus(503))), STARTED),
        None
    );
    assert_eq!((a.count(), a.backend()), (0, None));
    assert_eq!(inflight(&pool), [0, 0, 0]);
    // Events with no attempt open are no-ops too.
    assert_eq!(a.failed(Failure::Reset, STARTED), None);
    assert_eq!(a.answered(200, STARTED), None);
    assert_eq!(a.connect_failed(STARTED).settled, None);
}

#[test]
fn dropping_mid_attempt_gives_the_in_flight_count_back() {
    let pool = pool("");
    let mut a = Attempts::new(pool.clone(), STARTED);
    let now = a.picking(|| 0);
    let _ = a.picked(1, now);
    assert_eq!(inflight(&pool), [0, 1, 0]);
    // A panic in a filter hook unwinds past `logging`: only drop runs.
    drop(a);
    assert_eq!(inflight(&pool), [0, 0, 0]);

    // The same across a real unwind.
    let mut a = Attempts::new(pool.clone(), STARTED);
    let _ = a.picked(2, STARTED);
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _held = a;
        panic!("a bug in a filter hook");
    }));
    assert!(unwound.is_err());
    assert_eq!(inflight(&pool), [0, 0, 0]);
}

#[test]
fn a_pick_over_an_open_attempt_settles_it_and_moves_the_count() {
    let pool = pool("");
    let mut a = Attempts::new(pool.clone(), STARTED);
    let mut ledger = Ledger::default();
    ledger.note(a.picked(0, STARTED));
    // A callback Pingora skipped: the next pick comes with the first open.
    ledger.note(a.picked(1, STARTED + MS));
    assert_eq!(inflight(&pool), [0, 1, 0]);
    ledger.note(a.finish(None, STARTED + 2 * MS));
    assert_eq!(
        ledger.endings(),
        [(0, Ending::Abandoned), (1, Ending::Abandoned)]
    );
    assert_eq!(inflight(&pool), [0, 0, 0]);
}

#[test]
fn only_the_first_pick_counts_toward_the_retry_budget() {
    // One retry per request, no floor.
    let pool = pool("    retries: 5\n    retry_budget: { ratio: 1, min_per_second: 0 }\n");
    let mut a = Attempts::new(pool.clone(), STARTED);
    for backend in 0..3 {
        let now = a.picking(|| STARTED);
        let _ = a.picked(backend, now);
        // The request's one retry, then none: a retry's pick is no new
        // request for the ratio to grant more from.
        assert_eq!(a.connect_failed(now).retry, backend == 0, "after {backend}");
    }
    assert_eq!(inflight(&pool), [0, 0, 0]);
}

/// Thirty gRPC calls whose 20 ms deadline passes before backend 0 answers,
/// each recorded by the pool as the proxy records it.
fn deadline_burst(pool: &Arc<Pool>, bounded: bool) {
    for i in 0..30u64 {
        let started = STARTED + i * 100 * MS;
        let mut a = Attempts::new(pool.clone(), started);
        let now = a.picking(|| unreachable!());
        assert_eq!(a.picked(0, now), None);
        if bounded {
            a.bounded_by_client(now + 20 * MS);
        }
        let e = up(ErrorType::ReadTimedout);
        let end = now + 21 * MS;
        let settled = a.failed(Failure::classify(&e, false), end);
        pool.record(&settled.unwrap(), end);
        assert_eq!(a.finish(Some(&e), end), None);
    }
}

#[test]
fn client_deadlines_neither_eject_nor_slow_down_a_backend() {
    let settings = "    balance: load_aware\n    latency_decay: 10s\n    \
                    outlier_detection: { consecutive_failures: 3 }\n";
    let end = STARTED + 30 * 100 * MS;
    let clients = pool(settings);
    deadline_burst(&clients, true);
    assert!(
        !clients.is_ejected(0, end),
        "the client's deadline ejected it"
    );
    let b = &clients.backends[0];
    assert_eq!(b.stats.latency.cost(end, 10e9), 0.0, "no latency sample");
    assert_eq!(b.metrics.client_deadline.get(), 30);
    assert_eq!(b.metrics.timeout.get(), 0);
    // What the backend's own read_timeout firing looks like, for contrast:
    // ejected, and slow in load_aware's eyes.
    let backends = pool(settings);
    deadline_burst(&backends, false);
    assert!(backends.is_ejected(0, end));
    assert!(backends.backends[0].stats.latency.cost(end, 10e9) > 0.0);
    assert_eq!(backends.backends[0].metrics.timeout.get(), 30);
}
