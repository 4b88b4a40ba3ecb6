//! `/metrics` after known traffic and after backends leave, and the access
//! log.

mod common;
#[path = "common/dns_server.rs"]
mod dns_server;

use std::time::{Duration, Instant};

use common::*;
use dns_server::DnsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_the_traffic_sent() {
    let (a, _) = echo("a").await;
    let dead = dead_addr();
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{a}]\n  flaky:\n    backends: [{dead}, {a}]\n    balance: round_robin\n\
         limits:\n  three:\n    algorithm: token_bucket\n    key: global\n    capacity: 3\n    fill_rate: 0.01\n  watch:\n    algorithm: concurrency\n    key: route\n    max: 1000\n    shadow: true\n\
         routes:\n  - name: api\n    path_prefix: /api/\n    upstream: pool\n    limits: [three, watch]\n  - name: retry\n    path_prefix: /retry/\n    upstream: flaky\n"
    ))
    .await;
    let c = client();
    for _ in 0..5 {
        get_backend(&c, &gw.url("/api/x")).await;
    }
    for _ in 0..2 {
        assert_eq!(get_backend(&c, &gw.url("/nowhere")).await.0, 404);
    }
    // Round robin starts at the dead backend for one of two requests.
    for _ in 0..2 {
        assert_eq!(get_backend(&c, &gw.url("/retry/x")).await.0, 200);
    }

    let m = |s: &'static str| gw.metric(s);
    assert_eq!(
        m("sluice_requests_total{route=\"api\",status=\"200\"}").await,
        Some(3.0)
    );
    assert_eq!(
        m("sluice_requests_total{route=\"api\",status=\"429\"}").await,
        Some(2.0)
    );
    assert_eq!(
        m("sluice_requests_total{route=\"\",status=\"404\"}").await,
        Some(2.0)
    );
    assert_eq!(
        m("sluice_requests_total{route=\"retry\",status=\"200\"}").await,
        Some(2.0)
    );
    assert_eq!(
        m("sluice_request_duration_seconds_count{route=\"api\"}").await,
        Some(5.0)
    );
    assert_eq!(
        m("sluice_ratelimit_decisions_total{decision=\"admitted\",limit=\"three\"}").await,
        Some(3.0)
    );
    assert_eq!(
        m("sluice_ratelimit_decisions_total{decision=\"rejected\",limit=\"three\"}").await,
        Some(2.0)
    );
    assert_eq!(
        m("sluice_retries_total{upstream=\"flaky\"}").await,
        Some(1.0)
    );
    let dead_label = format!("sluice_upstream_requests_total{{backend=\"{dead}\",outcome=\"connect_failure\",upstream=\"flaky\"}}");
    assert_eq!(gw.metric(&dead_label).await, Some(1.0));
    let ok_label = format!(
        "sluice_upstream_requests_total{{backend=\"{a}\",outcome=\"ok\",upstream=\"flaky\"}}"
    );
    assert_eq!(gw.metric(&ok_label).await, Some(2.0));
    let healthy_label =
        format!("sluice_upstream_backend_healthy{{backend=\"{a}\",upstream=\"pool\"}}");
    assert_eq!(gw.metric(&healthy_label).await, Some(1.0));
}

