//! A sick Redis that still answers `PING`: out of memory, demoted to a
//! replica, or slower than `decision_timeout`. For each, three gateways under
//! load: the circuit opens once and stays open while the fault lasts (no
//! flapping), the gateways together admit the limit and not three times it
//! (each enforces 1/N, N being the members it saw in the store; `instances:`
//! is left at its default of 1 to show that), no answer waits much past
//! `decision_timeout`, and everything recovers by itself when the fault ends.
//!
//! The measured admissions and p99 are printed to stderr (`-- --nocapture`).
//!
//! Slow is a proxy that holds every byte Redis sends for 100 ms: `PING` too
//! answers, late but well within a second. It holds whatever the machine's
//! load, unlike `DEBUG SLEEP` in a loop, whose gaps a busy machine widens
//! enough for a round of probes to pass.

mod common;
#[path = "common/delay_proxy.rs"]
mod delay_proxy;
#[path = "common/raw_http.rs"]
mod raw_http;
#[path = "common/redis_server.rs"]
mod redis_server;
#[path = "common/shared_store.rs"]
mod shared_store;

use std::time::{Duration, Instant};

use common::{echo, Gateway};
use delay_proxy::DelayProxy;
use redis_server::RedisServer;
use shared_store::{fallbacks, gateways, load, metric_sum, targets, transitions, wait_members};

const DECISION_TIMEOUT_MS: u64 = 20;
/// What an answer may take past `decision_timeout`, at p99, on a busy
/// 2-core machine running three debug-build gateways, Redis and the load.
const P99_SLACK: Duration = Duration::from_millis(25);
const CAPACITY: f64 = 30.0;
const RATE: f64 = 100.0;
const LOAD: Duration = Duration::from_secs(3);

/// One fault test at a time: each runs three gateways under load, and two
/// such tests at once on two cores measure the machine, not the gateway.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn sections(url: &str, backend: std::net::SocketAddr) -> String {
    format!(
        "redis: {{ url: {url}, decision_timeout: {DECISION_TIMEOUT_MS}ms }}\n\
         upstreams:\n  app: {{ backends: [{backend}] }}\n\
         limits:\n  shared: {{ algorithm: token_bucket, key: global, capacity: {CAPACITY}, \
         fill_rate: {RATE}, store: redis, on_store_error: local }}\n\
         routes:\n  - {{ upstream: app, limits: [shared] }}\n"
    )
}

/// Each gateway's value of one sample.
async fn each(gws: &[Gateway], sample: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for gw in gws {
        out.push(gw.metric(sample).await.unwrap_or(0.0));
    }
    out
}

