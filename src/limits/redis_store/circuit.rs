//! The circuit breaker in front of the shared store.
//!
//! # Why a breaker
//! A store that times out costs every request `decision_timeout`; a store that
//! is down costs nothing per request only if requests stop asking it. So when
//! Redis fails most of the decisions it is asked, the circuit opens and every
//! shared limit decides locally at once (its `on_store_error`).
//!
//! # Opened by a failure rate, not a streak
//! What opens it is the share of failed decisions over the last
//! [`WINDOW_MS`]: more than half of them, once there are at least
//! [`MIN_DECISIONS`]. A count of failures in a row cannot tell a sick Redis
//! from a busy machine: on two cores shared by three gateways and Redis, a
//! worker thread descheduled for a few milliseconds sees a handful of
//! decisions miss a 5 ms `decision_timeout` while Redis answers everything
//! else in time, and three in a row then happen every few seconds. Each
//! opening sends a second or more of decisions to the local fallback, which
//! is what made three gateways admit a fifth more than their shared limit.
//! A rate over a second stays low through such hiccups and still opens
//! within a second of Redis really failing (and within [`MIN_DECISIONS`]
//! decisions of a Redis that fails everything from the start).
//!
//! Every way a decision can fail counts the same: a timeout, `OOM`,
//! `READONLY`, `CLUSTERDOWN`, or a `NOSCRIPT` that loading the script again
//! did not cure. All of them answer `PING` happily; none of them gives a
//! decision.
//!
//! # Closed in the background, by what decisions need
//! Requests never probe an open circuit (Envoy's and Hystrix's half-open
//! state lets one request pay for the probe): the store's own thread runs a
//! real decision script, which writes, on a probe key a few times a second,
//! and closes the circuit only when every probe of a round answered within
//! `decision_timeout` (see [`Link::maintain`](super::link::Link::maintain)).
//! The window is emptied when the circuit closes, so the failures that
//! opened it cannot open it again.
//!
//! # An episode
//! From opening to closing is one episode: [`Circuit::failure`] says when one
//! starts (exactly once, however many requests fail at once) and
//! [`Circuit::close`] when it ends, with what happened meanwhile, so the log
//! has two lines per episode and not one per failed request.
//!
//! The state is atomics: a decision reads one flag and adds to one slot of
//! the window, without a lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The span over which the failure rate is measured.
pub const WINDOW_MS: u64 = 1000;
/// Fewer decisions than this in the window never open the circuit: a quiet
/// gateway's one timeout is not a failure rate.
pub const MIN_DECISIONS: u32 = 10;
/// The window is kept in this many slots, each a tenth of it.
const SLOTS: usize = 10;
const SLOT_MS: u64 = WINDOW_MS / SLOTS as u64;

/// One slot: its tick (32 bits), failures (16) and decisions (16), packed so
/// that a decision adds to it with one compare-and-swap.
fn pack(tick: u32, failed: u16, total: u16) -> u64 {
    (u64::from(tick) << 32) | (u64::from(failed) << 16) | u64::from(total)
}

fn unpack(v: u64) -> (u32, u16, u16) {
    ((v >> 32) as u32, (v >> 16) as u16, v as u16)
}

/// The failure that opened the circuit, and what the window held then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub failed: u32,
    pub decisions: u32,
}

/// What an episode cost, told when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Episode {
    pub lasted: Duration,
    /// Decisions asked of Redis that failed, from the window that opened it on.
    pub failed: u64,
    /// Decisions not asked because the circuit was open.
    pub skipped: u64,
    pub probes_failed: u64,
}

#[derive(Debug)]
pub struct Circuit {
    epoch: Instant,
    open: AtomicBool,
    slots: [AtomicU64; SLOTS],
    opened_ms: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    probes_failed: AtomicU64,
}

