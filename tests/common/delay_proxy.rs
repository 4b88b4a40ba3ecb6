//! A TCP proxy in front of a server that can hold every byte the server
//! sends back for a while: a slow server (or a slow network) whose every
//! answer, `PING` included, comes late, whatever the machine's load.
//!
//! It runs on a thread and runtime of its own, so that the test's load
//! generator does not delay it, and stops when dropped.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

pub struct DelayProxy {
    pub port: u16,
    delay_us: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DelayProxy {
    /// Forwards connections to `127.0.0.1:target`, at first without delay.
    pub fn start(target: u16) -> DelayProxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().unwrap().port();
        let delay_us = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel();
        let delay = delay_us.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                let target = SocketAddr::from(([127, 0, 0, 1], target));
                tokio::select! {
                    _ = stopped => {}
                    _ = accept(listener, target, delay) => {}
                }
            });
        });
        DelayProxy {
            port,
            delay_us,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Holds each chunk the server sends for `d` (0: none) from now on;
    /// chunks already held are sent when their new due time comes.
    pub fn set_delay(&self, d: Duration) {
        self.delay_us
            .store(u64::try_from(d.as_micros()).unwrap(), Ordering::Relaxed);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, delay: Arc<AtomicU64>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let Ok(server) = TcpStream::connect(target).await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (mut client_rd, client_wr) = client.into_split();
        let (server_rd, mut server_wr) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut client_rd, &mut server_wr).await;
        });
        tokio::spawn(held_back(server_rd, client_wr, delay.clone()));
    }
}

/// Sends what `from` reads to `to`, each chunk `delay` after it was read.
async fn held_back(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Arc<AtomicU64>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    while let Some((read_at, chunk)) = rx.recv().await {
        // Read the delay per chunk, so that turning it off sends what is held.
        loop {
            let due = read_at + Duration::from_micros(delay.load(Ordering::Relaxed));
            if Instant::now() >= due {
                break;
            }
            let wait = due.saturating_duration_since(Instant::now());
            tokio::time::sleep(wait.min(Duration::from_millis(10))).await;
        }
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
}
