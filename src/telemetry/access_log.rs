//! The access log: one line per request, JSON or text, written by its own
//! thread so that a slow disk never stalls the request path.
//!
//! The request path only formats the line and `try_send`s it into a bounded
//! queue; when the queue is full the line is dropped and counted in
//! `sluice_access_log_dropped_total` rather than making requests wait. The
//! queue is bounded in bytes as well as lines: a line holds the request's
//! path, which may be as long as the request head, so a count of lines
//! alone would let a stalled disk hold gigabytes.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::Serialize;

use crate::config::{AccessLogFormat, AccessLogSpec};

const QUEUE: usize = 64 * 1024;
/// Bytes of queued lines, at most.
const QUEUE_BYTES: usize = 16 << 20;

/// What one access log line records.
#[derive(Serialize)]
pub struct Entry<'a> {
    /// Seconds since the Unix epoch, with milliseconds.
    pub ts: f64,
    pub request_id: &'a str,
    pub client_ip: String,
    pub method: &'a str,
    pub path: &'a str,
    /// `HTTP/1.1`, `HTTP/2`, ...
    pub protocol: &'static str,
    pub status: u16,
    pub duration_ms: f64,
    pub route: &'a str,
    pub upstream: &'a str,
    pub backend: String,
    /// `admitted`, `rejected:LIMIT`, or `-` when the route has no limits.
    pub limit: &'a str,
    pub attempts: usize,
}

pub struct AccessLog {
    format: AccessLogFormat,
    tx: SyncSender<String>,
    rx: Mutex<Option<Receiver<String>>>,
    /// Bytes queued and not yet written.
    queued: Arc<AtomicUsize>,
    spec: AccessLogSpec,
}

impl AccessLog {
    pub fn new(spec: AccessLogSpec) -> AccessLog {
        let (tx, rx) = sync_channel(QUEUE);
        AccessLog {
            format: spec.format,
            tx,
            rx: Mutex::new(Some(rx)),
            queued: Arc::default(),
            spec,
        }
    }

    pub fn spec(&self) -> &AccessLogSpec {
        &self.spec
    }

    /// Queues a line; `false` if it had to be dropped.
    pub fn record(&self, entry: &Entry) -> bool {
        let line = match self.format {
            AccessLogFormat::Json => serde_json::to_string(entry).unwrap_or_default(),
            AccessLogFormat::Text => format!(
                "{:.3} {} {} \"{} {} {}\" {} {:.3}ms route={} upstream={} backend={} limit={} attempts={}",
                entry.ts,
                entry.request_id,
                entry.client_ip,
                entry.method,
                text_escaped(entry.path),
                entry.protocol,
                entry.status,
                entry.duration_ms,
                entry.route,
                entry.upstream,
                entry.backend,
                entry.limit,
                entry.attempts
            ),
        };
        let len = line.len();
        let reserved = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |q| {
                (q + len <= QUEUE_BYTES).then_some(q + len)
            });
        if reserved.is_err() {
            return false;
        }
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(len, Ordering::AcqRel);
                false
            }
        }
    }

    fn open(&self) -> std::io::Result<Box<dyn Write + Send>> {
        if self.spec.path == "-" || self.spec.path == "stdout" {
            return Ok(Box::new(std::io::stdout()));
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.path)?;
        Ok(Box::new(std::io::BufWriter::with_capacity(64 * 1024, file)))
    }
}

/// The writer, run as a background service so its thread starts after
/// Pingora has daemonized (a thread started before `fork` would not survive).
pub struct AccessLogService(pub std::sync::Arc<AccessLog>);

#[async_trait]
impl BackgroundService for AccessLogService {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let log = &self.0;
        let Some(rx) = log.rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let mut out = match log.open() {
            Ok(out) => out,
            Err(e) => {
                log::error!("access log {}: {e}; access logging is off", log.spec.path);
                return;
            }
        };
        let queued = log.queued.clone();
        let written = move |line: &str| {
            queued.fetch_sub(line.len(), Ordering::AcqRel);
        };
        let spawned = std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || {
                // Block for one line, then drain what is queued before flushing.
                while let Ok(line) = rx.recv() {
                    let _ = writeln!(out, "{line}");
                    written(&line);
                    while let Ok(line) = rx.try_recv() {
                        let _ = writeln!(out, "{line}");
                        written(&line);
                    }
                    let _ = out.flush();
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start the access log writer: {e}");
        }
    }
}

/// A field of a text line as nginx writes it: `"`, `\\`, control bytes and
/// bytes past ASCII as `\xHH`, so a path cannot close the quoted request
/// field early or forge a second line. Borrowed when nothing needs escaping.
fn text_escaped(field: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
    if field.bytes().all(plain) {
        return std::borrow::Cow::Borrowed(field);
    }
    let mut out = String::with_capacity(field.len() + 8);
    for b in field.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry<'_> {
        Entry {
            ts: 0.0,
            request_id: "r",
            client_ip: "-".into(),
            method: "GET",
            path,
            protocol: "HTTP/1.1",
            status: 200,
            duration_ms: 0.0,
            route: "",
            upstream: "",
            backend: "-".into(),
            limit: "-",
            attempts: 0,
        }
    }

    #[test]
    fn a_stalled_writer_holds_at_most_the_byte_budget() {
        let log = AccessLog::new(AccessLogSpec {
            path: "-".into(),
            format: AccessLogFormat::Text,
        });
        let long = "/".repeat(1 << 20);
        let kept = (0..100).filter(|_| log.record(&entry(&long))).count();
        assert!((15..=16).contains(&kept), "{kept} lines of 1 MiB queued");
        assert!(log.queued.load(Ordering::Relaxed) <= QUEUE_BYTES);
        // Full: the next long line is dropped, not queued.
        assert!(!log.record(&entry(&long)));
    }

    #[test]
    fn text_fields_cannot_break_out_of_their_quotes() {
        assert_eq!(text_escaped("/a/b?c=d"), "/a/b?c=d");
        assert_eq!(text_escaped("/a\"b"), "/a\\x22b");
        assert_eq!(text_escaped("/a\\b"), "/a\\x5Cb");
        assert_eq!(text_escaped("/a\nb"), "/a\\x0Ab");
        assert_eq!(text_escaped("/caf\u{e9}"), "/caf\\xC3\\xA9");
    }
}
