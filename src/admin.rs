//! The admin listener: `/metrics` (Prometheus text), `/status` (JSON of the
//! live config's routes, upstreams with each backend's health and load, and
//! limits; the process and its last reloads), `/stats/series` (the last
//! minutes, second by second), `/healthz`, `POST /reload`, and the dashboard
//! at `/`. Who may use it is decided in [`auth`].
//! It is a separate Pingora service on its own address so that it can be
//! bound to loopback while the proxy listens publicly.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::config::AdminToken;
use crate::lifecycle::Draining;
use crate::limits::{Clock, MonotonicClock};
use crate::live::{Generation, Live, Reloader};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::stats::{Stats, CAPACITY};
use crate::transport::conn::ConnCounts;

mod auth;
mod dashboard;

pub struct AdminApp {
    pub live: Live,
    pub metrics: Arc<Metrics>,
    pub clock: MonotonicClock,
    pub clients: Arc<ConnCounts>,
    pub draining: Draining,
    pub reloader: Arc<Reloader>,
    pub token: Option<AdminToken>,
    pub stats: Arc<Stats>,
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

/// The `/status` document.
pub fn status(gw: &Generation, now: u64) -> Value {
    let routes: Vec<Value> = gw
        .routes
        .iter()
        .map(|r| {
            json!({
                "name": r.spec.name,
                "host": r.spec.host.as_ref().map(|h| match h {
                    crate::config::HostMatch::Exact(h) => h.clone(),
                    crate::config::HostMatch::Wildcard(s) => format!("*{s}"),
                }),
                "path_prefix": r.spec.path_prefix,
                "methods": r.spec.methods.as_ref().map(|ms| ms.iter().map(|m| m.as_str().to_string()).collect::<Vec<_>>()),
                "strip_prefix": r.spec.strip_prefix,
                "upstream": r.spec.upstream,
                "limits": r.spec.limits,
                "filters": r.spec.filters,
            })
        })
        .collect();
    let upstreams: serde_json::Map<String, Value> = gw
        .pools
        .iter()
        .map(|(name, pool)| {
            let effective = pool.effective_weights(now);
            let backends: Vec<Value> = pool
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    json!({
                        "address": b.addr.to_string(),
                        "name": b.name.as_deref(),
                        "healthy": pool.is_healthy(i),
                        "ejected": pool.is_ejected(i, now),
                        "in_flight": b.stats.inflight.load(Ordering::Relaxed),
                        "weight": b.weight,
                        "effective_weight": (effective[i] * 100.0).round() / 100.0,
                        "latency_ms": (b.stats.latency.cost(now, pool.spec.latency_decay.as_nanos() as f64) / 1e4).round() / 100.0,
                    })
                })
                .collect();
            (
                name.clone(),
                json!({
                    "balance": pool.spec.balance.as_str(),
                    "healthy": pool.healthy_count(),
                    "panic": pool.in_panic(),
                    "backends": backends,
                }),
            )
        })
        .collect();
    let limits: serde_json::Map<String, Value> = gw
        .config
        .limits
        .iter()
        .map(|(name, spec)| {
            let mut v = describe_limit(spec);
            if let Some((s, keys)) = gw.limiters.get(name).and_then(|l| l.adaptive()) {
                let ms = |ns: Option<u64>| ns.map(|n| n as f64 / 1e6);
                v["current"] = json!({
                    "limit": s.limit,
                    "in_flight": s.in_flight,
                    "min_latency_ms": ms(s.min_rtt_ns),
                    "recent_latency_ms": ms(s.recent_rtt_ns),
                    "probing": s.probing,
                    "keys": keys,
                });
            }
            (name.clone(), v)
        })
        .collect();
    let mut out = json!({ "routes": routes, "upstreams": upstreams, "limits": limits });
    if let Some(store) = &gw.redis {
        out["redis"] = store.status();
    }
    out
}

