use super::*;

const MS: u64 = 1_000_000;

fn up(t: ErrorType) -> Box<Error> {
    Error::new_up(t)
}

#[test]
fn an_answer_settles_once_and_later_errors_count_nothing() {
    let mut a = AttemptTracker::default();
    assert_eq!(a.picked(1, 10 * MS), None);
    let s = a.answered(200, 15 * MS).unwrap();
    assert_eq!(s.backend, 1);
    assert_eq!(s.waited_nanos, 5 * MS);
    assert_eq!((s.label(), s.backend_failed()), ("ok", Some(false)));
    assert_eq!(s.adaptive_sample(), Some((5 * MS, true)));
    // A body error after the header, then logging: nothing more.
    assert_eq!(a.failed(Failure::Reset, 20 * MS), None);
    assert_eq!(a.finish(Some(&up(ErrorType::ReadError)), 21 * MS), None);
}

#[test]
fn a_5xx_is_an_answer_that_counts_as_a_failure() {
    let mut a = AttemptTracker::default();
    a.picked(0, 0);
    let s = a.answered(503, MS).unwrap();
    assert_eq!((s.label(), s.backend_failed()), ("ok", Some(true)));
    assert_eq!(s.adaptive_sample(), Some((MS, false)));
}

#[test]
fn a_connect_failure_then_a_retry_counts_each_attempt_once() {
    let mut a = AttemptTracker::default();
    a.picked(0, 0);
    let first = a.connect_failed(2 * MS).unwrap();
    assert_eq!(first.label(), "connect_failure");
    assert_eq!(first.backend_failed(), Some(true));
    assert_eq!(first.latency_sample(), None, "no answer was waited for");
    assert_eq!(a.picked(1, 3 * MS), None, "the failed one was settled");
    let second = a.answered(200, 4 * MS).unwrap();
    assert_eq!(second.backend, 1);
    assert_eq!(a.finish(None, 5 * MS), None);
}

#[test]
fn a_read_timeout_is_a_failure_with_the_time_waited() {
    let mut a = AttemptTracker::default();
    a.picked(2, 100 * MS);
    let e = up(ErrorType::ReadTimedout);
    let s = a.failed(Failure::classify(&e, false), 400 * MS).unwrap();
    assert_eq!(s.ending, Ending::TimedOut);
    assert_eq!((s.label(), s.backend_failed()), ("timeout", Some(true)));
    assert_eq!(s.latency_sample(), Some(300 * MS));
    // Pingora then calls logging with the same error: counted already.
    assert_eq!(a.finish(Some(&e), 401 * MS), None);
}

#[test]
fn write_timeouts_and_resets_after_connect_are_failures() {
    for (t, label) in [
        (ErrorType::WriteTimedout, "timeout"),
        (ErrorType::ConnectionClosed, "reset"),
        (ErrorType::ReadError, "reset"),
        (ErrorType::InvalidHTTPHeader, "reset"),
    ] {
        let mut a = AttemptTracker::default();
        a.picked(0, 0);
        let name = format!("{t:?}");
        let s = a.failed(Failure::classify(&up(t), false), MS).unwrap();
        assert_eq!(s.label(), label, "{name}");
        assert_eq!(s.backend_failed(), Some(true), "{name}");
        assert_eq!(s.latency_sample(), Some(MS), "{name}");
    }
}

#[test]
fn a_client_that_hangs_up_is_not_held_against_the_backend() {
    let mut a = AttemptTracker::default();
    a.picked(0, 0);
    let mut e = Error::new(ErrorType::ConnectionClosed);
    e.as_down();
    let s = a.failed(Failure::classify(&e, false), MS).unwrap();
    assert_eq!(s.ending, Ending::ClientGone);
    assert_eq!(s.label(), "error");
    assert_eq!(s.backend_failed(), None);
    assert_eq!(s.latency_sample(), None);
    assert_eq!(s.adaptive_sample(), None);
}

#[test]
fn a_client_gone_seen_only_at_the_end_is_classified_too() {
    let mut a = AttemptTracker::default();
    a.picked(0, 0);
    let mut e = Error::new(ErrorType::WriteError);
    e.as_down();
    assert_eq!(a.finish(Some(&e), MS).unwrap().ending, Ending::ClientGone);
}

#[test]
fn a_stale_pooled_connection_is_retried_without_blame() {
    let mut a = AttemptTracker::default();
    a.picked(0, 0);
    let e = up(ErrorType::ConnectionClosed);
    let s = a.failed(Failure::classify(&e, true), MS).unwrap();
    assert_eq!(s.ending, Ending::Stale);
    assert_eq!(s.backend_failed(), None);
    assert_eq!(a.picked(0, MS), None);
    assert_eq!(a.answered(200, 2 * MS).unwrap().backend, 0);
}

#[test]
fn whatever_pingora_retries_is_stale() {
    // The retry goes back to the same backend whoever was to blame, so
    // the request's books treat every retried failure alike.
    let mut down = Error::new(ErrorType::WriteError);
    down.as_down();
    let mut internal = Error::new(ErrorType::InternalError);
    internal.esource = ErrorSource::Internal;
    for e in [up(ErrorType::ConnectionClosed), down, internal] {
        assert_eq!(Failure::classify(&e, true), Failure::Stale, "{e}");
    }
}