impl Circuit {
    /// A circuit that starts open: nothing is known to answer until the
    /// store's task has connected.
    pub fn new_open() -> Circuit {
        Circuit {
            epoch: Instant::now(),
            open: AtomicBool::new(true),
            slots: Default::default(),
            opened_ms: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            probes_failed: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether requests may ask the store.
    pub fn is_closed(&self) -> bool {
        !self.open.load(Ordering::Acquire)
    }

    /// A decision Redis answered in time.
    pub fn success(&self) {
        self.add(self.now_ms(), false);
    }

    /// Counts a failed decision; `Some` exactly once per episode: for the
    /// failure that opened the circuit.
    pub fn failure(&self) -> Option<Opened> {
        self.failure_at(self.now_ms())
    }

    /// A decision made without asking, the circuit being open.
    pub fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// A probe of an open circuit that failed.
    pub fn probe_failed(&self) {
        self.probes_failed.fetch_add(1, Ordering::Relaxed);
    }

    fn failure_at(&self, now_ms: u64) -> Option<Opened> {
        self.add(now_ms, true);
        if !self.is_closed() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let (failed, decisions) = self.window(now_ms);
        if decisions < MIN_DECISIONS || failed * 2 <= decisions {
            return None;
        }
        self.open
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        self.opened_ms.store(now_ms, Ordering::Relaxed);
        self.failed.store(u64::from(failed), Ordering::Relaxed);
        self.skipped.store(0, Ordering::Relaxed);
        self.probes_failed.store(0, Ordering::Relaxed);
        Some(Opened { failed, decisions })
    }

    fn add(&self, now_ms: u64, failed: bool) {
        let tick = (now_ms / SLOT_MS) as u32;
        let slot = &self.slots[tick as usize % SLOTS];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let (t, f, n) = unpack(cur);
            let (f, n) = if t == tick { (f, n) } else { (0, 0) };
            let new = pack(
                tick,
                f.saturating_add(u16::from(failed)),
                n.saturating_add(1),
            );
            match slot.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Failures and decisions within the last [`WINDOW_MS`].
    fn window(&self, now_ms: u64) -> (u32, u32) {
        let tick = (now_ms / SLOT_MS) as u32;
        let mut sum = (0u32, 0u32);
        for slot in &self.slots {
            let (t, f, n) = unpack(slot.load(Ordering::Relaxed));
            if tick.wrapping_sub(t) < SLOTS as u32 {
                sum.0 += u32::from(f);
                sum.1 += u32::from(n);
            }
        }
        sum
    }

    /// The store answered a round of probes (or connected): closes the
    /// circuit with an empty window, and tells what the episode it ended
    /// cost; `None` if it was closed already.
    pub fn close(&self) -> Option<Episode> {
        self.close_at(self.now_ms())
    }

    fn close_at(&self, now_ms: u64) -> Option<Episode> {
        if self.is_closed() {
            return None;
        }
        for slot in &self.slots {
            slot.store(0, Ordering::Relaxed);
        }
        let episode = Episode {
            lasted: Duration::from_millis(
                now_ms.saturating_sub(self.opened_ms.load(Ordering::Relaxed)),
            ),
            failed: self.failed.swap(0, Ordering::Relaxed),
            skipped: self.skipped.swap(0, Ordering::Relaxed),
            probes_failed: self.probes_failed.swap(0, Ordering::Relaxed),
        };
        self.open
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        Some(episode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed() -> Circuit {
        let c = Circuit::new_open();
        assert!(!c.is_closed(), "closed only once the store answered");
        assert!(c.close_at(0).is_some());
        assert!(
            c.close_at(0).is_none(),
            "closing a closed circuit ends nothing"
        );
        c
    }

    #[test]
    fn scattered_failures_among_successes_never_open_it() {
        let c = closed();
        // A busy machine: 3 timeouts in a row every 100 ms, among 20 successes.
        for ms in 0..5_000u64 {
            if ms % 5 == 0 {
                c.add(ms, false);
            }
            if ms % 100 < 3 {
                assert_eq!(c.failure_at(ms), None, "at {ms} ms");
            }
        }
        assert!(c.is_closed());
    }

    #[test]
    fn more_than_half_failing_opens_it_once() {
        let c = closed();
        for ms in 0..10 {
            c.add(ms * 10, false);
        }
        // Ten successes, then failures: the eleventh failure is more than half.
        let mut opened = Vec::new();
        for i in 0..30u64 {
            if let Some(o) = c.failure_at(100 + i) {
                opened.push((i, o));
            }
        }
        assert_eq!(
            opened,
            vec![(
                10,
                Opened {
                    failed: 11,
                    decisions: 21
                }
            )]
        );
        assert!(!c.is_closed());
    }

    #[test]
    fn a_few_failures_are_not_a_rate() {
        let c = closed();
        for ms in 0..u64::from(MIN_DECISIONS - 1) {
            assert_eq!(c.failure_at(ms), None);
        }
        assert!(c.is_closed(), "fewer than MIN_DECISIONS decisions");
        assert!(c.failure_at(20).is_some(), "all of MIN_DECISIONS failed");
    }

    #[test]
    fn old_decisions_leave_the_window() {
        let c = closed();
        for ms in 0..100 {
            c.add(ms, false);
        }
        // A second later the successes are gone: failures alone count.
        for i in 0..u64::from(MIN_DECISIONS) - 1 {
            assert_eq!(c.failure_at(1_100 + i), None);
        }
        assert!(c.failure_at(1_200).is_some());
    }

    #[test]
    fn an_episode_reports_its_counts_and_closing_empties_the_window() {
        let c = closed();
        let mut at = 1_000;
        while c.failure_at(at).is_none() {
            at += 1;
        }
        c.failure_at(at + 1); // in flight when it opened
        c.skipped();
        c.skipped();
        c.probe_failed();
        let e = c.close_at(at + 1_500).expect("ends the episode");
        assert_eq!(
            e,
            Episode {
                lasted: Duration::from_millis(1_500),
                failed: u64::from(MIN_DECISIONS) + 1,
                skipped: 2,
                probes_failed: 1,
            }
        );
        assert!(c.is_closed());
        // The failures that opened it are forgotten: one more does not reopen it.
        assert_eq!(c.failure_at(at + 1_501), None);
        assert!(c.is_closed());
    }

    #[test]
    fn racing_failures_open_it_once() {
        let c = closed();
        let opened = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if c.failure().is_some() {
                            opened.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(opened.load(Ordering::Relaxed), 1);
    }
}
