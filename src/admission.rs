//! The bridge from a request to the limits: extract each limit's key and
//! class, ask the [admission engine](crate::limits::engine), count its
//! decisions (the one place they are counted), and build the 429.
//! Kept out of the `ProxyHttp` impl so that the proxy stays glue.

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderValue;
use pingora_http::{RequestHeader, ResponseHeader};
use smallvec::SmallVec;

use crate::config::Balance;
use crate::errors;
use crate::keys::{KeyInput, KeySpec, KeyValue};
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
    sent: Option<&SentPriorities>,
    now_nanos: u64,
) -> Verdict {
    let input = key_input(route, req, client_ip);
    let keys: SmallVec<[Option<KeyValue>; 4]> = route
        .limits
        .iter()
        .map(|l| l.spec().key.extract(&input))
        .collect();
    let entries: SmallVec<[Entry<Kind>; 4]> = route
        .limits
        .iter()
        .zip(&keys)
        .enumerate()
        .map(|(i, (l, k))| {
            let class = l.priority_key().map_or(Priority::Default, |p| {
                let value = p.extract(&input);
                match sent {
                    Some(sent) if value.is_some() && sent.0[i].as_deref() == value.as_deref() => {
                        Priority::Default
                    }
                    _ => Priority::parse(value.as_deref()),
                }
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

/// What an untrusted client sent as the priority of each of the route's
/// limits, taken before the filters run. `priority:` is for the gateway's
/// own side (a trusted proxy, or a filter that authenticated the caller) to
/// set: a client that could choose `critical` would make every shed request
/// critical. So a `header:` priority the client sent is removed (a filter may
/// then set it), and any other kind counts as `default` unless a filter
/// changed it.
pub struct SentPriorities(SmallVec<[Option<Box<[u8]>>; 4]>);

impl SentPriorities {
    /// `None` when no limit of the route reads a priority.
    pub fn take(
        route: &Route,
        req: &mut RequestHeader,
        client_ip: Option<std::net::IpAddr>,
    ) -> Option<SentPriorities> {
        if route.limits.iter().all(|l| l.priority_key().is_none()) {
            return None;
        }
        for l in &route.limits {
            if let Some(KeySpec::Header(name)) = l.priority_key() {
                req.remove_header(name);
            }
        }
        let input = key_input(route, req, client_ip);
        Some(SentPriorities(
            route
                .limits
                .iter()
                .map(|l| {
                    l.priority_key()
                        .and_then(|p| p.extract(&input))
                        .map(|v| Box::from(&*v))
                })
                .collect(),
        ))
    }
}

/// Whether a key of the route's limits, or of its pool's hash, is sent more
/// than once with different values (refused: 400 `ambiguous limit key`).
pub fn ambiguous_key(
    route: &Route,
    req: &RequestHeader,
    client_ip: Option<std::net::IpAddr>,
) -> bool {
    let input = key_input(route, req, client_ip);
    let hash =
        (route.pool.spec.balance == Balance::ConsistentHash).then_some(&route.pool.spec.hash_key);
    route
        .limits
        .iter()
        .map(|l| &l.spec().key)
        .chain(hash)
        .any(|k| k.is_ambiguous(&input))
}

fn key_input<'a>(
    route: &'a Route,
    req: &'a RequestHeader,
    client_ip: Option<std::net::IpAddr>,
) -> KeyInput<'a> {
    KeyInput {
        client_ip,
        headers: &req.headers,
        uri: &req.uri,
        route: &route.name,
    }
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