/// A request refused by one limit is counted as refused by that limit and as
/// nothing by the others: a limit that was only read, or whose commit was
/// given back, counts no admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_counters_count_what_was_committed() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{a}]\n\
         limits:\n  per_ip:\n    algorithm: token_bucket\n    key: client_ip\n    capacity: 1\n    fill_rate: 0.001\n\
         \x20 per_key:\n    algorithm: token_bucket\n    key: header:x-api-key\n    capacity: 1000\n    fill_rate: 100\n\
         routes:\n  - name: api\n    upstream: pool\n    limits: [per_ip, per_key]\n"
    ))
    .await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(status_with(&c, &gw.url("/x"), "x-api-key", "k").await);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        9,
        "{statuses:?}"
    );

    let count = |limit: &str, decision: &str| {
        let sample = format!(
            "sluice_ratelimit_decisions_total{{decision=\"{decision}\",limit=\"{limit}\"}}"
        );
        let gw = &gw;
        async move { gw.metric(&sample).await.unwrap_or(0.0) }
    };
    assert_eq!(count("per_ip", "admitted").await, 1.0);
    assert_eq!(count("per_ip", "rejected").await, 9.0);
    assert_eq!(
        count("per_key", "admitted").await,
        1.0,
        "only read for the refused nine"
    );
    assert_eq!(count("per_key", "rejected").await, 0.0);
    assert_eq!(count("per_key", "shadow_rejected").await, 0.0);
    assert_eq!(count("per_ip", "shadow_rejected").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_one_json_line_per_request() {
    let (a, _) = echo("a").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let gw = Gateway::start(&format!(
        "access_log: {{ path: {}, format: json }}\nupstreams:\n  pool:\n    backends: [{a}]\n\
         limits:\n  one:\n    algorithm: token_bucket\n    key: global\n    capacity: 1\n    fill_rate: 0.01\n\
         routes:\n  - name: api\n    upstream: pool\n    limits: [one]\n",
        path.display()
    ))
    .await;
    let c = client();
    let r = c
        .get(gw.url("/hello"))
        .header("x-request-id", "first")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(gw.url("/again"))
        .header("x-request-id", "second")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);

    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "access log has {} lines",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first = lines.iter().find(|l| l["request_id"] == "first").unwrap();
    assert_eq!(first["status"], 200);
    assert_eq!(first["route"], "api");
    assert_eq!(first["upstream"], "pool");
    assert_eq!(first["backend"], a.to_string());
    assert_eq!(first["path"], "/hello");
    assert_eq!(first["limit"], "admitted");
    assert!(first["duration_ms"].as_f64().unwrap() >= 0.0);
    let second = lines.iter().find(|l| l["request_id"] == "second").unwrap();
    assert_eq!(second["status"], 429);
    assert_eq!(second["limit"], "rejected:one");
}

/// Every sample line of `/metrics` that contains `needle`.
async fn samples_with(gw: &Gateway, needle: &str) -> Vec<String> {
    let text = reqwest::get(gw.admin("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// With backends coming and going (DNS discovery above all), the series of
/// every departed backend would otherwise stay in every scrape for the life
/// of the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_a_backend_removes_its_series() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    let (c_addr, _) = echo("c").await;
    let sections = |pool: &str, extra: &str| {
        format!("upstreams:\n  pool:\n    backends: [{pool}]\n{extra}routes:\n  - upstream: pool\n")
    };
    let gw = Gateway::start(&sections(
        &format!("{a}, {b}"),
        &format!("  extra:\n    backends: [{c_addr}]\n"),
    ))
    .await;
    let c = client();
    for _ in 0..4 {
        assert_eq!(get_backend(&c, &gw.url("/")).await.0, 200);
    }
    let b_label = format!("backend=\"{b}\"");
    assert!(
        samples_with(&gw, &b_label).await.len() >= 5,
        "b's counters and gauges are there to begin with"
    );
    assert!(!samples_with(&gw, "upstream=\"extra\"").await.is_empty());
    let a_ok = format!(
        "sluice_upstream_requests_total{{backend=\"{a}\",outcome=\"ok\",upstream=\"pool\"}}"
    );
    assert_eq!(gw.metric(&a_ok).await, Some(2.0));

    gw.rewrite(&sections(&a.to_string(), ""));
    assert_eq!(gw.reload().await.0, 200);
    assert_eq!(samples_with(&gw, &b_label).await, Vec::<String>::new());
    assert_eq!(
        samples_with(&gw, "upstream=\"extra\"").await,
        Vec::<String>::new()
    );
    assert_eq!(
        gw.metric(&a_ok).await,
        Some(2.0),
        "the backend that stays keeps its counts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_answer_that_drops_an_address_removes_its_series() {
    let (a, _) = echo("a").await;
    let dns = DnsServer::start().await;
    let (one, two) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
    dns.set("api.test", &[one, two]);
    let port = a.port();
    let gw = Gateway::start(&format!(
        "resolver: {}\nupstreams:\n  api:\n    backends: [api.test:{port}]\n    dns_refresh: 100ms\nroutes:\n  - upstream: api\n",
        dns.addr
    ))
    .await;
    let gone = format!("backend=\"127.0.0.2:{port}\"");
    assert!(!samples_with(&gw, &gone).await.is_empty());

    dns.set("api.test", &[one]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !samples_with(&gw, &gone).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "127.0.0.2 still in /metrics:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!samples_with(&gw, &format!("backend=\"{a}\""))
        .await
        .is_empty());
}
