//! The controller against simulated backends on a fake clock: a backend of
//! `workers` that serve one request each in `service` ns, FIFO queue beyond,
//! and closed-loop clients that resend at once (after 1 ms when refused).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::*;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

struct Sim {
    ctl: Controller,
    workers: usize,
    service: u64,
    now: u64,
    in_flight: u64,
    busy: usize,
    queue: VecDeque<(u64, u64)>, // (admitted at, epoch)
    /// (time, kind): kind 0 = a client sends, 1 = a worker finishes.
    events: BinaryHeap<Reverse<(u64, u8, u64, u64)>>,
    served: u64,
    refused: u64,
    latencies: Vec<u64>,
    fail_every: Option<u64>,
}

impl Sim {
    fn new(workers: usize, service_ms: u64, clients: usize, params: Params) -> Sim {
        let mut s = Sim {
            ctl: Controller::new(params, 0, 42),
            workers,
            service: service_ms * MS,
            now: 0,
            in_flight: 0,
            busy: 0,
            queue: VecDeque::new(),
            events: BinaryHeap::new(),
            served: 0,
            refused: 0,
            latencies: Vec::new(),
            fail_every: None,
        };
        for i in 0..clients {
            s.events.push(Reverse((i as u64 * 10_000, 0, 0, 0)));
        }
        s
    }

    fn run_until(&mut self, until: u64) {
        while let Some(Reverse((t, kind, admitted, epoch))) = self.events.pop() {
            if t > until {
                self.events.push(Reverse((t, kind, admitted, epoch)));
                break;
            }
            self.now = t;
            if kind == 0 {
                let limit = self.ctl.limit();
                if admits(limit, self.in_flight, Priority::Default) {
                    self.in_flight += 1;
                    self.ctl.on_admit(self.in_flight, t);
                    self.queue.push_back((t, self.ctl.epoch()));
                    self.start_work();
                } else {
                    self.refused += 1;
                    self.events.push(Reverse((t + MS, 0, 0, 0)));
                }
            } else {
                self.busy -= 1;
                self.in_flight -= 1;
                self.served += 1;
                let rtt = t - admitted;
                self.latencies.push(rtt);
                let ok = self
                    .fail_every
                    .is_none_or(|n| !self.served.is_multiple_of(n));
                self.ctl.on_sample(
                    Sample {
                        rtt_ns: rtt,
                        ok,
                        epoch,
                    },
                    t,
                );
                self.events.push(Reverse((t, 0, 0, 0)));
                self.start_work();
            }
        }
        self.now = until;
    }

    fn start_work(&mut self) {
        while self.busy < self.workers {
            let Some((admitted, epoch)) = self.queue.pop_front() else {
                return;
            };
            self.busy += 1;
            self.events
                .push(Reverse((self.now + self.service, 1, admitted, epoch)));
        }
    }

    /// p99 of the latencies since the last call, and the count served.
    fn take_p99(&mut self) -> (u64, u64) {
        let mut l = std::mem::take(&mut self.latencies);
        l.sort_unstable();
        let p99 = l
            .get((l.len() * 99 / 100).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0);
        (p99, l.len() as u64)
    }
}

#[test]
fn the_limit_settles_near_the_backends_capacity_under_8x_overload() {
    // 8 workers, 20 ms each, 64 clients: the backend.
    let mut s = Sim::new(8, 20, 64, Params::default());
    s.run_until(5 * SEC);
    let limit = s.ctl.limit();
    assert!((4.0..=16.0).contains(&limit), "limit {limit} after 5 s");
    assert!(
        s.ctl
            .min_rtt_ns()
            .is_some_and(|m| (20 * MS..=21 * MS).contains(&m)),
        "{:?}",
        s.ctl.min_rtt_ns()
    );
    s.take_p99();
    let served_before = s.served;
    s.run_until(10 * SEC);
    let (p99, _) = s.take_p99();
    assert!(p99 <= 60 * MS, "p99 {} ms, service 20 ms", p99 / MS);
    let goodput = (s.served - served_before) as f64 / 5.0;
    assert!(goodput >= 0.8 * 400.0, "goodput {goodput}/s of 400/s");
}

