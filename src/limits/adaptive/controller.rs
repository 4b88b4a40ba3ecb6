//! The adaptive concurrency controller: a pure function of (state, sample, now).
//!
//! # Why a gradient against a measured minimum, and not Vegas or AIMD
//! What the limit must find is the concurrency at which the backend is busy
//! but nothing queues. Latency says so directly: with no queue a request takes
//! the backend's no-queue latency (`min_rtt`); every request queued in front
//! of the backend adds to it in proportion. So, as Envoy's adaptive
//! concurrency filter does, the controller compares the latency of recent
//! requests with `min_rtt` and scales the limit by their ratio, the
//! *gradient*:
//!
//! ```text
//! gradient = clamp(min_rtt · (1 + buffer) / recent_rtt, 0.5, 2)
//! limit'   = limit · gradient + sqrt(limit) / 2        (headroom)
//! limit    = limit + (limit' - limit) · smoothing       (no oscillation)
//! ```
//!
//! A backend of `N` workers at limit `L > N` answers in `min_rtt · L/N`, so
//! the fixed point is `L = N·(1 + buffer) + sqrt(L)/2`: a little above `N`,
//! enough to keep every worker busy and the queue a few requests deep. It
//! moves multiplicatively in both directions, so it follows a backend whose
//! capacity halves or doubles within a few seconds. AIMD (TCP Reno-like)
//! would need a loss to back off and adds one per window going up; Vegas
//! estimates the same queue, `L·(1 - min_rtt/rtt)`, but moves by ±1 per
//! window, too slowly from a bad `initial`. Both still need the same true
//! `min_rtt`, which is the hard part:
//!
//! # Measuring `min_rtt`
//! A minimum taken over ordinary traffic is only the no-queue latency if
//! the queue ever empties, which at the right limit it does not. So the
//! controller *probes*: at start and then every `probe_interval` (jittered,
//! so that gateways do not probe in step), it lowers the limit to
//! [`PROBE_LIMIT`] for [`PROBE_SAMPLES`] requests admitted after the probe
//! began (older ones may have queued), and takes their 10th percentile as
//! `min_rtt`.
//! A probe costs a fraction of a second at low concurrency every half
//! minute; in return `min_rtt` follows a backend that became slower or
//! faster after a deploy.
//!
//! # Failures, and limits nobody uses
//! A failed attempt (an error, a timeout, a 5xx) is congestion: a window with
//! failures scales the limit by at most `1 - failed/2`. A window whose
//! requests never came close to the limit does not raise it, or a quiet
//! period would inflate it far beyond what the backend can take.

use std::time::Duration;

pub use crate::limits::limit::Priority;

/// Concurrency while `min_rtt` is measured (Envoy's default `min_concurrency`).
pub const PROBE_LIMIT: f64 = 3.0;
/// Requests a probe measures; their 10th percentile is the new `min_rtt`.
pub const PROBE_SAMPLES: usize = 25;
/// A probe that sees too few requests ends anyway after this long.
const PROBE_MAX_NS: u64 = 2_000_000_000;
/// How long one window collects samples before the limit moves.
pub const WINDOW_NS: u64 = 100_000_000;
/// ...and how many samples it needs at least.
const WINDOW_MIN_SAMPLES: usize = 5;
const WINDOW_MAX_SAMPLES: usize = 512;
/// Latency above `min_rtt` that is not yet congestion. Envoy's default is
/// 25%; the latency measured here is the gateway's own attempt time, which
/// also moves with the gateway's scheduling, and at 25% a busy gateway read
/// its own delays as queueing and left backend workers idle (goodput 76% of
/// capacity in tests/adaptive_limit.rs, on a loaded 2-core host). At 50% the queue at
/// the backend is still a fraction of its worker count.
const BUFFER: f64 = 0.5;
const SMOOTHING: f64 = 0.25;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    pub initial: f64,
    pub min: f64,
    pub max: f64,
    pub probe_interval: Duration,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            initial: 20.0,
            min: 1.0,
            max: 1000.0,
            probe_interval: Duration::from_secs(30),
        }
    }
}

/// One finished attempt of a request this controller admitted.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub rtt_ns: u64,
    pub ok: bool,
    /// [`Controller::epoch`] when the request was admitted.
    pub epoch: u64,
}

#[derive(Clone, Debug)]
enum Phase {
    Probe {
        started: u64,
        samples: Vec<u64>,
        /// The limit to go back to.
        resume: f64,
    },
    Steady,
}

#[derive(Clone, Debug)]
pub struct Controller {
    params: Params,
    limit: f64,
    min_rtt_ns: Option<u64>,
    /// Latency of the last window (its median, which the gradient used).
    recent_rtt_ns: Option<u64>,
    phase: Phase,
    /// Bumped when a probe starts: samples of requests admitted before it
    /// are not probe samples.
    epoch: u64,
    window_start: u64,
    window: Vec<u64>,
    window_failures: u32,
    window_peak: u64,
    next_probe: u64,
    rng: u64,
}

