//! The gateway's own answers go through one place: never spliced into a
//! response that has begun, and dressed by the route's response filters and
//! the RateLimit fields like any proxied response.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{client, dead_addr, echo, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that answers every request with `head` and `partial` of its
/// body, then closes the connection: it dies in the middle of its body.
async fn dying_backend(head: &'static str, partial: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let partial = partial.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&partial).await;
                let _ = s.flush().await;
                // Dropping the socket ends the body early.
            });
        }
    });
    addr
}

/// Sends a GET on a raw socket and reads until the gateway closes.
async fn read_all(port: u16, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the gateway neither finished nor closed");
    out
}

fn split_head(raw: &[u8]) -> (String, &[u8]) {
    let i = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    (
        String::from_utf8_lossy(&raw[..i]).to_lowercase(),
        &raw[i + 4..],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_dying_mid_body_truncates_the_response() {
    let body: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
    let sized = dying_backend(
        "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n",
        body.clone(),
    )
    .await;
    let mut chunk = format!("{:x}\r\n", body.len()).into_bytes();
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(b"\r\n");
    let chunked = dying_backend(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n",
        chunk,
    )
    .await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  sized:\n    backends: [{sized}]\n    retries: 0\n  chunked:\n    backends: [{chunked}]\n    retries: 0\n\
         routes:\n  - path_prefix: /sized/\n    upstream: sized\n  - path_prefix: /chunked/\n    upstream: chunked\n"
    ))
    .await;

    let raw = read_all(gw.port, "/sized/x").await;
    let (head, got) = split_head(&raw);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 1000"), "{head}");
    assert_eq!(
        got,
        &body[..],
        "the client gets the backend's 100 bytes and a close, nothing spliced in"
    );

    let raw = read_all(gw.port, "/chunked/x").await;
    let (head, got) = split_head(&raw);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let text = String::from_utf8_lossy(got);
    assert!(
        !text.contains("could not reach") && !text.contains("request_id"),
        "gateway JSON spliced into the body: {text:?}"
    );
    assert!(
        text.contains(std::str::from_utf8(&body).unwrap()),
        "the backend's chunk arrives: {text:?}"
    );
    assert!(
        !got.ends_with(b"0\r\n\r\n"),
        "a chunked body without its last chunk tells the client it was cut: {text:?}"
    );

    // Whole answers are still whole.
    let (ok, _) = echo("fine").await;
    gw.rewrite(&format!(
        "upstreams:\n  up:\n    backends: [{ok}]\nroutes:\n  - upstream: up\n"
    ));
    assert_eq!(gw.reload().await.0, 200);
    let raw = read_all_close(gw.port).await;
    assert!(raw.starts_with(b"HTTP/1.1 200"));
}

async fn read_all_close(port: u16) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_answers_carry_the_routes_response_headers_and_ratelimit_fields() {
    let dead = dead_addr();
    let (live, _) = echo("live").await;
    let gw = Gateway::start_example(
        "custom_filter",
        &format!(
            "upstreams:\n  dead:\n    backends: [{dead}]\n    retries: 0\n  live:\n    backends: [{live}]\n\
             limits:\n  two:\n    algorithm: token_bucket\n    key: route\n    capacity: 2\n    fill_rate: 0.01\n\
             filters:\n  hsts:\n    type: headers\n    response: {{ set: {{ strict-transport-security: max-age=63072000 }} }}\n  \
             tenant:\n    type: tenant\n    allowed: [acme]\n\
             routes:\n  - name: down\n    path_prefix: /down/\n    upstream: dead\n    filters: [hsts]\n    limits: [two]\n\
             \x20 - name: guarded\n    path_prefix: /guarded/\n    upstream: live\n    filters: [hsts, tenant]\n"
        ),
    )
    .await;
    let c = client();
    let hsts = "strict-transport-security";

    // 502 from the gateway: the route's filters and the admitted limit's fields.
    let r = c.get(gw.url("/down/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()[hsts], "max-age=63072000");
    assert!(r.headers().contains_key("ratelimit"), "{:?}", r.headers());
    assert!(r.headers().contains_key("ratelimit-policy"));
    let _ = c.get(gw.url("/down/x")).send().await.unwrap();

    // 429 from the limit: the filters ran before admission, so they dress it.
    let r = c.get(gw.url("/down/x")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()[hsts], "max-age=63072000");

    // A filter's own reply: the filters before it unwind over it; its own
    // response hook does not run (its request hook did not pass the request on).
    let r = c.get(gw.url("/guarded/x")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()[hsts], "max-age=63072000");
    assert!(!r.headers().contains_key("x-tenant-checked"));
    let r = c
        .get(gw.url("/guarded/x"))
        .header("x-tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[hsts], "max-age=63072000");
    assert_eq!(r.headers()["x-tenant-checked"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_cut_mid_body_is_reset_not_completed() {
    let body: Vec<u8> = vec![b'z'; 100];
    let sized = dying_backend(
        "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n",
        body,
    )
    .await;
    let gw = Gateway::start_with_listen(
        &format!("upstreams:\n  up:\n    backends: [{sized}]\n    retries: 0\nroutes:\n  - upstream: up\n"),
        Some("listen:\n  - { address: 127.0.0.1:{port}, h2c: true }\n".to_string()),
    )
    .await;
    let url = gw.url("/x");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--http2-prior-knowledge", &url])
            .output()
            .expect("curl (scripts/setup.sh installs it)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "curl must see the stream fail, not end: {stderr}"
    );
    assert!(
        !stdout.contains("request_id"),
        "gateway JSON spliced into the body: {stdout:?}"
    );
    // Whatever of the 100 bytes the reset overtook is all there is.
    assert!(stdout.bytes().all(|b| b == b'z'), "{stdout:?} / {stderr}");
}
