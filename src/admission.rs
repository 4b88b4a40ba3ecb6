//! The bridge from a request to the limits: extract each limit's key and
//! class, ask the [admission engine](crate::limits::engine), count its
//! decisions (the one place they are counted), and build the 429.
//! Kept out of the `ProxyHttp` impl so that the proxy stays glue.

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderValue;
use pingora_http::{RequestHeader, ResponseHeader};
use smallvec::SmallVec;

use crate::errors;
use crate::keys::{KeyInput, KeyValue};
use crate::limits::engine::{self, Entry};
use crate::limits::{Decision, Kind, Priority, Verdict};
use crate::live::Route;

/// Decides a request against its route's limits (the route has at least one)
/// and counts what each limit counted. Only a route with a shared limit waits
/// on anything.
pub async fn check(
    route: &Route,
    req: &RequestHeader,
    client_ip: Option<std::net::IpAddr>,
    now_nanos: u64,
) -> Verdict {
    let input = KeyInput {
        client_ip,
        headers: &req.headers,
        uri: &req.uri,
        route: &route.name,
    };
    let keys: SmallVec<[Option<KeyValue>; 4]> = route
        .limits
        .iter()
        .map(|l| l.spec().key.extract(&input))
        .collect();
    let entries: SmallVec<[Entry<Kind>; 4]> = route
        .limits
        .iter()
        .zip(&keys)
        .map(|(l, k)| {
            let class = l.priority_key().map_or(Priority::Default, |p| {
                Priority::parse(p.extract(&input).as_deref())
            });
            l.entry(k.as_deref(), class)
        })
        .collect();
    let verdict = engine::admit(&entries, now_nanos).await;
    for ((limiter, decision), m) in route
        .limits
        .iter()
        .zip(&verdict.decisions)
        .zip(&route.limit_metrics)
    {
        match decision {
            None => {}
            Some(Decision::Admitted) => m.admitted.inc(),
            Some(Decision::Rejected) => m.rejected.inc(),
            Some(Decision::ShadowRejected) => {
                log::info!(
                    "shadow limit {} would have rejected this request",
                    limiter.name()
                );
                m.shadow_rejected.inc()
            }
        }
    }
    verdict
}

/// The rejection: the limit's status, `Retry-After` (whole seconds, RFC 9110
/// §10.2.3), the `RateLimit-Policy` and `RateLimit` fields
/// (draft-ietf-httpapi-ratelimit-headers), and the JSON body.
pub fn rejection(
    verdict: &Verdict,
    status: u16,
    retry_after_secs: Option<u64>,
    limit_name: &str,
    request_id: &str,
) -> (ResponseHeader, Bytes) {
    let message = format!("rate limited by {limit_name}");
    let (mut header, body) = errors::response(status, &message, request_id);
    if let Some(secs) = retry_after_secs {
        let _ = header.insert_header("retry-after", secs.to_string());
    }
    add_ratelimit_fields(&mut header, verdict);
    (header, body)
}

/// Adds `RateLimit-Policy` and `RateLimit` when an enforced limit applies.
pub fn add_ratelimit_fields(header: &mut ResponseHeader, verdict: &Verdict) {
    match verdict.policy_header() {
        // Rendered once per limit: sent without a copy.
        Some(Cow::Borrowed(policy)) => {
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from_static(policy.as_bytes())) {
                let _ = header.insert_header("ratelimit-policy", v);
            }
        }
        Some(Cow::Owned(policy)) => {
            let _ = header.insert_header("ratelimit-policy", policy);
        }
        None => {}
    }
    if let Some(state) = verdict.ratelimit_header() {
        let _ = header.insert_header("ratelimit", state);
    }
}
