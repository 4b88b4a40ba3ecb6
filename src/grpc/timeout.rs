//! `grpc-timeout`: the client's deadline for the call.
//!
//! gRPC over HTTP/2 spec: `TimeoutValue TimeoutUnit`, at most 8 ASCII digits
//! and one unit of `H` (hours), `M` (minutes), `S`, `m` (milli), `u`
//! (micro), `n` (nano). Anything else is ignored as if absent: a malformed
//! deadline must not fail a call the backend would have served.
//!
//! The deadline is the call's, not each attempt's: it runs from when the
//! request arrived, so a retry after a failed connect gets what is left of
//! it, and a retry after it passed is not made (the client has stopped
//! listening). A deadline shorter than the upstream's `read_timeout`
//! replaces it; the attempt is then bounded by the client, and a timeout of
//! it is the client's (`upstream::attempt` keeps that apart from the
//! backend's failures).

use std::time::Duration;

use http::HeaderMap;

/// How long the gateway waits for an attempt, given the client's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The upstream's own `read_timeout` is the sooner (or there is no
    /// deadline): the attempt is the backend's to fail.
    Upstream,
    /// The client's deadline, which passes at `at`, is sooner: wait `left`,
    /// and a timeout is the client's.
    Client { left: Duration, at: u64 },
    /// The deadline has passed: make no attempt.
    Passed,
}

/// When the client's deadline passes, in nanos on the gateway's clock, for
/// a call that arrived at `arrived` (`None`: no valid `grpc-timeout`). Only
/// meant for requests that are gRPC calls.
pub fn deadline(headers: &HeaderMap, arrived: u64) -> Option<u64> {
    let d = parse_timeout(headers.get("grpc-timeout")?.as_bytes())?;
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Some(arrived.saturating_add(nanos))
}

/// How long an attempt starting at `now` waits: the upstream's
/// `read_timeout` or, when it passes sooner, the client's deadline `at`.
pub fn wait(at: u64, now: u64, read_timeout: Duration) -> Wait {
    let Some(left) = at.checked_sub(now).filter(|&n| n > 0) else {
        return Wait::Passed;
    };
    let left = Duration::from_nanos(left);
    if read_timeout <= left {
        Wait::Upstream
    } else {
        Wait::Client { left, at }
    }
}

pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout(b"1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_timeout(b"99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_timeout(b"5n"), Some(Duration::from_nanos(5)));
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in [
            &b""[..],
            b"S",
            b"10",
            b"10s",
            b"-1S",
            b"123456789S",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(
                parse_timeout(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn the_deadline_runs_from_the_calls_arrival() {
        let mut h = HeaderMap::new();
        assert_eq!(deadline(&h, 5 * MS), None);
        h.insert("grpc-timeout", "20m".parse().unwrap());
        assert_eq!(deadline(&h, 5 * MS), Some(25 * MS));
        h.insert("grpc-timeout", "20ms".parse().unwrap());
        assert_eq!(deadline(&h, 5 * MS), None, "malformed: as if absent");
        h.insert("grpc-timeout", "99999999H".parse().unwrap());
        assert_eq!(deadline(&h, 5 * MS), Some(u64::MAX), "saturates");
    }

    #[test]
    fn the_sooner_of_read_timeout_and_deadline_bounds_an_attempt() {
        let s = Duration::from_secs(1);
        // A 20 ms deadline against a 1 s read_timeout: the client's.
        let client = |ms, at| Wait::Client {
            left: Duration::from_millis(ms),
            at,
        };
        assert_eq!(wait(20 * MS, 0, s), client(20, 20 * MS));
        // A retry at 15 ms gets what is left.
        assert_eq!(wait(20 * MS, 15 * MS, s), client(5, 20 * MS));
        // A deadline no sooner than read_timeout leaves the upstream's.
        assert_eq!(wait(1000 * MS, 0, s), Wait::Upstream);
        assert_eq!(wait(5000 * MS, 0, s), Wait::Upstream);
        // Passed: no attempt.
        assert_eq!(wait(20 * MS, 20 * MS, s), Wait::Passed);
        assert_eq!(wait(20 * MS, 30 * MS, s), Wait::Passed);
    }
}
