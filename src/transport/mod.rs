//! The client's transport, below Pingora's HTTP layer: what one connection
//! may do ([`conn`]: caps at accept, head and idle deadlines) and the HTTP/2
//! control-frame flood guard ([`h2_guard`]). Both wrap the accepted stream,
//! so they see bytes and frames, never requests or routes.

pub mod conn;
pub mod h2_guard;
