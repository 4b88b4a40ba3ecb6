//! Request ids: kept from the client's `X-Request-Id` when it looks like an id,
//! otherwise generated.
//!
//! A generated id is a per-process random prefix and a counter: unique across
//! restarts (the prefix) and within a process (the counter), and far cheaper
//! than a random UUID per request. The id is held as the header value it is
//! sent as, so a kept id is never copied and a made one is written once,
//! without going through `format!`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::{HeaderName, HeaderValue};

/// The header's name for lookups, built once instead of parsed per request.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

const HEX: &[u8; 16] = b"0123456789abcdef";

/// An id we accept from a client: short, printable, no separators that could
/// forge log fields.
fn acceptable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

/// One request's id.
#[derive(Clone, Debug)]
pub struct RequestId {
    value: HeaderValue,
    from_client: bool,
}

impl RequestId {
    /// The id of a request that has not been read yet.
    pub fn none() -> RequestId {
        RequestId {
            value: HeaderValue::from_static(""),
            from_client: false,
        }
    }

    /// The client's id if it is acceptable, else a new one.
    pub fn keep_or_generate(incoming: Option<&HeaderValue>) -> RequestId {
        match incoming {
            Some(v) if acceptable(v.as_bytes()) => RequestId {
                value: v.clone(),
                from_client: true,
            },
            _ => RequestId {
                value: generate(),
                from_client: false,
            },
        }
    }

    pub fn as_str(&self) -> &str {
        // Both kinds are checked ASCII, so this never falls back.
        self.value.to_str().unwrap_or("")
    }

    /// The value to send as `X-Request-Id`.
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }

    /// True when the client sent this id, so the request already carries it.
    pub fn from_client(&self) -> bool {
        self.from_client
    }
}

/// `<16 hex digits of process prefix>-<counter in hex>`.
fn generate() -> HeaderValue {
    let prefix = PREFIX.get_or_init(|| {
        let r = rand::random::<u64>();
        std::array::from_fn(|i| HEX[((r >> (60 - 4 * i)) & 0xf) as usize])
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 33];
    buf[..16].copy_from_slice(prefix);
    buf[16] = b'-';
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in 0..digits {
        buf[17 + i] = HEX[((n >> (4 * (digits - 1 - i))) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf[..17 + digits]).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(v: &[u8]) -> RequestId {
        RequestId::keep_or_generate(Some(&HeaderValue::from_bytes(v).unwrap()))
    }

    #[test]
    fn keeps_good_ids_and_replaces_bad_ones() {
        let kept = keep(b"abc-123");
        assert_eq!(kept.as_str(), "abc-123");
        assert!(kept.from_client());
        let made = keep(b"evil\" id");
        assert_ne!(made.as_str(), "evil\" id");
        assert!(!made.from_client());
        assert_ne!(
            RequestId::keep_or_generate(None).as_str(),
            RequestId::keep_or_generate(None).as_str()
        );
        assert_ne!(keep(&[b'a'; 200]).as_str(), "a".repeat(200));
    }

    #[test]
    fn made_ids_are_prefix_dash_hex_counter() {
        let a = RequestId::keep_or_generate(None);
        let b = RequestId::keep_or_generate(None);
        let (pa, na) = a.as_str().split_once('-').unwrap();
        let (pb, nb) = b.as_str().split_once('-').unwrap();
        assert_eq!(pa.len(), 16);
        assert_eq!(pa, pb, "one prefix per process");
        assert!(pa.bytes().all(|c| c.is_ascii_hexdigit()));
        let (na, nb) = (
            u64::from_str_radix(na, 16).unwrap(),
            u64::from_str_radix(nb, 16).unwrap(),
        );
        assert!(nb > na, "the counter goes up: {na} then {nb}");
        assert!(
            acceptable(a.as_str().as_bytes()),
            "our own ids pass our own check"
        );
    }
}
