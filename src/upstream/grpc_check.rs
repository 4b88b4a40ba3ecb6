//! `health_check: { type: grpc }`: `grpc.health.v1.Health/Check` over the
//! pool's own HTTP/2 (h2c or h2 over TLS), through Pingora's connector so it
//! dials, negotiates and times out exactly as proxied requests do.
//!
//! Healthy means the call succeeded (`grpc-status: 0`) *and* the answer is
//! SERVING: a server that is up but reports NOT_SERVING is draining or not
//! ready, which is the point of asking it rather than opening a socket.

use std::time::Duration;

use async_trait::async_trait;
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::HealthCheck;
use pingora_load_balancing::Backend;

use crate::grpc::health;

pub struct GrpcHealthCheck {
    pub consecutive_success: usize,
    pub consecutive_failure: usize,
    /// Protocol, TLS and timeouts; the address is each backend's.
    pub peer_template: HttpPeer,
    /// `:authority` of the call.
    pub authority: String,
    pub service: String,
    /// Bounds the whole call, connect to trailers.
    pub timeout: Duration,
    connector: Connector,
}

impl GrpcHealthCheck {
    pub fn new(
        peer_template: HttpPeer,
        authority: String,
        service: String,
        timeout: Duration,
    ) -> Self {
        GrpcHealthCheck {
            consecutive_success: 1,
            consecutive_failure: 1,
            peer_template,
            authority,
            service,
            timeout,
            connector: Connector::new(None),
        }
    }

    async fn call(&self, peer: &HttpPeer) -> Result<()> {
        let (session, _) = self.connector.get_http_session(peer).await?;
        let HttpSession::H2(mut h2) = session else {
            return Error::e_explain(
                ErrorType::InvalidHTTPHeader,
                "backend did not speak HTTP/2 for a gRPC health check",
            );
        };
        let mut req = RequestHeader::build("POST", health::PATH.as_bytes(), None)?;
        req.insert_header("host", &self.authority)?;
        req.insert_header("content-type", "application/grpc")?;
        req.insert_header("te", "trailers")?;
        req.insert_header("user-agent", "sluice-health-check")?;
        h2.write_request_header(Box::new(req), false)?;
        h2.write_request_body(health::request(&self.service), true)
            .await?;
        h2.read_response_header().await?;
        let Some(resp) = h2.response_header() else {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "no response header");
        };
        if resp.status != 200 {
            return Error::e_explain(
                ErrorType::CustomCode("unexpected status", resp.status.as_u16()),
                "during grpc health check",
            );
        }
        // Trailers-only: the outcome is already in the header block.
        let mut grpc_status = resp.headers.get("grpc-status").cloned();
        let mut body = Vec::new();
        while let Some(chunk) = h2.read_response_body().await? {
            if body.len() + chunk.len() > 64 * 1024 {
                return Error::e_explain(ErrorType::ReadError, "health response too large");
            }
            body.extend_from_slice(&chunk);
        }
        if grpc_status.is_none() {
            grpc_status = h2
                .read_trailers()
                .await?
                .and_then(|t| t.get("grpc-status").cloned());
        }
        match grpc_status.as_ref().map(|v| v.as_bytes()) {
            Some(b"0") => {}
            Some(code) => {
                let code = std::str::from_utf8(code)
                    .ok()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(u16::MAX);
                return Error::e_explain(
                    ErrorType::CustomCode("grpc-status", code),
                    "during grpc health check",
                );
            }
            None => {
                return Error::e_explain(
                    ErrorType::InvalidHTTPHeader,
                    "grpc health check: no grpc-status",
                )
            }
        }
        match health::is_serving(&body) {
            Ok(true) => Ok(()),
            Ok(false) => Error::e_explain(
                ErrorType::Custom("not serving"),
                "grpc health check: backend says it is not SERVING",
            ),
            Err(why) => Error::e_explain(ErrorType::InvalidHTTPHeader, why),
        }
    }
}

#[async_trait]
impl HealthCheck for GrpcHealthCheck {
    fn health_threshold(&self, success: bool) -> usize {
        if success {
            self.consecutive_success
        } else {
            self.consecutive_failure
        }
    }

    async fn check(&self, target: &Backend) -> Result<()> {
        let mut peer = self.peer_template.clone();
        peer._address = target.addr.clone();
        match tokio::time::timeout(self.timeout, self.call(&peer)).await {
            Ok(r) => r,
            Err(_) => Error::e_explain(ErrorType::ReadTimedout, "grpc health check timed out"),
        }
    }
}
