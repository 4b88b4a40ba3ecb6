//! sluice: an API gateway on Cloudflare Pingora.
//!
//! A request flows one way: [`router`] → [`filters`] → [`limits`] →
//! [`upstream`] selection → Pingora → response filters. [`proxy`] is the thin
//! `ProxyHttp` glue; everything it calls is testable without sockets.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access_log;
pub mod admin;
pub mod admission;
pub mod body_limit;
pub mod cli;
pub mod client_conn;
pub mod config;
pub mod echo;
pub mod errors;
pub mod filters;
pub mod forwarded;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod gateway;
pub mod grpc;
pub mod h2_flood;
pub mod header_size;
pub mod keys;
pub mod lifecycle;
pub mod limits;
pub mod listen;
mod live_gauges;
pub mod metrics;
pub mod observe;
pub mod path_normalize;
pub mod proxy;
pub mod reload;
mod request_framing;
pub mod request_id;
pub mod router;
pub mod stats;
pub mod upstream;