fn describe_limit(spec: &crate::limits::LimitSpec) -> Value {
    use crate::limits::Algorithm;
    let algorithm = match &spec.algorithm {
        Algorithm::TokenBucket {
            capacity,
            fill_rate,
        } => {
            json!({"algorithm": "token_bucket", "capacity": capacity, "fill_rate": fill_rate})
        }
        Algorithm::SlidingWindow { limit, window } => {
            json!({"algorithm": "sliding_window", "limit": limit, "window_seconds": window.as_secs_f64()})
        }
        Algorithm::Concurrency { max } => json!({"algorithm": "concurrency", "max": max}),
        Algorithm::AdaptiveConcurrency {
            initial,
            min,
            max,
            priority,
        } => json!({
            "algorithm": "adaptive_concurrency",
            "initial": initial,
            "min": min,
            "max": max,
            "priority": priority.as_ref().map(|p| p.to_string()),
        }),
    };
    let mut v = algorithm;
    v["key"] = json!(spec.key.to_string());
    v["shadow"] = json!(spec.shadow);
    v["status"] = json!(spec.status);
    match &spec.store {
        crate::limits::StoreSpec::Local => v["store"] = json!("local"),
        crate::limits::StoreSpec::Redis {
            on_error,
            lease_ttl,
        } => {
            v["store"] = json!("redis");
            v["on_store_error"] = json!(on_error.as_str());
            if matches!(spec.algorithm, Algorithm::Concurrency { .. }) {
                v["lease_ttl_seconds"] = json!(lease_ttl.as_secs_f64());
            }
        }
    }
    v
}

/// What `/status` says about the process itself.
fn process(now: u64, draining: &Draining) -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        // The limiter clock starts when the process does.
        "uptime_seconds": (now as f64 / 1e9).floor(),
        "draining": draining.is_draining(),
    })
}

/// `?seconds=N` of `/stats/series`: 300 by default, at most what is kept.
fn series_seconds(query: Option<&str>) -> f64 {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("seconds="))
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(300.0)
        .min(CAPACITY as f64)
}

fn json_reply(status: StatusCode, doc: &Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec_pretty(doc).unwrap_or_default();
    body.push(b'\n');
    reply(status, "application/json", body)
}

fn refused(refusal: auth::Refusal) -> Response<Vec<u8>> {
    match refusal {
        auth::Refusal::Unauthorized => {
            let mut r = json_reply(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "admin token required: send Authorization: Bearer <token>"}),
            );
            // RFC 6750 §3: say which scheme is expected.
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"sluice admin\""),
            );
            r
        }
        auth::Refusal::CrossSite => json_reply(
            StatusCode::FORBIDDEN,
            &json!({"error": "refused: a cross-site browser request, or a browser that reached \
                    this token-less admin listener by a host name (use its IP address or \
                    localhost, or set admin.token_file)"}),
        ),
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let method = req.method.clone();
        let token = self.token.as_ref().map(|t| t.0.as_str());
        if let Err(refusal) = auth::check(token, &method, &path, &req.headers) {
            return refused(refusal);
        }
        match path.as_str() {
            "/healthz" => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/" => dashboard::page(),
            "/stats/series" => {
                let seconds = series_seconds(session.req_header().uri.query());
                json_reply(StatusCode::OK, &self.stats.to_json(seconds))
            }
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(
                    &self
                        .live
                        .load()
                        .snapshot(self.clock.now_nanos(), self.clients.open()),
                ),
            ),
            "/reload" if method != http::Method::POST => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "application/json",
                br#"{"error": "use POST /reload"}"#.to_vec(),
            ),
            "/reload" => {
                let reloader = self.reloader.clone();
                let result = tokio::task::spawn_blocking(move || reloader.reload()).await;
                let (status, doc) = match result {
                    Ok(Ok(outcome)) => (
                        StatusCode::OK,
                        json!({"result": "ok", "needs_upgrade": outcome.needs_upgrade}),
                    ),
                    Ok(Err(errors)) => (
                        StatusCode::BAD_REQUEST,
                        json!({
                            "result": "failed",
                            "errors": errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                        }),
                    ),
                    Err(e) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"result": "failed", "errors": [e.to_string()]}),
                    ),
                };
                let mut body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
                body.push(b'\n');
                reply(status, "application/json", body)
            }
            "/status" => {
                let now = self.clock.now_nanos();
                let mut doc = status(&self.live.load(), now);
                doc["process"] = process(now, &self.draining);
                doc["reloads"] = json!(self.reloader.history());
                json_reply(StatusCode::OK, &doc)
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                "application/json",
                br#"{"error": "unknown admin path (try /, /status, /stats/series, /metrics, /healthz, POST /reload)"}"#
                    .to_vec(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::series_seconds;

    #[test]
    fn series_seconds_defaults_and_is_bounded() {
        assert_eq!(series_seconds(None), 300.0);
        assert_eq!(series_seconds(Some("seconds=60")), 60.0);
        assert_eq!(series_seconds(Some("x=1&seconds=5")), 5.0);
        assert_eq!(series_seconds(Some("seconds=99999")), 600.0);
        assert_eq!(series_seconds(Some("seconds=-3")), 300.0);
        assert_eq!(series_seconds(Some("seconds=NaN")), 300.0);
    }
}
