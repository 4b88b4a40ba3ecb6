//! Slow and greedy clients: request heads must arrive within
//! `request_header_timeout` (408 and a close past it, however the bytes
//! trickle in), idle keep-alive connections close after `keepalive_timeout`,
//! and `max_connections(_per_ip)` refuse connections past the caps while
//! everyone else is served.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{client, connect_from, echo, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the gateway closes; (bytes, when the close came). Bounded.
async fn read_until_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Instant) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, Instant::now()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after {limit:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// Reads one whole response with a Content-Length body.
async fn read_response(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..i]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if out.len() >= i + 4 + len {
                return out;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
}

fn config(up: SocketAddr, extra: &str) -> String {
    format!("{extra}upstreams:\n  up:\n    backends: [{up}]\nroutes:\n  - upstream: up\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_heads_get_408_at_the_deadline_while_others_are_served() {
    let (up, _) = echo("up").await;
    let gw = Gateway::start(&config(up, "request_header_timeout: 2s\n")).await;
    const SLOW: usize = 300;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..SLOW {
        let port = gw.port;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
            // A header byte every 300 ms: each read restarts a per-read
            // timeout, never an absolute one.
            let (out, closed) = {
                let mut out = Vec::new();
                let mut buf = [0u8; 1024];
                let end = Instant::now() + Duration::from_secs(15);
                loop {
                    tokio::select! {
                        r = s.read(&mut buf) => match r {
                            Ok(0) | Err(_) => break (out, Instant::now()),
                            Ok(n) => out.extend_from_slice(&buf[..n]),
                        },
                        _ = tokio::time::sleep(Duration::from_millis(300)) => {
                            let _ = s.write_all(if i % 2 == 0 { b"X" } else { b"-" }).await;
                        }
                    }
                    assert!(Instant::now() < end, "slow head still open after 15 s");
                }
            };
            (out, closed)
        }));
    }
    // Normal requests are served meanwhile, on fresh and reused connections.
    let c = client();
    let mut served = 0;
    while start.elapsed() < Duration::from_millis(1500) && served < 200 {
        let r = c.get(gw.url("/ok")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        served += 1;
    }
    assert!(served >= 5, "only {served} normal requests in 1.5 s");
    for t in tasks {
        let (out, closed) = t.await.unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
        assert!(
            text.to_lowercase().contains("connection: close"),
            "{text:?}"
        );
        assert!(text.contains("did not arrive in time"), "{text:?}");
        let after = closed - start;
        assert!(
            after >= Duration::from_millis(1900) && after < Duration::from_secs(8),
            "closed {after:?} after the start, the deadline was 2 s"
        );
    }
    assert!(
        gw.metric("sluice_client_timeouts_total{kind=\"request_header\"}")
            .await
            .unwrap_or(0.0)
            >= SLOW as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_heads_and_idle_keepalive_connections_have_deadlines_too() {
    let (up, _) = echo("up").await;
    let gw = Gateway::start(&config(
        up,
        "request_header_timeout: 1s\nkeepalive_timeout: 2s\n",
    ))
    .await;

    // A second request on a kept-alive connection: its head is timed from
    // its first byte, not from the connection (which is older than 1 s).
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut s).await.starts_with(b"HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.write_all(b"GET /b HTTP/1.1\r\nHo").await.unwrap();
    let sent = Instant::now();
    let (out, closed) = read_until_close(&mut s, Duration::from_secs(10)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let took = closed - sent;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // An idle keep-alive connection is closed quietly after 2 s.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut s).await.starts_with(b"HTTP/1.1 200"));
    let idle = Instant::now();
    let (out, closed) = read_until_close(&mut s, Duration::from_secs(10)).await;
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    let took = closed - idle;
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );

    // A connection that never sends a byte is closed without an answer.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let (out, _) = read_until_close(&mut s, Duration::from_secs(10)).await;
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));

    // A slow body is not a slow head: the request is being served.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    s.write_all(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"cd").await.unwrap();
    let out = read_response(&mut s).await;
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_refuse_past_them_per_ip_and_in_total() {
    let (up, _) = echo("up").await;
    let mut gw = Gateway::start(&config(up, "max_connections_per_ip: 2\n")).await;
    let get = |mut s: TcpStream| async move {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        (n >= 12).then(|| String::from_utf8_lossy(&buf[..12]).to_string())
    };
    let a1 = connect_from([127, 0, 0, 1], gw.port).await;
    let a2 = connect_from([127, 0, 0, 1], gw.port).await;
    // Both are admitted (and served) before the third arrives.
    let mut a1 = a1;
    a1.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut a1).await.starts_with(b"HTTP/1.1 200"));
    let mut a2 = a2;
    a2.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut a2).await.starts_with(b"HTTP/1.1 200"));
    let a3 = connect_from([127, 0, 0, 1], gw.port).await;
    assert_eq!(
        get(a3).await,
        None,
        "a third connection from one IP is closed"
    );
    // Another IP is not affected.
    let b1 = connect_from([127, 0, 0, 2], gw.port).await;
    assert_eq!(get(b1).await.as_deref(), Some("HTTP/1.1 200"));
    // A closed connection frees its place.
    drop(a1);
    let mut admitted = None;
    for _ in 0..50 {
        let a = connect_from([127, 0, 0, 1], gw.port).await;
        admitted = get(a).await;
        if admitted.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(admitted.as_deref(), Some("HTTP/1.1 200"));
    assert!(
        gw.metric("sluice_client_connections_refused_total{reason=\"max_connections_per_ip\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    drop(a2);

    // The process-wide ceiling, applied by a reload, once the connections
    // above are gone.
    gw.rewrite(&config(up, "max_connections: 2\n"));
    assert_eq!(gw.reload().await.0, 200);
    let mut open = None;
    for _ in 0..100 {
        open = gw.metric("sluice_client_connections").await;
        if open == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, Some(0.0), "every test connection was closed");
    let mut held = Vec::new();
    for ip in [3u8, 4] {
        let mut s = connect_from([127, 0, 0, ip], gw.port).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_response(&mut s).await.starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    // Closed connections from before the reload may take a moment to go.
    let mut refused = false;
    for _ in 0..50 {
        let s = connect_from([127, 0, 0, 5], gw.port).await;
        if get(s).await.is_none() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refused,
        "a third connection past max_connections: 2 is refused"
    );
    drop(held);
    assert!(gw.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_past_the_cap_is_refused_before_its_handshake() {
    // The gateway inherits a soft descriptor limit below the hard one.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if hard > 2048 {
        rlimit::setrlimit(rlimit::Resource::NOFILE, 2048, hard).unwrap();
    }
    let (up, _) = echo("up").await;
    let tls = common::tls_listener(&["localhost"]);
    let gw = Gateway::start_with_listen(
        &config(up, "max_connections_per_ip: 1\n"),
        Some(tls.listen.clone()),
    )
    .await;
    // The soft descriptor limit was raised to the hard one at start.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", gw.pid())).unwrap();
    let files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(files[3], files[4], "soft = hard: {files:?}");
    let connector =
        tokio_rustls::TlsConnector::from(common::tls_client_config(&tls.cert, b"http/1.1"));
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let mut held = connector.connect(name.clone(), tcp).await.unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    held.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");

    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .expect("refused at once, not left hanging");
    assert!(
        second.is_err(),
        "the handshake of a connection past the cap fails"
    );
    assert!(
        gw.metric("sluice_client_connections_refused_total{reason=\"max_connections_per_ip\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_keepalive_timeout() {
    let (up, _) = echo("up").await;
    let gw = Gateway::start_with_listen(
        &config(up, "keepalive_timeout: 1s\n"),
        Some("listen:\n  - { address: 127.0.0.1:{port}, h2c: true }\n".to_string()),
    )
    .await;
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get(gw.url("/x")).body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        chunk.unwrap();
    }
    let idle = Instant::now();
    // The gateway ends the connection (GOAWAY, then close) once it idles.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(
        ended.is_ok(),
        "idle HTTP/2 connection still open after 10 s"
    );
    assert!(
        idle.elapsed() >= Duration::from_millis(900),
        "{:?}",
        idle.elapsed()
    );
    drop(client);
}
