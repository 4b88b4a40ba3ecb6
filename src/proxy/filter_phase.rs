//! The route's request filters, in order, until one answers the request
//! itself; the answer is dressed like any other of the gateway's (the
//! filters before the one that answered see it on the way out).

use std::sync::Arc;

use http::header;
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::{Proxy, RequestCtx};
use crate::filters::{FilterContext, Flow};
use crate::live::Route;

impl Proxy {
    /// Runs `route`'s request hooks; `true` when a filter answered.
    pub(super) async fn run_filters(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Route,
    ) -> Result<bool> {
        if route.filters.is_empty() {
            return Ok(false);
        }
        let mut fctx = FilterContext {
            request_id: Arc::from(ctx.request_id.as_str()),
            client_ip: ctx.client_ip,
            route: route.name.clone(),
            vars: Default::default(),
        };
        for (i, filter) in route.filters.iter().enumerate() {
            if let Flow::Respond(reply) =
                filter.on_request(session.req_header_mut(), &mut fctx).await
            {
                let mut header =
                    ResponseHeader::build(reply.status, Some(reply.headers.len() + 2))?;
                for (n, v) in reply.headers {
                    header.insert_header(n, v)?;
                }
                header.insert_header(header::CONTENT_LENGTH, reply.body.len().to_string())?;
                ctx.filters_ran = i;
                ctx.filter_ctx = Some(fctx);
                self.answer(session, ctx, (header, reply.body), "refused by a filter")
                    .await?;
                return Ok(true);
            }
        }
        ctx.filters_ran = route.filters.len();
        ctx.filter_ctx = Some(fctx);
        Ok(false)
    }
}
