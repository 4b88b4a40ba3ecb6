//! The `ProxyHttp` implementation: glue between Pingora's request phases and
//! the gateway's modules. Each phase reads what it needs from the request,
//! calls one module, and records the outcome in the request context; no
//! policy is decided here.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::config::Balance;
use crate::errors::{self, GatewayError};
use crate::filters::{FilterContext, Flow};
use crate::forwarded;
use crate::gateway::{Gateway, Route, Shared};
use crate::keys::KeyInput;
use crate::request_id;
use crate::upstream::Pick;

pub struct Proxy {
    shared: Arc<Shared>,
}

impl Proxy {
    pub fn new(shared: Arc<Shared>) -> Self {
        Proxy { shared }
    }
}

/// Everything the gateway learns about one request, from phase to phase.
pub struct RequestCtx {
    /// The config snapshot this request runs on, start to end.
    gateway: Option<Arc<Gateway>>,
    route: Option<usize>,
    filter_ctx: Option<FilterContext>,
    request_id: Arc<str>,
    peer_ip: Option<IpAddr>,
    /// Backends this request has been sent to, in order.
    tried: Vec<usize>,
    /// The backend whose in-flight count this request holds.
    inflight_on: Option<usize>,
    started: Instant,
}

impl RequestCtx {
    fn route(&self) -> Option<(&Gateway, &Route)> {
        let gw = self.gateway.as_deref()?;
        Some((gw, gw.routes.get(self.route?)?))
    }

    fn release_inflight(&mut self) {
        if let (Some(idx), Some((_, route))) = (self.inflight_on, self.route()) {
            if let Some(b) = route.pool.backends.get(idx) {
                b.inflight.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.inflight_on = None;
    }
}

async fn send(session: &mut Session, header: ResponseHeader, body: Bytes) -> Result<()> {
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

async fn send_error(session: &mut Session, err: GatewayError, request_id: &str) -> Result<()> {
    let (header, body) = errors::response(err.status(), err.message(), request_id);
    send(session, header, body).await
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            gateway: None,
            route: None,
            filter_ctx: None,
            request_id: Arc::from(""),
            peer_ip: None,
            tried: Vec::new(),
            inflight_on: None,
            started: Instant::now(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let gw = self.shared.load();
        let req = session.req_header();
        ctx.request_id =
            request_id::keep_or_generate(req.headers.get("x-request-id").map(|v| v.as_bytes()));
        ctx.peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let client_ip = forwarded::client_ip(
            ctx.peer_ip,
            req.headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.as_bytes()),
            &gw.config.trusted_proxies,
        );
        let host = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.host());
        let Some(route_id) = gw.router.find(host, req.uri.path(), &req.method) else {
            send_error(session, GatewayError::NoRoute, &ctx.request_id).await?;
            return Ok(true);
        };
        let route = &gw.routes[route_id];
        let mut fctx = FilterContext {
            request_id: ctx.request_id.clone(),
            client_ip,
            route: route.name.clone(),
            vars: Default::default(),
        };
        for filter in &route.filters {
            if let Flow::Respond(reply) =
                filter.on_request(session.req_header_mut(), &mut fctx).await
            {
                let mut header =
                    ResponseHeader::build(reply.status, Some(reply.headers.len() + 2))?;
                for (n, v) in reply.headers {
                    header.insert_header(n, v)?;
                }
                header.insert_header(header::CONTENT_LENGTH, reply.body.len().to_string())?;
                send(session, header, reply.body).await?;
                return Ok(true);
            }
        }
        ctx.filter_ctx = Some(fctx);
        ctx.route = Some(route_id);
        ctx.gateway = Some(gw);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.release_inflight();
        let Some((_, route)) = ctx.route() else {
            return Error::e_explain(ErrorType::HTTPStatus(500), "no route in context");
        };
        let pool = route.pool.clone();
        let key = if pool.spec.balance == Balance::ConsistentHash {
            let req = session.req_header();
            let input = KeyInput {
                client_ip: ctx.filter_ctx.as_ref().and_then(|f| f.client_ip),
                headers: &req.headers,
                uri: &req.uri,
                route: &route.name,
            };
            pool.spec.hash_key.extract(&input).map(|k| k.into_owned())
        } else {
            None
        };
        let pick = pool.pick(
            key.as_deref().unwrap_or(b""),
            &ctx.tried,
            &mut rand::thread_rng(),
        );
        match pick {
            Pick::Backend(idx) => {
                let Some(peer) = pool.peer(idx) else {
                    return Error::e_explain(
                        ErrorType::HTTPStatus(500),
                        "backend index out of range",
                    );
                };
                pool.backends[idx].inflight.fetch_add(1, Ordering::Relaxed);
                ctx.tried.push(idx);
                ctx.inflight_on = Some(idx);
                Ok(peer)
            }
            Pick::NoneHealthy => Error::e_explain(ErrorType::HTTPStatus(503), "no healthy backend"),
            Pick::Exhausted => {
                Error::e_explain(ErrorType::HTTPStatus(502), "every backend attempt failed")
            }
        }
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.release_inflight();
        // Nothing was sent, so any method may go to another backend.
        let retries = ctx.route().map_or(0, |(_, r)| r.pool.spec.retries as usize);
        e.set_retry(ctx.tried.len() <= retries);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        if e.retry() {
            // A pooled connection the backend had already closed: the backend
            // itself is fine, so it may be picked again.
            ctx.release_inflight();
            ctx.tried.pop();
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some((gw, route)) = ctx.route() else {
            return Ok(());
        };
        if route.spec.strip_prefix {
            let pq = upstream_request
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str());
            let stripped = crate::router::strip_prefix(pq, &route.spec.path_prefix);
            if let Ok(uri) = stripped.parse::<http::Uri>() {
                upstream_request.set_uri(uri);
            }
        }
        if let Some(peer) = ctx.peer_ip {
            let existing: Vec<&[u8]> = session
                .req_header()
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            let joined = existing.join(&b", "[..]);
            let xff = forwarded::append_xff(Some(&joined), peer);
            upstream_request.insert_header("x-forwarded-for", xff)?;
            let from_trusted = gw.config.trusted_proxies.iter().any(|n| n.contains(&peer));
            if !from_trusted || !upstream_request.headers.contains_key("x-forwarded-proto") {
                let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
                upstream_request
                    .insert_header("x-forwarded-proto", if tls { "https" } else { "http" })?;
            }
        }
        upstream_request.insert_header("x-request-id", &*ctx.request_id)?;
        if let Some(fctx) = &ctx.filter_ctx {
            for filter in &route.filters {
                filter.on_upstream_request(upstream_request, fctx);
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some((_, route)), Some(fctx)) = (ctx.route(), &ctx.filter_ctx) {
            // Response hooks unwind in reverse, like middleware.
            for filter in route.filters.iter().rev() {
                filter.on_response(upstream_response, fctx);
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            let err = GatewayError::from_status(code);
            let (header, body) = errors::response(code, err.message(), &ctx.request_id);
            if let Err(write_err) = send(session, header, body).await {
                log::debug!("could not send error response: {write_err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.release_inflight();
        let _ = ctx.started;
    }
}
