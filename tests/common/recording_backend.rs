//! A raw-socket backend that records every byte it receives, connection by
//! connection, and answers `200 {"received": N}` only once a request's whole
//! body (Content-Length or chunked) has arrived. Tests read back exactly what
//! reached the backend: request heads as framed by the gateway, and how many
//! body bytes got through, complete or not.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one accepted connection received.
#[derive(Default)]
pub struct Connection {
    /// Every byte, as it arrived.
    pub bytes: Mutex<Vec<u8>>,
    /// Body bytes (chunk framing excluded) of every request on it, the
    /// current one included even if it never completed.
    pub body_bytes: AtomicU64,
    /// Requests received whole (and answered).
    pub requests: AtomicUsize,
}

#[derive(Default)]
pub struct Recording {
    connections: Mutex<Vec<Arc<Connection>>>,
}

impl Recording {
    pub async fn start() -> (SocketAddr, Arc<Recording>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rec = Arc::new(Recording::default());
        let me = rec.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = Arc::new(Connection::default());
                me.connections.lock().unwrap().push(conn.clone());
                tokio::spawn(serve(stream, conn));
            }
        });
        (addr, rec)
    }

    /// The raw bytes each connection received, in accept order.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.bytes.lock().unwrap().clone())
            .collect()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    /// Requests received whole, over all connections.
    pub fn requests(&self) -> usize {
        self.sum(|c| c.requests.load(Ordering::SeqCst) as u64) as usize
    }

    /// Body bytes received over all connections, complete or not.
    pub fn body_bytes(&self) -> u64 {
        self.sum(|c| c.body_bytes.load(Ordering::SeqCst))
    }

    fn sum(&self, f: impl Fn(&Connection) -> u64) -> u64 {
        self.connections.lock().unwrap().iter().map(|c| f(c)).sum()
    }

    /// Polls until at least `n` body bytes have arrived; bounded in time.
    pub async fn wait_body_bytes(&self, n: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.body_bytes() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// How far a request's body has got: data bytes so far, and where the
/// request ends once it is whole.
struct Progress {
    body: u64,
    end: Option<usize>,
}

async fn serve(mut stream: TcpStream, conn: Arc<Connection>) {
    let mut buf = Vec::new();
    let mut done_bytes = 0u64;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match progress(&buf) {
            Err(()) => return,
            Ok(Some((p, close))) => {
                conn.body_bytes.store(done_bytes + p.body, Ordering::SeqCst);
                if let Some(end) = p.end {
                    done_bytes += p.body;
                    conn.requests.fetch_add(1, Ordering::SeqCst);
                    buf.drain(..end);
                    let body = format!("{{\"received\":{}}}", p.body);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
                        body.len(),
                        if close { "connection: close\r\n" } else { "" }
                    );
                    if stream.write_all(resp.as_bytes()).await.is_err() || close {
                        return;
                    }
                    continue;
                }
            }
            Ok(None) => {}
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                conn.bytes.lock().unwrap().extend_from_slice(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// The progress of the request at the start of `buf` (`None`: its head is
/// not complete) and whether it asked to close; `Err` if it cannot be read.
fn progress(buf: &[u8]) -> Result<Option<(Progress, bool)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let mut chunked = false;
    let mut length = 0u64;
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.trim().ends_with("chunked");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().map_err(|_| ())?;
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = value.trim() == "close";
        }
    }
    let rest = &buf[head_len..];
    let p = if chunked {
        let (body, end) = chunked_progress(rest)?;
        Progress {
            body,
            end: end.map(|e| head_len + e),
        }
    } else {
        let have = (rest.len() as u64).min(length);
        Progress {
            body: have,
            end: (have == length).then(|| head_len + length as usize),
        }
    };
    Ok(Some((p, close)))
}

/// Data bytes of a chunked body so far, and its end once the last chunk and
/// trailers are in (RFC 9112 §7.1).
fn chunked_progress(buf: &[u8]) -> Result<(u64, Option<usize>), ()> {
    let line_end = |from: usize| {
        buf[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| from + i)
    };
    let mut pos = 0;
    let mut data = 0u64;
    loop {
        let Some(eol) = line_end(pos) else {
            return Ok((data, None));
        };
        let line = std::str::from_utf8(&buf[pos..eol]).map_err(|_| ())?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| ())?;
        pos = eol + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(eol) = line_end(pos) else {
                    return Ok((data, None));
                };
                let empty = eol == pos;
                pos = eol + 2;
                if empty {
                    return Ok((data, Some(pos)));
                }
            }
        }
        let avail = (buf.len() - pos).min(size);
        data += avail as u64;
        if buf.len() - pos < size + 2 {
            return Ok((data, None));
        }
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(());
        }
        pos += size + 2;
    }
}
