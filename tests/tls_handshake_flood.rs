//! A TLS handshake flood: connections that never send a ClientHello take
//! their place in `max_connections` and `max_connections_per_ip` at accept,
//! so under a low descriptor limit the flood holds only its places, the
//! connections past the caps are closed at once and counted, and other
//! clients (on the TLS listener and a plain one) keep being served; a
//! handshake is bounded by `tls_handshake_timeout`, and a connection ended
//! any way gives its place back.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{connect_from, echo, free_port, Gateway, TlsListener};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// The gateway's descriptor limit: below the flood's size.
const NOFILE: u64 = 256;
const FLOOD: usize = 300;
const PER_IP: usize = 40;
const MAX: usize = 100;

fn config(up: SocketAddr, extra: &str) -> String {
    format!("{extra}upstreams:\n  up:\n    backends: [{up}]\nroutes:\n  - upstream: up\n")
}

/// Whether the gateway has closed `s` (EOF or reset), without waiting.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(s.read(&mut buf).now_or_never(), Some(Ok(0)) | Some(Err(_)))
}

/// Polls `open` until `want` of them are closed by the gateway; bounded.
/// Returns the ones still open and how many closed.
async fn until_closed(
    mut open: Vec<TcpStream>,
    want: usize,
    limit: Duration,
) -> (Vec<TcpStream>, usize) {
    let deadline = Instant::now() + limit;
    let mut gone = 0;
    loop {
        open.retain_mut(|s| {
            let c = closed(s);
            gone += usize::from(c);
            !c
        });
        if gone >= want || Instant::now() >= deadline {
            return (open, gone);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TLS connection from `local` to the gateway, its handshake done.
async fn tls_from(
    tls: &TlsListener,
    local: [u8; 4],
    port: u16,
) -> std::io::Result<TlsStream<TcpStream>> {
    let connector =
        tokio_rustls::TlsConnector::from(common::tls_client_config(&tls.cert, b"http/1.1"));
    let name = ServerName::try_from("localhost").unwrap();
    let tcp = connect_from(local, port).await;
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake not answered within 5s"))?
}

/// One request on an established TLS connection: the status line.
async fn get_over(s: &mut TlsStream<TcpStream>) -> String {
    s.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("an answer within 5s")
        .expect("an answer");
    String::from_utf8_lossy(&buf).into_owned()
}

/// A plain HTTP client that connects from `local` and keeps no connection.
fn plain_client(local: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::from(local))
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn metric(gw: &Gateway, sample: &str) -> f64 {
    gw.metric(sample).await.unwrap_or(0.0)
}

/// Polls `sluice_client_connections` until it is `n`; bounded.
async fn wait_open(gw: &Gateway, n: f64) -> f64 {
    let mut open = -1.0;
    for _ in 0..100 {
        open = metric(gw, "sluice_client_connections").await;
        if open == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_holds_only_its_places_while_others_are_served() {
    // The flood's sockets are this process's too.
    rlimit::increase_nofile_limit(4096).unwrap();
    let (up, _) = echo("up").await;
    let tls = common::tls_listener(&["localhost"]);
    let plain_port = free_port();
    let listen = format!("{}  - 127.0.0.1:{plain_port}\n", tls.listen);
    let gw = Gateway::start_with_nofile(
        &config(
            up,
            &format!(
                "max_connections: {MAX}\nmax_connections_per_ip: {PER_IP}\n\
                 tls_handshake_timeout: 30s\n"
            ),
        ),
        Some(listen),
        NOFILE,
    )
    .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", gw.pid())).unwrap();
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(
        files.split_whitespace().nth(3) == Some(&NOFILE.to_string()),
        "the gateway runs under the low limit: {files}"
    );
    let plain = plain_client([127, 0, 0, 2]);
    let plain_url = format!("http://127.0.0.1:{plain_port}/x");
    let mut ready = false;
    for _ in 0..100 {
        if plain
            .get(&plain_url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the plain listener answers");
    assert_eq!(wait_open(&gw, 0.0).await, 0.0);

    // More silent connections from one IP than the gateway has descriptors.
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        flood.push(connect_from([127, 0, 0, 1], gw.port).await);
    }
    let (held, refused) = until_closed(flood, FLOOD - PER_IP, Duration::from_secs(5)).await;
    assert_eq!(
        refused,
        FLOOD - PER_IP,
        "every connection past max_connections_per_ip is closed at once"
    );
    assert_eq!(held.len(), PER_IP, "the places of the per-IP cap are held");
    assert_eq!(
        metric(
            &gw,
            "sluice_client_connections_refused_total{reason=\"max_connections_per_ip\"}"
        )
        .await,
        refused as f64
    );
    assert_eq!(
        metric(&gw, "sluice_client_connections").await,
        PER_IP as f64,
        "connections in their handshake are counted"
    );

    // Meanwhile other clients are served, on both listeners.
    for i in 0..20 {
        let r = plain.get(&plain_url).send().await;
        assert!(
            r.as_ref().is_ok_and(|r| r.status() == 200),
            "plain request {i} during the flood: {r:?}"
        );
    }
    let mut other = tls_from(&tls, [127, 0, 0, 3], gw.port)
        .await
        .expect("another client's handshake");
    assert_eq!(get_over(&mut other).await, "HTTP/1.1 200");
    drop(other);
    assert_eq!(wait_open(&gw, PER_IP as f64).await, PER_IP as f64);

    // Floods from more IPs fill `max_connections`, and past it the
    // gateway refuses instead of running out of descriptors.
    let mut more = Vec::new();
    for ip in [4u8, 5, 6] {
        for _ in 0..PER_IP {
            more.push(connect_from([127, 0, 0, ip], gw.port).await);
        }
    }
    let past_total = PER_IP * 4 - MAX;
    let (more_held, more_refused) = until_closed(more, past_total, Duration::from_secs(5)).await;
    assert_eq!(more_refused, past_total);
    assert_eq!(held.len() + more_held.len(), MAX);
    assert_eq!(
        metric(
            &gw,
            "sluice_client_connections_refused_total{reason=\"max_connections\"}"
        )
        .await,
        past_total as f64
    );
    assert_eq!(metric(&gw, "sluice_client_connections").await, MAX as f64);
    // The places are the flood's now: even the plain listener refuses.
    assert!(plain.get(&plain_url).send().await.is_err());

    // When the flood ends its places are given back.
    drop(held);
    drop(more_held);
    assert_eq!(wait_open(&gw, 0.0).await, 0.0);
    let r = plain.get(&plain_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_handshake_is_closed_at_tls_handshake_timeout_and_frees_its_place() {
    let (up, _) = echo("up").await;
    let tls = common::tls_listener(&["localhost"]);
    let mut gw = Gateway::start_with_listen(
        &config(up, "max_connections_per_ip: 1\n"),
        Some(tls.listen.clone()),
    )
    .await;
    // The timeout applies to connections accepted after a reload.
    gw.rewrite(&config(
        up,
        "max_connections_per_ip: 1\ntls_handshake_timeout: 300ms\n",
    ));
    assert_eq!(gw.reload().await.0, 200);
    assert_eq!(wait_open(&gw, 0.0).await, 0.0);

    let start = Instant::now();
    let silent = connect_from([127, 0, 0, 1], gw.port).await;
    let second = connect_from([127, 0, 0, 1], gw.port).await;
    let (_, refused) = until_closed(vec![second], 1, Duration::from_secs(5)).await;
    assert_eq!(refused, 1, "the silent connection holds the only place");
    let (_, timed_out) = until_closed(vec![silent], 1, Duration::from_secs(5)).await;
    let after = start.elapsed();
    assert_eq!(timed_out, 1, "the gateway closes a silent handshake");
    assert!(
        after >= Duration::from_millis(250),
        "not before tls_handshake_timeout: {after:?}"
    );
    assert!(metric(&gw, "sluice_client_timeouts_total{kind=\"tls_handshake\"}").await >= 1.0);

    // Its place is free again; a handshake that is done is not cut at the
    // deadline.
    let mut s = None;
    for _ in 0..50 {
        if let Ok(c) = tls_from(&tls, [127, 0, 0, 1], gw.port).await {
            s = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut s = s.expect("a new connection is accepted once the place is free");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get_over(&mut s).await, "HTTP/1.1 200");
    drop(s);

    // A failed handshake gives its place back too.
    assert_eq!(wait_open(&gw, 0.0).await, 0.0);
    let mut garbage = connect_from([127, 0, 0, 1], gw.port).await;
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (_, failed) = until_closed(vec![garbage], 1, Duration::from_secs(5)).await;
    assert_eq!(failed, 1);
    assert_eq!(wait_open(&gw, 0.0).await, 0.0);
    let mut s = tls_from(&tls, [127, 0, 0, 1], gw.port)
        .await
        .expect("admitted after the failed handshake");
    assert_eq!(get_over(&mut s).await, "HTTP/1.1 200");
    assert!(gw.is_running());
}
