//! HTTP/2 from clients as a new user tries it: `curl --http2` against a TLS
//! listener (ALPN), `--http2-prior-knowledge` against an `h2c: true`
//! listener, HTTP/1.1 still served beside both, h2load with many streams per
//! connection, routing by `:authority`, the access log's protocol, and a
//! gRPC deadline that shortens the backend's read timeout.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

/// Runs a command from a test, bounded in time.
async fn run(program: &str, args: &[String]) -> Output {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run {program} (scripts/setup.sh installs it): {e}"),
        Err(_) => panic!("{program} {args:?} did not finish in 30 s"),
    }
}

/// `curl` with `args`: (HTTP version, status, body).
async fn curl(args: &[&str]) -> (String, u16, String) {
    let mut all: Vec<String> = [
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\n%{http_version} %{http_code}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.extend(args.iter().map(|s| s.to_string()));
    let out = run("curl", &all).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (version, code) = last.split_once(' ').unwrap_or(("", "0"));
    (
        version.to_string(),
        code.parse().unwrap_or(0),
        body.to_string(),
    )
}

fn backend_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .map(|v| v["backend"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_offers_h2_and_http1_by_alpn() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    let tls = common::tls_listener(&["localhost", "api.test"]);
    let listen = tls.listen.clone();
    let log_path = tls.dir.path().join("access.log");
    let gw = Gateway::start_with_listen(
        &format!(
            "access_log: {{ path: {}, format: json }}\n\
             upstreams:\n  a:\n    backends: [{a}]\n  b:\n    backends: [{b}]\n\
             routes:\n  - {{ host: api.test, upstream: b }}\n  - upstream: a\n",
            log_path.display()
        ),
        Some(listen),
    )
    .await;
    let cert_path = tls.dir.path().join("cert.pem");
    let ca = cert_path.to_str().unwrap();
    let resolve = |host: &str| format!("{host}:{}:127.0.0.1", gw.port);
    let url = |host: &str| format!("https://{host}:{}/hello", gw.port);

    let (v, code, body) = curl(&[
        "--http2",
        "--cacert",
        ca,
        "--resolve",
        &resolve("localhost"),
        &url("localhost"),
    ])
    .await;
    assert_eq!((v.as_str(), code), ("2", 200), "{body}");
    assert_eq!(backend_of(&body), "a");

    // HTTP/2 carries the host in `:authority` only; the route still matches.
    let (v, code, body) = curl(&[
        "--http2",
        "--cacert",
        ca,
        "--resolve",
        &resolve("api.test"),
        &url("api.test"),
    ])
    .await;
    assert_eq!((v.as_str(), code), ("2", 200), "{body}");
    assert_eq!(backend_of(&body), "b");

    let (v, code, _) = curl(&[
        "--http1.1",
        "--cacert",
        ca,
        "--resolve",
        &resolve("localhost"),
        &url("localhost"),
    ])
    .await;
    assert_eq!((v.as_str(), code), ("1.1", 200));

    let lines = common::access_log_lines(&log_path, 3).await;
    let protocols: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["protocol"].as_str())
        .collect();
    assert_eq!(protocols, ["HTTP/2", "HTTP/2", "HTTP/1.1"], "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_listener_takes_prior_knowledge_and_keeps_http1() {
    let (a, _) = echo("a").await;
    // A second, plain listener shows that h2c is per listener.
    let plain = free_port();
    let listen = format!(
        "listen:\n  - {{ address: 127.0.0.1:{{port}}, h2c: true }}\n  - 127.0.0.1:{plain}\n"
    );
    let gw = Gateway::start_with_listen(
        &format!("upstreams:\n  a:\n    backends: [{a}]\nroutes:\n  - upstream: a\n"),
        Some(listen),
    )
    .await;
    let h2c = gw.url("/x");

    let (v, code, body) = curl(&["--http2-prior-knowledge", &h2c]).await;
    assert_eq!((v.as_str(), code), ("2", 200), "{body}");
    assert_eq!(backend_of(&body), "a");
    let (v, code, _) = curl(&[&h2c]).await;
    assert_eq!((v.as_str(), code), ("1.1", 200));
    let r = client().get(&h2c).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let plain_url = format!("http://127.0.0.1:{plain}/x");
    let (_, code, _) = curl(&[&plain_url]).await;
    assert_eq!(code, 200, "the plain listener serves HTTP/1.1");
    let (_, code, _) = curl(&["--http2-prior-knowledge", &plain_url]).await;
    assert_ne!(code, 200, "a listener without h2c must not speak HTTP/2");
}

/// h2load's summary: (requests succeeded, 2xx responses).
fn h2load_counts(out: &str) -> (u64, u64) {
    let number_before = |line: &str, word: &str| -> u64 {
        let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        words
            .windows(2)
            .find(|w| w[1] == word)
            .and_then(|w| w[0].parse().ok())
            .unwrap_or(0)
    };
    let requests = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or("");
    let statuses = out
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .unwrap_or("");
    (
        number_before(requests, "succeeded"),
        number_before(statuses, "2xx"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_with_many_streams_per_connection_gets_only_200s() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    let gw = Gateway::start_with_listen(
        &format!("upstreams:\n  u:\n    backends: [{a}, {b}]\nroutes:\n  - upstream: u\n"),
        h2c_listen(),
    )
    .await;
    // 4 connections with 10 concurrent streams each.
    let args: Vec<String> = ["-n", "2000", "-c", "4", "-m", "10", &gw.url("/bench")]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = run("h2load", &args).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(h2load_counts(&text), (2000, 2000), "{text}");
}

fn h2c_listen() -> Option<String> {
    Some("listen:\n  - { address: 127.0.0.1:{port}, h2c: true }\n".to_string())
}

/// Response headers of a curl `-D -` dump, lower-cased names.
fn headers_of(dump: &str) -> Vec<(String, String)> {
    dump.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_timeout_shorter_than_read_timeout_wins() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start_with_listen(
        &format!(
            "upstreams:\n  a:\n    read_timeout: 30s\n    retries: 0\n    backends: [{a}]\nroutes:\n  - upstream: a\n"
        ),
        h2c_listen(),
    )
    .await;
    let grpc = |timeout: &'static str, sleep_ms: u32| {
        let url = gw.url(&format!("/pkg.Svc/Call?sleep={sleep_ms}"));
        async move {
            let started = Instant::now();
            let out = run(
                "curl",
                &[
                    "-sS",
                    "--max-time",
                    "10",
                    "--http2-prior-knowledge",
                    "-D",
                    "-",
                    "-o",
                    "/dev/null",
                    "-H",
                    "content-type: application/grpc",
                    "-H",
                    &format!("grpc-timeout: {timeout}"),
                    &url,
                ]
                .map(String::from),
            )
            .await;
            (
                headers_of(&String::from_utf8_lossy(&out.stdout)),
                started.elapsed(),
            )
        }
    };
    let (headers, took) = grpc("300m", 3000).await;
    let get = |h: &[(String, String)], n: &str| {
        h.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(get(&headers, "grpc-status"), "4", "{headers:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // A deadline longer than the backend needs does not cut the call.
    let (headers, _) = grpc("10S", 500).await;
    assert_eq!(get(&headers, "x-backend"), "a", "{headers:?}");
    assert_eq!(get(&headers, "grpc-status"), "", "{headers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_stream_is_retried_balanced_and_counted_like_any_request() {
    let (a, _) = echo("a").await;
    let (b, _) = echo("b").await;
    let dead = dead_addr();
    let gw = Gateway::start_with_listen(
        &format!(
            "upstreams:\n  u:\n    retries: 2\n    backends: [{dead}, {a}, {b}]\n\
             routes:\n  - {{ name: h2, upstream: u }}\n"
        ),
        h2c_listen(),
    )
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        // Every third pick is the dead backend: the stream is retried on
        // another, so every answer is a 200.
        let (v, code, body) = curl(&["--http2-prior-knowledge", &gw.url("/x")]).await;
        assert_eq!((v.as_str(), code), ("2", 200), "{body}");
        seen.insert(backend_of(&body));
    }
    assert_eq!(seen, ["a".to_string(), "b".to_string()].into());
    assert_eq!(
        gw.metric("sluice_requests_total{route=\"h2\",status=\"200\"}")
            .await,
        Some(12.0)
    );
    assert!(
        gw.metric("sluice_retries_total{upstream=\"u\"}")
            .await
            .is_some_and(|n| n >= 1.0),
        "no retry was counted"
    );
}