impl Controller {
    /// A controller that starts by measuring `min_rtt`. `seed` jitters its
    /// probes (any value; tests pass a fixed one).
    pub fn new(params: Params, now: u64, seed: u64) -> Controller {
        let mut c = Controller {
            limit: params.initial.clamp(params.min, params.max),
            params,
            min_rtt_ns: None,
            recent_rtt_ns: None,
            phase: Phase::Steady,
            epoch: 0,
            window_start: now,
            window: Vec::new(),
            window_failures: 0,
            window_peak: 0,
            next_probe: now,
            rng: seed | 1,
        };
        c.start_probe(now);
        c
    }

    /// The concurrency allowed now.
    pub fn limit(&self) -> f64 {
        match self.phase {
            Phase::Probe { .. } => PROBE_LIMIT.max(self.params.min).min(self.limit),
            Phase::Steady => self.limit,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn min_rtt_ns(&self) -> Option<u64> {
        self.min_rtt_ns
    }

    pub fn recent_rtt_ns(&self) -> Option<u64> {
        self.recent_rtt_ns
    }

    pub fn is_probing(&self) -> bool {
        matches!(self.phase, Phase::Probe { .. })
    }

    /// Called for every request admitted, with the count in flight including
    /// it: starts a probe when one is due.
    pub fn on_admit(&mut self, in_flight: u64, now: u64) {
        self.window_peak = self.window_peak.max(in_flight);
        if matches!(self.phase, Phase::Steady) && now >= self.next_probe {
            self.start_probe(now);
        }
    }

    fn start_probe(&mut self, now: u64) {
        self.epoch += 1;
        self.phase = Phase::Probe {
            started: now,
            samples: Vec::with_capacity(PROBE_SAMPLES),
            resume: self.limit,
        };
    }

    /// Takes one sample; returns the new limit when it moved.
    pub fn on_sample(&mut self, s: Sample, now: u64) -> Option<f64> {
        if let Phase::Probe {
            started,
            samples,
            resume,
        } = &mut self.phase
        {
            if s.epoch == self.epoch && s.ok {
                samples.push(s.rtt_ns);
            }
            if samples.len() >= PROBE_SAMPLES || now.saturating_sub(*started) >= PROBE_MAX_NS {
                if !samples.is_empty() {
                    // The 10th percentile: delays on a busy host only add to
                    // a no-queue latency, so the low end is the true one; one
                    // fluke below it is not taken.
                    let at = samples.len() / 10;
                    let (_, low, _) = samples.select_nth_unstable(at);
                    self.min_rtt_ns = Some((*low).max(1));
                }
                self.limit = *resume;
                self.phase = Phase::Steady;
                self.next_probe = now.saturating_add(self.jittered_interval());
                self.reset_window(now);
            }
            return None;
        }
        if self.window.len() < WINDOW_MAX_SAMPLES {
            self.window.push(s.rtt_ns);
        }
        if !s.ok {
            self.window_failures += 1;
        }
        if now.saturating_sub(self.window_start) < WINDOW_NS
            || self.window.len() < WINDOW_MIN_SAMPLES
        {
            return None;
        }
        let before = self.limit;
        self.update(now);
        (self.limit != before).then_some(self.limit)
    }

    fn update(&mut self, now: u64) {
        let n = self.window.len();
        // The median, as Envoy's default: a tail percentile reacts to every
        // scheduling hiccup of a busy gateway and keeps the limit too low.
        let (_, median, _) = self.window.select_nth_unstable(n / 2);
        let recent = (*median).max(1);
        self.recent_rtt_ns = Some(recent);
        let Some(min_rtt) = self.min_rtt_ns else {
            self.reset_window(now);
            return;
        };
        let mut gradient = (min_rtt as f64 * (1.0 + BUFFER) / recent as f64).clamp(0.5, 2.0);
        let failed = f64::from(self.window_failures) / n as f64;
        if failed > 0.0 {
            gradient = gradient.min(1.0 - failed / 2.0).max(0.5);
        }
        let target = self.limit * gradient + self.limit.sqrt() / 2.0;
        // A limit nobody came near says nothing about the backend's capacity.
        let used = self.window_peak as f64 >= self.limit / 2.0;
        if target < self.limit || used {
            let next = self.limit + (target - self.limit) * SMOOTHING;
            self.limit = next.clamp(self.params.min, self.params.max);
        }
        self.reset_window(now);
    }

    fn reset_window(&mut self, now: u64) {
        self.window.clear();
        self.window_failures = 0;
        self.window_peak = 0;
        self.window_start = now;
    }

    /// `probe_interval` ± 15%, from a xorshift of the seed.
    fn jittered_interval(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let u = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let base = self.params.probe_interval.as_nanos() as f64;
        (base * (0.85 + 0.3 * u)) as u64
    }
}

/// Whether one more request of `priority` fits with `in_flight` already
/// admitted under `limit`. Near the limit the sheddable are refused first:
/// they get only 60% of it; the critical may overdraw it by a quarter, so a
/// burst of them is not refused for the others' load. (Traffic that is all
/// sheddable raises the limit until 60% of it keeps the backend busy: the
/// backend sees the same concurrency, the headroom is kept for the others.)
pub fn admits(limit: f64, in_flight: u64, priority: Priority) -> bool {
    let share = match priority {
        Priority::Sheddable => 0.6,
        Priority::Default => 1.0,
        Priority::Critical => 1.25,
    };
    (in_flight as f64) < (limit * share).max(1.0).floor()
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
