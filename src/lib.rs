//! sluice: an API gateway on Cloudflare Pingora.
//!
//! A request flows one way: [`router`] → [`filters`] → [`limits`] →
//! [`upstream`] selection → Pingora → response filters. [`proxy`] is the thin
//! `ProxyHttp` glue; everything it calls is testable without sockets.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod admission;
pub mod cli;
pub mod config;
pub mod echo;
pub mod errors;
pub mod filters;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod grpc;
pub mod keys;
pub mod lifecycle;
pub mod limits;
pub mod listen;
pub mod live;
pub mod proxy;
pub mod request;
pub mod router;
pub mod telemetry;
pub mod transport;
pub mod upstream;
