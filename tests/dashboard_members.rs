//! The dashboard lists the gateways sharing the Redis store, in a real
//! browser (headless Chromium, as tests/dashboard_browser does).

#[allow(dead_code)]
#[path = "dashboard_browser/browser.rs"]
mod browser;
mod common;
#[path = "common/raw_http.rs"]
mod raw_http;
#[path = "common/redis_server.rs"]
mod redis_server;
#[path = "common/shared_store.rs"]
mod shared_store;

use std::time::{Duration, Instant};

use browser::Browser;
use common::echo;
use redis_server::RedisServer;
use serde_json::json;
use shared_store::{gateways, wait_members};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_panel_lists_the_members() {
    let redis = RedisServer::start();
    let (backend, _) = echo("app").await;
    let sections = format!(
        "redis: {{ url: {} }}\n\
         upstreams:\n  app: {{ backends: [{backend}] }}\n\
         limits:\n  l: {{ algorithm: token_bucket, key: global, capacity: 10, fill_rate: 1, store: redis }}\n\
         routes:\n  - {{ upstream: app, limits: [l] }}\n",
        redis.url()
    );
    let gws = gateways(2, &sections).await;
    wait_members(&gws, 2).await;
    let me = gws[0].status().await["redis"]["member"]
        .as_str()
        .unwrap()
        .to_string();

    let browser = Browser::start().await;
    browser.client().goto(&gws[0].admin("/")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let listed = browser
            .js(
                "return [...document.querySelectorAll('#redis li[data-member]')]
                   .map((li) => li.textContent);",
                vec![],
            )
            .await;
        if listed.as_array().is_some_and(|a| a.len() == 2) {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "the Redis panel does not list two members: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let items: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        items.contains(&format!("{me} (this gateway)").as_str()),
        "this gateway is marked: {items:?}"
    );
    let title = browser.text("#redis .members-title").await;
    assert_eq!(title.as_deref(), Some("Members (2)"));
    let fields = browser
        .js(
            "return document.querySelector('#redis dd[data-key=live_instances]').textContent;",
            vec![],
        )
        .await;
    assert_eq!(fields, json!("2"));
    browser.close().await;
}
