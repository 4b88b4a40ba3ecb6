//! The extension point: Rust filter hooks that a route lists by name.
//!
//! A filter sees a request at three moments, each a method with a default that
//! does nothing, so a filter implements only what it needs:
//!
//! 1. [`Filter::on_request`], after routing and before admission limits: it may
//!    change the request or answer it itself ([`Flow::Respond`]), e.g. reject a
//!    missing API key before it costs a limiter token;
//! 2. [`Filter::on_upstream_request`], on the request about to be sent to the
//!    chosen backend;
//! 3. [`Filter::on_response`], on the response header before the client sees it.
//!
//! Filters are built once per config load by a [`Registry`] of factories, so a
//! filter's settings are parsed and checked at load time (and `sluice -t`
//! reports them), never per request. The hooks take Pingora's header types but
//! no socket, so a filter is unit-testable with a header built in the test.

mod headers;
mod request_id;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};

pub use headers::HeadersFilter;
pub use request_id::RequestIdFilter;

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

/// Builds a filter from its YAML settings (the filter's mapping without `type`,
/// or `null` when a route names a filter kind directly).
pub type Factory = Arc<dyn Fn(&serde_yaml::Value) -> Result<Arc<dyn Filter>, String> + Send + Sync>;

/// Filter kinds by name. `Registry::builtin()` knows `request_id` and `headers`;
/// embedders add their own with [`Registry::register`].
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl Registry {
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.register("request_id", |settings| {
            RequestIdFilter::from_settings(settings).map(|f| Arc::new(f) as Arc<dyn Filter>)
        });
        r.register("headers", |settings| {
            HeadersFilter::from_settings(settings).map(|f| Arc::new(f) as Arc<dyn Filter>)
        });
        r
    }

    /// Adds (or replaces) a filter kind.
    pub fn register<F>(&mut self, kind: &str, factory: F)
    where
        F: Fn(&serde_yaml::Value) -> Result<Arc<dyn Filter>, String> + Send + Sync + 'static,
    {
        self.factories.insert(kind.to_string(), Arc::new(factory));
    }

    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    pub fn build(
        &self,
        kind: &str,
        settings: &serde_yaml::Value,
    ) -> Result<Arc<dyn Filter>, String> {
        match self.factories.get(kind) {
            Some(factory) => factory(settings),
            None => Err(format!(
                "unknown filter type `{kind}` (registered: {})",
                self.kinds().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    pub fn contains(&self, kind: &str) -> bool {
        self.factories.contains_key(kind)
    }
}
