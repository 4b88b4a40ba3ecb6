//! A TLS connection's place, tied to its socket, and its handshake bounded
//! by `tls_handshake_timeout`.
//!
//! Pingora 0.9.1 has no handshake timeout of its own to set: its listening
//! service wraps each handshake in a fixed 60 s, and neither `TlsSettings`
//! nor the `TlsAccept` callbacks (called after the ClientHello, which a
//! flood never sends) see a connection that stays silent. What it does
//! offer is a hook run in the connection's task before the handshake,
//! with the accepted TCP stream in hand ([`PreTlsProcess`]). This module is
//! that hook, and it does three things:
//!
//! - it claims the place taken at accept (`super::places`) and hangs it on
//!   the stream, through the stream's one field that is dropped with it and
//!   told first: `tracer` ([`Tracer`]; Pingora sets it only on upstream
//!   connections). So the place is given back when the socket closes,
//!   however the connection ends: a failed or timed-out handshake, a
//!   request served, a panic in a task;
//! - it starts a watchdog for the deadline, counted from accept. Past it,
//!   if the handshake is not done, the watchdog shuts the socket down
//!   (`shutdown(2)`); the handshake then reads end-of-file and fails, and
//!   Pingora drops the connection, which closes it and gives its place
//!   back. Failing the reads is the only way in: the handshake future is
//!   Pingora's;
//! - it records the handshake under the socket's descriptor in
//!   [`Handshakes`], where `ClientGuard::process_new` marks it done, which
//!   is what stops the watchdog.
//!
//! Shutting a socket down by its descriptor number is safe only while that
//! number is still this connection's. The stream tells its tracer it is
//! going before it closes its socket, and that and the watchdog's shutdown
//! both hold the handshake's lock: so a shutdown sees either an open
//! socket that is this connection's, or that the connection is gone.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use pingora_core::listeners::PreTlsProcess;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::GetSocketDigest;
use pingora_core::upstreams::peer::{Tracer, Tracing};
use pingora_error::{Error, ErrorType};
use tokio::sync::Notify;

use super::counts::Permit;
use super::places::Places;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshaking,
    /// The application has the connection: no deadline any more.
    Done,
    /// The watchdog shut the socket down.
    Expired,
    /// The socket is about to be closed.
    Gone,
}

struct Handshake {
    fd: RawFd,
    phase: Mutex<Phase>,
    /// Wakes the watchdog when the phase leaves `Handshaking` another way.
    settled: Notify,
}

impl Handshake {
    fn lock(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves a handshake in progress to `to`; whether it was in progress.
    fn settle(&self, to: Phase) -> bool {
        let mut phase = self.lock();
        let was = *phase == Phase::Handshaking;
        if was || to == Phase::Gone {
            *phase = to;
        }
        drop(phase);
        self.settled.notify_one();
        was
    }

    /// Past the deadline: shuts the socket down if the handshake is still
    /// in progress; whether it did.
    fn expire(&self) -> bool {
        let mut phase = self.lock();
        if *phase != Phase::Handshaking {
            return false;
        }
        // SAFETY: `fd` is this connection's socket, still open: the phase
        // becomes `Gone` (under this lock) before the stream closes it.
        // shutdown(2) only ends the socket's traffic; closing stays the
        // stream's.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
        *phase = Phase::Expired;
        true
    }
}

/// TLS handshakes in progress, by socket descriptor. An entry is made while
/// its socket is open and removed before it closes, so a descriptor names
/// one handshake at a time.
#[derive(Default)]
pub struct Handshakes {
    open: Mutex<HashMap<RawFd, Arc<Handshake>>>,
}

impl Handshakes {
    fn lock(&self) -> MutexGuard<'_, HashMap<RawFd, Arc<Handshake>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, fd: RawFd) -> Arc<Handshake> {
        let h = Arc::new(Handshake {
            fd,
            phase: Mutex::new(Phase::Handshaking),
            settled: Notify::new(),
        });
        self.lock().insert(fd, h.clone());
        h
    }

