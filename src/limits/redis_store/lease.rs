//! Concurrency leases held by this gateway: released when the request ends,
//! renewed while it lasts.
//!
//! A lease is a member of the limit key's sorted set, scored by its expiry.
//! The TTL is what protects the limit from a gateway that dies holding
//! leases; a live gateway must not lose its own leases to it on a request
//! that runs longer than the TTL, so it renews every lease a third of the way
//! through its TTL. The guard's `Drop` (whatever way the request ended) queues
//! the release; nothing waits for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Call, RedisStore, Which};

struct HeldLease {
    key: String,
    member: String,
    max: String,
    ttl_us: String,
    ttl: Duration,
    conn: usize,
    renewed: Instant,
}

/// The leases this process holds.
#[derive(Default)]
pub struct Held {
    leases: Mutex<HashMap<u64, HeldLease>>,
    next: AtomicU64,
}

impl Held {
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, HeldLease>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How often [`renewals`](Self::renewals) is asked.
    pub fn renew_every(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// The renewals due now.
    pub fn renewals(&self) -> Vec<Call> {
        let now = Instant::now();
        let mut due = Vec::new();
        for lease in self.lock().values_mut() {
            if now.duration_since(lease.renewed) >= lease.ttl / 3 {
                lease.renewed = now;
                due.push(Call {
                    which: Which::Concurrency,
                    key: lease.key.clone(),
                    args: vec![
                        lease.max.clone(),
                        lease.ttl_us.clone(),
                        lease.member.clone(),
                        "2".into(),
                    ],
                    conn: Some(lease.conn),
                });
            }
        }
        due
    }
}

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
        let id = store.leases.next.fetch_add(1, Ordering::Relaxed);
        store.leases.lock().insert(
            id,
            HeldLease {
                key,
                member,
                max: max.to_string(),
                ttl_us: ttl.as_micros().to_string(),
                ttl,
                conn,
                renewed: Instant::now(),
            },
        );
        Lease {
            store: store.clone(),
            id,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(lease) = self.store.leases.lock().remove(&self.id) else {
            return;
        };
        self.store.background(release_call(
            lease.key,
            lease.member,
            lease.max,
            lease.ttl_us,
            lease.conn,
        ));
    }
}

/// The call that removes a lease (idempotent: removing twice is harmless).
pub fn release_call(key: String, member: String, max: String, ttl_us: String, conn: usize) -> Call {
    Call {
        which: Which::Concurrency,
        key,
        args: vec![max, ttl_us, member, "0".into()],
        conn: Some(conn),
    }
}
