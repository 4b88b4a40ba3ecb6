//! HTTP/2 abuse, with a hand-written client that speaks raw frames over TCP
//! (prior knowledge, RFC 9113 §3.3): the stream limit is advertised and
//! enforced, a rapid-reset flood (CVE-2023-44487) does not stop other clients
//! being served, and SETTINGS and PING floods get the flooder disconnected.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A GET's header block in HPACK (RFC 7541): indexed `:method: GET` and
/// `:scheme: http`, then `:path` and `:authority` as literals without
/// indexing on indexed names.
fn get_headers(path: &str, authority: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    for (index, value) in [(0x04u8, path), (0x01, authority)] {
        assert!(value.len() < 127);
        b.push(index);
        b.push(value.len() as u8);
        b.extend_from_slice(value.as_bytes());
    }
    b
}

struct Frame {
    kind: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// Reads one frame; `None` on EOF, error or `limit` passing.
async fn read_frame(s: &mut TcpStream, limit: Duration) -> Option<Frame> {
    tokio::time::timeout(limit, async {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.ok()?;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        Some(Frame {
            kind: head[3],
            stream,
            payload,
        })
    })
    .await
    .ok()
    .flatten()
}

/// Opens a connection: preface and an empty SETTINGS frame.
async fn connect(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    s.write_all(&hello).await.unwrap();
    s
}

fn h2c_listen() -> Option<String> {
    Some("listen:\n  - { address: 127.0.0.1:{port}, h2c: true }\n".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_limit_is_advertised_and_enforced() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start_with_listen(
        &format!(
            "h2_max_streams: 3\nupstreams:\n  a:\n    backends: [{a}]\nroutes:\n  - upstream: a\n"
        ),
        h2c_listen(),
    )
    .await;
    let mut s = connect(gw.port).await;
    let settings = read_frame(&mut s, Duration::from_secs(5))
        .await
        .expect("the server's SETTINGS");
    assert_eq!(settings.kind, SETTINGS);
    let advertised = settings.payload.chunks(6).find_map(|p| {
        (u16::from_be_bytes([p[0], p[1]]) == SETTINGS_MAX_CONCURRENT_STREAMS)
            .then(|| u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
    });
    assert_eq!(advertised, Some(3));
    s.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();

    // Four slow requests at once on one connection: the fourth is refused.
    let authority = format!("127.0.0.1:{}", gw.port);
    let mut burst = Vec::new();
    for id in [1u32, 3, 5, 7] {
        burst.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &get_headers("/slow?sleep=1000", &authority),
        ));
    }
    s.write_all(&burst).await.unwrap();
    let (mut answered, mut refused) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.len() + refused.len() < 4 && Instant::now() < deadline {
        let Some(f) = read_frame(&mut s, Duration::from_secs(5)).await else {
            break;
        };
        match f.kind {
            HEADERS => answered.push(f.stream),
            RST_STREAM => {
                let code =
                    u32::from_be_bytes([f.payload[0], f.payload[1], f.payload[2], f.payload[3]]);
                refused.push((f.stream, code));
            }
            _ => {}
        }
    }
    answered.sort();
    assert_eq!(answered, [1, 3, 5]);
    assert_eq!(refused, [(7, REFUSED_STREAM)]);

    // Pingora takes the limit with the listeners: a reload says so.
    gw.rewrite(&format!(
        "h2_max_streams: 5\nupstreams:\n  a:\n    backends: [{a}]\nroutes:\n  - upstream: a\n"
    ));
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["needs_upgrade"]
            .as_array()
            .is_some_and(|a| a.iter().any(|w| w == "h2_max_streams")),
        "{answer}"
    );
}

/// Serves `n` requests one after another over HTTP/1.1 while something else
/// goes on; each must succeed within 2 s.
async fn victim(url: String, n: usize) -> Result<Duration, String> {
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut worst = Duration::ZERO;
    for i in 0..n {
        let started = Instant::now();
        match c.get(&url).send().await {
            Ok(r) if r.status() == 200 => {}
            Ok(r) => return Err(format!("request {i}: status {}", r.status())),
            Err(e) => return Err(format!("request {i}: {e}")),
        }
        worst = worst.max(started.elapsed());
    }
    Ok(worst)
}

/// How a flood ended for the flooder.
#[derive(Debug, PartialEq)]
enum Ending {
    /// The server sent GOAWAY or closed the connection.
    Disconnected,
    /// The flood ran to its end on an open connection.
    StillOpen,
}

/// Writes `batch` `count` times (bounded by 15 s) while draining what the
/// server sends; says whether the server hung up.
async fn flood(port: u16, count: usize, batch: impl Fn(usize) -> Vec<u8>) -> Ending {
    flood_on(connect(port).await, count, batch).await
}

