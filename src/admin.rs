//! The admin listener: `/healthz` and `/status` (JSON of the live config's
//! routes, upstreams with each backend's health and load, and limits).
//! It is a separate Pingora service on its own address so that it can be
//! bound to loopback while the proxy listens publicly.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::gateway::{Gateway, Shared};

pub struct AdminApp {
    pub shared: Arc<Shared>,
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
pub fn status(gw: &Gateway) -> Value {
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
            let backends: Vec<Value> = pool
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    json!({
                        "address": b.addr.to_string(),
                        "healthy": pool.is_healthy(i),
                        "in_flight": b.inflight.load(Ordering::Relaxed),
                        "weight": b.weight,
                        "effective_weight": b.weight,
                    })
                })
                .collect();
            (
                name.clone(),
                json!({
                    "balance": pool.spec.balance.as_str(),
                    "healthy": pool.healthy_count(),
                    "backends": backends,
                }),
            )
        })
        .collect();
    let limits: serde_json::Map<String, Value> = gw
        .config
        .limits
        .iter()
        .map(|(name, spec)| (name.clone(), describe_limit(spec)))
        .collect();
    json!({ "routes": routes, "upstreams": upstreams, "limits": limits })
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
    };
    let mut v = algorithm;
    v["key"] = json!(spec.key.to_string());
    v["shadow"] = json!(spec.shadow);
    v["status"] = json!(spec.status);
    v
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/status" => {
                let doc = status(&self.shared.load());
                let mut body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
                body.push(b'\n');
                reply(StatusCode::OK, "application/json", body)
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                "application/json",
                br#"{"error": "unknown admin path (try /status, /healthz)"}"#.to_vec(),
            ),
        }
    }
}
