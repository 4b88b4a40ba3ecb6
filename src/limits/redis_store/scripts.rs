//! The Lua scripts that decide shared limits inside Redis, and the decoding
//! of their replies into the same [`KeyStatus`] the local limits give.
//!
//! # One script call, one decision
//! Each decision is one `EVALSHA` on one key, so it is atomic in Redis and
//! costs one round trip. A script reads the time with `TIME`: the Redis node
//! holding the key is the only clock a shared limit uses, so the gateways'
//! clocks can drift apart without moving any limit. Times are microseconds
//! (Lua numbers are doubles: microseconds since 1970 fit their 53 bits, nano-
//! seconds would not); numbers written back are formatted with `%.0f`/`%.3f`,
//! because Lua's default conversion keeps only 14 significant digits.
//!
//! The replies carry the raw state (a debt, two window counts) rather than a
//! finished answer, so that `RateLimit`'s `r` and `t` are computed by the very
//! functions the local limits use ([`Gcra::status`], [`WindowCounts::status`]):
//! a response says the same thing whichever store decided it.
//!
//! # The three algorithms
//! - token bucket: GCRA on one string key holding the TAT. A refusal does not
//!   move it, so a client hammering a closed bucket does not extend its own
//!   wait, and another gateway's admissions can only push the instant of the
//!   next token later. A give-back (a later limit of the request refused it)
//!   is the one thing that brings that instant closer, and it may come from
//!   any gateway. So a refusal records the instant it promised (the *floor*,
//!   written after the TAT in the same string, once per TAT, and dropped once
//!   past), and a give-back never moves the next token before it. That keeps
//!   every refusal exact until its `Retry-After`, which the local deny cache
//!   relies on (see `limit.rs`). The price: a token given back while a client
//!   was told to wait is usable only when that wait is over, which costs at
//!   most one token's worth of time in that race.
//! - sliding window: one hash `{w, c, p}` (current window index, its count,
//!   the previous window's count), rolled forward by the script when the
//!   window changes; the proportional estimate `p·(1-f) + c` is computed in
//!   the script and only admitted requests are counted.
//! - A token bucket and a window can also be told to count one request
//!   whatever they hold (mode `2`): a request a gateway admitted on its own
//!   while the decision it sent was late, which Redis then refused (see
//!   [`RemoteLimit`](super::limit::RemoteLimit)'s reconciling).
//! - concurrency: a sorted set of leases scored by their expiry. Expired
//!   leases are dropped before counting, so a gateway that died holding leases
//!   gives them up after `lease_ttl`; a live gateway renews its leases.

use redis::Value;

use crate::limits::limit::KeyStatus;
use crate::limits::sliding_window::WindowCounts;
use crate::limits::token_bucket::Gcra;

/// `KEYS[1]` the TAT (µs), followed by the latest instant a refusal promised
/// the next token at while that instant is to come (`"TAT FLOOR"`). `ARGV`:
/// emission interval µs, tolerance µs, mode (`1` acquire, `0` give one token
/// back, `2` spend one token whatever the bucket holds). Acquire replies
/// `{1, debt µs after}` or `{0, µs until admitted}`; the others `0`.
/// A give-back never moves the next token (TAT − τ) before the floor: see the
/// module doc.
pub const TOKEN_BUCKET: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local v = redis.call('GET', KEYS[1])
local tat, floor = 0, 0
if v then
  local a, b = string.match(v, '^(%S+) (%S+)$')
  if a then
    tat, floor = tonumber(a) or 0, tonumber(b) or 0
  else
    tat = tonumber(v) or 0
  end
end
if tat < now then tat = now end
if floor <= now then floor = 0 end
local function put(new)
  local last = math.max(new, floor)
  if last <= now then
    redis.call('DEL', KEYS[1])
    return
  end
  local value = string.format('%.3f', new)
  if floor > 0 then value = value .. ' ' .. string.format('%.0f', floor) end
  redis.call('SET', KEYS[1], value, 'PX', math.ceil((last - now) / 1000) + 1)
end
if ARGV[3] == '2' then
  put(tat + T)
  return 0
end
if ARGV[3] == '0' then
  local back = math.max(tat - T, floor + tau)
  if back < tat then put(back) end
  return 0
end
local debt = tat - now
if debt > tau then
  local wait = math.ceil(debt - tau)
  if now + wait > floor then
    floor = now + wait
    put(tat)
  end
  return {0, wait}