#[test]
fn the_limit_follows_capacity_down_and_up() {
    let mut s = Sim::new(8, 20, 64, Params::default());
    s.run_until(5 * SEC);
    s.workers = 4;
    s.run_until(15 * SEC);
    let halved = s.ctl.limit();
    assert!(
        (2.0..=8.0).contains(&halved),
        "limit {halved} after capacity halved"
    );
    s.workers = 8;
    s.run_until(25 * SEC);
    let doubled = s.ctl.limit();
    assert!(
        (4.0..=16.0).contains(&doubled),
        "limit {doubled} after capacity doubled back"
    );
    assert!(doubled > halved);
}

#[test]
fn a_slower_backend_is_found_by_the_next_probe() {
    let params = Params {
        probe_interval: Duration::from_secs(5),
        ..Params::default()
    };
    let mut s = Sim::new(8, 20, 64, params);
    s.run_until(4 * SEC);
    s.service = 40 * MS;
    s.run_until(14 * SEC);
    assert!(
        s.ctl
            .min_rtt_ns()
            .is_some_and(|m| (40 * MS..=42 * MS).contains(&m)),
        "min_rtt {:?}",
        s.ctl.min_rtt_ns()
    );
    let limit = s.ctl.limit();
    assert!((4.0..=16.0).contains(&limit), "limit {limit}");
}

#[test]
fn failures_count_as_congestion() {
    let mut ok = Sim::new(8, 20, 64, Params::default());
    ok.run_until(5 * SEC);
    let mut failing = Sim::new(8, 20, 64, Params::default());
    failing.fail_every = Some(3);
    failing.run_until(5 * SEC);
    assert!(
        failing.ctl.limit() < ok.ctl.limit(),
        "{} with a third failing vs {}",
        failing.ctl.limit(),
        ok.ctl.limit()
    );
}

#[test]
fn an_idle_limit_does_not_inflate() {
    // Two clients never need more than two slots: the limit must not run off.
    let mut s = Sim::new(8, 20, 2, Params::default());
    s.run_until(20 * SEC);
    assert!(s.ctl.limit() <= 40.0, "limit {}", s.ctl.limit());
    assert_eq!(s.refused, 0);
}

#[test]
fn bounds_hold() {
    let params = Params {
        initial: 5000.0,
        min: 10.0,
        max: 12.0,
        ..Params::default()
    };
    let mut s = Sim::new(1, 20, 64, params);
    s.run_until(5 * SEC);
    let limit = s.ctl.limit();
    assert!((10.0..=12.0).contains(&limit), "{limit}");
}

#[test]
fn probes_measure_only_requests_admitted_after_they_began() {
    let mut c = Controller::new(Params::default(), 0, 1);
    assert!(c.is_probing());
    assert_eq!(c.limit(), PROBE_LIMIT);
    // Samples of an older epoch (queued before the probe) are not counted.
    for i in 0..100 {
        c.on_sample(
            Sample {
                rtt_ns: 500 * MS,
                ok: true,
                epoch: 0,
            },
            i,
        );
    }
    assert!(c.is_probing());
    for i in 0..PROBE_SAMPLES as u64 {
        c.on_sample(
            Sample {
                rtt_ns: 20 * MS + i,
                ok: true,
                epoch: c.epoch(),
            },
            1000 + i,
        );
    }
    assert!(!c.is_probing());
    assert_eq!(c.min_rtt_ns(), Some(20 * MS + 2), "the 10th percentile");
    assert_eq!(c.limit(), 20.0, "back to the limit it had");
}

#[test]
fn priorities_share_the_limit() {
    // At 8 of 10 in flight: the sheddable are refused, the rest admitted.
    assert!(!admits(10.0, 8, Priority::Sheddable));
    assert!(admits(10.0, 5, Priority::Sheddable));
    assert!(!admits(10.0, 6, Priority::Sheddable));
    assert!(admits(10.0, 8, Priority::Default));
    assert!(!admits(10.0, 10, Priority::Default));
    assert!(admits(10.0, 11, Priority::Critical));
    assert!(!admits(10.0, 12, Priority::Critical));
    assert!(
        admits(1.0, 0, Priority::Sheddable),
        "one request always fits an empty limit"
    );
    assert_eq!(Priority::parse(Some(b"CRITICAL")), Priority::Critical);
    assert_eq!(Priority::parse(Some(b" sheddable ")), Priority::Sheddable);
    assert_eq!(Priority::parse(Some(b"urgent")), Priority::Default);
    assert_eq!(Priority::parse(None), Priority::Default);
}
