//! The `ProxyHttp` implementation: glue between Pingora's request phases and
//! the gateway's modules. Each phase reads what it needs from the request,
//! calls one module, and records the outcome in the request context; no
//! policy is decided here.

mod answer;
mod ctx;
mod filter_phase;
mod routing;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::admission::{self, SentPriorities};
use crate::config::Balance;
use crate::errors::{self, GatewayError};
use crate::grpc;
use crate::keys::KeyInput;
use crate::lifecycle::Draining;
use crate::limits::Outcome;
use crate::limits::{Clock, MonotonicClock};
use crate::live::Live;
use crate::request::body_limit::{self, BodyLimit};
use crate::request::forwarded::{self, X_FORWARDED_FOR};
use crate::request::request_id::{RequestId, X_REQUEST_ID};
use crate::telemetry::observe::Recorder;
use crate::upstream::{Failure, Pick};

use ctx::LimitState;
pub use ctx::RequestCtx;

/// What the proxy reads: the live generation, the one clock limits and
/// durations are read with, where finished requests are recorded, and
/// whether the process is draining.
pub struct Proxy {
    live: Live,
    clock: MonotonicClock,
    recorder: Recorder,
    draining: Draining,
}

impl Proxy {
    pub fn new(live: Live, clock: MonotonicClock, recorder: Recorder, draining: Draining) -> Self {
        Proxy {
            live,
            clock,
            recorder,
            draining,
        }
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    /// sluice does not compress responses, so it does not carry Pingora's
    /// (disabled) compression module, which costs an allocation and a
    /// filter call per request.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        crate::transport::conn::request_started(session);
        // Pingora's own wait between requests: none (0 is "no timeout"),
        // since `transport::conn` bounds it with keepalive_timeout and the head
        // with request_header_timeout; Pingora's per-read timer would cost
        // a timer registration per read and restart at every byte. Off stays
        // off (the client asked to close, or the process is draining).
        if session.as_downstream().get_keepalive().is_some() {
            session.set_keepalive(Some(0));
        }
        // RFC 9112 §9.3.2: a server may answer pipelined requests in order.
        // Without this Pingora serves the first and drops the rest.
        session.as_downstream_mut().set_pipelining_enabled(true);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.started = self.clock.now_nanos();
        let gw = self.live.load();
        let req = session.req_header();
        ctx.request_id = RequestId::keep_or_generate(req.headers.get(X_REQUEST_ID));
        ctx.grpc = grpc::is_grpc(req.version, &req.headers);
        match crate::request::harden(session.req_header_mut(), gw.config.max_request_header_size) {
            Ok(original) => ctx.original_target = original,
            Err(e) => {
                self.send_error(session, e, ctx).await?;
                return Ok(true);
            }
        }
        let req = session.req_header();
        ctx.peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.client_ip = forwarded::client_ip(
            ctx.peer_ip,
            req.headers
                .get_all(X_FORWARDED_FOR)
                .iter()
                .map(|v| v.as_bytes()),
            &gw.config.trusted_proxies,
        );
        let trusted_peer = forwarded::peer_is_trusted(ctx.peer_ip, &gw.config.trusted_proxies);
        let found = routing::route(
            &gw,
            session.req_header_mut(),
            ctx.client_ip,
            &mut ctx.original_target,
        );
        let route_id = match found {
            Ok(id) => id,
            Err(e) => {
                self.send_error(session, e, ctx).await?;
                return Ok(true);
            }
        };
        ctx.route = Some(route_id);
        ctx.gateway = Some(gw.clone());
        let route = &gw.routes[route_id];
        if let Some(max) = route.spec.max_body {
            if body_limit::declared_over(&session.req_header().headers, max) {
                self.send_error(session, GatewayError::PayloadTooLarge, ctx)
                    .await?;
                return Ok(true);
            }
            ctx.body_limit = Some(BodyLimit::new(max));
        }

        // Taken before the filters, which may set a priority themselves.
        let sent_priorities = (!trusted_peer)
            .then(|| SentPriorities::take(route, session.req_header_mut(), ctx.client_ip))
            .flatten();
        if self.run_filters(session, ctx, route).await? {
            return Ok(true);
        }

        if !route.limits.is_empty() {
            let verdict = admission::check(
                route,
                session.req_header(),
                ctx.client_ip,
                sent_priorities.as_ref(),
                ctx.started,
            )
            .await;
            if let Outcome::Rejected {
                index,
                status,
                retry_after_secs,
            } = verdict.outcome
            {
                let name = route.limits[index].name();
                ctx.limits = LimitState::Rejected(name);
                let reply = admission::rejection(
                    &verdict,
                    status,
                    retry_after_secs,
                    name,
                    ctx.request_id.as_str(),
                );
                let message = format!("rate limited by {name}");
                self.answer(session, ctx, reply, &message).await?;
                return Ok(true);
            }
            ctx.limits = LimitState::Admitted(verdict);
        }
        Ok(false)
    }

