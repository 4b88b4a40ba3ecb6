//! Helpers for the tests of limits shared through Redis by several gateways:
//! starting them, loading them the way `wrk` does, and reading what they
//! counted.
//!
//! The load is keep-alive HTTP/1.1 connections, each sending its next
//! request as soon as the last one is answered (no pipelining), as `wrk`
//! does; the answer's status and the time it took are recorded per request.
//! A test using this declares `common`, `raw_http` and `redis_server`.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use crate::common::Gateway;
use crate::raw_http::Conn;

/// Starts `n` gateways on the same sections and waits until each has
/// connected to the store.
pub async fn gateways(n: usize, sections: &str) -> Vec<Gateway> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Gateway::start(sections).await);
    }
    for gw in &out {
        assert!(
            gw.wait_status(Duration::from_secs(10), |s| s["redis"]["connected"] == true
                && s["redis"]["circuit_open"] == false)
                .await,
            "gateway did not connect to Redis: {}\n{}",
            gw.status().await["redis"],
            gw.log()
        );
    }
    out
}

/// Waits until every gateway counts `n` gateways sharing the store.
pub async fn wait_members(gws: &[Gateway], n: usize) {
    for gw in gws {
        assert!(
            gw.wait_status(Duration::from_secs(10), |s| {
                s["redis"]["members"].as_array().map(Vec::len) == Some(n)
                    && s["redis"]["live_instances"] == n
            })
            .await,
            "gateway does not see {n} members: {}",
            gw.status().await["redis"]
        );
    }
}

/// What the answers to one target were.
#[derive(Default, Debug)]
pub struct Tally {
    pub admitted: u64,
    pub refused: u64,
    pub other: u64,
    /// Per request, from sending it to its answer's end.
    pub latencies: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.admitted += other.admitted;
        self.refused += other.refused;
        self.other += other.other;
        self.latencies.extend(other.latencies);
    }

    pub fn total(&self) -> u64 {
        self.admitted + self.refused + self.other
    }
}

pub struct Outcome {
    /// One per target, in the order given.
    pub per_target: Vec<Tally>,
    /// From the first request sent to the last answer.
    pub elapsed: Duration,
}

impl Outcome {
    pub fn admitted(&self) -> u64 {
        self.per_target.iter().map(|t| t.admitted).sum()
    }

    pub fn refused(&self) -> u64 {
        self.per_target.iter().map(|t| t.refused).sum()
    }

    pub fn other(&self) -> u64 {
        self.per_target.iter().map(|t| t.other).sum()
    }

    pub fn requests(&self) -> u64 {
        self.per_target.iter().map(Tally::total).sum()
    }

    /// The 99th percentile of every answer's latency.
    pub fn p99(&self) -> Duration {
        let mut all: Vec<Duration> = self
            .per_target
            .iter()
            .flat_map(|t| t.latencies.iter().copied())
            .collect();
        all.sort();
        all.get((all.len() * 99 / 100).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }

    pub fn rate(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends `GET path` to each `(port, path)` target from `per_target`
/// keep-alive connections, each as fast as it is answered, for `duration`.
pub async fn load(targets: &[(u16, String)], per_target: usize, duration: Duration) -> Outcome {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for (i, (port, path)) in targets.iter().enumerate() {
        for _ in 0..per_target {
            let (port, path) = (*port, path.clone());
            tasks.push((
                i,
                tokio::spawn(async move {
                    let mut t = Tally::default();
                    let mut conn = Conn::open(port).await;
                    while Instant::now() < deadline {
                        let sent = Instant::now();
                        match conn.get(&path).await {
                            Some(r) => {
                                t.latencies.push(sent.elapsed());
                                match r.status {
                                    200 => t.admitted += 1,
                                    429 => t.refused += 1,
                                    _ => t.other += 1,
                                }
                            }
                            None => {
                                t.other += 1;
                                conn = Conn::open(port).await;
                            }
                        }
                    }
                    t
                }),
            ));
        }
    }
    let mut per_target: Vec<Tally> = targets.iter().map(|_| Tally::default()).collect();
    for (i, task) in tasks {
        per_target[i].add(task.await.unwrap());
    }
    Outcome {
        per_target,
        elapsed: start.elapsed(),
    }
}

/// `(port, path)` of `path` on each gateway.
pub fn targets(gws: &[Gateway], path: &str) -> Vec<(u16, String)> {
    gws.iter().map(|g| (g.port, path.to_string())).collect()
}

/// One sample of `/metrics` summed over the gateways (a missing sample is 0).
pub async fn metric_sum(gws: &[Gateway], sample: &str) -> f64 {
    let mut sum = 0.0;
    for gw in gws {
        sum += gw.metric(sample).await.unwrap_or(0.0);
    }
    sum
}

/// `sluice_ratelimit_store_fallback_total` of `limit` in `mode`.
pub fn fallbacks(limit: &str, mode: &str) -> String {
    format!("sluice_ratelimit_store_fallback_total{{limit=\"{limit}\",mode=\"{mode}\"}}")
}

/// `sluice_ratelimit_store_circuit_transitions_total` to `to`.
pub fn transitions(to: &str) -> String {
    format!("sluice_ratelimit_store_circuit_transitions_total{{to=\"{to}\"}}")
}

/// Requests admitted by a saturated sliding window of `limit` per `window`
/// between two instants of Redis's clock, the key fresh at the start and the
/// start early in its window: the first window admits `limit` at once, each
/// later window what the decaying estimate leaves (`limit`, less one for the
/// last unit of the previous window), and the last window a fraction `f` of
/// it.
pub fn saturated_window_total(limit: f64, window_us: u64, start_us: u64, end_us: u64) -> f64 {
    let (ws, we) = (start_us / window_us, end_us / window_us);
    let f = (end_us % window_us) as f64 / window_us as f64;
    if ws == we {
        return limit;
    }
    limit + (limit - 1.0) * (we - ws - 1) as f64 + (limit * f).floor()
}

/// Waits until Redis's clock (µs) is early in a second, so that a sliding
/// window of 1 s fills its first window before the next begins (what
/// [`saturated_window_total`] assumes).
pub async fn early_in_a_second(clock: impl Fn() -> u64) {
    let aligned_by = Instant::now() + Duration::from_secs(3);
    while !(20_000..400_000).contains(&(clock() % 1_000_000)) {
        assert!(Instant::now() < aligned_by, "Redis's clock did not move");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn within(actual: u64, expected: f64, pct: f64) -> bool {
    (actual as f64 - expected).abs() <= expected * pct / 100.0 + 1.0
}
