//! What the gateway records when a request ends: the request counters and
//! duration histogram, and the access log line.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use pingora_proxy::Session;

use crate::telemetry::access_log::{AccessLog, Entry};
use crate::telemetry::metrics::{Metrics, RouteMetrics};

/// Where a finished request is recorded: the proxy's one handle on telemetry.
#[derive(Clone)]
pub struct Recorder {
    pub metrics: Arc<Metrics>,
    pub access_log: Option<Arc<AccessLog>>,
}

/// The parts of a finished request that are recorded.
pub struct Done<'a> {
    pub request_id: &'a str,
    pub client_ip: Option<IpAddr>,
    pub route: &'a str,
    pub upstream: &'a str,
    pub backend: Option<SocketAddr>,
    pub attempts: usize,
    /// When the request began on the limiter clock; 0 if it never reached
    /// `request_filter`.
    pub started_nanos: u64,
    /// The matched route's counters, or none for a request no route took.
    pub metrics: Option<&'a RouteMetrics>,
}

/// How the access log names a request's HTTP version.
fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

impl Recorder {
    /// Records a finished request; `now_nanos` is the limiter clock's reading.
    pub fn request_done(&self, session: &Session, done: Done, limit: &str, now_nanos: u64) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = match done.started_nanos {
            0 => std::time::Duration::ZERO,
            started => std::time::Duration::from_nanos(now_nanos.saturating_sub(started)),
        };
        let m = &self.metrics;
        done.metrics
            .unwrap_or(&m.no_route)
            .observe(status, elapsed.as_secs_f64());

        if let Some(log) = &self.access_log {
            let req = session.req_header();
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let entry = Entry {
                ts: (ts * 1000.0).round() / 1000.0,
                request_id: done.request_id,
                client_ip: done
                    .client_ip
                    .map_or_else(|| "-".to_string(), |ip| ip.to_string()),
                method: req.method.as_str(),
                protocol: protocol(req.version),
                path: req.uri.path(),
                status,
                duration_ms: (elapsed.as_secs_f64() * 1e6).round() / 1e3,
                route: done.route,
                upstream: done.upstream,
                backend: done
                    .backend
                    .map_or_else(|| "-".to_string(), |b| b.to_string()),
                limit,
                attempts: done.attempts,
            };
            if !log.record(&entry) {
                m.access_log_dropped.inc();
            }
        }
    }
}