/// [`flood`] on an open connection whose preface has been sent.
async fn flood_on<S>(s: S, count: usize, batch: impl Fn(usize) -> Vec<u8>) -> Ending
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(s);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(15), rd.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return seen,
                Ok(Ok(n)) => {
                    // Enough to find a GOAWAY frame's type byte in order.
                    seen.extend_from_slice(&buf[..n]);
                    if seen.len() > 1 << 20 {
                        seen.drain(..seen.len() - 4096);
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut write_failed = false;
    for i in 0..count {
        if Instant::now() > deadline {
            break;
        }
        if wr.write_all(&batch(i)).await.is_err() {
            write_failed = true;
            break;
        }
    }
    let _ = wr.shutdown().await;
    let seen = reader.await.unwrap_or_default();
    let goaway = contains_goaway(&seen);
    if write_failed || goaway {
        Ending::Disconnected
    } else {
        Ending::StillOpen
    }
}

/// Whether a byte stream of frames holds a GOAWAY (walking the frames).
fn contains_goaway(mut bytes: &[u8]) -> bool {
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        if bytes[3] == GOAWAY {
            return true;
        }
        bytes = bytes.get(9 + len..).unwrap_or(&[]);
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_flood_does_not_stop_other_clients() {
    let (a, backend) = echo("a").await;
    let gw = Gateway::start_with_listen(
        &format!("upstreams:\n  a:\n    backends: [{a}]\nroutes:\n  - upstream: a\n"),
        h2c_listen(),
    )
    .await;
    let authority = format!("127.0.0.1:{}", gw.port);
    let headers = get_headers("/reset", &authority);
    let flooder = tokio::spawn(flood(gw.port, 200, move |i| {
        // 50 streams opened and cancelled at once per write.
        let mut out = Vec::new();
        for k in 0..50 {
            let id = ((i * 50 + k) as u32) * 2 + 1;
            out.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &headers));
            out.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
        }
        out
    }));
    let served = victim(gw.url("/victim"), 50).await;
    let ending = flooder.await.unwrap();
    let worst = served.unwrap_or_else(|e| panic!("a client was not served during the flood: {e}"));
    assert!(worst < Duration::from_secs(2), "worst {worst:?}");
    eprintln!(
        "rapid reset: flooder {ending:?}, backend saw {} requests, worst victim latency {worst:?}",
        backend
            .control
            .served
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(
        ending,
        Ending::Disconnected,
        "the flooder was never cut off"
    );
    let mut gw = gw;
    assert!(gw.is_running(), "the gateway died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_disconnected() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start_with_listen(
        &format!("upstreams:\n  a:\n    backends: [{a}]\nroutes:\n  - upstream: a\n"),
        h2c_listen(),
    )
    .await;
    let flooder = tokio::spawn(flood(gw.port, 2_000, pings));
    let served = victim(gw.url("/victim"), 20).await;
    assert_eq!(flooder.await.unwrap(), Ending::Disconnected);
    served.unwrap_or_else(|e| panic!("a client was not served during the flood: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pings_now_and_then_keeps_its_connection() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start_with_listen(
        &format!("upstreams:\n  a:\n    backends: [{a}]\nroutes:\n  - upstream: a\n"),
        h2c_listen(),
    )
    .await;
    let mut s = connect(gw.port).await;
    let mut pings = Vec::new();
    for k in 0..200u64 {
        pings.extend(frame(PING, 0, 0, &k.to_be_bytes()));
    }
    s.write_all(&pings).await.unwrap();
    let authority = format!("127.0.0.1:{}", gw.port);
    s.write_all(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &get_headers("/after-pings", &authority),
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pongs = 0;
    let mut answered = false;
    while !answered && Instant::now() < deadline {
        let f = read_frame(&mut s, Duration::from_secs(5))
            .await
            .expect("the connection was closed");
        match f.kind {
            PING => pongs += 1,
            HEADERS if f.stream == 1 => answered = true,
            GOAWAY => panic!("GOAWAY for a client within its budget"),
            _ => {}
        }
    }
    assert!(answered, "no response after the pings");
    assert_eq!(pongs, 200);
}

/// One write of a PING flood: 100 PING frames.
fn pings(i: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for k in 0..100u64 {
        out.extend(frame(PING, 0, 0, &((i as u64) * 100 + k).to_be_bytes()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_over_tls_is_disconnected() {
    let (a, _) = echo("a").await;
    let tls = common::tls_listener(&["localhost"]);
    let (cert, listen) = (&tls.cert, tls.listen.clone());
    let gw = Gateway::start_with_listen(
        &format!("upstreams:\n  a:\n    backends: [{a}]\nroutes:\n  - upstream: a\n"),
        Some(listen),
    )
    .await;

    let config = common::tls_client_config(cert, b"h2");
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    tls.write_all(&hello).await.unwrap();
    assert_eq!(flood_on(tls, 2_000, pings).await, Ending::Disconnected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_flood_is_disconnected() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start_with_listen(
        &format!("upstreams:\n  a:\n    backends: [{a}]\nroutes:\n  - upstream: a\n"),
        h2c_listen(),
    )
    .await;
    let flooder = tokio::spawn(flood(gw.port, 2_000, |_| {
        let mut out = Vec::new();
        for _ in 0..100 {
            // SETTINGS_INITIAL_WINDOW_SIZE = 65535: valid, and work to apply.
            out.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]));
        }
        out
    }));
    let served = victim(gw.url("/victim"), 20).await;
    assert_eq!(flooder.await.unwrap(), Ending::Disconnected);
    served.unwrap_or_else(|e| panic!("a client was not served during the flood: {e}"));
}
