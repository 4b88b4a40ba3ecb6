//! `request_id`: returns the request's id to the client as `X-Request-Id`.
//!
//! The gateway always keeps or makes an id and always sends it upstream (it is
//! in every log line and error body); this filter is the opt-in for showing it
//! to clients too, which some operators consider an information leak.

use http::HeaderValue;
use pingora_http::ResponseHeader;

use super::hook::{Filter, FilterContext};

pub struct RequestIdFilter;

impl RequestIdFilter {
    pub fn from_settings(settings: &serde_yaml::Value) -> Result<Self, String> {
        match settings {
            serde_yaml::Value::Null => Ok(RequestIdFilter),
            serde_yaml::Value::Mapping(m) if m.is_empty() => Ok(RequestIdFilter),
            _ => Err("request_id takes no settings".into()),
        }
    }
}

#[async_trait::async_trait]
impl Filter for RequestIdFilter {
    fn on_response(&self, resp: &mut ResponseHeader, ctx: &FilterContext) {
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            let _ = resp.insert_header("x-request-id", v);
        }
    }
}
