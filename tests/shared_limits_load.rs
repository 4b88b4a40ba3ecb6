//! Shared limits under load keep the accuracy they have at rest.
//!
//! Three gateways on one machine share a token bucket (50 + 100/s) and a
//! sliding window (300/s) through one redis-server, at the default 5 ms
//! `decision_timeout`, each loaded by 4 keep-alive connections sending as
//! fast as they are answered for 5 s. A busy machine makes a few decisions
//! miss 5 ms while Redis answers the rest in time; that must not open the
//! circuit (which would hand whole seconds of decisions to the local
//! fallback and over-admit), so the totals stay within 2% of the limits.
//!
//! The test prints what it measured (requests/s, admissions, decisions made
//! locally, timeouts) to stderr: `cargo test --test shared_limits_load --
//! --nocapture` shows it.

mod common;
#[path = "common/raw_http.rs"]
mod raw_http;
#[path = "common/redis_server.rs"]
mod redis_server;
#[path = "common/shared_store.rs"]
mod shared_store;

use std::time::Duration;

use common::{echo, Gateway};
use redis_server::RedisServer;
use shared_store::{
    early_in_a_second, fallbacks, gateways, load, metric_sum, saturated_window_total, targets,
    transitions, within,
};

const LOAD: Duration = Duration::from_secs(5);
const CONNECTIONS_PER_GATEWAY: usize = 4;

async fn report(gws: &[Gateway], limit: &str) -> (f64, f64, f64) {
    let local = metric_sum(gws, &fallbacks(limit, "local")).await;
    let timeouts = metric_sum(
        gws,
        "sluice_ratelimit_store_errors_total{reason=\"timeout\"}",
    )
    .await;
    let errors = metric_sum(gws, "sluice_ratelimit_store_errors_total{reason=\"error\"}").await;
    (local, timeouts, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_loaded_gateways_stay_within_two_percent_of_shared_limits() {
    let redis = RedisServer::start();
    let (backend, _) = echo("app").await;
    let sections = format!(
        "redis: {{ url: {}, instances: 3 }}\n\
         upstreams:\n  app: {{ backends: [{backend}] }}\n\
         limits:\n\
         \x20 shared_bucket: {{ algorithm: token_bucket, key: global, capacity: 50, fill_rate: 100, store: redis }}\n\
         \x20 shared_window: {{ algorithm: sliding_window, key: global, limit: 300, window: 1s, store: redis }}\n\
         routes:\n\
         \x20 - {{ name: tb, path_prefix: /tb, upstream: app, limits: [shared_bucket] }}\n\
         \x20 - {{ name: sw, path_prefix: /sw, upstream: app, limits: [shared_window] }}\n",
        redis.url()
    );
    let gws = gateways(3, &sections).await;

    // Token bucket: at most capacity + rate·t, and (saturated) no fewer.
    let tb = load(&targets(&gws, "/tb"), CONNECTIONS_PER_GATEWAY, LOAD).await;
    let tb_expected = 50.0 + 100.0 * tb.elapsed.as_secs_f64();
    let (tb_local, tb_timeouts, tb_errors) = report(&gws, "shared_bucket").await;
    eprintln!(
        "token bucket: {} requests in {:?} ({:.0}/s), {} admitted, expected {tb_expected:.0}; \
         decided locally {tb_local}, store timeouts {tb_timeouts}, errors {tb_errors}, p99 {:?}",
        tb.requests(),
        tb.elapsed,
        tb.rate(),
        tb.admitted(),
        tb.p99()
    );

    // Sliding window, started early in a second of Redis's clock.
    early_in_a_second(|| redis.time_micros()).await;
    let redis_start = redis.time_micros();
    let sw = load(&targets(&gws, "/sw"), CONNECTIONS_PER_GATEWAY, LOAD).await;
    let redis_end = redis.time_micros();
    let sw_expected = saturated_window_total(300.0, 1_000_000, redis_start, redis_end);
    let (all_local, all_timeouts, all_errors) = report(&gws, "shared_window").await;
    eprintln!(
        "sliding window: {} requests in {:?} ({:.0}/s), {} admitted, expected {sw_expected:.0}; \
         decided locally {all_local}, store timeouts {}, errors {}, p99 {:?}",
        sw.requests(),
        sw.elapsed,
        sw.rate(),
        sw.admitted(),
        all_timeouts - tb_timeouts,
        all_errors - tb_errors,
        sw.p99()
    );

    assert_eq!(
        tb.other() + sw.other(),
        0,
        "every request is answered 200 or 429"
    );
    assert_eq!(
        metric_sum(&gws, &transitions("open")).await,
        0.0,
        "the circuit never opened while Redis answered"
    );
    assert!(
        within(tb.admitted(), tb_expected, 2.0),
        "token bucket: {} admitted across three gateways in {:?}, expected {tb_expected:.0} ± 2% \
         ({tb_local} decided locally)",
        tb.admitted(),
        tb.elapsed
    );
    assert!(
        tb.refused() > tb.admitted() * 10,
        "the load saturated the bucket"
    );
    assert!(
        tb.per_target.iter().all(|t| t.admitted > 0),
        "every gateway admitted some"
    );
    assert!(
        within(sw.admitted(), sw_expected, 2.0),
        "sliding window: {} admitted across three gateways, expected {sw_expected:.0} ± 2% \
         ({all_local} decided locally; Redis clock {redis_start}..{redis_end})",
        sw.admitted()
    );
    assert!(
        sw.refused() > sw.admitted(),
        "the load saturated the window"
    );
}
