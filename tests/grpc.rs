//! gRPC through the gateway with a real tonic client and server: every kind
//! of call to an h2c backend and to an h2 (TLS) backend, with their
//! trailers; the gateway's own refusals as gRPC statuses; and the
//! `grpc.health.v1` health check.

mod common;
mod grpc_support;

use std::time::{Duration, Instant};

use common::*;
use grpc_support::*;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request};

fn h2c_listen() -> Option<String> {
    Some("listen:\n  - { address: 127.0.0.1:{port}, h2c: true }\n".to_string())
}

/// The next message of a stream, failing the test if it does not come soon:
/// a gateway that buffered the stream would hold it back.
async fn next<T>(s: &mut tonic::Streaming<T>) -> Result<Option<T>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(5), s.message())
        .await
        .expect("the stream stalled: is the gateway buffering it?")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_call_passes_through_to_an_h2c_backend() {
    let b = backend("a", None).await;
    let gw = Gateway::start_with_listen(
        &format!(
            "upstreams:\n  grpc:\n    protocol: h2c\n    backends: [{}]\nroutes:\n  - upstream: grpc\n",
            b.addr
        ),
        h2c_listen(),
    )
    .await;
    let mut c = EchoClient::new(channel(gw.port, None).await);

    let r = c.unary(Request::new(msg("hi", 7))).await.unwrap();
    assert_eq!(r.get_ref(), &msg("a:hi", 7));
    let r = c.unary(Request::new(msg("te", 0))).await.unwrap();
    assert_eq!(
        r.get_ref().text,
        "trailers",
        "gRPC's `te: trailers` was not forwarded"
    );

    // Server streaming, in lock step: the backend sends message i only once
    // the test has received message i-1.
    let mut list = c.list(msg("item", 3)).await.unwrap().into_inner();
    for i in 0..3 {
        b.release.add_permits(1);
        let m = next(&mut list).await.unwrap().unwrap();
        assert_eq!(m, msg(&format!("item#{i}"), i));
    }
    // The stream's status travels in the trailers after the messages.
    let end = next(&mut list).await.unwrap_err();
    assert_eq!(end.code(), Code::DataLoss, "{end:?}");
    assert_eq!(end.message(), "end of list");

    let r = c
        .sum(vec![msg("x", 1), msg("y", 2), msg("z", 3)])
        .await
        .unwrap();
    assert_eq!(r.get_ref(), &msg("3 messages", 6));

    // Bidirectional, in lock step: each reply comes before the next send.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(msg("one", 1)).await.unwrap();
    let mut chat = c.chat(ReceiverStream::new(rx)).await.unwrap().into_inner();
    assert_eq!(next(&mut chat).await.unwrap(), Some(msg("ONE", 1)));
    tx.send(msg("two", 2)).await.unwrap();
    assert_eq!(next(&mut chat).await.unwrap(), Some(msg("TWO", 2)));
    drop(tx);
    // The end of the call: grpc-status 0 in the trailers.
    assert_eq!(next(&mut chat).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_share_multiplexed_backend_connections() {
    let b = backend("a", None).await;
    let gw = Gateway::start_with_listen(
        &format!(
            "upstreams:\n  grpc:\n    protocol: h2c\n    backends: [{}]\nroutes:\n  - upstream: grpc\n",
            b.addr
        ),
        h2c_listen(),
    )
    .await;
    let ch = channel(gw.port, None).await;
    for i in 0..20 {
        let mut c = EchoClient::new(ch.clone());
        c.unary(Request::new(msg("seq", i))).await.unwrap();
    }
    // 40 calls in flight at once, each held by the backend for 200 ms.
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let mut c = EchoClient::new(ch.clone());
            tokio::spawn(async move { c.unary(Request::new(msg("slow", 200 + i))).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    // Streams share connections: a burst may open a few side by side
    // before the first handshake completes (more on a loaded machine, where
    // handshakes are slow), never anything near one per call.
    let opened = b.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=20).contains(&opened),
        "60 calls opened {opened} backend connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reach_an_h2_backend_over_tls_from_a_tls_client() {
    let (cert, key) = localhost_cert();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let b = backend("tls", Some(&(cert.clone(), key.clone()))).await;
    let listen = format!(
        "listen:\n  - address: 127.0.0.1:{{port}}\n    tls: {{ cert: {}, key: {} }}\n",
        cert_path.display(),
        key_path.display()
    );
    let gw = Gateway::start_with_listen(
        &format!(
            "upstreams:\n  grpc:\n    protocol: h2\n    sni: localhost\n    ca: {}\n    backends: [{}]\n\
             \x20   health_check: {{ type: grpc, interval: 100ms }}\nroutes:\n  - upstream: grpc\n",
            cert_path.display(),
            b.addr
        ),
        Some(listen),
    )
    .await;
    let mut c = EchoClient::new(channel(gw.port, Some(&cert)).await);

    let r = c.unary(Request::new(msg("secure", 1))).await.unwrap();
    assert_eq!(r.get_ref(), &msg("tls:secure", 1));
    let mut list = c.list(msg("t", 2)).await.unwrap().into_inner();
    for i in 0..2 {
        b.release.add_permits(1);
        assert_eq!(
            next(&mut list).await.unwrap(),
            Some(msg(&format!("t#{i}"), i))
        );
    }
    assert_eq!(next(&mut list).await.unwrap_err().code(), Code::DataLoss);

    // The gRPC health check speaks the same TLS + h2 to this backend.
    b.set_serving(false).await;
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "grpc", b.addr)
            == Some(false))
            .await,
        "a NOT_SERVING TLS backend was not ejected: {}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_refusals_are_grpc_statuses() {
    let b = backend("a", None).await;
    let gw = Gateway::start_with_listen(
        &format!(
            "upstreams:\n  live:\n    protocol: h2c\n    backends: [{}]\n\
             \x20 dead:\n    protocol: h2c\n    retries: 0\n    backends: [{}]\n\
             limits:\n  tiny:\n    algorithm: token_bucket\n    key: global\n    capacity: 1\n    fill_rate: 0.001\n\
             routes:\n\
             \x20 - {{ name: limited, path_prefix: /sluice.test.Echo/Unary, upstream: live, limits: [tiny] }}\n\
             \x20 - {{ name: down, path_prefix: /sluice.test.Echo/Sum, upstream: dead }}\n\
             \x20 - {{ name: rest, path_prefix: /sluice.test.Echo/, upstream: live }}\n",
            b.addr,
            dead_addr()
        ),
        h2c_listen(),
    )
    .await;
    let ch = channel(gw.port, None).await;
    let mut c = EchoClient::new(ch.clone());

    c.unary(Request::new(msg("first", 1))).await.unwrap();
    let limited = c.unary(Request::new(msg("second", 2))).await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    assert_eq!(limited.message(), "rate limited by tiny");
    // The RateLimit fields ride along.
    let md = limited.metadata();
    assert!(md.get("ratelimit").is_some(), "{md:?}");
    assert!(md.get("ratelimit-policy").is_some(), "{md:?}");
    assert!(md.get("retry-after").is_some(), "{md:?}");
    assert!(md.get("x-request-id").is_some(), "{md:?}");

    let down = c.sum(vec![msg("x", 1)]).await.unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    assert_eq!(down.message(), "could not reach a backend");

    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    let unrouted = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unrouted.code(), Code::Unimplemented, "{unrouted:?}");
    assert_eq!(unrouted.message(), "no route matches this request");

    // Streaming calls on the routes that work are unaffected.
    let mut list = c.list(msg("ok", 1)).await.unwrap().into_inner();
    b.release.add_permits(1);
    assert_eq!(next(&mut list).await.unwrap(), Some(msg("ok#0", 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stalls_mid_stream_ends_the_call_with_a_status() {
    let b = backend("a", None).await;
    let gw = Gateway::start_with_listen(
        &format!(
            "upstreams:\n  grpc:\n    protocol: h2c\n    read_timeout: 300ms\n    backends: [{}]\n\
             routes:\n  - upstream: grpc\n",
            b.addr
        ),
        h2c_listen(),
    )
    .await;
    let mut c = EchoClient::new(channel(gw.port, None).await);
    let mut list = c.list(msg("stall", 3)).await.unwrap().into_inner();
    b.release.add_permits(1);
    assert_eq!(next(&mut list).await.unwrap(), Some(msg("stall#0", 0)));
    // No more permits: the backend sends nothing for longer than read_timeout.
    let end = next(&mut list).await.unwrap_err();
    assert_eq!(end.code(), Code::DeadlineExceeded, "{end:?}");
    assert_eq!(end.message(), "the backend did not answer in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_health_check_ejects_a_not_serving_backend() {
    let a = backend("a", None).await;
    let b = backend("b", None).await;
    let gw = Gateway::start_with_listen(
        &format!(
            "upstreams:\n  grpc:\n    protocol: h2c\n    backends: [{}, {}]\n\
             \x20   health_check: {{ type: grpc, service: \"\", interval: 100ms, timeout: 1s }}\n\
             routes:\n  - upstream: grpc\n",
            a.addr, b.addr
        ),
        h2c_listen(),
    )
    .await;
    let mut c = EchoClient::new(channel(gw.port, None).await);

    a.set_serving(false).await;
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "grpc", a.addr)
            == Some(false)
            && healthy(s, "grpc", b.addr) == Some(true))
            .await,
        "backend a says NOT_SERVING but was not ejected: {}",
        gw.log()
    );
    for i in 0..10 {
        let r = c.unary(Request::new(msg("who", i))).await.unwrap();
        assert_eq!(
            r.get_ref().text,
            "b:who",
            "call {i} reached an ejected backend"
        );
    }

    a.set_serving(true).await;
    let started = Instant::now();
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "grpc", a.addr)
            == Some(true))
            .await,
        "backend a is SERVING again but was not let back"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // With every backend NOT_SERVING the gateway answers the call itself.
    a.set_serving(false).await;
    b.set_serving(false).await;
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "grpc", a.addr)
            == Some(false)
            && healthy(s, "grpc", b.addr) == Some(false))
            .await
    );
    let none = c.unary(Request::new(msg("nobody", 0))).await.unwrap_err();
    assert_eq!(none.code(), Code::Unavailable, "{none:?}");
    assert_eq!(none.message(), "no healthy backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_health_check_speaks_the_pools_protocol() {
    // tonic's server speaks only HTTP/2: an HTTP/1.1 check would fail on it.
    // It answers any path with status 200 (and a gRPC status), so an h2c
    // check of `/health` passes.
    let b = backend("a", None).await;
    let dead = dead_addr();
    let gw = Gateway::start_with_listen(
        &format!(
            "upstreams:\n  grpc:\n    protocol: h2c\n    backends: [{}, {dead}]\n\
             \x20   health_check: {{ type: http, path: /health, interval: 100ms, unhealthy_after: 1 }}\n\
             routes:\n  - upstream: grpc\n",
            b.addr
        ),
        h2c_listen(),
    )
    .await;
    // Both backends are checked in every round: once the dead one has
    // failed a round, the live one has passed that round.
    assert!(
        gw.wait_status(Duration::from_secs(10), |s| healthy(s, "grpc", dead)
            == Some(false))
            .await
    );
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            healthy(&gw.status().await, "grpc", b.addr),
            Some(true),
            "the h2c backend failed an HTTP health check: {}",
            gw.log()
        );
    }
}
