//! Gateways sharing a store announce themselves in it, and each knows who
//! is there: `/status` lists the members, and one that dies drops out within
//! the heartbeat's TTL.

mod common;
#[path = "common/raw_http.rs"]
mod raw_http;
#[path = "common/redis_server.rs"]
mod redis_server;
#[path = "common/shared_store.rs"]
mod shared_store;

use std::time::{Duration, Instant};

use common::echo;
use redis_server::RedisServer;
use shared_store::{gateways, wait_members};

/// A member's heartbeat lasts 4 s, renewed every second.
const MEMBER_TTL: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_see_three_members_and_then_two() {
    let redis = RedisServer::start();
    let (backend, _) = echo("app").await;
    let sections = format!(
        "redis: {{ url: {}, prefix: team }}\n\
         upstreams:\n  app: {{ backends: [{backend}] }}\n\
         limits:\n  l: {{ algorithm: token_bucket, key: global, capacity: 10, fill_rate: 1, store: redis }}\n\
         routes:\n  - {{ upstream: app, limits: [l] }}\n",
        redis.url()
    );
    let mut gws = gateways(3, &sections).await;
    wait_members(&gws, 3).await;

    let mut ids = Vec::new();
    for gw in &gws {
        let s = gw.status().await;
        let me = s["redis"]["member"].as_str().unwrap().to_string();
        assert!(
            me.contains(&format!(":{}:", gw.pid())),
            "the member id names the process: {me}"
        );
        ids.push(me);
    }
    for gw in &gws {
        let s = gw.status().await;
        let mut members: Vec<String> = s["redis"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        members.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(members, want, "every gateway lists all three");
    }
    // The heartbeats live under the store's prefix, in one key.
    assert_eq!(
        redis.query(&["ZCARD", "team:{members}"]).as_deref(),
        Some("3")
    );

    let killed = Instant::now();
    let gone = ids.remove(0);
    drop(gws.remove(0));
    for gw in &gws {
        while gw.status().await["redis"]["members"]
            .as_array()
            .unwrap()
            .len()
            != 2
        {
            assert!(
                killed.elapsed() < MEMBER_TTL + Duration::from_secs(2),
                "a dead gateway is still a member {:?} after it died: {}",
                killed.elapsed(),
                gw.status().await["redis"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let s = gw.status().await;
        assert!(
            !s["redis"]["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == gone.as_str()),
            "{}",
            s["redis"]
        );
    }
    eprintln!("the dead member dropped out after {:?}", killed.elapsed());
    // The share a fallback enforces follows, a little later (the count is the
    // largest seen over the last two seconds).
    wait_members(&gws, 2).await;
}