/// Runs three gateways through a fault that `inject` starts and dropping
/// what it returns (after `heal`) ends.
async fn through_a_fault<G>(
    name: &str,
    url: &str,
    inject: impl FnOnce() -> G,
    heal: impl FnOnce(G),
) {
    let _one_at_a_time = HEAVY.lock().await;
    let (backend, _) = echo("app").await;
    let gws = gateways(3, &sections(url, backend)).await;
    wait_members(&gws, 3).await;
    assert_eq!(each(&gws, &transitions("open")).await, vec![0.0; 3]);

    let fault = inject();
    let out = load(&targets(&gws, "/"), 2, LOAD).await;
    let limit = CAPACITY + RATE * out.elapsed.as_secs_f64();
    let local = metric_sum(&gws, &fallbacks("shared", "local")).await;
    eprintln!(
        "{name}: {} requests in {:?} ({:.0}/s), {} admitted against a limit of {limit:.0}, \
         {local} decided locally, p99 {:?}",
        out.requests(),
        out.elapsed,
        out.rate(),
        out.admitted(),
        out.p99()
    );
    assert_eq!(out.other(), 0, "{name}: every request answered 200 or 429");
    for gw in &gws {
        let s = gw.status().await;
        assert_eq!(
            s["redis"]["circuit_open"], true,
            "{name}: open while the fault lasts: {}",
            s["redis"]
        );
        assert_eq!(s["redis"]["live_instances"], 3, "{name}: {}", s["redis"]);
    }
    assert_eq!(
        each(&gws, &transitions("open")).await,
        vec![1.0; 3],
        "{name}: each circuit opened once and did not flap"
    );
    for gw in &gws {
        let log = gw.log();
        assert_eq!(
            log.matches("circuit open:").count(),
            1,
            "{name}: the episode is logged once:\n{log}"
        );
    }
    let admitted = out.admitted() as f64;
    assert!(
        admitted <= limit * 1.1 + 1.0,
        "{name}: {admitted} admitted across three gateways, limit {limit:.0} + 10%"
    );
    assert!(
        admitted >= limit * 0.9 - 1.0,
        "{name}: {admitted} admitted, each gateway its third of {limit:.0}"
    );
    assert!(
        local >= out.requests() as f64 * 0.9,
        "{name}: decided locally: {local} of {}",
        out.requests()
    );
    let budget = Duration::from_millis(DECISION_TIMEOUT_MS) + P99_SLACK;
    assert!(
        out.p99() <= budget,
        "{name}: p99 {:?} past decision_timeout + {P99_SLACK:?}",
        out.p99()
    );

    heal(fault);
    for gw in &gws {
        assert!(
            gw.wait_status(Duration::from_secs(10), |s| s["redis"]["circuit_open"]
                == false)
                .await,
            "{name}: the circuit did not close after the fault ended: {}",
            gw.status().await["redis"]
        );
    }
    // Opened once and closed twice: when it first connected, and now.
    assert_eq!(each(&gws, &transitions("open")).await, vec![1.0; 3]);
    assert_eq!(each(&gws, &transitions("closed")).await, vec![2.0; 3]);
    // Decided in Redis again. A worker thread's own connection may need a
    // decision or two to come back, so judge over a few hundred.
    let before = metric_sum(&gws, &fallbacks("shared", "local")).await;
    let after_out = load(&targets(&gws, "/"), 1, Duration::from_millis(500)).await;
    let after = metric_sum(&gws, &fallbacks("shared", "local")).await;
    assert!(
        after_out.requests() >= 30 && after - before <= after_out.requests() as f64 / 10.0,
        "{name}: {} of {} decisions after recovery were local",
        after - before,
        after_out.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory() {
    let redis = RedisServer::start();
    through_a_fault(
        "OOM",
        &redis.url(),
        || {
            redis
                .query(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
                .expect("CONFIG SET");
            redis
                .query(&["CONFIG", "SET", "maxmemory", "1"])
                .expect("CONFIG SET");
            // Writes are refused; PING still answers.
            let set = redis.query(&["SET", "x", "1"]).unwrap_or_default();
            assert!(set.contains("OOM"), "{set}");
            assert_eq!(redis.query(&["PING"]).as_deref(), Some("PONG"));
        },
        |()| {
            redis
                .query(&["CONFIG", "SET", "maxmemory", "0"])
                .expect("CONFIG SET");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demoted_to_a_replica() {
    let redis = RedisServer::start();
    let master = RedisServer::start();
    through_a_fault(
        "READONLY",
        &redis.url(),
        || {
            let port = master.port.to_string();
            redis
                .query(&["REPLICAOF", "127.0.0.1", &port])
                .expect("REPLICAOF");
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let set = redis.query(&["SET", "x", "1"]).unwrap_or_default();
                if set.contains("READONLY") {
                    break;
                }
                assert!(Instant::now() < deadline, "still writable: {set}");
                std::thread::sleep(Duration::from_millis(20));
            }
        },
        |()| {
            redis
                .query(&["REPLICAOF", "NO", "ONE"])
                .expect("REPLICAOF NO ONE");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slower_than_decision_timeout() {
    let redis = RedisServer::start();
    let proxy = DelayProxy::start(redis.port);
    through_a_fault(
        "slow",
        &proxy.url(),
        // Five times decision_timeout, for every answer.
        || proxy.set_delay(Duration::from_millis(100)),
        |()| proxy.set_delay(Duration::ZERO),
    )
    .await;
}

/// The TAT (µs on Redis's clock) of a token bucket key, 0 if absent (the
/// value is `TAT` or `TAT FLOOR`).
fn tat(redis: &RedisServer, key: &str) -> f64 {
    redis
        .query(&["GET", key])
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_decision_is_squared_with_redis_once_it_answers() {
    let redis = RedisServer::start();
    let (backend, _) = echo("app").await;
    // Five tokens, refilled once a day: a token is 1e11 µs of TAT.
    let limit = |name: &str, mode: &str| {
        format!(
            "  {name}: {{ algorithm: token_bucket, key: global, capacity: 5, fill_rate: 0.00001, \
             store: redis, on_store_error: {mode} }}\n"
        )
    };
    let sections = format!(
        "redis: {{ url: {}, decision_timeout: {DECISION_TIMEOUT_MS}ms }}\n\
         upstreams:\n  app: {{ backends: [{backend}] }}\n\
         limits:\n{}{}\
         routes:\n\
         \x20 - {{ path_prefix: /allow, upstream: app, limits: [lenient] }}\n\
         \x20 - {{ path_prefix: /deny, upstream: app, limits: [strict] }}\n",
        redis.url(),
        limit("lenient", "allow"),
        limit("strict", "deny"),
    );
    let gws = gateways(1, &sections).await;
    let c = common::client();
    let get = |path: &str| c.get(gws[0].url(path)).send();
    for _ in 0..5 {
        assert_eq!(get("/allow").await.unwrap().status(), 200);
    }
    let (lenient, strict) = ("sluice:{lenient:=}:tb", "sluice:{strict:=}:tb");
    let spent = tat(&redis, lenient);
    assert!(spent > 0.0);

    // Frozen: every decision misses decision_timeout (too few to open the
    // circuit), and on_store_error answers. Redis makes them all once it
    // runs again: it refuses the lenient bucket's three (it is empty) and
    // admits the strict one's two.
    redis.freeze();
    for _ in 0..3 {
        assert_eq!(get("/allow").await.unwrap().status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(get("/deny").await.unwrap().status(), 429);
    }
    redis.thaw();

    // Squared: the three admitted here are charged to the lenient bucket,
    // and the two refused here are given back to the strict one.
    let token = 1e11;
    let deadline = Instant::now() + Duration::from_secs(3);
    while (tat(&redis, lenient) - (spent + 3.0 * token)).abs() > token / 10.0 {
        assert!(
            Instant::now() < deadline,
            "the lenient bucket was not charged for three: TAT {} then {}",
            spent,
            tat(&redis, lenient)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while tat(&redis, strict) > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the strict bucket did not get its two back: TAT {}",
            tat(&redis, strict)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..5 {
        assert_eq!(get("/deny").await.unwrap().status(), 200, "token {i}");
    }
    assert_eq!(
        gws[0].metric(&transitions("open")).await,
        Some(0.0),
        "five timeouts are not a failure rate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_flushed_from_redis_are_loaded_again_on_the_next_decision() {
    let redis = RedisServer::start();
    let (backend, _) = echo("app").await;
    // on_store_error: deny, so that a decision not made in Redis shows.
    let sections = format!(
        "redis: {{ url: {}, decision_timeout: 1s }}\n\
         upstreams:\n  app: {{ backends: [{backend}] }}\n\
         limits:\n  l: {{ algorithm: sliding_window, key: global, limit: 1000, window: 1h, \
         store: redis, on_store_error: deny }}\n\
         routes:\n  - {{ upstream: app, limits: [l] }}\n",
        redis.url()
    );
    let gws = gateways(1, &sections).await;
    let c = common::client();
    for _ in 0..5 {
        assert_eq!(c.get(gws[0].url("/")).send().await.unwrap().status(), 200);
    }
    // A restart or a failover to a node without them answers NOSCRIPT.
    assert_eq!(redis.query(&["SCRIPT", "FLUSH"]).as_deref(), Some("OK"));
    for i in 0..20 {
        let r = c.get(gws[0].url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i} after SCRIPT FLUSH");
    }
    let sample =
        |reason: &str| format!("sluice_ratelimit_store_errors_total{{reason=\"{reason}\"}}");
    assert_eq!(gws[0].metric(&sample("error")).await.unwrap_or(0.0), 0.0);
    assert_eq!(
        gws[0].metric(&fallbacks("l", "deny")).await.unwrap_or(0.0),
        0.0,
        "every decision was made in Redis"
    );
    assert_eq!(
        redis.query(&["HGET", "sluice:{l:=}:sw", "c"]).as_deref(),
        Some("25")
    );
}
