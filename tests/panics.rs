//! A bug in a filter hook (a panic) costs the request it hit, not the
//! gateway: every other request is still served, and nothing the request
//! held (a backend's in-flight count, a concurrency slot) is left behind.

mod common;

use std::time::Duration;

use common::{client, echo, Gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_filter_costs_one_request_not_the_gateway() {
    let (a, _) = echo("a").await;
    let mut gw = Gateway::start_example(
        "panicking_filter",
        &format!(
            "upstreams:\n  up:\n    balance: least_conn\n    backends: [{a}]\n\
             limits:\n  one_at_a_time:\n    algorithm: concurrency\n    key: route\n    max: 1\n\
             routes:\n  - upstream: up\n    filters: [panicking]\n    limits: [one_at_a_time]\n"
        ),
    )
    .await;
    let c = client();
    for hook in ["request", "upstream"] {
        let hit = c.get(gw.url("/")).header("x-panic", hook).send().await;
        // The connection's task is gone: no answer, or at most an error one.
        if let Ok(r) = hit {
            assert!(
                r.status().is_server_error(),
                "a panic in {hook} answered {}",
                r.status()
            );
        }
        assert!(
            gw.is_running(),
            "a panic in the {hook} hook ended the gateway"
        );
        // One request at a time may pass: a slot the panicked request kept
        // would turn these away.
        for _ in 0..3 {
            let ok = c
                .get(gw.url("/"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("not served after a panic in {hook}: {e}"));
            assert_eq!(ok.status(), 200, "served after a panic in {hook}");
        }
    }
    // The upstream hook panicked after the backend was picked and counted.
    let released = gw
        .wait_status(Duration::from_secs(5), |s| {
            s["upstreams"]["up"]["backends"][0]["in_flight"] == 0
        })
        .await;
    assert!(
        released,
        "in-flight count left behind: {}",
        gw.status().await
    );
    assert!(gw.log().contains("a bug in on_upstream_request"));
}