end
local new = tat + T
put(new)
return {1, math.ceil(new - now)}
"#;

/// `KEYS[1]` hash `{w, c, p}`. `ARGV`: window µs, limit, mode (`1` acquire,
/// `0` take back one request counted in window `ARGV[4]`, `2` count one
/// request whatever the estimate). Acquire replies `{admitted, prev, curr,
/// fraction in millionths, window index}`, with `curr` including this request
/// when admitted; the others `0`.
pub const SLIDING_WINDOW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local win = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local idx = math.floor(now / win)
local v = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local w = tonumber(v[1])
local c = tonumber(v[2]) or 0
local p = tonumber(v[3]) or 0
if ARGV[3] == '0' then
  local counted = tonumber(ARGV[4])
  if w == counted and c > 0 then
    redis.call('HINCRBY', KEYS[1], 'c', -1)
  elseif w == counted + 1 and p > 0 then
    redis.call('HINCRBY', KEYS[1], 'p', -1)
  end
  return 0
end
if w == nil then
  c = 0; p = 0
elseif w == idx - 1 then
  p = c; c = 0
elseif w < idx - 1 then
  p = 0; c = 0
elseif w > idx then
  -- A failover to a node whose clock is a little behind: stay in the newer window.
  idx = w
end
local f = (now - idx * win) / win
if f < 0 then f = 0 end
if f >= 1 then f = 0.999999 end
local ppm = math.floor(f * 1000000)
local spend = ARGV[3] == '2'
if not spend and p * (1 - f) + c + 1 > limit then
  return {0, p, c, ppm, idx}
end
c = c + 1
redis.call('HSET', KEYS[1], 'w', string.format('%.0f', idx), 'c', c, 'p', p)
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * win / 1000) + 1000)
if spend then return 0 end
return {1, p, c, ppm, idx}
"#;

/// `KEYS[1]` sorted set of leases scored by expiry (µs). `ARGV`: max, lease
/// TTL µs, lease id, mode (`1` acquire, `0` release, `2` renew). Acquire
/// replies `{admitted, leases held after}`.
pub const CONCURRENCY: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
if ARGV[4] == '0' then
  redis.call('ZREM', KEYS[1], ARGV[3])
  return 0
end
local expiry = string.format('%.0f', now + ttl)
local keep = math.ceil(ttl / 1000) + 1000
if ARGV[4] == '2' then
  redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], keep)
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
local n = redis.call('ZCARD', KEYS[1])
if n >= max then
  return {0, n}
end
redis.call('ZADD', KEYS[1], expiry, ARGV[3])
redis.call('PEXPIRE', KEYS[1], keep)
return {1, n + 1}
"#;

/// A reply the scripts cannot have sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadReply(pub String);

fn ints<const N: usize>(v: &Value) -> Result<[i64; N], BadReply> {
    let Value::Array(items) = v else {
        return Err(BadReply(format!("expected an array, got {v:?}")));
    };
    if items.len() != N {
        return Err(BadReply(format!(
            "expected {N} values, got {}",
            items.len()
        )));
    }
    let mut out = [0i64; N];
    for (o, item) in out.iter_mut().zip(items) {
        *o = match item {
            Value::Int(i) => *i,
            other => return Err(BadReply(format!("expected an integer, got {other:?}"))),
        };
    }
    Ok(out)
}

