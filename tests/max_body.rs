//! `max_body` through the real gateway, against a backend that records every
//! byte it receives: a declared length over the limit never reaches a
//! backend, a streamed body is cut off before the piece that crosses it.

mod common;
#[path = "common/raw_http.rs"]
mod raw_http;
#[path = "common/recording_backend.rs"]
mod recording_backend;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use recording_backend::Recording;

/// A gateway with `max_body: 1KiB` at the top level, a route that raises it
/// and one that turns it off, all to one recording backend; the listener
/// takes HTTP/1.1 and h2c.
async fn gateway() -> (Gateway, Arc<Recording>) {
    let (addr, rec) = Recording::start().await;
    let sections = format!(
        "max_body: 1KiB
upstreams:
  rec:
    backends: [{addr}]
routes:
  - {{ name: default, path_prefix: /, upstream: rec }}
  - {{ name: big, path_prefix: /big/, upstream: rec, max_body: 4KiB }}
  - {{ name: open, path_prefix: /open/, upstream: rec, max_body: off }}
"
    );
    let listen = "listen:\n  - { address: 127.0.0.1:{port}, h2c: true }\n".to_string();
    (
        Gateway::start_with_listen(&sections, Some(listen)).await,
        rec,
    )
}

fn chunk(len: usize) -> Vec<u8> {
    let mut c = format!("{len:x}\r\n").into_bytes();
    c.extend(std::iter::repeat_n(b'x', len));
    c.extend_from_slice(b"\r\n");
    c
}

/// Sends only the head of a request declaring `length` body bytes.
async fn declared(port: u16, path: &str, length: u64) -> (raw_http::Response, raw_http::Conn) {
    let mut c = raw_http::Conn::open(port).await;
    let head = format!("POST {path} HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {length}\r\n\r\n");
    c.send(head.as_bytes()).await.unwrap();
    let r = c.response().await.expect("an answer to the head alone");
    (r, c)
}

async fn post(gw: &Gateway, path: &str, len: usize) -> (u16, serde_json::Value) {
    let r = client()
        .post(gw.url(path))
        .body(vec![b'x'; len])
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_over_the_limit_gets_413_before_any_backend_is_contacted() {
    let (gw, rec) = gateway().await;
    let (r, mut conn) = declared(gw.port, "/upload", 1025).await;
    assert_eq!(r.status, 413, "{}", r.head);
    assert_eq!(r.json()["error"], "request body too large");
    assert!(
        conn.closed_within(Duration::from_secs(5)).await,
        "the unread body makes the connection unusable: it is closed"
    );
    let (r, _) = declared(gw.port, "/", u64::MAX).await;
    assert_eq!(r.status, 413, "a length past any limit: {}", r.head);
    assert_eq!(rec.connection_count(), 0, "no backend was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_that_crosses_the_limit_is_cut_off_before_it_does() {
    let (gw, rec) = gateway().await;
    let mut c = raw_http::Conn::open(gw.port).await;
    let mut first =
        b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    first.extend(chunk(600));
    c.send(&first).await.unwrap();
    // The first 600 bytes are within the limit: they reach the backend.
    assert!(
        rec.wait_body_bytes(600, Duration::from_secs(10)).await,
        "the first chunk was forwarded"
    );
    // The next 600 would make 1200 > 1024: refused before it is forwarded.
    c.send(&chunk(600)).await.unwrap();
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 413, "{}", r.head);
    assert_eq!(r.json()["error"], "request body too large");
    assert!(c.closed_within(Duration::from_secs(5)).await);
    let got = rec.body_bytes();
    assert!(
        got <= 1024,
        "the backend received {got} body bytes, past max_body"
    );
    assert_eq!(got, 600, "only the chunk before the crossing one");
    assert_eq!(
        rec.requests(),
        0,
        "the upstream request was aborted, never completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_exactly_at_the_limit_passes() {
    let (gw, rec) = gateway().await;
    let (status, body) = post(&gw, "/upload", 1024).await;
    assert_eq!((status, body["received"].as_u64()), (200, Some(1024)));

    let mut c = raw_http::Conn::open(gw.port).await;
    let mut req =
        b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend(chunk(512));
    req.extend(chunk(512));
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req).await.unwrap();
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.json()["received"], 1024);
    assert_eq!(rec.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_overrides_the_top_level_default() {
    let (gw, rec) = gateway().await;
    let (r, _) = declared(gw.port, "/upload", 2000).await;
    assert_eq!(
        r.status, 413,
        "the top-level 1KiB applies to the default route"
    );
    let (status, body) = post(&gw, "/big/upload", 2000).await;
    assert_eq!((status, body["received"].as_u64()), (200, Some(2000)));
    let (r, _) = declared(gw.port, "/big/upload", 4097).await;
    assert_eq!(r.status, 413, "the route's own 4KiB");
    let (status, body) = post(&gw, "/open/upload", 100_000).await;
    assert_eq!(
        (status, body["received"].as_u64()),
        (200, Some(100_000)),
        "max_body: off lifts the default"
    );
    assert_eq!(rec.requests(), 2);
}

/// An HTTP/2 request (h2c, prior knowledge) on a fresh connection.
async fn h2_client(port: u16) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.ready().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_bodies_are_limited_too() {
    let (gw, rec) = gateway().await;
    let url = format!("http://127.0.0.1:{}/upload", gw.port);

    // DATA frames without a Content-Length, crossing the limit.
    let mut client = h2_client(gw.port).await;
    let req = http::Request::post(&url).body(()).unwrap();
    let (response, mut body) = client.send_request(req, false).unwrap();
    body.send_data(Bytes::from(vec![b'x'; 600]), false).unwrap();
    assert!(
        rec.wait_body_bytes(600, Duration::from_secs(10)).await,
        "the first DATA frame was forwarded"
    );
    body.send_data(Bytes::from(vec![b'x'; 600]), false).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("an answer in time")
        .expect("a response");
    assert_eq!(resp.status(), 413);
    let got = rec.body_bytes();
    assert!(
        got <= 1024,
        "the backend received {got} body bytes, past max_body"
    );
    assert_eq!(rec.requests(), 0);

    // A declared content-length over the limit: no backend contacted.
    let before = rec.connection_count();
    let mut client = h2_client(gw.port).await;
    let req = http::Request::post(&url)
        .header("content-length", "5000")
        .body(())
        .unwrap();
    let (response, _body) = client.send_request(req, false).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("an answer in time")
        .expect("a response");
    assert_eq!(resp.status(), 413);
    assert_eq!(rec.connection_count(), before, "no new backend connection");
}
