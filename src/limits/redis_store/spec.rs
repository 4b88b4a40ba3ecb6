//! The validated `redis:` section, and what the store shows of it.
//!
//! The config builds these; nothing here opens a connection. Everything else
//! in the store reads it, so it sits at the bottom with no import of its own.

use std::time::Duration;

/// The validated `redis:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisSpec {
    pub nodes: RedisNodes,
    /// The longest a request waits for the store.
    pub decision_timeout: Duration,
    /// Gateways sharing the limits, assumed until the first membership
    /// heartbeat answers: a local fallback enforces `1/N` of a limit, `N`
    /// the live members once seen.
    pub instances: u32,
    /// Multiplexed connections to a single node.
    pub connections: usize,
    /// First part of every key, so deployments can share one Redis.
    pub prefix: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RedisNodes {
    Single(String),
    Cluster(Vec<String>),
}

pub const DEFAULT_DECISION_TIMEOUT: Duration = Duration::from_millis(5);
pub const DEFAULT_CONNECTIONS: usize = 2;
pub const DEFAULT_PREFIX: &str = "sluice";

/// `redis://user:secret@host` → `redis://user:***@host`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme_end + 3], &rest[at..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("redis://:hunter2@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://app:pw@h:1"), "redis://app:***@h:1");
    }
}