fn nonneg(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The token bucket's reply, read with the same GCRA the local bucket uses.
pub fn token_bucket_status(gcra: &Gcra, reply: &Value) -> Result<KeyStatus, BadReply> {
    let [admitted, micros] = ints::<2>(reply)?;
    let nanos = nonneg(micros).saturating_mul(1_000);
    Ok(if admitted == 1 {
        // `status` takes a TAT and a now; the debt is the TAT seen from now = 0.
        let (remaining, wait_ns) = gcra.status(nanos, 0);
        KeyStatus {
            admitted: true,
            remaining,
            wait_ns: Some(wait_ns),
        }
    } else {
        KeyStatus::rejected(nanos.max(1))
    })
}

/// The sliding window's reply and the window index the request was counted in.
pub fn sliding_window_status(
    limit: u64,
    window_ns: u64,
    reply: &Value,
) -> Result<(KeyStatus, i64), BadReply> {
    let [admitted, prev, curr, ppm, idx] = ints::<5>(reply)?;
    let counts = WindowCounts {
        prev: nonneg(prev),
        curr: nonneg(curr),
        fraction: (nonneg(ppm) as f64 / 1e6).clamp(0.0, 1.0),
    };
    let (remaining, wait_ns) = counts.status(limit, window_ns);
    let status = KeyStatus {
        admitted: admitted == 1,
        remaining,
        wait_ns,
    };
    Ok((status, idx))
}

/// Whether an acquire's reply admitted, and (a window's) the index of the
/// window it was counted in.
pub fn acquire_outcome(reply: &Value) -> Result<(bool, Option<i64>), BadReply> {
    let Value::Array(items) = reply else {
        return Err(BadReply(format!("expected an array, got {reply:?}")));
    };
    let int = |i: usize| match items.get(i) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    let admitted = int(0).ok_or_else(|| BadReply(format!("no verdict in {reply:?}")))?;
    Ok((admitted == 1, int(4).filter(|_| items.len() == 5)))
}

/// The concurrency limit's reply.
pub fn concurrency_status(max: u64, reply: &Value) -> Result<KeyStatus, BadReply> {
    let [admitted, held] = ints::<2>(reply)?;
    Ok(KeyStatus {
        admitted: admitted == 1,
        remaining: if admitted == 1 {
            max.saturating_sub(nonneg(held))
        } else {
            0
        },
        wait_ns: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(v: &[i64]) -> Value {
        Value::Array(v.iter().map(|i| Value::Int(*i)).collect())
    }

    #[test]
    fn token_bucket_replies_read_like_the_local_bucket() {
        // 10 tokens at 10/s: T = 100 ms, τ = 900 ms.
        let g = Gcra::new(10.0, 10.0);
        // First request: debt after = T.
        let s = token_bucket_status(&g, &arr(&[1, 100_000])).unwrap();
        assert_eq!((s.admitted, s.remaining), (true, 9));
        let local = g.status(100_000_000, 0);
        assert_eq!((s.remaining, s.wait_ns), (local.0, Some(local.1)));
        // Refused, 250 ms to wait.
        let r = token_bucket_status(&g, &arr(&[0, 250_000])).unwrap();
        assert_eq!(r, KeyStatus::rejected(250_000_000));
    }

    #[test]
    fn sliding_window_replies_use_the_proportional_estimate() {
        // limit 10 per 1 s; 10 in the previous window, half the current gone,
        // 4 counted now (this one included): 10·0.5 + 4 = 9, one left.
        let (s, idx) =
            sliding_window_status(10, 1_000_000_000, &arr(&[1, 10, 4, 500_000, 77])).unwrap();
        assert!(s.admitted);
        assert_eq!(s.remaining, 1);
        assert_eq!(idx, 77);
        let (r, _) =
            sliding_window_status(10, 1_000_000_000, &arr(&[0, 10, 5, 500_000, 77])).unwrap();
        assert!(!r.admitted);
        assert_eq!(r.remaining, 0);
        assert!(r.wait_ns.is_some_and(|w| w > 0));
    }

    #[test]
    fn concurrency_replies_count_the_leases() {
        assert_eq!(
            concurrency_status(5, &arr(&[1, 2])).unwrap(),
            KeyStatus {
                admitted: true,
                remaining: 3,
                wait_ns: None
            }
        );
        assert!(!concurrency_status(5, &arr(&[0, 5])).unwrap().admitted);
    }

    #[test]
    fn a_late_reply_says_whether_it_admitted_and_where() {
        assert_eq!(acquire_outcome(&arr(&[1, 100])), Ok((true, None)));
        assert_eq!(acquire_outcome(&arr(&[0, 100])), Ok((false, None)));
        assert_eq!(
            acquire_outcome(&arr(&[1, 10, 4, 500_000, 77])),
            Ok((true, Some(77)))
        );
        assert!(acquire_outcome(&Value::Nil).is_err());
        assert!(acquire_outcome(&Value::Array(vec![Value::Nil])).is_err());
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let g = Gcra::new(1.0, 1.0);
        assert!(token_bucket_status(&g, &Value::Nil).is_err());
        assert!(token_bucket_status(&g, &arr(&[1])).is_err());
        assert!(sliding_window_status(1, 1, &arr(&[1, 2, 3])).is_err());
        assert!(concurrency_status(1, &Value::Array(vec![Value::Nil, Value::Nil])).is_err());
    }
}
