//! Active health checks, built from `health_check:` with Pingora's checkers.
//! `healthy_after`/`unhealthy_after` are Pingora's consecutive success and
//! failure thresholds; `timeout` bounds both the connect and the response.

use std::sync::Arc;

use pingora_error::{Error, ErrorType};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};

use super::grpc_check::GrpcHealthCheck;
use super::peer::PeerTemplate;
use crate::config::{HealthCheckSpec, HealthKind, UpstreamSpec};

/// The name health checks address a backend by (`Host`, `:authority`).
fn check_host(host: Option<&String>, up: &UpstreamSpec) -> String {
    host.cloned().unwrap_or_else(|| {
        if up.sni.is_empty() {
            "localhost".to_string()
        } else {
            up.sni.clone()
        }
    })
}

pub fn build(hc: &HealthCheckSpec, up: &UpstreamSpec) -> Box<dyn HealthCheck + Send + Sync> {
    let template = PeerTemplate::of(up);
    match &hc.kind {
        HealthKind::Tcp => {
            let mut check = TcpHealthCheck::new();
            check.consecutive_success = hc.healthy_after as usize;
            check.consecutive_failure = hc.unhealthy_after as usize;
            check.peer_template.options.connection_timeout = Some(hc.timeout);
            check.peer_template.options.total_connection_timeout = Some(hc.timeout);
            check
        }
        HealthKind::Http {
            path,
            host,
            statuses,
        } => {
            let host = check_host(host.as_ref(), up);
            let mut check = HttpHealthCheck::new(&host, up.tls);
            // The same protocol and trust as the pool's requests.
            template.apply(&mut check.peer_template.options);
            if up.tls && !up.sni.is_empty() {
                check.peer_template.sni = up.sni.clone();
            }
            check.consecutive_success = hc.healthy_after as usize;
            check.consecutive_failure = hc.unhealthy_after as usize;
            check.peer_template.options.connection_timeout = Some(hc.timeout);
            check.peer_template.options.total_connection_timeout = Some(hc.timeout);
            check.peer_template.options.read_timeout = Some(hc.timeout);
            check.peer_template.options.write_timeout = Some(hc.timeout);
            if let Ok(mut req) = RequestHeader::build("GET", path.as_bytes(), None) {
                let _ = req.insert_header("host", &host);
                let _ = req.insert_header("user-agent", "sluice-health-check");
                check.req = req;
            }
            let accepted: Arc<Vec<(u16, u16)>> = Arc::new(statuses.clone());
            check.validator = Some(Box::new(move |resp| {
                let code = resp.status.as_u16();
                if accepted.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code)) {
                    Ok(())
                } else {
                    Error::e_explain(
                        ErrorType::CustomCode("unexpected status", code),
                        "during http health check",
                    )
                }
            }));
            Box::new(check)
        }
        HealthKind::Grpc { service } => {
            let mut peer = template.peer(std::net::SocketAddr::from(([0, 0, 0, 0], 1)));
            peer.options.connection_timeout = Some(hc.timeout);
            peer.options.total_connection_timeout = Some(hc.timeout);
            peer.options.read_timeout = Some(hc.timeout);
            peer.options.write_timeout = Some(hc.timeout);
            let mut check =
                GrpcHealthCheck::new(peer, check_host(None, up), service.clone(), hc.timeout);
            check.consecutive_success = hc.healthy_after as usize;
            check.consecutive_failure = hc.unhealthy_after as usize;
            Box::new(check)
        }
    }
}
