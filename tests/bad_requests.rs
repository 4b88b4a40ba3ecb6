//! Malformed and odd requests, written byte for byte on a raw socket: each
//! gets an error answer or a closed connection (or, where the request is
//! merely unusual, a normal answer), and the gateway serves on.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{client, echo, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `request`, reads until the gateway closes (bounded), and returns
/// the status of the answer (None if it closed without one) and the body.
async fn exchange(port: u16, request: &[u8]) -> (Option<u16>, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // The gateway may close before reading everything we send.
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "no answer and no close within 10 s");
    let status = out
        .strip_prefix(b"HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| std::str::from_utf8(code).ok()?.parse().ok());
    let body = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => out[i + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

fn echoed_header(body: &[u8], name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["headers"][name].as_str().map(String::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_an_error_and_the_gateway_serves_on() {
    let (a, _) = echo("a").await;
    let mut gw = Gateway::start(&format!(
        "upstreams:\n  up:\n    backends: [{a}]\n\
         limits:\n  per_key:\n    algorithm: token_bucket\n    key: header:x-api-key\n    capacity: 1000\n    fill_rate: 1000\n\
         routes:\n  - upstream: up\n    limits: [per_key]\n"
    ))
    .await;
    // Past Pingora's limit on a request's header block (1 MiB).
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let long_path = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "p%00/".repeat(2000)
    );
    // (what is sent, which statuses may answer it; None: closed without one)
    let refused: [(&[u8], &[Option<u16>]); 5] = [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", &[None, Some(400)]),
        (b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", &[None, Some(400)]),
        (big.as_bytes(), &[None, Some(400), Some(431)]),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n",
            &[None, Some(400), Some(502)],
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
            &[None, Some(400)],
        ),
    ];
    for (request, allowed) in refused {
        let (status, _) = exchange(gw.port, request).await;
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
        assert!(allowed.contains(&status), "{shown:?} answered {status:?}");
        assert!(gw.is_running(), "{shown:?} ended the gateway");
    }

    // Unusual but valid: answered normally.
    let odd: [&[u8]; 4] = [
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
        // A key that is not UTF-8 is still a key.
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Api-Key: \xff\xfe\r\nConnection: close\r\n\r\n",
        long_path.as_bytes(),
    ];
    for request in odd {
        let (status, _) = exchange(gw.port, request).await;
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
        assert_eq!(status, Some(200), "{shown:?}");
    }

    // Garbage in X-Forwarded-For from an untrusted peer is passed on with
    // the peer appended; an unusable X-Request-Id is replaced.
    let (status, body) = exchange(
        gw.port,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: not-an-ip, 1.2.3.4:99999\r\n\
          X-Request-Id: a\"b c\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, Some(200));
    assert_eq!(
        echoed_header(&body, "x-forwarded-for").as_deref(),
        Some("not-an-ip, 1.2.3.4:99999, 127.0.0.1")
    );
    let id = echoed_header(&body, "x-request-id").unwrap_or_default();
    assert!(!id.is_empty() && id != "a\"b c", "request id {id:?}");

    let c = client();
    for _ in 0..3 {
        let r = c.get(gw.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(gw.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http11_request_without_host_is_refused_with_400() {
    let (a, e) = echo("a").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  up:\n    backends: [{a}]\nroutes:\n  - upstream: up\n"
    ))
    .await;
    // RFC 9112 §3.2.
    let (status, body) = exchange(gw.port, b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n").await;
    assert_eq!(status, Some(400));
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "an HTTP/1.1 request needs a Host header");
    assert_eq!(
        e.control.served.load(Ordering::Relaxed),
        0,
        "it reached the backend"
    );
    // HTTP/1.0 has no such rule.
    let (status, _) = exchange(gw.port, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_past_the_limit_is_refused_with_431() {
    let (a, e) = echo("a").await;
    let gw = Gateway::start(&format!(
        "max_request_header_size: 4096\nupstreams:\n  up:\n    backends: [{a}]\nroutes:\n  - upstream: up\n"
    ))
    .await;
    let c = client();
    let send = |size: usize| {
        c.get(gw.url("/"))
            .header("x-padding", "p".repeat(size))
            .send()
    };
    assert_eq!(send(3000).await.unwrap().status(), 200);
    let served = e.control.served.load(Ordering::Relaxed);
    let r = send(5000).await.unwrap();
    assert_eq!(r.status(), 431);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "request header fields too large");
    assert!(!body["request_id"].as_str().unwrap().is_empty());
    assert_eq!(
        e.control.served.load(Ordering::Relaxed),
        served,
        "the refused request reached the backend"
    );

    // The default is 64 KiB.
    let gw = Gateway::start(&format!(
        "upstreams:\n  up:\n    backends: [{a}]\nroutes:\n  - upstream: up\n"
    ))
    .await;
    let big = c
        .get(gw.url("/"))
        .header("x-padding", "p".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 431);
}
