//! The `RateLimit-Policy` and `RateLimit` fields of
//! draft-ietf-httpapi-ratelimit-headers-10, rendered as header values.
//!
//! Both are Structured Field Lists (RFC 9651 §3.1) whose members are Strings
//! naming a policy, with parameters:
//! `RateLimit-Policy: "per_ip";q=100;w=2` (`q` quota, `w` window seconds,
//! `qu` quota unit) and `RateLimit: "per_ip";r=0;t=1` (`r` remaining quota,
//! `t` seconds until it grows). We send one member, the limit closest to
//! refusing (or the one that refused), which is what a client must pace to.
//!
//! Rendering is kept apart from counting so that it is a pure function of a
//! few numbers and can be tested byte for byte.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The quota unit (`qu`); `Requests` is the draft's default and is not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaUnit {
    Requests,
    ConcurrentRequests,
}

/// A limit's name as a verdict carries it: interned once per distinct name for
/// the life of the process, so a verdict copies a pointer instead of cloning an
/// `Arc` (whose reference count two cores admitting on one limit would fight
/// over) or copying bytes. The set only grows with names an operator wrote in
/// the config, across all reloads: a few bytes each, bounded in practice.
pub fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// What the proxy needs to render both fields for one limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// The policy's name: the limit's key under `limits:`.
    pub name: &'static str,
    /// `q`.
    pub quota: u64,
    /// `w`, absent for concurrency limits.
    pub window_secs: Option<u64>,
    /// `qu`.
    pub unit: QuotaUnit,
    /// `r`.
    pub remaining: u64,
    /// `t`, absent when unknown (concurrency).
    pub reset_secs: Option<u64>,
    /// The whole `RateLimit-Policy` value, rendered once per limit with
    /// [`render_policy`] (it depends on nothing a request changes).
    pub policy: &'static str,
}

/// RFC 9651 §3.3.1: an Integer has at most 15 digits.
const SF_INTEGER_MAX: u64 = 999_999_999_999_999;

/// The `RateLimit-Policy` value, e.g. `"per_ip";q=100;w=2`.
pub fn render_policy(info: &RateLimitInfo) -> String {
    let mut out = String::with_capacity(info.name.len() + 32);
    push_sf_string(&mut out, info.name);
    push_param(&mut out, "q", info.quota);
    if info.unit == QuotaUnit::ConcurrentRequests {
        out.push_str(";qu=\"concurrent-requests\"");
    }
    if let Some(w) = info.window_secs {
        push_param(&mut out, "w", w);
    }
    out
}

/// The `RateLimit` value, e.g. `"per_ip";r=0;t=1`.
pub fn render_ratelimit(info: &RateLimitInfo) -> String {
    let mut out = String::with_capacity(info.name.len() + 32);
    push_sf_string(&mut out, info.name);
    push_param(&mut out, "r", info.remaining);
    if let Some(t) = info.reset_secs {
        push_param(&mut out, "t", t);
    }
    out
}

fn push_param(out: &mut String, key: &str, value: u64) {
    out.push(';');
    out.push_str(key);
    out.push('=');
    out.push_str(itoa::Buffer::new().format(value.min(SF_INTEGER_MAX)));
}

/// RFC 9651 §3.3.3: a String is printable ASCII in quotes, with `"` and `\`
/// escaped. Limit names are config keys and should be plain already; anything
/// else is replaced rather than allowed to make the whole field invalid.
fn push_sf_string(out: &mut String, s: &str) {
    out.push('"');
    if s.bytes()
        .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
    {
        // The usual case: nothing to escape or replace.
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}

/// Whole seconds, rounded up: a client told to wait 0.2 s must hear 1, not 0.
pub fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &'static str) -> RateLimitInfo {
        RateLimitInfo {
            name,
            quota: 100,
            window_secs: Some(2),
            unit: QuotaUnit::Requests,
            remaining: 0,
            reset_secs: Some(1),
            policy: "",
        }
    }

    #[test]
    fn renders_the_design_example() {
        let i = info("per_ip");
        assert_eq!(render_policy(&i), "\"per_ip\";q=100;w=2");
        assert_eq!(render_ratelimit(&i), "\"per_ip\";r=0;t=1");
    }

    #[test]
    fn concurrency_has_a_unit_and_no_window_or_reset() {
        let i = RateLimitInfo {
            quota: 64,
            window_secs: None,
            unit: QuotaUnit::ConcurrentRequests,
            remaining: 10,
            reset_secs: None,
            ..info("slots")
        };
        assert_eq!(
            render_policy(&i),
            "\"slots\";q=64;qu=\"concurrent-requests\""
        );
        assert_eq!(render_ratelimit(&i), "\"slots\";r=10");
    }

    #[test]
    fn names_are_escaped_and_integers_clamped() {
        let i = RateLimitInfo {
            quota: u64::MAX,
            ..info("a\"b\\c\u{e9}\n")
        };
        assert_eq!(render_policy(&i), "\"a\\\"b\\\\c??\";q=999999999999999;w=2");
    }

    #[test]
    fn names_are_interned_once() {
        let a = intern(&String::from("per_ip_interned"));
        let b = intern(&String::from("per_ip_interned"));
        assert_eq!(a, "per_ip_interned");
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(0), 0);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(999_999_999), 1);
        assert_eq!(ceil_secs(1_000_000_000), 1);
        assert_eq!(ceil_secs(1_000_000_001), 2);
        assert_eq!(ceil_secs(u64::MAX), 18_446_744_074);
    }
}
