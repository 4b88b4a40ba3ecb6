//! A filter with a bug: it panics on a request that carries `x-panic`, in the
//! hook the header names (`request` or `upstream`). `tests/panics.rs` runs
//! this binary to show what such a bug costs: the request it hit, not the
//! gateway, because sluice keeps `panic = "unwind"` and Pingora serves each
//! connection in its own task.
//!
//! ```text
//! cargo run --example panicking_filter -- -c your.yaml   # a route with `filters: [panicking]`
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use pingora_http::RequestHeader;
use sluice::filters::{Filter, FilterContext, Flow, Registry};

struct Panicking;

fn asks_for(req: &RequestHeader, hook: &str) -> bool {
    req.headers.get("x-panic").is_some_and(|v| v == hook)
}

#[async_trait]
impl Filter for Panicking {
    async fn on_request(&self, req: &mut RequestHeader, _ctx: &mut FilterContext) -> Flow {
        if asks_for(req, "request") {
            panic!("a bug in on_request");
        }
        Flow::Continue
    }

    fn on_upstream_request(&self, req: &mut RequestHeader, _ctx: &FilterContext) {
        if asks_for(req, "upstream") {
            panic!("a bug in on_upstream_request");
        }
    }
}

fn main() -> ExitCode {
    let mut registry = Registry::builtin();
    registry.register("panicking", |_settings| {
        Ok(Arc::new(Panicking) as Arc<dyn Filter>)
    });
    sluice::cli::run(registry)
}
