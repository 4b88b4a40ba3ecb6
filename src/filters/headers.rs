//! `headers`: set or remove request and response headers, from YAML.
//!
//! ```yaml
//! filters:
//!   hide_server:
//!     type: headers
//!     request:  { set: { x-env: prod }, remove: [x-debug] }
//!     response: { set: { strict-transport-security: max-age=31536000 }, remove: [server] }
//! ```
//! Names and values are parsed once at load time; an invalid one is a config
//! error, so the hooks cannot fail.

use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};
use serde_yaml::Value;

use super::hook::{Filter, FilterContext};

#[derive(Default, Debug)]
struct Edits {
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

#[derive(Debug)]
pub struct HeadersFilter {
    request: Edits,
    response: Edits,
}

fn name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| format!("`{text}` is not a valid header name"))
}

fn parse_edits(v: Option<&Value>, side: &str) -> Result<Edits, String> {
    let mut edits = Edits::default();
    let Some(v) = v else { return Ok(edits) };
    let Value::Mapping(m) = v else {
        return Err(format!(
            "{side}: expected a mapping with `set` and/or `remove`"
        ));
    };
    for (k, v) in m {
        match k.as_str() {
            Some("set") => {
                let Value::Mapping(pairs) = v else {
                    return Err(format!("{side}.set: expected a mapping of header: value"));
                };
                for (hk, hv) in pairs {
                    let hk = hk
                        .as_str()
                        .ok_or(format!("{side}.set: names must be strings"))?;
                    let text = match hv {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => return Err(format!("{side}.set.{hk}: expected a string")),
                    };
                    let value = HeaderValue::from_str(&text)
                        .map_err(|_| format!("{side}.set.{hk}: not a valid header value"))?;
                    edits
                        .set
                        .push((name(hk).map_err(|e| format!("{side}.set: {e}"))?, value));
                }
            }
            Some("remove") => {
                let Value::Sequence(items) = v else {
                    return Err(format!("{side}.remove: expected a list of header names"));
                };
                for item in items {
                    let text = item
                        .as_str()
                        .ok_or(format!("{side}.remove: names must be strings"))?;
                    edits
                        .remove
                        .push(name(text).map_err(|e| format!("{side}.remove: {e}"))?);
                }
            }
            other => {
                return Err(format!(
                    "{side}: unknown key `{}` (expected set, remove)",
                    other.unwrap_or("?")
                ))
            }
        }
    }
    Ok(edits)
}

impl HeadersFilter {
    pub fn from_settings(settings: &Value) -> Result<Self, String> {
        let map = match settings {
            Value::Mapping(m) => m,
            Value::Null => return Err("headers needs `request` and/or `response` settings".into()),
            _ => return Err("expected a mapping".into()),
        };
        for k in map.keys() {
            match k.as_str() {
                Some("request") | Some("response") => {}
                other => {
                    return Err(format!(
                        "unknown key `{}` (expected type, request, response)",
                        other.unwrap_or("?")
                    ))
                }
            }
        }
        Ok(HeadersFilter {
            request: parse_edits(map.get("request"), "request")?,
            response: parse_edits(map.get("response"), "response")?,
        })
    }
}

#[async_trait::async_trait]
impl Filter for HeadersFilter {
    fn on_upstream_request(&self, req: &mut RequestHeader, _ctx: &FilterContext) {
        for n in &self.request.remove {
            req.remove_header(n);
        }
        for (n, v) in &self.request.set {
            let _ = req.insert_header(n.clone(), v.clone());
        }
    }

    fn on_response(&self, resp: &mut ResponseHeader, _ctx: &FilterContext) {
        for n in &self.response.remove {
            resp.remove_header(n);
        }
        for (n, v) in &self.response.set {
            let _ = resp.insert_header(n.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> FilterContext {
        FilterContext::new("r1", "api")
    }

    #[test]
    fn sets_and_removes_on_both_sides() {
        let yaml: Value = serde_yaml::from_str(
            "request: {set: {x-env: prod}, remove: [x-debug]}\nresponse: {set: {x-served-by: sluice}, remove: [server]}",
        )
        .unwrap();
        let f = HeadersFilter::from_settings(&yaml).unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-debug", "1").unwrap();
        f.on_upstream_request(&mut req, &ctx());
        assert!(req.headers.get("x-debug").is_none());
        assert_eq!(req.headers.get("x-env").unwrap(), "prod");
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("server", "x").unwrap();
        f.on_response(&mut resp, &ctx());
        assert!(resp.headers.get("server").is_none());
        assert_eq!(resp.headers.get("x-served-by").unwrap(), "sluice");
    }

    #[test]
    fn bad_settings_are_errors_not_panics() {
        for bad in [
            "request: {sett: {}}",
            "request: {set: {'bad name': x}}",
            "42",
            "response: {remove: x}",
        ] {
            let yaml: Value = serde_yaml::from_str(bad).unwrap();
            assert!(HeadersFilter::from_settings(&yaml).is_err(), "{bad}");
        }
    }
}
