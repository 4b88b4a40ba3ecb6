//! A backend that records every byte it receives, per connection, and reads
//! them with a strict HTTP/1.1 parser: a request must have one framing (one
//! `Content-Length`, or `Transfer-Encoding: chunked` alone, or no body), and
//! whatever does not parse that way is reported, never guessed at. Tests of
//! request smuggling assert on what it saw: how many requests, their targets
//! and bodies, and no bytes left over.
//!
//! It answers each complete request with `200` and a two-byte body, and
//! closes a connection whose bytes it cannot read as requests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct RawBackend {
    /// Every connection's bytes, in the order the connections were accepted.
    connections: Mutex<Vec<Arc<Mutex<Vec<u8>>>>>,
}

/// One request as the backend read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

/// What one connection's bytes read as.
#[derive(Debug, Default)]
pub struct Stream {
    pub requests: Vec<Seen>,
    /// Why the bytes after the last whole request are not one: an incomplete
    /// request (the sender stopped) or bytes that no strict reader accepts.
    pub rest: Option<String>,
}

impl RawBackend {
    pub async fn start() -> (SocketAddr, Arc<RawBackend>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Arc::new(RawBackend::default());
        let me = backend.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let record = Arc::new(Mutex::new(Vec::new()));
                me.connections.lock().unwrap().push(record.clone());
                tokio::spawn(serve(s, record));
            }
        });
        (addr, backend)
    }

    /// Every connection so far, read strictly.
    pub fn streams(&self) -> Vec<Stream> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .map(|c| read_stream(&c.lock().unwrap()))
            .collect()
    }

    /// Every whole request so far, over all connections.
    pub fn requests(&self) -> Vec<Seen> {
        self.streams()
            .into_iter()
            .flat_map(|s| s.requests)
            .collect()
    }

    /// The raw bytes of every connection, for failure messages.
    pub fn raw(&self) -> Vec<String> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .map(|c| String::from_utf8_lossy(&c.lock().unwrap()).into_owned())
            .collect()
    }
}

async fn serve(mut s: TcpStream, record: Arc<Mutex<Vec<u8>>>) {
    let mut answered = 0;
    let mut buf = [0u8; 16 * 1024];
    // Bounded: a connection ends when the gateway closes it or the test ends.
    for _ in 0..100_000 {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let stream = {
            let mut all = record.lock().unwrap();
            all.extend_from_slice(&buf[..n]);
            read_stream(&all)
        };
        while answered < stream.requests.len() {
            answered += 1;
            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if s.write_all(reply).await.is_err() {
                return;
            }
        }
        if stream
            .rest
            .as_deref()
            .is_some_and(|r| !r.starts_with("incomplete"))
        {
            return;
        }
    }
}

/// Reads a connection's bytes as consecutive requests, strictly.
pub fn read_stream(mut bytes: &[u8]) -> Stream {
    let mut out = Stream::default();
    while !bytes.is_empty() {
        match read_request(bytes) {
            Ok((seen, used)) => {
                out.requests.push(seen);
                bytes = &bytes[used..];
            }
            Err(why) => {
                out.rest = Some(why);
                break;
            }
        }
    }
    out
}

fn incomplete<T>(what: &str) -> Result<T, String> {
    Err(format!("incomplete {what}"))
}

fn read_request(bytes: &[u8]) -> Result<(Seen, usize), String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return incomplete("head"),
        Err(e) => return Err(format!("unreadable head: {e}")),
    };
    // What the gateway sends must use CRLF throughout (RFC 9112 §2.2).
    let head_bytes = &bytes[..head];
    let bare_lf = |(i, b): (usize, &u8)| *b == b'\n' && (i == 0 || head_bytes[i - 1] != b'\r');
    if head_bytes.iter().enumerate().any(bare_lf) {
        return Err("a bare LF in the head".into());
    }
    let mut seen = Seen {
        method: req.method.unwrap_or_default().to_string(),
        target: req.path.unwrap_or_default().to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
        body: Vec::new(),
    };
    let lengths = seen.header("content-length");
    let codings = seen.header("transfer-encoding");
    let rest = &bytes[head..];
    let used = match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => 0,
        ([cl], []) => {
            let n: usize = std::str::from_utf8(cl)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("Content-Length {:?}", String::from_utf8_lossy(cl)))?;
            if rest.len() < n {
                return incomplete("Content-Length body");
            }
            seen.body = rest[..n].to_vec();
            n
        }
        ([], [te]) if te.eq_ignore_ascii_case(b"chunked") => {
            let (body, n) = read_chunked(rest)?;
            seen.body = body;
            n
        }
        _ => {
            return Err(format!(
                "ambiguous framing: {} Content-Length, Transfer-Encoding {:?}",
                lengths.len(),
                codings
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect::<Vec<_>>()
            ))
        }
    };
    Ok((seen, head + used))
}

/// A chunked body (RFC 9112 §7.1): `HEX[;ext] CRLF data CRLF`, ..., `0 CRLF`,
/// trailer fields, `CRLF`. Returns the data and the bytes used.
fn read_chunked(bytes: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find_crlf(&bytes[at..]) else {
            return incomplete("chunk size line");
        };
        let line = &bytes[at..at + eol];
        let size_text = line.split(|b| *b == b';').next().unwrap_or_default();
        if size_text.is_empty()
            || size_text.len() > 15
            || !size_text.iter().all(u8::is_ascii_hexdigit)
        {
            return Err(format!("chunk size {:?}", String::from_utf8_lossy(line)));
        }
        let size = usize::from_str_radix(std::str::from_utf8(size_text).unwrap(), 16).unwrap();
        at += eol + 2;
        if size == 0 {
            // Trailer fields, then the empty line.
            loop {
                let Some(eol) = find_crlf(&bytes[at..]) else {
                    return incomplete("trailer");
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok((body, at));
                }
            }
        }
        if bytes.len() < at + size + 2 {
            return incomplete("chunk");
        }
        body.extend_from_slice(&bytes[at..at + size]);
        if &bytes[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += size + 2;
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}
