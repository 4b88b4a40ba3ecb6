//! A reload that adds an upstream whose backend is given by name serves it
//! from the moment `POST /reload` answers, even while the DNS service
//! refreshes the live config's names at the same time.
//!
//! The race this guards against: a reload resolves the new file's names into
//! the DNS table, and only then rebuilds the live gateway. If the DNS service
//! prunes the table in between (it forgets every name the *live* config does
//! not use, and the new file is not live yet), the new upstream is built with
//! no backends and answers 503 until the service's next round puts the name
//! back. Nothing a user did is wrong; the window is just small, so the test
//! makes it as likely as it can (see `race_config`) and tries many times.

mod common;
#[path = "common/dns_server.rs"]
mod dns_server;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use dns_server::DnsServer;

/// Add/remove cycles at most, and the time they may take. With the padding
/// below the race, where it exists, hits several percent of cycles (about one
/// in ten on a debug build), so 300 cycles miss it with a vanishing chance;
/// a gateway without the race runs them all in about ten seconds.
const MAX_CYCLES: u32 = 300;
const MAX_TIME: Duration = Duration::from_secs(40);
/// Enough evidence: stop once this many cycles served an empty pool.
const ENOUGH_FAILURES: usize = 5;

/// Upstreams the adding file has and the removing one lacks, so that each
/// adding reload builds them afresh. They sort before the named upstream, so
/// building them sits between the moment the reload has resolved the new
/// name and the moment the named pool reads it: that widens the window a
/// concurrent prune of the table can fall into, as a large config does in
/// production (without them the race hit about one cycle in a hundred, too
/// rarely to be caught every run). They are never routed to.
///
/// The named upstream asks for the shortest `dns_refresh`, so the DNS service
/// has work on every round as in the busiest setup; its prune of the table
/// runs on every round whatever the refresh.
const PADDING_UPSTREAMS: usize = 50;
const PADDING_BACKENDS: usize = 20;

/// The file in its two states. Each adding cycle names the backend afresh
/// (`n<cycle>.test`), so the reload always has a name the table has never
/// held and resolves it itself: a name left in the table by the previous
/// cycle would be reused and could not race.
fn race_config(dns: std::net::SocketAddr, port: u16, named: Option<&str>) -> String {
    let mut yaml =
        format!("resolver: {dns}\nupstreams:\n  base:\n    backends: [127.0.0.1:{port}]\n");
    if let Some(host) = named {
        for p in 0..PADDING_UPSTREAMS {
            yaml.push_str(&format!("  pad{p:04}:\n    backends:\n"));
            for b in 0..PADDING_BACKENDS {
                yaml.push_str(&format!(
                    "      - 127.0.{}.{}:{port}\n",
                    1 + b / 250,
                    1 + b % 250
                ));
            }
        }
        yaml.push_str(&format!(
            "  zz_named:\n    backends: [{host}:{port}]\n    dns_refresh: 100ms\n"
        ));
    }
    yaml.push_str("routes:\n  - name: base\n    path_prefix: /base/\n    upstream: base\n");
    if named.is_some() {
        yaml.push_str("  - name: named\n    path_prefix: /named/\n    upstream: zz_named\n");
    }
    yaml
}

/// What one request to the named route got.
enum Seen {
    /// 200 from the backend, or 404 while the route is absent.
    Fine,
    /// 503 "no healthy backend": with one backend that is up and no health
    /// check, only an empty pool answers that.
    EmptyPool(String),
    Other(u16, String),
}

