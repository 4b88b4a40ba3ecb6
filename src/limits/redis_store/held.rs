//! The concurrency leases this gateway holds, and the calls that renew and
//! release them.
//!
//! A lease is a member of the limit key's sorted set, scored by its expiry.
//! The TTL is what protects the limit from a gateway that dies holding
//! leases; a live gateway must not lose its own leases to it on a request
//! that runs longer than the TTL, so it renews every lease a third of the way
//! through its TTL.
//!
//! The table knows nothing of the store that owns it: it turns leases into
//! [`Call`]s, and the store's thread sends the renewals while the
//! [`Lease`](super::lease::Lease) guard sends the release. So the store can
//! hold it without the table depending back on the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::call::{Call, Which};

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

    /// Records a lease Redis granted on connection `conn`, so that it is
    /// renewed until [`release`](Self::release)d; returns its id.
    pub fn hold(&self, key: String, member: String, max: u64, ttl: Duration, conn: usize) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
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
        id
    }

    /// Forgets lease `id` and gives the call that removes it from Redis;
    /// `None` if it was released already.
    pub fn release(&self, id: u64) -> Option<Call> {
        let lease = self.lock().remove(&id)?;
        Some(release_call(
            lease.key,
            lease.member,
            lease.max,
            lease.ttl_us,
            lease.conn,
        ))
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

/// The call that removes a lease (idempotent: removing twice is harmless).
pub fn release_call(key: String, member: String, max: String, ttl_us: String, conn: usize) -> Call {
    Call {
        which: Which::Concurrency,
        key,
        args: vec![max, ttl_us, member, "0".into()],
        conn: Some(conn),
    }
}
