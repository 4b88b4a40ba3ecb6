//! The file-descriptor limit, and the connection ceiling derived from it.
//!
//! A gateway out of file descriptors fails in the worst way: accept()
//! errors in a loop, health checks and upstream connects fail, the log
//! fills. So at start the soft RLIMIT_NOFILE is raised to the hard limit
//! (as nginx's `worker_rlimit_nofile` and Envoy's docs advise), and unless
//! `max_connections` says otherwise, client connections are capped so that
//! each can hold an upstream connection too with descriptors to spare.

/// Descriptors kept for listeners, health checks, logs, DNS and Redis.
const RESERVED: u64 = 256;

/// Raises the soft limit to the hard one; returns the limit now in force
/// (`None` where it cannot be read).
pub fn raise_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => {
            log::info!("file descriptor limit (RLIMIT_NOFILE): {n}");
            Some(n)
        }
        Err(e) => {
            log::warn!("could not raise the file descriptor limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// The default `max_connections` for a descriptor limit: each client
/// connection may need an upstream one.
pub fn default_max_connections(nofile: Option<u64>) -> u32 {
    match nofile {
        Some(n) => (n.saturating_sub(RESERVED) / 2).clamp(1, u32::MAX as u64) as u32,
        None => u32::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_leaves_room_for_an_upstream_connection_each() {
        assert_eq!(default_max_connections(Some(1024)), 384);
        assert_eq!(default_max_connections(Some(1_048_576)), 524_160);
        assert_eq!(default_max_connections(Some(10)), 1);
        assert_eq!(default_max_connections(None), u32::MAX);
    }
}