    /// Counts the body against the route's `max_body` (HTTP/1.1 and HTTP/2
    /// bodies alike) and fails the request before the piece that would cross
    /// it is forwarded. An upgraded connection's bytes are not a body.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(limit), Some(piece)) = (ctx.body_limit.as_mut(), body.as_ref()) {
            if !session.was_upgraded() && limit.admit(piece.len()).is_err() {
                session.set_keepalive(None);
                return Err(body_limit::exceeded_error());
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (grpc, client_ip, started) = (ctx.grpc, ctx.client_ip, ctx.started);
        let Some((route, attempts)) = ctx.route_attempts() else {
            return Error::e_explain(ErrorType::HTTPStatus(500), "no route in context");
        };
        let now = attempts.picking(|| self.clock.now_nanos());
        let req = session.req_header();
        // A gRPC client gives up at its deadline: waiting longer for the
        // backend only holds a connection for nothing, and past it there is
        // no one to answer.
        let wait = grpc
            .then(|| grpc::deadline(&req.headers, started))
            .flatten()
            .map_or(grpc::Wait::Upstream, |at| {
                grpc::wait(at, now, attempts.pool().spec.read_timeout)
            });
        if wait == grpc::Wait::Passed {
            return Error::e_explain(ErrorType::HTTPStatus(504), "the client's deadline passed");
        }
        let pool = attempts.pool();
        let input = KeyInput {
            client_ip,
            headers: &req.headers,
            uri: &req.uri,
            route: &route.name,
        };
        let key = match pool.spec.balance {
            Balance::ConsistentHash => pool.spec.hash_key.extract(&input),
            _ => None,
        };
        let pick = pool.pick(
            key.as_deref().unwrap_or(b""),
            attempts.tried(),
            now,
            &mut rand::thread_rng(),
        );
        let idx = match pick {
            Pick::Backend(idx) => idx,
            Pick::NoneHealthy => {
                return Error::e_explain(ErrorType::HTTPStatus(503), "no healthy backend")
            }
            Pick::Exhausted => {
                return Error::e_explain(ErrorType::HTTPStatus(502), "every backend attempt failed")
            }
        };
        let Some(mut peer) = pool.peer(idx) else {
            return Error::e_explain(ErrorType::HTTPStatus(500), "backend index out of range");
        };
        let unsettled = attempts.picked(idx, now);
        if let grpc::Wait::Client { left, at } = wait {
            peer.options.read_timeout = Some(left);
            attempts.bounded_by_client(at);
        }
        ctx.settle(unsettled, now);
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let now = self.clock.now_nanos();
        let failed = ctx.attempts.as_mut().map(|a| a.connect_failed(now));
        let retry = failed.is_some_and(|f| f.retry);
        ctx.settle(failed.and_then(|f| f.settled), now);
        e.set_retry(retry);
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
        // Pingora's default rule: a request that can be replayed is retried
        // where the error allows it (over HTTP/1, only on a reused connection).
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        let now = self.clock.now_nanos();
        let failure = Failure::classify(&e, e.retry());
        let settled = ctx.attempts.as_mut().and_then(|a| a.failed(failure, now));
        ctx.settle(settled, now);
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
        if let (false, Some(original)) = (route.spec.normalize_path, &ctx.original_target) {
            original.restore(upstream_request)?;
        }
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
            let incoming = session.req_header().headers.get_all(X_FORWARDED_FOR);
            let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
            forwarded::set_forwarding_headers(
                upstream_request,
                incoming.iter().map(|v| v.as_bytes()),
                peer,
                &gw.config.trusted_proxies,
                tls,
            )?;
        }
        // A kept id is usually still the one id in the copied request headers
        // (unless a filter took it out): a lookup is far cheaper than an
        // insert, which also drops a second id the client sent.
        let id = ctx.request_id.header_value();
        let mut sent = upstream_request.headers.get_all(X_REQUEST_ID).iter();
        let only_ours = sent.next() == Some(id) && sent.next().is_none();
        if !ctx.request_id.from_client() || !only_ours {
            upstream_request.insert_header("x-request-id", id)?;
        }
        if let Some(fctx) = &ctx.filter_ctx {
            for filter in &route.filters {
                filter.on_upstream_request(upstream_request, fctx);
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(attempts) = ctx.attempts.as_mut().filter(|a| a.is_open()) {
            let now = self.clock.now_nanos();
            let settled = attempts.answered(upstream_response.status.as_u16(), now);
            ctx.settle(settled, now);
        }
        if self.draining.is_draining() {
            session.set_keepalive(None);
        }
        ctx.dress_response(upstream_response);
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = errors::status_for(e);
        if code > 0 {
            // Pingora does not reuse a connection after a failed proxy
            // attempt; say so, or the client will send its next request into
            // a closing socket.
            session.set_keepalive(None);
            let err = GatewayError::from_status(code);
            let reply = errors::response(code, err.message(), ctx.request_id.as_str());
            if let Err(write_err) = self.answer(session, ctx, reply, err.message()).await {
                log::debug!("no error response sent: {write_err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        // 503 for an ejected pool is an expected answer, not a proxy failure;
        // a body past max_body, or a gRPC deadline that passed before an
        // attempt (our own 504), is the client's doing, and one log line per
        // such request would let any client fill the error log.
        matches!(e.etype(), ErrorType::HTTPStatus(503 | 413 | 504))
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        crate::transport::conn::request_done(session);
        let now = self.clock.now_nanos();
        let settled = ctx.attempts.as_mut().and_then(|a| a.finish(e, now));
        ctx.settle(settled, now);
        let limit_label = ctx.finish_limits();
        self.recorder
            .request_done(session, ctx.done(), &limit_label, now);
    }
}
