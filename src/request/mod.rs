//! Request hardening: what the gateway checks and rewrites in a request before
//! it routes it, each rule in a file of its own so it is read and tested alone.
//!
//! In the order `request_filter` applies them: the header block's size
//! ([`header_size`]), body framing a backend could read differently
//! ([`framing`]), the path every later step reads ([`path`]), who the client
//! is ([`forwarded`]), the request's id ([`request_id`]) and, once the route
//! is known, what its encoded slashes mean ([`escaped_slashes`]) and its
//! `max_body` ([`body_limit`]). None of these knows about
//! routes, limits or backends.

pub mod body_limit;
pub mod escaped_slashes;
pub mod forwarded;
pub(crate) mod framing;
pub mod header_size;
pub mod path;
pub mod request_id;
