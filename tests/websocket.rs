//! WebSocket through the gateway (HTTP/1.1 Upgrade, RFC 6455 §4): a real
//! WebSocket echo server behind it, reached over a plain listener and over a
//! TLS listener, messages echoed both ways on the upgraded connection.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket echo server on an ephemeral port.
async fn ws_echo() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Sends a few messages on an open WebSocket and checks each echo.
async fn echoes<S>(mut ws: tokio_tungstenite::WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for i in 0..5 {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no echo within 5 s")
            .expect("connection closed")
            .expect("websocket error");
        assert_eq!(reply, Message::text(text));
    }
    let big = vec![7u8; 200_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.into_data().as_ref(), &big[..]);
    ws.close(None).await.unwrap();
}

fn sections(backend: SocketAddr) -> String {
    format!("upstreams:\n  ws:\n    backends: [{backend}]\nroutes:\n  - upstream: ws\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_echoes_through_a_plain_listener() {
    let backend = ws_echo().await;
    let gw = Gateway::start(&sections(backend)).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{}/ws", gw.port), tcp)
        .await
        .expect("websocket handshake through the gateway");
    assert_eq!(resp.status(), 101);
    echoes(ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_echoes_through_a_tls_listener() {
    let backend = ws_echo().await;
    let tls = common::tls_listener(&["localhost"]);
    let (cert, listen) = (&tls.cert, tls.listen.clone());
    let gw = Gateway::start_with_listen(&sections(backend), Some(listen)).await;

    // WebSocket's Upgrade is HTTP/1.1 (RFC 8441's HTTP/2 form is not used here).
    let config = common::tls_client_config(cert, b"http/1.1");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake with the gateway");
    let (ws, resp) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/ws", gw.port), tls)
            .await
            .expect("websocket handshake through the TLS listener");
    assert_eq!(resp.status(), 101);
    echoes(ws).await;
}

/// Polls `cond` every 25 ms for at most `limit`.
async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    cond()
}

struct Kill(Vec<std::process::Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_sluice(
    conf: &std::path::Path,
    log: std::path::PathBuf,
    upgrade: bool,
) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("-c").arg(conf);
    if upgrade {
        cmd.arg("-u");
    }
    cmd.env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start sluice")
}

/// One echo round trip on `ws`; `None` if it failed or took over 2 s.
async fn round<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    i: u32,
) -> Option<()> {
    let text = format!("ping {i}");
    ws.send(Message::text(text.clone())).await.ok()?;
    let reply = tokio::time::timeout(Duration::from_secs(2), ws.next())
        .await
        .ok()??
        .ok()?;
    (reply == Message::text(text)).then_some(())
}

/// Pingora hands the listeners to the new process and keeps serving open
/// connections for `grace_period_seconds`: an upgraded WebSocket must live
/// through that, not be cut by the hand-over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_survives_an_upgrade_until_the_grace_period_ends() {
    const GRACE: u64 = 3;
    let backend = ws_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let conf = dir.path().join("gateway.yaml");
    std::fs::write(
        &conf,
        format!(
            "version: 1\nthreads: 2\npid_file: {d}/sluice.pid\nupgrade_sock: {d}/upgrade.sock\n\
             grace_period_seconds: {GRACE}\ngraceful_shutdown_timeout_seconds: 1\n\
             listen: [127.0.0.1:{port}]\nadmin: 127.0.0.1:{admin_port}\n{}",
            sections(backend),
            d = dir.path().display()
        ),
    )
    .unwrap();
    let log = |n: usize| {
        std::fs::read_to_string(dir.path().join(format!("sluice-{n}.log"))).unwrap_or_default()
    };
    let mut children = Kill(vec![spawn_sluice(
        &conf,
        dir.path().join("sluice-0.log"),
        false,
    )]);
    let probe = client();
    let mut ready = false;
    for _ in 0..400 {
        let admin = probe
            .get(format!("http://127.0.0.1:{admin_port}/healthz"))
            .send()
            .await;
        if admin.is_ok_and(|r| r.status() == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "sluice did not start:\n{}", log(0));

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/ws"), tcp)
        .await
        .expect("websocket handshake");
    assert!(round(&mut ws, 0).await.is_some());

    let sock = dir.path().join("upgrade.sock");
    let mut new = spawn_sluice(&conf, dir.path().join("sluice-1.log"), true);
    assert!(
        wait_until(Duration::from_secs(10), || sock.exists()
            || new.try_wait().ok().flatten().is_some())
        .await
            && sock.exists(),
        "the new process did not open the upgrade socket:\n{}",
        log(1)
    );
    children.0.push(new);
    let quit_at = std::time::Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-QUIT", &children.0[0].id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    // Echoes keep coming on the old process's connection until shortly
    // before the grace period is over.
    let mut i = 1;
    while quit_at.elapsed() < Duration::from_millis(GRACE * 1000 - 700) {
        assert!(
            round(&mut ws, i).await.is_some(),
            "the websocket was cut {:?} after SIGQUIT, before the {GRACE}s grace period:\n{}",
            quit_at.elapsed(),
            log(0)
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Meanwhile the new process serves new WebSockets.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (fresh, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/ws"), tcp)
        .await
        .expect("a new websocket after the upgrade");
    echoes(fresh).await;
    // And the old process does exit once its grace period is over.
    let old = &mut children.0[0];
    assert!(
        wait_until(Duration::from_secs(GRACE + 10), || matches!(
            old.try_wait(),
            Ok(Some(_))
        ))
        .await,
        "the old process did not exit after its grace period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_does_not_count_the_upgraded_connection() {
    let backend = ws_echo().await;
    // 200 KB of messages cross a 1 KiB body limit many times over: they are
    // not a request body.
    let gw = Gateway::start(&format!("max_body: 1KiB\n{}", sections(backend))).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{}/ws", gw.port), tcp)
        .await
        .expect("websocket handshake through the gateway");
    assert_eq!(resp.status(), 101);
    echoes(ws).await;
}
