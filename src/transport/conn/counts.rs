//! Open client connections, counted in total and per client IP, so that
//! `max_connections` and `max_connections_per_ip` can refuse a connection
//! the moment it arrives. A [`Permit`] is held for the connection's whole
//! life, from accept, and gives its place back when dropped, however the
//! connection ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    MaxConnectionsPerIp,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerIp => "max_connections_per_ip",
        }
    }
}

#[derive(Default)]
pub struct ConnCounts {
    total: AtomicU32,
    /// Only IPs with an open connection have an entry, so the map is as
    /// large as the set of connected clients, never the set ever seen.
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

/// One admitted connection's place in the counts.
pub struct Permit {
    counts: Arc<ConnCounts>,
    ip: Option<IpAddr>,
}

impl ConnCounts {
    /// Open connections now.
    pub fn open(&self) -> u32 {
        self.total.load(Ordering::Relaxed)
    }

    /// Admits a connection from `ip` if it keeps the total within `max` and
    /// the IP's count within `per_ip` (`None`: no cap). Connections without
    /// an IP (a Unix socket) count in the total only.
    pub fn admit(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        max: u32,
        per_ip: Option<u32>,
    ) -> Result<Permit, Refusal> {
        let admitted = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            });
        if admitted.is_err() {
            return Err(Refusal::MaxConnections);
        }
        // From here on the permit owns the total's increment.
        let mut permit = Permit {
            counts: self.clone(),
            ip: None,
        };
        if let (Some(ip), Some(cap)) = (ip, per_ip) {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= cap {
                if *n == 0 {
                    map.remove(&ip);
                }
                return Err(Refusal::MaxConnectionsPerIp);
            }
            *n += 1;
            permit.ip = Some(ip);
        }
        Ok(permit)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut map = self.counts.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn the_total_cap_refuses_past_it_and_frees_on_drop() {
        let c = Arc::new(ConnCounts::default());
        let held: Vec<_> = (0..3).map(|i| c.admit(ip(i), 3, None).unwrap()).collect();
        assert_eq!(c.admit(ip(9), 3, None).err(), Some(Refusal::MaxConnections));
        assert_eq!(c.open(), 3);
        drop(held);
        assert_eq!(c.open(), 0);
        assert!(c.admit(ip(9), 3, None).is_ok());
    }

    #[test]
    fn the_per_ip_cap_is_per_ip_and_gives_back_the_total() {
        let c = Arc::new(ConnCounts::default());
        let a1 = c.admit(ip(1), 100, Some(2)).unwrap();
        let _a2 = c.admit(ip(1), 100, Some(2)).unwrap();
        assert_eq!(
            c.admit(ip(1), 100, Some(2)).err(),
            Some(Refusal::MaxConnectionsPerIp)
        );
        // The refused connection did not keep its place in the total.
        assert_eq!(c.open(), 2);
        let _b = c.admit(ip(2), 100, Some(2)).unwrap();
        drop(a1);
        assert!(c.admit(ip(1), 100, Some(2)).is_ok());
    }

    #[test]
    fn a_closed_ip_leaves_no_entry() {
        let c = Arc::new(ConnCounts::default());
        for i in 0..100 {
            drop(c.admit(ip(i), 1000, Some(1)).unwrap());
        }
        assert!(c.per_ip.lock().unwrap().is_empty());
        assert_eq!(c.open(), 0);
    }
}
