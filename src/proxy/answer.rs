//! How the gateway sends an answer of its own: a 404, a 408, a 413, a 429, a
//! 5xx, a filter's reply all go through [`Proxy::answer`] (what they say is
//! `crate::errors`' vocabulary).
//!
//! One sending path (as linkerd2-proxy turns its errors into responses in
//! one place) is what makes three promises hold for every such answer:
//! - it is never written once any byte of a response has gone to the
//!   client. Writing then would splice the gateway's JSON into the
//!   backend's body, and the client could read a response that looks
//!   complete. Instead the connection is closed, so the client sees a
//!   truncated body (a short Content-Length, a chunked body without its
//!   last chunk, an HTTP/2 stream reset). A gRPC call is the exception: its
//!   status belongs in the trailers, which end the stream as an error;
//! - the route's response filters run on it, so a `headers` edit such as
//!   HSTS is on gateway-made answers too;
//! - the `RateLimit` fields are on it where a limit admitted the request
//!   (a refusal carries its own).

use bytes::Bytes;
use pingora_core::protocols::http::HttpTask;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::{Proxy, RequestCtx};
use crate::errors::{self, GatewayError};
use crate::grpc;

impl Proxy {
    /// Answers the request with a response the gateway made: `message` is
    /// what a gRPC client reads in `grpc-message`.
    pub(super) async fn answer(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        (mut header, body): (ResponseHeader, Bytes),
        message: &str,
    ) -> Result<()> {
        if self.draining.is_draining() {
            session.set_keepalive(None);
        }
        if session.response_written().is_some() {
            if ctx.grpc {
                // The backend failed mid-call: the status goes in the trailers.
                let trailers = grpc::trailers(header.status.as_u16(), message);
                return session
                    .as_mut()
                    .response_duplex_vec(vec![HttpTask::Trailer(Some(Box::new(trailers)))])
                    .await
                    .map(|_| ());
            }
            session.set_keepalive(None);
            return Error::e_explain(
                ErrorType::WriteError,
                "a response had started: closing instead of answering",
            );
        }
        ctx.dress_response(&mut header);
        if ctx.grpc {
            grpc::to_trailers_only(&mut header, message);
            // One HEADERS frame with END_STREAM: Pingora's `write_response_header`
            // drops its end flag, and a gRPC client reads a status that arrives
            // before an empty DATA frame as headers without trailers.
            return session
                .as_mut()
                .response_duplex_vec(vec![HttpTask::Header(Box::new(header), true)])
                .await
                .map(|_| ());
        }
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await
    }

    /// Answers with one of the gateway's own errors.
    pub(super) async fn send_error(
        &self,
        session: &mut Session,
        err: GatewayError,
        ctx: &RequestCtx,
    ) -> Result<()> {
        if err.closes_connection() {
            session.set_keepalive(None);
        }
        let reply = errors::response(err.status(), err.message(), ctx.request_id.as_str());
        self.answer(session, ctx, reply, err.message()).await
    }
}
