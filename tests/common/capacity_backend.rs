//! A backend with a fixed capacity: `workers` requests served at a time, each
//! in `service`, the rest waiting in a FIFO queue, as an overloaded service
//! behaves. It records each request's time in the backend (queue + service).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

pub struct Capacity {
    workers: Semaphore,
    service: Duration,
    /// (when the request arrived, how long it spent here).
    pub times: Mutex<Vec<(Instant, Duration)>>,
    pub served: AtomicU64,
}

impl Capacity {
    pub async fn start(workers: usize, service: Duration) -> (SocketAddr, Arc<Capacity>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let c = Arc::new(Capacity {
            workers: Semaphore::new(workers),
            service,
            times: Mutex::new(Vec::new()),
            served: AtomicU64::new(0),
        });
        let me = c.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move { me.connection(s).await });
            }
        });
        (addr, c)
    }

    /// Takes `n` workers away (waits for them to be free).
    pub async fn remove_workers(&self, n: u32) {
        self.workers.acquire_many(n).await.unwrap().forget();
    }

    pub fn add_workers(&self, n: usize) {
        self.workers.add_permits(n);
    }

    /// p99 of the time in the backend of requests that arrived after `since`, and their count.
    pub fn p99_since(&self, since: Instant) -> (Duration, usize) {
        let mut t: Vec<Duration> = self
            .times
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, d)| *d)
            .collect();
        t.sort();
        let p99 = t
            .get((t.len() * 99 / 100).min(t.len().saturating_sub(1)))
            .copied();
        (p99.unwrap_or_default(), t.len())
    }

    async fn connection(&self, mut s: TcpStream) {
        let _ = s.set_nodelay(true);
        let mut buf = Vec::with_capacity(4096);
        loop {
            // One request head (the gateway sends GETs without bodies here).
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            buf.drain(..end);
            let arrived = Instant::now();
            {
                let Ok(_permit) = self.workers.acquire().await else {
                    return;
                };
                tokio::time::sleep(self.service).await;
            }
            self.times
                .lock()
                .unwrap()
                .push((arrived, arrived.elapsed()));
            self.served.fetch_add(1, Ordering::Relaxed);
            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if s.write_all(reply).await.is_err() {
                return;
            }
        }
    }
}
