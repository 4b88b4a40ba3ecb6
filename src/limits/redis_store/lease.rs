//! One concurrency lease, held by a request until it ends.
//!
//! The guard's `Drop` (whatever way the request ended) takes the lease out of
//! the store's [table](super::held) and queues its release on the store's
//! thread; nothing waits for it. The guard keeps the store alive, so a lease
//! taken before a reload is still released through the store that granted it.

use std::sync::Arc;
use std::time::Duration;

use super::store::RedisStore;

/// One lease of a shared concurrency limit, held until dropped.
pub struct Lease {
    store: Arc<RedisStore>,
    id: u64,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("id", &self.id).finish()
    }
}

impl Lease {
    /// Records a lease Redis granted, so that it is renewed and released.
    pub fn hold(
        store: &Arc<RedisStore>,
        key: String,
        member: String,
        max: u64,
        ttl: Duration,
        conn: usize,
    ) -> Lease {
        let id = store.leases().hold(key, member, max, ttl, conn);
        Lease {
            store: store.clone(),
            id,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(release) = self.store.leases().release(self.id) else {
            return;
        };
        self.store.background(release);
    }
}
