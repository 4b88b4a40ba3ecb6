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
mod hook;
mod registry;
mod request_id;

pub use headers::HeadersFilter;
pub use hook::{Filter, FilterContext, Flow, Reply};
pub use registry::{Factory, Registry};
pub use request_id::RequestIdFilter;