#[test]
fn an_open_attempt_is_settled_at_the_end_or_at_the_next_pick() {
    let mut a = AttemptTracker::default();
    a.picked(0, 0);
    assert_eq!(a.open_since(), Some(0));
    let s = a.finish(None, MS).unwrap();
    assert_eq!(s.ending, Ending::Abandoned);
    assert_eq!(s.backend_failed(), None);
    assert_eq!(a.open_since(), None);
    assert_eq!(a.finish(None, 2 * MS), None);

    a.picked(3, 0);
    let s = a.picked(4, MS).unwrap();
    assert_eq!((s.backend, s.ending), (3, Ending::Abandoned));
    let mut internal = Error::new(ErrorType::InternalError);
    internal.as_up();
    internal.esource = ErrorSource::Internal;
    assert_eq!(
        a.failed(Failure::classify(&internal, false), MS)
            .unwrap()
            .ending,
        Ending::Abandoned
    );
}

#[test]
fn nothing_picked_means_nothing_counted() {
    let mut a = AttemptTracker::default();
    assert_eq!(a.connect_failed(0), None);
    assert_eq!(a.answered(200, 0), None);
    assert_eq!(a.failed(Failure::TimedOut, 0), None);
    assert_eq!(a.finish(Some(&up(ErrorType::ReadTimedout)), 0), None);
}

#[test]
fn a_timeout_at_the_clients_own_deadline_is_the_clients() {
    // `grpc-timeout: 20m` shortened the read timeout of an attempt picked at
    // 100 ms: its deadline passes at 120 ms.
    let mut a = AttemptTracker::default();
    a.picked(1, 100 * MS);
    a.bounded_by_client(120 * MS);
    let e = up(ErrorType::ReadTimedout);
    let s = a.failed(Failure::classify(&e, false), 121 * MS).unwrap();
    assert_eq!(s.ending, Ending::ClientDeadline);
    assert_eq!(s.label(), "client_deadline");
    assert_eq!(s.backend_failed(), None, "not held against the backend");
    assert_eq!(s.latency_sample(), None, "load_aware learns nothing");
    assert_eq!(s.adaptive_sample(), None, "adaptive limits learn nothing");
    assert_eq!(a.finish(Some(&e), 122 * MS), None, "settled once");

    // Seen only when the request ends (logging), the same.
    a.picked(1, 0);
    a.bounded_by_client(20 * MS);
    assert_eq!(
        a.finish(Some(&e), 20 * MS).unwrap().ending,
        Ending::ClientDeadline
    );
}

#[test]
fn a_timeout_before_the_clients_deadline_is_still_the_backends() {
    // A write timeout shorter than what the client left: the upstream's own
    // timer fired, so the backend had all the time it is granted.
    let mut a = AttemptTracker::default();
    a.picked(0, 0);
    a.bounded_by_client(500 * MS);
    let s = a
        .failed(
            Failure::classify(&up(ErrorType::WriteTimedout), false),
            300 * MS,
        )
        .unwrap();
    assert_eq!(s.ending, Ending::TimedOut);
    assert_eq!(s.backend_failed(), Some(true));
    assert_eq!(s.latency_sample(), Some(300 * MS));
}

#[test]
fn a_deadline_bounds_only_its_own_attempt_and_only_timeouts() {
    let mut a = AttemptTracker::default();
    // No attempt open: nothing to bound.
    a.bounded_by_client(0);
    a.picked(0, 0);
    a.bounded_by_client(10 * MS);
    // An answer or a reset after the deadline is the backend's as usual.
    assert_eq!(
        a.answered(503, 11 * MS).unwrap().backend_failed(),
        Some(true)
    );
    a.picked(1, 0);
    a.bounded_by_client(10 * MS);
    let reset = a
        .failed(Failure::classify(&up(ErrorType::ReadError), false), 11 * MS)
        .unwrap();
    assert_eq!(reset.ending, Ending::Reset);
    // The next attempt (no client bound: its read timeout was the
    // upstream's) times out: the backend's.
    a.picked(2, 20 * MS);
    let s = a.failed(Failure::TimedOut, 50 * MS).unwrap();
    assert_eq!((s.backend, s.ending), (2, Ending::TimedOut));
}

#[test]
fn what_is_not_the_backends_teaches_nothing() {
    // The one rule: an ending that passive health does not count gives no
    // latency sample and no adaptive sample either.
    let all = [
        Ending::ConnectFailed,
        Ending::Answered { status: 200 },
        Ending::Answered { status: 503 },
        Ending::TimedOut,
        Ending::Reset,
        Ending::Stale,
        Ending::ClientGone,
        Ending::ClientDeadline,
        Ending::Abandoned,
    ];
    for ending in all {
        let s = Settled {
            backend: 0,
            ending,
            waited_nanos: MS,
        };
        if s.backend_failed().is_none() {
            assert_eq!(s.latency_sample(), None, "{ending:?}");
            assert_eq!(s.adaptive_sample(), None, "{ending:?}");
        } else {
            assert!(s.adaptive_sample().is_some(), "{ending:?}");
        }
    }
    for ending in [
        Ending::Stale,
        Ending::ClientGone,
        Ending::ClientDeadline,
        Ending::Abandoned,
    ] {
        let s = Settled {
            backend: 0,
            ending,
            waited_nanos: MS,
        };
        assert_eq!(s.backend_failed(), None, "{ending:?} is not the backend's");
    }
}
