//! Which gateways share the store: each announces itself in it, so that each
//! knows how many they are when it must enforce its share alone.
//!
//! # Why
//! While Redis cannot answer, `on_store_error: local` enforces `1/N` of each
//! shared limit in every gateway, so that together they stay near the limit.
//! A configured `N` is a number an operator must keep true by hand through
//! every scale-out, deploy and crash; a wrong one over- or under-admits by
//! the ratio. So every gateway writes a heartbeat into the store, and `N` is
//! the count of live heartbeats it saw last. `instances:` is only what to
//! assume before the first heartbeat answered.
//!
//! # How
//! One sorted set under the store's prefix ([`members_key`]), member = this
//! process's id, score = the heartbeat's time on Redis's clock (ms). Every
//! [`HEARTBEAT_EVERY`] one script adds this gateway, drops members older than
//! [`MEMBER_TTL`] and returns those left, all atomically on one key. One key
//! (and so one slot of a cluster, whatever the cluster) rather than a key per
//! member with a TTL: counting those would need a `SCAN` of every node;
//! per-field expiry in a hash needs Redis 7.4. The TTL is four periods, so a
//! member survives a missed heartbeat, and one delayed by the whole of its
//! call's timeout, with room to spare.
//!
//! The count used is the largest seen over the last [`COUNT_MEMORY`]: when
//! the set is lost (Redis restarted, a failover to a replica that never had
//! it) the heartbeats rebuild it within a period, and the gateway that
//! beats first must not believe it is alone meanwhile. A heartbeat that
//! fails changes nothing: while Redis is down the last count is the one
//! that holds.
//!
//! It runs on the store's own thread and its own connections, never on a
//! request's path, so a slow heartbeat holds up no decision.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use redis::{Script, Value};

use super::keys::members_key;
use super::link::Link;

/// How often a gateway announces itself.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long a heartbeat keeps its gateway a member.
pub const MEMBER_TTL: Duration = Duration::from_secs(4);
/// How far back the largest count seen is kept.
const COUNT_MEMORY: Duration = Duration::from_secs(2);

/// `KEYS[1]` sorted set of members scored by their last heartbeat (ms, on
/// Redis's clock). `ARGV`: this member, TTL ms. Replies the live members.
pub const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', now - ttl))
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"#;

/// This process's member id: host name, pid and a random part (a pid is
/// reused after a restart; a host name may be shared by containers).
pub fn process_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        let host = if host.is_empty() { "host".into() } else { host };
        format!(
            "{host}:{}:{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )
    })
}

#[derive(Default)]
struct Seen {
    /// Counts seen, newest last, within [`COUNT_MEMORY`].
    counts: VecDeque<(Instant, u32)>,
    /// The members the last heartbeat returned.
    list: Vec<String>,
}

pub struct Members {
    key: String,
    script: Script,
    ttl_ms: String,
    /// The count to divide by; 0 until a heartbeat has answered.
    live: AtomicU32,
    seen: Mutex<Seen>,
    beating: AtomicBool,
}

impl Members {
    pub fn new(prefix: &str) -> Members {
        Members {
            key: members_key(prefix),
            script: Script::new(HEARTBEAT),
            ttl_ms: MEMBER_TTL.as_millis().to_string(),
            live: AtomicU32::new(0),
            seen: Mutex::new(Seen::default()),
            beating: AtomicBool::new(false),
        }
    }

    /// The live count last seen; `None` before the first heartbeat answered.
    pub fn live(&self) -> Option<u32> {
        match self.live.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// The members the last heartbeat saw, sorted.
    pub fn list(&self) -> Vec<String> {
        self.lock().list.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Announces this gateway and reads who else is there. One at a time: a
    /// call while one is under way returns at once.
    pub async fn beat(&self, link: &Link) {
        if self.beating.swap(true, Ordering::AcqRel) {
            return;
        }
        let args = [process_id(), self.ttl_ms.as_str()];
        match link.background_script(&self.script, &self.key, &args).await {
            Some(Ok(reply)) => match member_list(&reply) {
                Some(list) => self.saw(list, Instant::now()),
                None => log::warn!("redis store: unexpected heartbeat reply: {reply:?}"),
            },
            Some(Err(e)) => log::debug!("redis store: heartbeat failed: {e}"),
            None => {}
        }
        self.beating.store(false, Ordering::Release);
    }

    fn saw(&self, mut list: Vec<String>, now: Instant) {
        list.sort();
        let n = u32::try_from(list.len()).unwrap_or(u32::MAX).max(1);
        let mut seen = self.lock();
        while seen
            .counts
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > COUNT_MEMORY)
        {
            seen.counts.pop_front();
        }
        seen.counts.push_back((now, n));
        let largest = seen.counts.iter().map(|(_, n)| *n).max().unwrap_or(n);
        seen.list = list;
        let before = self.live.swap(largest, Ordering::Relaxed);
        if before != largest {
            log::info!(
                "redis store: {largest} gateway(s) share the store; a local fallback enforces \
                 1/{largest} of each shared limit"
            );
        }
    }
}

fn member_list(reply: &Value) -> Option<Vec<String>> {
    let Value::Array(items) = reply else {
        return None;
    };
    items
        .iter()
        .map(|v| match v {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("g{i}")).collect()
    }

    #[test]
    fn one_missed_heartbeat_does_not_drop_a_member() {
        // A member last seen just before a missed beat, whose next beat took
        // the whole of its call's timeout, is still within the TTL.
        assert!(HEARTBEAT_EVERY * 2 + Duration::from_secs(1) < MEMBER_TTL);
    }

    #[test]
    fn the_count_is_the_largest_seen_lately() {
        let m = Members::new("p");
        assert_eq!(
            m.live(),
            None,
            "no heartbeat yet: the configured count holds"
        );
        let t0 = Instant::now();
        m.saw(names(3), t0);
        assert_eq!(m.live(), Some(3));
        // The set was lost and is being rebuilt: a lone first beat is not
        // taken as the truth.
        m.saw(names(1), t0 + Duration::from_secs(1));
        assert_eq!(m.live(), Some(3));
        assert_eq!(m.list(), names(1), "the list is what the last beat saw");
        // A member that left is forgotten once the older counts are.
        m.saw(names(2), t0 + Duration::from_secs(3));
        assert_eq!(m.live(), Some(2));
    }

    #[test]
    fn replies_read_as_member_lists() {
        let reply = Value::Array(vec![
            Value::BulkString(b"b".to_vec()),
            Value::BulkString(b"a".to_vec()),
        ]);
        assert_eq!(member_list(&reply), Some(vec!["b".into(), "a".into()]));
        assert_eq!(member_list(&Value::Nil), None);
        assert_eq!(member_list(&Value::Array(vec![Value::Int(1)])), None);
    }

    #[test]
    fn the_process_id_names_this_process() {
        let id = process_id();
        assert!(id.contains(&format!(":{}:", std::process::id())), "{id}");
        assert_eq!(id, process_id(), "one id per process");
    }
}
