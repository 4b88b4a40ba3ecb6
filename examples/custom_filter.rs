//! Writing your own filter: a `tenant` filter that rejects requests without an
//! `x-tenant` header, gives a known tenant its priority (which an adaptive
//! limit's `priority: header:x-priority` honours only when set this way or
//! by a trusted proxy), tells the backend which tenant it serves, and tags
//! the response. Run it like the `sluice` binary:
//!
//! ```text
//! cargo run --example custom_filter -- -c conf/gateway.yaml
//! ```
//! with a route that lists it, configured under `filters:`:
//! ```yaml
//! filters:
//!   tenants:
//!     type: tenant
//!     allowed: [acme, globex]
//!     priorities: { acme: critical }   # optional
//! routes:
//!   - upstream: api
//!     filters: [tenants]
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use pingora_http::{RequestHeader, ResponseHeader};
use sluice::filters::{Filter, FilterContext, Flow, Registry, Reply};

/// The tenant a request was admitted for, passed from `on_request` to the
/// later hooks through the context's `vars`.
#[derive(Clone)]
struct Tenant(String);

struct TenantFilter {
    allowed: Vec<String>,
    /// `x-priority` for a tenant, by name.
    priorities: Vec<(String, http::HeaderValue)>,
}

impl TenantFilter {
    /// Settings are parsed once, when the config loads; a bad value is a
    /// config error that `sluice -t` reports.
    fn from_settings(settings: &serde_yaml::Value) -> Result<Self, String> {
        let allowed = settings
            .get("allowed")
            .and_then(|v| v.as_sequence())
            .ok_or("`allowed` must be a list of tenant names")?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or("tenant names must be strings")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut priorities = Vec::new();
        if let Some(map) = settings.get("priorities") {
            let map = map
                .as_mapping()
                .ok_or("`priorities` maps tenant names to critical, default or sheddable")?;
            for (tenant, priority) in map {
                let (Some(tenant), Some(priority)) = (tenant.as_str(), priority.as_str()) else {
                    return Err("`priorities` maps tenant names to priority names".into());
                };
                let priority = match priority {
                    "critical" => "critical",
                    "default" => "default",
                    "sheddable" => "sheddable",
                    other => {
                        return Err(format!("`{other}` is not critical, default or sheddable"))
                    }
                };
                priorities.push((tenant.to_string(), http::HeaderValue::from_static(priority)));
            }
        }
        Ok(TenantFilter {
            allowed,
            priorities,
        })
    }
}

#[async_trait]
impl Filter for TenantFilter {
    async fn on_request(&self, req: &mut RequestHeader, ctx: &mut FilterContext) -> Flow {
        let tenant = req
            .headers
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .filter(|t| self.allowed.iter().any(|a| a == t));
        match tenant {
            Some(t) => {
                let tenant = Tenant(t.to_string());
                let priority = self.priorities.iter().find(|(name, _)| *name == tenant.0);
                if let Some((_, p)) = priority {
                    let _ = req.insert_header("x-priority", p.clone());
                }
                ctx.vars.insert(tenant);
                Flow::Continue
            }
            None => Flow::Respond(Reply::error(401, "unknown tenant", ctx)),
        }
    }

    fn on_upstream_request(&self, req: &mut RequestHeader, ctx: &FilterContext) {
        if let Some(Tenant(t)) = ctx.vars.get::<Tenant>() {
            let _ = req.insert_header("x-tenant-verified", t.as_str());
        }
    }

    fn on_response(&self, resp: &mut ResponseHeader, _ctx: &FilterContext) {
        let _ = resp.insert_header("x-tenant-checked", "1");
    }
}

fn registry() -> Registry {
    let mut registry = Registry::builtin();
    registry.register("tenant", |settings| {
        TenantFilter::from_settings(settings).map(|f| Arc::new(f) as Arc<dyn Filter>)
    });
    registry
}

fn main() -> ExitCode {
    sluice::cli::run(registry())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> FilterContext {
        FilterContext::new("r1", "api")
    }

    #[tokio::test]
    async fn admits_known_tenants_and_rejects_the_rest() {
        let settings: serde_yaml::Value = serde_yaml::from_str("allowed: [acme]").unwrap();
        let f = registry().build("tenant", &settings).unwrap();

        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-tenant", "acme").unwrap();
        let mut c = ctx();
        assert!(matches!(
            f.on_request(&mut req, &mut c).await,
            Flow::Continue
        ));
        f.on_upstream_request(&mut req, &c);
        assert_eq!(req.headers["x-tenant-verified"], "acme");

        let mut stranger = RequestHeader::build("GET", b"/", None).unwrap();
        stranger.insert_header("x-tenant", "initech").unwrap();
        match f.on_request(&mut stranger, &mut ctx()).await {
            Flow::Respond(reply) => assert_eq!(reply.status, 401),
            Flow::Continue => panic!("unknown tenant admitted"),
        }
    }

    #[tokio::test]
    async fn a_known_tenant_gets_its_priority() {
        let settings: serde_yaml::Value =
            serde_yaml::from_str("{ allowed: [acme, globex], priorities: { acme: critical } }")
                .unwrap();
        let f = registry().build("tenant", &settings).unwrap();
        for (tenant, want) in [("acme", Some("critical")), ("globex", None)] {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.insert_header("x-tenant", tenant).unwrap();
            assert!(matches!(
                f.on_request(&mut req, &mut ctx()).await,
                Flow::Continue
            ));
            let got = req.headers.get("x-priority").map(|v| v.to_str().unwrap());
            assert_eq!(got, want, "{tenant}");
        }
    }

    #[test]
    fn bad_settings_are_config_errors() {
        for bad in [
            "allowed: acme",
            "{ allowed: [acme], priorities: [acme] }",
            "{ allowed: [acme], priorities: { acme: urgent } }",
        ] {
            let settings: serde_yaml::Value = serde_yaml::from_str(bad).unwrap();
            assert!(registry().build("tenant", &settings).is_err(), "{bad}");
        }
    }
}
