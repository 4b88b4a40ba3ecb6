//! What a filter is: the [`Filter`] hooks, the [`FilterContext`] they share,
//! and the [`Reply`] a filter may answer with.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};

/// What the gateway knows about a request, shared by every filter it passes.
pub struct FilterContext {
    /// The request's id (kept from `X-Request-Id` or generated).
    pub request_id: Arc<str>,
    /// The client's address as the gateway believes it (see `trusted_proxies`).
    pub client_ip: Option<IpAddr>,
    /// The matched route's name.
    pub route: Arc<str>,
    /// Free storage for filters to pass values between their hooks.
    pub vars: http::Extensions,
}

impl FilterContext {
    /// A context for a request with this id on this route, with no client
    /// address and nothing stored: what a filter's unit test needs.
    pub fn new(request_id: &str, route: &str) -> FilterContext {
        FilterContext {
            request_id: Arc::from(request_id),
            client_ip: None,
            route: Arc::from(route),
            vars: Default::default(),
        }
    }
}

/// Whether the request goes on to the upstream or is answered by a filter.
pub enum Flow {
    Continue,
    Respond(Reply),
}

/// A response a filter makes itself.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Reply {
    /// A JSON error reply in the gateway's own shape (`{"error": ..., "request_id": ...}`).
    pub fn error(status: u16, message: &str, ctx: &FilterContext) -> Reply {
        Reply {
            status,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from(crate::errors::json_body(message, &ctx.request_id)),
        }
    }
}

/// A request/response hook. Implementations must be cheap to call and must not
/// block: they run on the proxy's worker threads.
#[async_trait]
pub trait Filter: Send + Sync {
    async fn on_request(&self, _req: &mut RequestHeader, _ctx: &mut FilterContext) -> Flow {
        Flow::Continue
    }

    fn on_upstream_request(&self, _req: &mut RequestHeader, _ctx: &FilterContext) {}

    fn on_response(&self, _resp: &mut ResponseHeader, _ctx: &FilterContext) {}
}
