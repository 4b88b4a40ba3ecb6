//! What a backend's recent behaviour says about its load: a peak-EWMA of its
//! response time (Finagle's and linkerd's load metric) next to its in-flight
//! count.
//!
//! Why peak-EWMA: a plain moving average reacts slowly to a backend that
//! suddenly gets slow, and a slow backend keeps receiving traffic while the
//! average catches up. Peak-EWMA jumps to a sample that is *above* the
//! average at once and decays toward faster samples over `decay`, so one
//! slow answer is enough to steer traffic away within the same second.
//!
//! A backend that is avoided sends no new samples, so its average would stay
//! high forever and it would never get traffic back. So the average is also
//! aged by the time since the last sample: after a quiet spell the backend
//! looks cheap again, gets a request, and that fresh sample decides. A backend
//! that is still slow is probed about once per `decay · ln(slowness)`, which
//! is what bounds its share; one that recovered is back at the next probe.
//!
//! State is two atomics, updated with plain stores: a lost update under a
//! race costs one sample, which the next one repairs.

use std::sync::atomic::{AtomicU64, Ordering};

/// Peak-EWMA of response times, in nanoseconds, with time injected.
/// The decay is passed on each call rather than stored, so the state can
/// outlive a reload that changes `latency_decay`.
#[derive(Default)]
pub struct PeakEwma {
    /// f64 bits of the average, in nanoseconds.
    avg_bits: AtomicU64,
    /// When the last sample arrived (nanos on the gateway's clock).
    at: AtomicU64,
}

impl PeakEwma {
    fn avg(&self) -> f64 {
        f64::from_bits(self.avg_bits.load(Ordering::Relaxed))
    }

    /// Records a response time.
    pub fn observe(&self, rtt_nanos: u64, now: u64, decay_nanos: f64) {
        let rtt = rtt_nanos as f64;
        let prev = self.avg();
        let elapsed = now.saturating_sub(self.at.load(Ordering::Relaxed)) as f64;
        let next = if rtt > prev {
            rtt
        } else {
            let w = (-elapsed / decay_nanos.max(1.0)).exp();
            prev * w + rtt * (1.0 - w)
        };
        self.avg_bits.store(next.to_bits(), Ordering::Relaxed);
        self.at.store(now, Ordering::Relaxed);
    }

    /// The average as of `now`, aged by the time since the last sample.
    pub fn cost(&self, now: u64, decay_nanos: f64) -> f64 {
        let elapsed = now.saturating_sub(self.at.load(Ordering::Relaxed)) as f64;
        self.avg() * (-elapsed / decay_nanos.max(1.0)).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000 * MS;
    const DECAY: f64 = S as f64;

    #[test]
    fn a_slow_sample_counts_at_once_and_fast_ones_pull_it_down() {
        let e = PeakEwma::default();
        e.observe(5 * MS, 10 * S, DECAY);
        e.observe(50 * MS, 10 * S + MS, DECAY);
        assert!(
            (e.cost(10 * S + MS, DECAY) - 50e6).abs() < 1.0,
            "peak taken at once"
        );
        // Fast samples over a few decay periods bring it back down.
        let mut t = 10 * S + MS;
        for _ in 0..40 {
            t += 100 * MS;
            e.observe(5 * MS, t, DECAY);
        }
        assert!(e.cost(t, DECAY) < 6e6, "cost {}", e.cost(t, DECAY));
    }

    #[test]
    fn an_idle_backend_looks_cheap_again_after_a_while() {
        let e = PeakEwma::default();
        e.observe(50 * MS, S, DECAY);
        assert!(e.cost(S, DECAY) > 49e6);
        // ln(10) decays ≈ 2.3 s to look 10× cheaper.
        assert!(e.cost(S + 2 * S, DECAY) > 5e6);
        assert!(e.cost(S + 3 * S, DECAY) < 5e6);
    }
}
