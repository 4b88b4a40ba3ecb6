//! Active health checks, built from `health_check:` with Pingora's checkers.
//! `healthy_after`/`unhealthy_after` are Pingora's consecutive success and
//! failure thresholds; `timeout` bounds both the connect and the response.

use std::sync::Arc;

use pingora_error::{Error, ErrorType};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};

use crate::config::{HealthCheckSpec, HealthKind, UpstreamSpec};

pub fn build(hc: &HealthCheckSpec, up: &UpstreamSpec) -> Box<dyn HealthCheck + Send + Sync> {
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
            let host = host.clone().unwrap_or_else(|| {
                if up.sni.is_empty() {
                    "localhost".to_string()
                } else {
                    up.sni.clone()
                }
            });
            let mut check = HttpHealthCheck::new(&host, up.tls);
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
    }
}