async fn get_named(c: &reqwest::Client, gw: &Gateway, route_present: bool) -> Seen {
    let r = c.get(gw.url("/named/")).send().await.expect("request");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    let error = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default();
    match status {
        200 => Seen::Fine,
        404 if !route_present => Seen::Fine,
        503 if error == "no healthy backend" => Seen::EmptyPool(body),
        _ => Seen::Other(status, body),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_adding_a_named_upstream_never_serves_it_empty() {
    let (backend, _echo) = echo("named").await;
    let dns = DnsServer::start().await;
    let gw = Gateway::start(&race_config(dns.addr, backend.port(), None)).await;
    let gw = Arc::new(gw);

    // Requests flow all the time; while the route is absent a 404 is the
    // right answer, so the flow is told which state the file is in.
    let present = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let flow_empty = Arc::new(Mutex::new(Vec::<String>::new()));
    let flow_count = Arc::new(AtomicU64::new(0));
    let flow = {
        let (gw, present, stop, empty, count) = (
            gw.clone(),
            present.clone(),
            stop.clone(),
            flow_empty.clone(),
            flow_count.clone(),
        );
        tokio::spawn(async move {
            let c = client();
            let deadline = Instant::now() + MAX_TIME + Duration::from_secs(10);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                // Read before sending: a reload that removes the route
                // answers only after the swap, so a 404 seen while this
                // still says present is a real failure, never a stale flag.
                let was_present = present.load(Ordering::Acquire);
                let seen = get_named(&c, &gw, was_present).await;
                // A route removed while this request was in flight.
                let still = present.load(Ordering::Acquire);
                count.fetch_add(1, Ordering::Relaxed);
                match seen {
                    Seen::Fine => {}
                    Seen::EmptyPool(body) => empty.lock().unwrap().push(body),
                    Seen::Other(404, _) if !still => {}
                    Seen::Other(status, body) => {
                        panic!("the request flow got {status}: {body}")
                    }
                }
            }
        })
    };

    let c = client();
    let started = Instant::now();
    let mut cycles = 0;
    let mut empty_cycles: Vec<(u32, Duration, String)> = Vec::new();
    while cycles < MAX_CYCLES
        && started.elapsed() < MAX_TIME
        && empty_cycles.len() < ENOUGH_FAILURES
    {
        cycles += 1;
        let host = format!("n{cycles}.test");
        dns.set(&host, &[Ipv4Addr::LOCALHOST]);
        gw.rewrite(&race_config(dns.addr, backend.port(), Some(&host)));
        let (status, answer) = gw.reload().await;
        assert_eq!(status, 200, "cycle {cycles}: {answer}\n{}", gw.log());
        present.store(true, Ordering::Release);
        // At once: an empty pool lasts only until the DNS service's next
        // round, about a tenth of a second.
        match get_named(&c, &gw, true).await {
            Seen::Fine => {}
            Seen::EmptyPool(body) => {
                let backends = gw.status().await["upstreams"]["zz_named"]["backends"]
                    .as_array()
                    .map_or(0, Vec::len);
                empty_cycles.push((
                    cycles,
                    started.elapsed(),
                    format!("{body} (backends listed in /status just after: {backends})"),
                ));
            }
            Seen::Other(status, body) => panic!("cycle {cycles}: {status} {body}"),
        }

        present.store(false, Ordering::Release);
        gw.rewrite(&race_config(dns.addr, backend.port(), None));
        let (status, answer) = gw.reload().await;
        assert_eq!(status, 200, "cycle {cycles}: {answer}\n{}", gw.log());
    }
    stop.store(true, Ordering::Relaxed);
    flow.await.expect("the request flow");

    let flow_empty = flow_empty.lock().unwrap();
    eprintln!(
        "{cycles} cycles in {:?}; {} answered 503 right after the reload, {} of {} flowing requests did",
        started.elapsed(),
        empty_cycles.len(),
        flow_empty.len(),
        flow_count.load(Ordering::Relaxed),
    );
    assert!(
        empty_cycles.is_empty() && flow_empty.is_empty(),
        "a reload served a named upstream with no backends.\n\
         right after the reload (cycle, time, answer): {empty_cycles:#?}\n\
         flowing requests: {} answered 503 no healthy backend",
        flow_empty.len()
    );
}