    /// The application has the TLS connection on socket `fd`: its
    /// handshake is done in time. Whether this module holds its place (it
    /// does for every connection whose handshake it watched).
    pub fn done(&self, fd: RawFd) -> bool {
        let Some(h) = self.lock().remove(&fd) else {
            return false;
        };
        h.settle(Phase::Done);
        true
    }

    fn forget(&self, h: &Arc<Handshake>) {
        let mut open = self.lock();
        if open.get(&h.fd).is_some_and(|x| Arc::ptr_eq(x, h)) {
            open.remove(&h.fd);
        }
    }
}

/// What hangs on a TLS connection's stream for its whole life.
struct Life {
    handshake: Arc<Handshake>,
    handshakes: Arc<Handshakes>,
    _place: Permit,
}

impl std::fmt::Debug for Life {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Life")
            .field("fd", &self.handshake.fd)
            .finish_non_exhaustive()
    }
}

impl Tracing for Life {
    fn on_connected(&self) {}

    /// Called by the stream's drop before its socket is closed; the place
    /// goes with `self`, after the close.
    fn on_disconnected(&self) {
        self.handshake.settle(Phase::Gone);
        self.handshakes.forget(&self.handshake);
    }

    fn boxed_clone(&self) -> Box<dyn Tracing> {
        // A copy would hold no place and watch nothing.
        Box::new(NoTrace)
    }
}

#[derive(Debug)]
struct NoTrace;

impl Tracing for NoTrace {
    fn on_connected(&self) {}
    fn on_disconnected(&self) {}
    fn boxed_clone(&self) -> Box<dyn Tracing> {
        Box::new(NoTrace)
    }
}

/// The pre-handshake hook of the TLS listeners.
pub struct HandshakeGuard {
    pub places: Arc<Places>,
    pub handshakes: Arc<Handshakes>,
}

#[async_trait]
impl PreTlsProcess for HandshakeGuard {
    async fn process(&self, stream: &mut L4Stream) -> pingora_error::Result<()> {
        let limits = (self.places.settings)();
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let Some((place, accepted)) = self.places.claim(peer, &limits) else {
            return Error::e_explain(ErrorType::AcceptError, "past a connection cap");
        };
        let fd = stream.as_raw_fd();
        let handshake = self.handshakes.start(fd);
        stream.tracer = Some(Tracer(Box::new(Life {
            handshake: handshake.clone(),
            handshakes: self.handshakes.clone(),
            _place: place,
        })));
        let deadline = accepted + limits.tls_handshake_timeout;
        let expired = self.places.metrics.timeouts.tls_handshake.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if handshake.expire() {
                        expired.inc();
                    }
                }
                _ = handshake.settled.notified() => {}
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Duration;

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        (client, server)
    }

    #[test]
    fn an_expired_handshake_shuts_its_socket_once() {
        let (mut client, server) = pair();
        let table = Handshakes::default();
        let h = table.start(server.as_raw_fd());
        assert!(h.expire());
        assert!(!h.expire());
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0, "the client sees the end");
        // Done after the deadline: the place is still this module's.
        assert!(table.done(server.as_raw_fd()));
    }

    #[test]
    fn a_handshake_done_or_gone_is_not_shut_down() {
        let (mut client, server) = pair();
        let table = Handshakes::default();
        let h = table.start(server.as_raw_fd());
        assert!(table.done(server.as_raw_fd()));
        assert!(!table.done(server.as_raw_fd()), "done once");
        assert!(!h.expire());
        let g = table.start(server.as_raw_fd());
        g.settle(Phase::Gone);
        table.forget(&g);
        assert!(!g.expire());
        assert!(!table.done(server.as_raw_fd()));
        client
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 1];
        assert!(
            client.read(&mut buf).is_err(),
            "still open: the read times out"
        );
        drop(server);
    }

    #[test]
    fn forgetting_leaves_a_newer_handshake_on_the_same_descriptor() {
        let table = Handshakes::default();
        let old = table.start(7);
        let new = table.start(7);
        table.forget(&old);
        assert!(table.lock().get(&7).is_some_and(|h| Arc::ptr_eq(h, &new)));
    }
}
