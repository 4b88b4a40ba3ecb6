//! Hot reload through `POST /reload` and SIGHUP: changes take effect, a
//! broken file changes nothing, and state of what did not change survives.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

fn two_routes(a: std::net::SocketAddr, b: std::net::SocketAddr, extra_route: &str) -> String {
    format!(
        "upstreams:\n  one:\n    backends: [{a}]\n  two:\n    backends: [{b}]\n\
         limits:\n  tiny:\n    algorithm: token_bucket\n    key: global\n    capacity: 3\n    fill_rate: 0.01\n\
         routes:\n  - name: x\n    path_prefix: /x/\n    upstream: one\n  - name: limited\n    path_prefix: /limited/\n    upstream: one\n    limits: [tiny]\n{extra_route}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_change_takes_effect_on_post_reload() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    let gw = Gateway::start(&two_routes(a, b, "")).await;
    let c = client();
    assert_eq!(get_backend(&c, &gw.url("/x/1")).await, (200, "a".into()));
    assert_eq!(get_backend(&c, &gw.url("/y/1")).await.0, 404);

    gw.rewrite(
        &two_routes(
            a,
            b,
            "  - name: y\n    path_prefix: /y/\n    upstream: two\n",
        )
        .replace(
            "path_prefix: /x/\n    upstream: one",
            "path_prefix: /x/\n    upstream: two",
        ),
    );
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "ok");
    assert_eq!(get_backend(&c, &gw.url("/x/1")).await, (200, "b".into()));
    assert_eq!(get_backend(&c, &gw.url("/y/1")).await, (200, "b".into()));
    assert_eq!(
        gw.metric("sluice_config_reloads_total{result=\"ok\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_too() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    let gw = Gateway::start(&two_routes(a, b, "")).await;
    gw.rewrite(&two_routes(
        a,
        b,
        "  - name: y\n    path_prefix: /y/\n    upstream: two\n",
    ));
    let status = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get_backend(&c, &gw.url("/y/1")).await == (200, "b".into()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP reload never took effect:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_changes_nothing_and_says_why() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    let gw = Gateway::start(&two_routes(a, b, "")).await;
    gw.rewrite("upstreams:\n  one:\n    backends:\n      - { address: 127.0.0.1:1, weight: 0 }\nroutes:\n  - upstream: one\n    path_prefix: /x/\n");
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 400);
    assert_eq!(answer["result"], "failed");
    let errors = answer["errors"].to_string();
    assert!(
        errors.contains("upstreams.one.backends[0].weight: must be at least 1"),
        "{errors}"
    );
    // The running config is untouched.
    assert_eq!(
        get_backend(&client(), &gw.url("/x/1")).await,
        (200, "a".into())
    );
    assert_eq!(
        gw.metric("sluice_config_reloads_total{result=\"failed\"}")
            .await,
        Some(1.0)
    );
    assert!(gw.log().contains("reload"), "the rejection is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_state_survives_an_unrelated_reload() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    let gw = Gateway::start(&two_routes(a, b, "")).await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(get_backend(&c, &gw.url("/limited/")).await.0, 200);
    }
    assert_eq!(get_backend(&c, &gw.url("/limited/")).await.0, 429);

    gw.rewrite(&two_routes(
        a,
        b,
        "  - name: y\n    path_prefix: /y/\n    upstream: two\n",
    ));
    assert_eq!(gw.reload().await.0, 200);
    assert_eq!(
        get_backend(&c, &gw.url("/y/")).await.0,
        200,
        "reload applied"
    );
    assert_eq!(
        get_backend(&c, &gw.url("/limited/")).await.0,
        429,
        "bucket was refilled by the reload"
    );

    // Changing the limit itself starts it afresh.
    gw.rewrite(&two_routes(a, b, "").replace("capacity: 3", "capacity: 4"));
    assert_eq!(gw.reload().await.0, 200);
    assert_eq!(get_backend(&c, &gw.url("/limited/")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_backend_stops_and_added_backend_starts() {
    let (a, ea) = echo("a").await;
    let (b, _) = echo("b").await;
    let (c_addr, _) = echo("c").await;
    let sections = |list: &str| {
        format!("upstreams:\n  pool:\n    backends: [{list}]\nroutes:\n  - upstream: pool\n")
    };
    let gw = Gateway::start(&sections(&format!("{a}, {b}"))).await;
    let c = client();
    gw.rewrite(&sections(&format!("{b}, {c_addr}")));
    assert_eq!(gw.reload().await.0, 200);
    let served_a = ea.control.served.load(Ordering::Relaxed);
    let mut seen = std::collections::HashMap::<String, u32>::new();
    for _ in 0..40 {
        let (status, backend) = get_backend(&c, &gw.url("/")).await;
        assert_eq!(status, 200);
        *seen.entry(backend).or_default() += 1;
    }
    assert_eq!(
        ea.control.served.load(Ordering::Relaxed),
        served_a,
        "removed backend got traffic"
    );
    assert_eq!(seen.get("b"), Some(&20));
    assert_eq!(seen.get("c"), Some(&20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_of_unchanged_backends_survives_a_pool_edit() {
    let (a, _) = echo("a").await;
    let (b, eb) = echo("b").await;
    let (c_addr, _) = echo("c").await;
    // Three failures to eject: a view rebuilt from scratch would report b
    // healthy for at least two intervals after the reload, so the check right
    // after it can only pass if b's health was remembered.
    let sections = |list: &str, interval: &str| {
        format!("upstreams:\n  pool:\n    backends: [{list}]\n    health_check: {{ type: http, path: /health, interval: {interval}, unhealthy_after: 3 }}\nroutes:\n  - upstream: pool\n")
    };
    let gw = Gateway::start(&sections(&format!("{a}, {b}"), "100ms")).await;
    eb.control.unhealthy.store(true, Ordering::Relaxed);
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "pool", b)
            == Some(false))
            .await
    );

    gw.rewrite(&sections(&format!("{a}, {b}, {c_addr}"), "100ms"));
    assert_eq!(gw.reload().await.0, 200);
    let status = gw.status().await;
    assert_eq!(
        healthy(&status, "pool", b),
        Some(false),
        "b's health was forgotten: {status}"
    );
    assert_eq!(healthy(&status, "pool", c_addr), Some(true));
    let c = client();
    for _ in 0..20 {
        assert_ne!(get_backend(&c, &gw.url("/")).await.1, "b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_backend_stays_down_when_its_health_check_is_edited() {
    let (a, _) = echo("a").await;
    let (b, eb) = echo("b").await;
    // unhealthy_after: 3 under the new settings: a check state started
    // afresh would call b healthy for at least two rounds after the reload.
    let sections = |interval: &str, sni: &str| {
        format!(
            "upstreams:\n  pool:\n    backends: [{a}, {b}]\n    sni: {sni}\n    health_check: {{ type: http, path: /health, interval: {interval}, unhealthy_after: 3 }}\nroutes:\n  - upstream: pool\n"
        )
    };
    let gw = Gateway::start(&sections("100ms", "one.test")).await;
    eb.control.unhealthy.store(true, Ordering::Relaxed);
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "pool", b)
            == Some(false))
            .await
    );
    let c = client();
    for edit in [sections("150ms", "one.test"), sections("150ms", "two.test")] {
        gw.rewrite(&edit);
        assert_eq!(gw.reload().await.0, 200);
        let served_b = eb.control.served.load(Ordering::Relaxed);
        // Across several check rounds under the new settings.
        let until = Instant::now() + Duration::from_millis(600);
        let mut sent = 0;
        while Instant::now() < until && sent < 500 {
            assert_eq!(get_backend(&c, &gw.url("/")).await, (200, "a".into()));
            sent += 1;
        }
        assert_eq!(
            eb.control.served.load(Ordering::Relaxed),
            served_b,
            "the down backend got traffic after the edit"
        );
        assert_eq!(healthy(&gw.status().await, "pool", b), Some(false));
    }
    // A passing check still brings it back.
    eb.control.unhealthy.store(false, Ordering::Relaxed);
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "pool", b)
            == Some(true))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_upgrade_compares_with_what_the_process_started_with() {
    let (a, _) = echo("a").await;
    let base = format!("upstreams:\n  one:\n    backends: [{a}]\nroutes:\n  - upstream: one\n");
    let gw = Gateway::start(&base).await;
    let log = gw.dir.path().join("access.log");
    let with_log = format!("access_log: {}\n{base}", log.display());
    gw.rewrite(&with_log);
    let (_, first) = gw.reload().await;
    assert_eq!(first["needs_upgrade"], serde_json::json!(["access_log"]));
    // A second reload of the same file: the access log is still not open.
    let (_, second) = gw.reload().await;
    assert_eq!(
        second["needs_upgrade"],
        serde_json::json!(["access_log"]),
        "{second}"
    );
    // Undoing the edit leaves nothing pending.
    gw.rewrite(&base);
    let (_, third) = gw.reload().await;
    assert_eq!(third["needs_upgrade"], serde_json::json!([]), "{third}");
}
