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
