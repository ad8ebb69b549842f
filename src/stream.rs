//! A connected byte stream: a socket, plain or under TLS, and the one place that chooses
//! between the two for reads, writes, shutdown and close.
//!
//! Calls are the socket's: they wait as their [`Wait`] says and return `EINTR` when a signal
//! (or a [`SideLock`] wait slice) interrupts them, with enough state kept to be called again.

use std::sync::OnceLock;

use crate::error::Result;
use crate::side_lock::SideLock;
use crate::socket::{Sock, Wait};
use crate::tls::TlsSession;

/// A socket and, once its handshake is done, its TLS session.
#[derive(Debug)]
pub struct Stream {
    pub sock: Sock,
    tls: OnceLock<TlsSession>,
    /// Held by a writer across a whole write that must not interleave with another thread's:
    /// every TLS write (records are numbered in order) and every framed write.
    write_lock: SideLock,
}

impl Stream {
    pub fn new(sock: Sock) -> Self {
        Stream {
            sock,
            tls: OnceLock::new(),
            write_lock: SideLock::default(),
        }
    }

    /// The TLS session, once the handshake is done.
    pub fn tls(&self) -> Option<&TlsSession> {
        self.tls.get()
    }

    /// Runs `session`'s handshake (call again after `EINTR` with the same session).
    pub fn handshake(&self, session: &TlsSession, wait: Wait) -> Result<()> {
        session.handshake(&self.sock, wait)
    }

    /// Switches reads and writes to `session`, whose handshake is done. A stream is handed out
    /// only after its handshake, so this happens once.
    pub fn set_tls(&self, session: TlsSession) {
        let _ = self.tls.set(session);
    }

    /// The lock to hold across a write that must not interleave with other threads' (see
    /// [`Stream::write_all`]).
    pub fn write_lock(&self) -> &SideLock {
        &self.write_lock
    }

    /// Reads what is available (plaintext, over TLS); `Ok(0)` is the end of the stream. As with
    /// `ssl.SSLSocket`, `flags` only reach a plain socket.
    pub fn read(&self, buf: &mut [u8], flags: i32, wait: Wait) -> Result<usize> {
        match self.tls() {
            Some(tls) => tls.read(&self.sock, buf, wait),
            None => self.sock.recv_into(buf, flags, wait),
        }
    }

    /// Writes all of `data`, resuming after `*progress` bytes (call again after `EINTR` with
    /// the same `progress`). Over TLS the caller holds [`Stream::write_lock`].
    pub fn write_all(
        &self,
        data: &[u8],
        flags: i32,
        wait: Wait,
        progress: &mut usize,
    ) -> Result<()> {
        match self.tls() {
            Some(tls) => tls.write_all(&self.sock, data, wait, progress),
            None => self.sock.sendall(data, flags, wait, progress),
        }
    }

    /// Sends what an interrupted TLS write left behind (nothing to do on a plain socket).
    pub fn flush(&self, wait: Wait) -> Result<()> {
        match self.tls() {
            Some(tls) => tls.flush_pending(&self.sock, wait),
            None => Ok(()),
        }
    }

    /// TLS records wait to be sent (never on a plain socket).
    pub fn wants_send(&self) -> bool {
        self.tls().is_some_and(TlsSession::wants_send)
    }

    /// `shutdown(how)`; over TLS, `close_notify` goes first when the sending side closes, so
    /// the peer sees a clean end rather than a cut.
    pub fn shutdown(&self, how: i32) -> Result<()> {
        let notified = match self.tls() {
            Some(tls) if how != libc::SHUT_RD => {
                tls.close_notify(&self.sock);
                true
            }
            _ => false,
        };
        match self.sock.shutdown(how) {
            // A peer that had already closed answers our close_notify with a reset, and the
            // socket is then no longer connected: it is shut down already, which is what was
            // asked (Python's ssl sends no close_notify here, and succeeds).
            Err(e) if notified && e.errno() == Some(libc::ENOTCONN) => Ok(()),
            r => r,
        }
    }

    /// Closes the socket (after `close_notify` over TLS). Never waits for a writer blocked on
    /// a peer that does not read.
    pub fn close(&self) -> Result<()> {
        if let (Some(tls), true) = (self.tls(), self.sock.fileno() >= 0) {
            tls.close_notify(&self.sock);
        }
        self.sock.close()
    }
}

/// A connected pair on loopback for tests: a stream, and the raw socket of its peer.
#[cfg(test)]
pub(crate) fn test_pair() -> (Stream, Sock) {
    let l = crate::setup::listen(&"127.0.0.1:0".parse().unwrap(), 4, false).unwrap();
    let c = Sock::open(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
    c.start_connect(&l.local_addr().unwrap()).unwrap();
    let (fd, _) = l.accept(Wait::Blocking).unwrap();
    // SAFETY: freshly accepted fd.
    (Stream::new(c), unsafe {
        Sock::from_raw(fd, libc::AF_INET, libc::SOCK_STREAM, 0)
    })
}
