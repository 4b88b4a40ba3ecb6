//! HTTP/1.1 pipelining (RFC 9112 §9.3.2): requests sent back to back on one
//! connection before any answer are all answered, in order. Pingora alone
//! answers the first and drops the rest (pingora#377).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{echo, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads `n` responses with Content-Length bodies; returns each body.
async fn read_responses(s: &mut TcpStream, n: usize) -> Vec<(u16, String)> {
    let mut raw = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..i]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if raw.len() >= i + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&raw[i + 4..i + 4 + len]).to_string();
                out.push((status, body));
                raw.drain(..i + 4 + len);
                continue;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, s.read(&mut buf)).await;
        let n_read = match read {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        assert!(
            n_read > 0,
            "got {} of {n} responses before a close or 10 s",
            out.len()
        );
        raw.extend_from_slice(&buf[..n_read]);
    }
    out
}

fn path_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["path"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_in_order() {
    let (up, backend) = echo("up").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  up:\n    backends: [{up}]\nroutes:\n  - upstream: up\n"
    ))
    .await;
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    s.write_all(
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /three?sleep=50 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /four HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let got = read_responses(&mut s, 4).await;
    let paths: Vec<_> = got.iter().map(|(_, b)| path_of(b)).collect();
    assert_eq!(paths, ["/one", "/two", "/three", "/four"]);
    assert!(got.iter().all(|(status, _)| *status == 200));
    // Served one after another, each once.
    assert_eq!(backend.control.served.load(Ordering::Relaxed), 4);

    // The connection is still good for more.
    s.write_all(b"GET /five HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_responses(&mut s, 1).await;
    assert_eq!(path_of(&got[0].1), "/five");
}
