//! Places taken at accept, waiting for their connection's task to claim
//! them.
//!
//! Pingora's accept loop asks the connection filter about a new connection
//! knowing only the peer's address, and spawns the connection's task after
//! it: nothing can be handed from the one to the other but through a table
//! keyed by that address. A peer address is unique among the connections to
//! one listener; the same `ip:port` connected to two listeners at once holds
//! two places of the same IP, which are interchangeable, so an address keys
//! a list and a claim takes its oldest place.
//!
//! A place that is never claimed (Pingora drops a connection whose socket
//! options fail after the filter accepted it, and no task ever runs) is
//! given back once it has waited longer than `keep`; a task whose place
//! went that way takes a new one, as a connection without an address does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::counts::Permit;

/// How often parked places are checked for staleness.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

struct Parked {
    at: Instant,
    permit: Permit,
}

struct Table {
    parked: HashMap<SocketAddr, SmallVec<[Parked; 1]>>,
    next_sweep: Option<Instant>,
}

pub struct Arrivals {
    table: Mutex<Table>,
}

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals {
            table: Mutex::new(Table {
                parked: HashMap::new(),
                next_sweep: None,
            }),
        }
    }
}

impl Arrivals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks the place of a connection from `peer` accepted at `now`; gives
    /// back the places that have waited longer than `keep`.
    pub fn park(&self, peer: SocketAddr, permit: Permit, now: Instant, keep: Duration) {
        let mut stale = Vec::new();
        {
            let mut t = self.lock();
            if t.next_sweep.is_none_or(|at| now >= at) {
                t.next_sweep = Some(now + SWEEP_EVERY);
                t.parked.retain(|_, list| {
                    while list
                        .first()
                        .is_some_and(|p| now.duration_since(p.at) > keep)
                    {
                        stale.push(list.remove(0));
                    }
                    !list.is_empty()
                });
            }
            t.parked
                .entry(peer)
                .or_default()
                .push(Parked { at: now, permit });
        }
        // Given back outside the lock: a permit's drop takes the counts' own.
        drop(stale);
    }

    /// The oldest place parked for `peer`, and when it was taken.
    pub fn claim(&self, peer: SocketAddr) -> Option<(Permit, Instant)> {
        let mut t = self.lock();
        let list = t.parked.get_mut(&peer)?;
        let p = list.remove(0);
        if list.is_empty() {
            t.parked.remove(&peer);
        }
        Some((p.permit, p.at))
    }

    /// Places parked now.
    pub fn parked(&self) -> usize {
        self.lock().parked.values().map(SmallVec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;

    use super::super::counts::ConnCounts;
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    fn place(c: &Arc<ConnCounts>) -> Permit {
        c.admit(Some(IpAddr::from([10, 0, 0, 1])), 100, Some(10))
            .unwrap()
    }

    const KEEP: Duration = Duration::from_secs(10);

    #[test]
    fn a_claim_takes_the_place_parked_for_its_address_once() {
        let c = Arc::new(ConnCounts::default());
        let a = Arrivals::default();
        let t0 = Instant::now();
        a.park(peer(1), place(&c), t0, KEEP);
        a.park(peer(2), place(&c), t0, KEEP);
        assert!(a.claim(peer(3)).is_none());
        let (permit, at) = a.claim(peer(1)).unwrap();
        assert_eq!(at, t0);
        assert!(a.claim(peer(1)).is_none(), "claimed once");
        // A claimed place is held by its claimant, not the table.
        assert_eq!((a.parked(), c.open()), (1, 2));
        drop(permit);
        assert_eq!(c.open(), 1);
    }

    #[test]
    fn one_address_on_two_listeners_holds_two_places() {
        let c = Arc::new(ConnCounts::default());
        let a = Arrivals::default();
        let t0 = Instant::now();
        a.park(peer(1), place(&c), t0, KEEP);
        a.park(peer(1), place(&c), t0 + Duration::from_millis(1), KEEP);
        assert_eq!(a.claim(peer(1)).map(|(_, at)| at), Some(t0), "oldest first");
        assert!(a.claim(peer(1)).is_some());
        assert!(a.claim(peer(1)).is_none());
        assert_eq!(c.open(), 0);
    }

    #[test]
    fn a_place_never_claimed_is_given_back_after_keep() {
        let c = Arc::new(ConnCounts::default());
        let a = Arrivals::default();
        let t0 = Instant::now();
        a.park(peer(1), place(&c), t0, KEEP);
        // Within `keep` nothing is given back, even at a sweep.
        a.park(peer(2), place(&c), t0 + KEEP, KEEP);
        assert_eq!((a.parked(), c.open()), (2, 2));
        // Sweeps are a second apart; past `keep` the first place goes.
        a.park(peer(3), place(&c), t0 + KEEP + SWEEP_EVERY, KEEP);
        assert_eq!((a.parked(), c.open()), (2, 2));
        assert!(a.claim(peer(1)).is_none());
        assert!(a.claim(peer(2)).is_some());
        assert!(a.table.lock().unwrap().parked.len() == 1);
    }
}
