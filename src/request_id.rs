//! Request ids: kept from the client's `X-Request-Id` when it looks like an id,
//! otherwise generated.
//!
//! A generated id is a per-process random prefix and a counter: unique across
//! restarts (the prefix) and within a process (the counter), and far cheaper
//! than a random UUID per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

static PREFIX: OnceLock<String> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// An id we accept from a client: short, printable, no separators that could
/// forge log fields.
fn acceptable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

pub fn keep_or_generate(incoming: Option<&[u8]>) -> Arc<str> {
    if let Some(id) = incoming.filter(|id| acceptable(id)) {
        if let Ok(s) = std::str::from_utf8(id) {
            return Arc::from(s);
        }
    }
    let prefix = PREFIX.get_or_init(|| format!("{:016x}", rand::random::<u64>()));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Arc::from(format!("{prefix}-{n:x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_good_ids_and_replaces_bad_ones() {
        assert_eq!(&*keep_or_generate(Some(b"abc-123")), "abc-123");
        let made = keep_or_generate(Some(b"evil\" id"));
        assert_ne!(&*made, "evil\" id");
        assert_ne!(keep_or_generate(None), keep_or_generate(None));
        assert_ne!(&*keep_or_generate(Some(&[b'a'; 200])), "a".repeat(200));
    }
}
