//! The backends an upstream stands for at a moment: its literal addresses,
//! then each backend name's addresses as DNS last answered. A pool is built
//! from this list, and comparing two lists tells whether a rebuild (a reload
//! or a DNS answer) would change the pool at all.

use std::net::SocketAddr;
use std::sync::Arc;

use super::dns::DnsTable;
use crate::config::UpstreamSpec;

/// One backend a pool is built with: a literal address, or one address of a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub weight: u32,
    pub name: Option<Arc<str>>,
}

/// The backends `spec` stands for now: its addresses, then each name's
/// addresses as `dns` last resolved them. An address listed twice is kept once.
pub fn pool_targets(spec: &UpstreamSpec, dns: &DnsTable) -> Vec<Target> {
    let mut out: Vec<Target> = spec
        .backends
        .iter()
        .map(|b| Target {
            addr: b.address,
            weight: b.weight,
            name: None,
        })
        .collect();
    for n in &spec.named {
        let name: Arc<str> = Arc::from(n.name());
        for addr in dns.backends(&n.host, n.port) {
            if !out.iter().any(|t| t.addr == addr) {
                out.push(Target {
                    addr,
                    weight: n.weight,
                    name: Some(name.clone()),
                });
            }
        }
    }
    out
}
