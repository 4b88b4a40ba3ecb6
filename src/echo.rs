//! `sluice-echo`: a tiny HTTP/1.1 backend for demos, tests and benchmarks.
//!
//! It answers every request with who it is (`x-backend` header and a JSON
//! body echoing the method, path and headers it received). The query string
//! steers it: `?sleep=MS` delays the answer, `?status=N` picks the status,
//! `?size=N` returns an N-byte body. `/health` answers 200 while the server's
//! [`Control`] says healthy and 503 otherwise, so tests can fail a backend.
//! It uses only tokio and httparse so that tests can run many of them
//! in-process on ephemeral ports.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Knobs a test can turn on a running echo server.
#[derive(Default)]
pub struct Control {
    /// `/health` answers 503 while this is set.
    pub unhealthy: AtomicBool,
    /// Every request (not `/health`) answers 500 while this is set.
    pub failing: AtomicBool,
    /// Extra delay for every request, in milliseconds.
    pub delay_ms: AtomicU64,
    /// Requests served, `/health` excluded.
    pub served: AtomicU64,
    /// Requests being served right now, and the most seen at once.
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

pub struct Echo {
    pub name: String,
    pub control: Arc<Control>,
}

impl Echo {
    pub fn new(name: &str) -> Arc<Echo> {
        Arc::new(Echo {
            name: name.to_string(),
            control: Arc::default(),
        })
    }

    /// Serves connections from `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.connection(stream).await;
            });
        }
    }

    async fn connection(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let _ = stream.set_nodelay(true);
        let mut buf = Vec::with_capacity(4096);
        loop {
            // Read until a whole header block is buffered.
            let (head_len, req) = loop {
                if let Some(parsed) = parse(&buf) {
                    break parsed;
                }
                if buf.len() > 64 * 1024 {
                    return Ok(());
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            // Drain a Content-Length body (chunked uploads are not supported).
            let total = head_len + req.content_length;
            while buf.len() < total {
                let mut chunk = vec![0u8; (total - buf.len()).min(65536)];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            let response = self.respond(&req).await;
            stream.write_all(&response).await?;
            if req.close {
                return Ok(());
            }
        }
    }

    async fn respond(&self, req: &Request) -> Vec<u8> {
        let c = &self.control;
        if req.path == "/health" {
            let status = if c.unhealthy.load(Ordering::Relaxed) {
                503
            } else {
                200
            };
            return self.render(status, b"health\n".to_vec(), req.close);
        }
        c.served.fetch_add(1, Ordering::Relaxed);
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let sleep_ms = req.query("sleep").unwrap_or(0) + c.delay_ms.load(Ordering::Relaxed);
        if sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
        }
        c.in_flight.fetch_sub(1, Ordering::SeqCst);
        let status = if c.failing.load(Ordering::Relaxed) {
            500
        } else {
            req.query("status")
                .map(|s| s as u16)
                .filter(|s| (200..600).contains(s))
                .unwrap_or(200)
        };
        let body = match req.query("size") {
            Some(n) => vec![b'x'; n.min(64 << 20) as usize],
            None => {
                let mut body = serde_json::to_vec(&serde_json::json!({
                    "backend": self.name,
                    "method": req.method,
                    "path": req.path,
                    "headers": req.headers,
                }))
                .unwrap_or_default();
                body.push(b'\n');
                body
            }
        };
        self.render(status, body, req.close)
    }

    fn render(&self, status: u16, body: Vec<u8>, close: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-backend: {}\r\n{}\r\n",
            reason(status),
            body.len(),
            self.name,
            if close { "connection: close\r\n" } else { "" },
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: std::collections::BTreeMap<String, String>,
    content_length: usize,
    close: bool,
}

impl Request {
    fn query(&self, name: &str) -> Option<u64> {
        self.query.split('&').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k == name).then(|| v.parse().ok()).flatten()
        })
    }
}

fn parse(buf: &[u8]) -> Option<(usize, Request)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(buf).ok()? else {
        return None;
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut map = std::collections::BTreeMap::new();
    let mut content_length = 0;
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).to_string();
        if name == "content-length" {
            content_length = value.trim().parse().unwrap_or(0);
        }
        if name == "connection" {
            close = value.eq_ignore_ascii_case("close");
        }
        map.entry(name)
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    Some((
        len,
        Request {
            method: req.method.unwrap_or("GET").to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers: map,
            content_length,
            close,
        },
    ))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
