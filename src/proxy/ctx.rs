//! What the gateway learns about one request, carried from phase to phase,
//! and what is recorded when it ends. The request's attempts at a backend
//! keep their own books (see `upstream::attempts`).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use pingora_http::ResponseHeader;

use crate::filters::FilterContext;
use crate::limits::Verdict;
use crate::live::{Generation, Route};
use crate::request::body_limit::BodyLimit;
use crate::request::path::OriginalTarget;
use crate::request::request_id::RequestId;
use crate::upstream::{Attempts, Settled};

/// What the limits decided, kept for the response and the access log.
// One per request, inside the request context Pingora allocates once: boxing
// the verdict would cost an allocation per request to save moving it once.
#[allow(clippy::large_enum_variant)]
pub(super) enum LimitState {
    /// The route has no limits.
    None,
    /// Admitted: the concurrency slots to hold and the `RateLimit` fields to send.
    Admitted(Verdict),
    /// Refused by the named limit.
    Rejected(&'static str),
}

/// Everything the gateway learns about one request, from phase to phase.
pub struct RequestCtx {
    /// The config snapshot this request runs on, start to end.
    pub(super) gateway: Option<Arc<Generation>>,
    pub(super) route: Option<usize>,
    pub(super) filter_ctx: Option<FilterContext>,
    /// How many of the route's filters ran their request hook: their
    /// response hooks run, in reverse, on whatever answers the request.
    pub(super) filters_ran: usize,
    pub(super) request_id: RequestId,
    pub(super) peer_ip: Option<IpAddr>,
    pub(super) client_ip: Option<IpAddr>,
    /// The request's attempts at its route's pool, from the first pick.
    pub(super) attempts: Option<Attempts>,
    pub(super) limits: LimitState,
    /// When `request_filter` began (limiter clock nanos; 0 until then). The
    /// one clock read admission, the first attempt and the duration share.
    pub(super) started: u64,
    /// A gRPC call: the gateway's own answers are gRPC errors.
    pub(super) grpc: bool,
    /// The target as the client sent it, when normalising changed its path.
    pub(super) original_target: Option<OriginalTarget>,
    /// The route's `max_body` and the body bytes read so far.
    pub(super) body_limit: Option<BodyLimit>,
}

impl RequestCtx {
    pub(super) fn route(&self) -> Option<(&Generation, &Route)> {
        let gw = self.gateway.as_deref()?;
        Some((gw, gw.routes.get(self.route?)?))
    }

    /// The route and the request's attempts at its pool, begun at the
    /// first pick. The attempts hold the pool, so what they count on its
    /// backends is given back even if the request never reaches `logging`.
    pub(super) fn route_attempts(&mut self) -> Option<(&Route, &mut Attempts)> {
        let route = self.gateway.as_deref()?.routes.get(self.route?)?;
        let started = self.started;
        let attempts = self
            .attempts
            .get_or_insert_with(|| Attempts::new(route.pool.clone(), started));
        Some((route, attempts))
    }

    /// Records a settled attempt, once: the backend's counters, passive
    /// health and latency, and what the request's adaptive limits learn
    /// (the time since the pick, and whether it failed: an error, a timeout,
    /// a 5xx, which they count as congestion). What each of them may learn
    /// is `Settled`'s to say, from one judgement of whose the ending is: a
    /// client that hung up or whose own deadline passed, a stale connection
    /// or the gateway's own refusal teaches none of them anything.
    pub(super) fn settle(&self, settled: Option<Settled>, now: u64) {
        let (Some(settled), Some(attempts)) = (settled, &self.attempts) else {
            return;
        };
        attempts.pool().record(&settled, now);
        if let (LimitState::Admitted(verdict), Some((rtt, ok))) =
            (&self.limits, settled.adaptive_sample())
        {
            verdict.record_attempt(rtt, ok, now);
        }
    }

    /// What every response to this request gets, the backend's or the
    /// gateway's own: the `RateLimit` fields of an admitting limit, then the
    /// response hooks of the filters whose request hook ran, in reverse, like
    /// middleware (so a filter may still edit the fields).
    pub(super) fn dress_response(&self, header: &mut ResponseHeader) {
        if let LimitState::Admitted(verdict) = &self.limits {
            crate::admission::add_ratelimit_fields(header, verdict);
        }
        if let (Some((_, route)), Some(fctx)) = (self.route(), &self.filter_ctx) {
            let ran = self.filters_ran.min(route.filters.len());
            for filter in route.filters[..ran].iter().rev() {
                filter.on_response(header, fctx);
            }
        }
    }

    pub(super) fn new() -> RequestCtx {
        RequestCtx {
            gateway: None,
            route: None,
            filter_ctx: None,
            filters_ran: 0,
            request_id: RequestId::none(),
            peer_ip: None,
            client_ip: None,
            attempts: None,
            limits: LimitState::None,
            started: 0,
            grpc: false,
            original_target: None,
            body_limit: None,
        }
    }

    /// Releases what the limits hold (concurrency slots go back now, not
    /// when Pingora drops the context) and says what they decided, for the
    /// access log.
    pub(super) fn finish_limits(&mut self) -> Cow<'static, str> {
        match std::mem::replace(&mut self.limits, LimitState::None) {
            LimitState::None => Cow::Borrowed("-"),
            LimitState::Admitted(verdict) => {
                drop(verdict);
                Cow::Borrowed("admitted")
            }
            LimitState::Rejected(name) => Cow::Owned(format!("rejected:{name}")),
        }
    }

    /// The parts of the finished request that are recorded.
    pub(super) fn done(&self) -> crate::telemetry::observe::Done<'_> {
        let route = self.route();
        crate::telemetry::observe::Done {
            request_id: self.request_id.as_str(),
            client_ip: self.client_ip,
            route: route.map_or("", |(_, r)| &r.name),
            upstream: route.map_or("", |(_, r)| r.pool.name()),
            backend: self.attempts.as_ref().and_then(Attempts::backend),
            attempts: self.attempts.as_ref().map_or(0, Attempts::count),
            started_nanos: self.started,
            metrics: route.map(|(_, r)| &r.metrics),
        }
    }
}
