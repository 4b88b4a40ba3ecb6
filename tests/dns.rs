//! Backends named `host:port`, resolved by the DNS server that `resolver:`
//! names (one run by the test) and re-resolved every `dns_refresh`.

mod common;
#[path = "common/dns_server.rs"]
mod dns_server;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dns_server::DnsServer;
use sluice::echo::Echo;

/// Echo backends named `names` on 127.0.0.1, .2, .3 ... all on one port, so
/// that one name with several A records can stand for them all.
async fn backends_on_one_port(names: &[&str]) -> (u16, Vec<Arc<Echo>>) {
    'retry: for _ in 0..20 {
        let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for i in 1..names.len() {
            let ip = Ipv4Addr::new(127, 0, 0, 1 + i as u8);
            match tokio::net::TcpListener::bind(SocketAddr::from((ip, port))).await {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'retry,
            }
        }
        let mut echoes = Vec::new();
        for (l, name) in listeners.into_iter().zip(names) {
            let e = Echo::new(name);
            tokio::spawn(e.clone().serve(l));
            echoes.push(e);
        }
        return (port, echoes);
    }
    panic!("no port free on every loopback address");
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn config(dns: SocketAddr, port: u16, refresh: &str) -> String {
    format!(
        "resolver: {dns}\nupstreams:\n  api:\n    backends: [api.test:{port}]\n    dns_refresh: {refresh}\n\
         routes:\n  - upstream: api\n"
    )
}

async fn spread(c: &reqwest::Client, gw: &Gateway, n: usize) -> HashMap<String, u32> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let (status, backend) = get_backend(c, &gw.url("/")).await;
        assert_eq!(status, 200, "{}", gw.log());
        *seen.entry(backend).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_a_record_is_a_backend_and_status_names_them() {
    let (port, _echoes) = backends_on_one_port(&["a", "b"]).await;
    let dns = DnsServer::start().await;
    dns.set("api.test", &[ip(1), ip(2)]);
    let gw = Gateway::start(&config(dns.addr, port, "5s")).await;
    let c = client();
    let seen = spread(&c, &gw, 20).await;
    assert_eq!(seen.get("a"), Some(&10), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
    let status = gw.status().await;
    let backends = status["upstreams"]["api"]["backends"].as_array().unwrap();
    let mut listed: Vec<(String, String)> = backends
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or("").to_string(),
                b["address"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    listed.sort();
    let name = format!("api.test:{port}");
    assert_eq!(
        listed,
        vec![
            (name.clone(), format!("127.0.0.1:{port}")),
            (name, format!("127.0.0.2:{port}")),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_records_move_all_traffic_within_the_refresh_without_a_failure() {
    let (port, _echoes) = backends_on_one_port(&["a", "b", "c"]).await;
    let dns = DnsServer::start().await;
    dns.set("api.test", &[ip(1), ip(2)]);
    let gw = Gateway::start(&config(dns.addr, port, "500ms")).await;
    let c = client();
    assert_eq!(spread(&c, &gw, 4).await.len(), 2);

    dns.set("api.test", &[ip(3)]);
    let changed = Instant::now();
    // Every request succeeds while the old backends are still up; done once
    // twenty in a row land on the new address.
    let mut in_a_row = 0;
    let mut moved_after = None;
    while Instant::now() < changed + Duration::from_secs(5) {
        let (status, backend) = get_backend(&c, &gw.url("/")).await;
        assert_eq!(status, 200, "a request failed during the move");
        if backend == "c" {
            if in_a_row == 0 {
                moved_after = Some(changed.elapsed());
            }
            in_a_row += 1;
            if in_a_row == 20 {
                break;
            }
        } else {
            in_a_row = 0;
        }
    }
    let moved_after = moved_after.expect("traffic never moved to the new address");
    assert_eq!(in_a_row, 20);
    assert!(
        moved_after <= Duration::from_millis(1500),
        "took {moved_after:?} (dns_refresh 500ms + 1s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_dns_server_leaves_the_last_set_serving() {
    let (port, _echoes) = backends_on_one_port(&["a", "b"]).await;
    let dns = DnsServer::start().await;
    dns.set("api.test", &[ip(1), ip(2)]);
    let gw = Gateway::start(&config(dns.addr, port, "200ms")).await;
    let c = client();
    assert_eq!(spread(&c, &gw, 4).await.len(), 2);

    dns.stop();
    let failures = "sluice_dns_resolution_failures_total{name=\"api.test\"}";
    let deadline = Instant::now() + Duration::from_secs(15);
    while gw.metric(failures).await.unwrap_or(0.0) < 2.0 {
        assert!(Instant::now() < deadline, "no failed resolution counted");
        let seen = spread(&c, &gw, 2).await;
        assert_eq!(seen.len(), 2, "{seen:?}");
    }
    let seen = spread(&c, &gw, 20).await;
    assert_eq!(seen.get("a"), Some(&10), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
    let log = gw.log();
    assert_eq!(
        log.matches("resolving api.test failed").count(),
        1,
        "one log line per failure episode:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_refresh_off_resolves_once() {
    let (port, _echoes) = backends_on_one_port(&["a", "b"]).await;
    let dns = DnsServer::start().await;
    dns.set("api.test", &[ip(1)]);
    let gw = Gateway::start(&config(dns.addr, port, "off")).await;
    dns.set("api.test", &[ip(2)]);
    let c = client();
    // Well past any refresh a default would do.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = spread(&c, &gw, 10).await;
    assert_eq!(seen.get("a"), Some(&10), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stays_in_the_records_keeps_its_health() {
    let (port, echoes) = backends_on_one_port(&["a", "b", "c"]).await;
    let dns = DnsServer::start().await;
    dns.set("api.test", &[ip(1), ip(2)]);
    let gw = Gateway::start(&format!(
        "resolver: {}\nupstreams:\n  api:\n    backends: [api.test:{port}]\n    dns_refresh: 200ms\n    \
         health_check: {{ type: http, path: /health, interval: 100ms, unhealthy_after: 3 }}\n\
         routes:\n  - upstream: api\n",
        dns.addr
    ))
    .await;
    echoes[1]
        .control
        .unhealthy
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let b = SocketAddr::from((ip(2), port));
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "api", b)
            == Some(false))
            .await
    );
    // b stays in the records, c joins: b must still be down at once (a
    // state started afresh would call it healthy for two more checks).
    dns.set("api.test", &[ip(2), ip(3)]);
    let c_addr = SocketAddr::from((ip(3), port));
    assert!(
        gw.wait_status(Duration::from_secs(5), |s| healthy(s, "api", c_addr)
            .is_some())
            .await,
        "c never joined"
    );
    assert_eq!(healthy(&gw.status().await, "api", b), Some(false));
    let seen = spread(&client(), &gw, 10).await;
    assert_eq!(seen.get("c"), Some(&10), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_added_by_a_reload_serves_as_soon_as_the_reload_answers() {
    let (port, _echoes) = backends_on_one_port(&["a", "b"]).await;
    let (lit, _) = echo("literal").await;
    let dns = DnsServer::start().await;
    dns.set("api.test", &[ip(2)]);
    let gw = Gateway::start(&format!(
        "resolver: {}\nupstreams:\n  api:\n    backends: [{lit}]\nroutes:\n  - upstream: api\n",
        dns.addr
    ))
    .await;
    gw.rewrite(&config(dns.addr, port, "5s"));
    assert_eq!(gw.reload().await.0, 200);
    let seen = spread(&client(), &gw, 10).await;
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
}
