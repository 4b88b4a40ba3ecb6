//! Redis key names for shared limits.
//!
//! A key is `PREFIX:{LIMIT:VALUE}:ALG`. The braces are a Redis Cluster hash
//! tag: only the part inside them is hashed to pick the slot, so everything a
//! script touches for one limit key lives on one node, and the prefix lets
//! several deployments share one Redis. The algorithm suffix keeps a limit
//! whose algorithm changed on reload from reading the old value's type.
//!
//! Every gateway must name a key exactly alike, so the value is written out,
//! not hashed with the per-process random seed local limits use. Bytes that
//! could end the hash tag early (`{`, `}`), the escape byte itself and
//! anything not printable are percent-encoded; a value longer than
//! [`MAX_RAW`] bytes is replaced by its SHA-256, so a client cannot make
//! Redis keys of arbitrary size. A missing value (`on_missing: admit`) is
//! `-`, which no real value can produce: real values start with `=`.

use std::fmt::Write;

use sha2::{Digest, Sha256};

/// Longest key value kept verbatim.
pub const MAX_RAW: usize = 128;

/// The Redis key of one limit key, for the algorithm tagged `alg`.
pub fn redis_key(prefix: &str, limit: &str, value: Option<&[u8]>, alg: &str) -> String {
    let mut out =
        String::with_capacity(prefix.len() + limit.len() + 16 + value.map_or(1, <[u8]>::len));
    out.push_str(prefix);
    out.push_str(":{");
    escape_into(&mut out, limit.as_bytes());
    out.push(':');
    match value {
        None => out.push('-'),
        Some(v) if v.len() > MAX_RAW => {
            out.push('#');
            for b in Sha256::digest(v) {
                let _ = write!(out, "{b:02x}");
            }
        }
        Some(v) => {
            out.push('=');
            escape_into(&mut out, v);
        }
    }
    out.push_str("}:");
    out.push_str(alg);
    out
}

fn escape_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_graphic() && !matches!(b, b'{' | b'}' | b'%') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The key the store's probes write: a token bucket no limit can name (a
/// limit's keys always end in `:ALG` after the tag).
pub fn probe_key(prefix: &str) -> String {
    format!("{prefix}:{{probe}}")
}

/// The sorted set of the gateways sharing this prefix (member → last
/// heartbeat, ms): one key, so one slot of a cluster.
pub fn members_key(prefix: &str) -> String {
    format!("{prefix}:{{members}}")
}

/// The part of a key Redis Cluster hashes (the first `{...}` with something
/// inside), as the cluster specification defines it.
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_readable_and_tagged_by_limit_and_value() {
        let k = redis_key("sluice", "per_ip", Some(b"10.0.0.1"), "tb");
        assert_eq!(k, "sluice:{per_ip:=10.0.0.1}:tb");
        assert_eq!(hash_tag(&k), "per_ip:=10.0.0.1");
        assert_eq!(redis_key("p", "l", None, "cc"), "p:{l:-}:cc");
        assert_eq!(hash_tag(&probe_key("p")), "probe");
        assert_eq!(hash_tag(&members_key("p")), "members");
        assert_ne!(probe_key("p"), redis_key("p", "probe", None, "tb"));
        assert_ne!(
            redis_key("p", "l", None, "cc"),
            redis_key("p", "l", Some(b"-"), "cc"),
            "a missing value is not the value `-`"
        );
    }

    #[test]
    fn braces_and_controls_cannot_break_the_tag() {
        let k = redis_key("s", "a}b", Some(b"x}{y %\n\xff"), "sw");
        assert_eq!(k, "s:{a%7Db:=x%7D%7By%20%25%0A%FF}:sw");
        assert_eq!(hash_tag(&k), "a%7Db:=x%7D%7By%20%25%0A%FF");
        // Distinct values stay distinct after escaping.
        assert_ne!(
            redis_key("s", "l", Some(b"%7D"), "tb"),
            redis_key("s", "l", Some(b"}"), "tb")
        );
    }

    #[test]
    fn long_values_are_hashed_to_a_bounded_key() {
        let long = vec![b'a'; 10_000];
        let k = redis_key("s", "l", Some(&long), "tb");
        assert!(k.len() < 100, "{k}");
        assert!(k.starts_with("s:{l:#"));
        let mut other = long.clone();
        other[9_999] = b'b';
        assert_ne!(k, redis_key("s", "l", Some(&other), "tb"));
        let exactly = vec![b'a'; MAX_RAW];
        assert!(redis_key("s", "l", Some(&exactly), "tb").contains(&"a".repeat(MAX_RAW)));
    }
}
