//! A TLS session over a [`Sock`]: rustls with the stdlib's timeout model, usable from a reading
//! and a writing thread at once.
//!
//! What is shared, and how it is guarded:
//! - `state` (the rustls connection) is locked only to move bytes in or out of rustls;
//! - `outgoing` holds the records rustls produced and the socket has not taken yet, so a write
//!   that a signal or a timeout interrupts leaves them for whoever writes next and the peer never
//!   sees a cut record; one thread sends from it at a time, in order;
//! - `read_lock` lets one thread at a time read ciphertext from the socket; waiting for it can be
//!   interrupted (Ctrl-C).
//!
//! Keeping two writers' data apart is the caller's [`crate::stream::Stream`] write lock.
//! Nothing here waits for a blocked writer: a reader that owes the peer an alert, or a
//! `close_notify` from `close()`, skips sending when another thread is sending (that thread
//! sends what rustls queued, or the socket is closing anyway).
//!
//! Handshakes wait with the caller's deadline, so a silent or plaintext peer ends in a timeout
//! or an error, never a hang.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use rustls::{ClientConnection, Connection, ServerConfig, ServerConnection};

use super::config::{server_name, ClientSettings};
use super::errors::{eof_in_handshake, from_rustls};
use crate::error::Result;
use crate::side_lock::SideLock;
use crate::socket::{Sock, Wait};

/// Plaintext handed to rustls at a time: records are produced and sent in pieces this size,
/// so a large `sendall` never holds more than one piece of ciphertext in memory.
const WRITE_CHUNK: usize = 64 * 1024;

/// Records produced by rustls and not yet fully sent.
#[derive(Debug, Default)]
struct Outgoing {
    records: Vec<u8>,
    sent: usize,
}

/// The reading side's buffers, owned by whoever holds the read lock.
struct ReadSide {
    /// Where ciphertext is read from the socket.
    buf: Vec<u8>,
    /// Ciphertext read but not yet taken by rustls (it takes no more while its plaintext
    /// buffer is full, until the reader drains it).
    pending: Vec<u8>,
    /// The socket reported end of stream.
    eof: bool,
}

/// A TLS session over a socket.
pub struct TlsSession {
    state: Mutex<Connection>,
    outgoing: Mutex<Outgoing>,
    /// Taken by the thread reading ciphertext from the socket, which then locks `read_side`.
    read_lock: SideLock,
    read_side: Mutex<ReadSide>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TlsSession {
    pub fn client(settings: &ClientSettings, host: &str) -> Result<Self> {
        let name = server_name(settings.server_name.as_deref().unwrap_or(host))?;
        let conn = ClientConnection::new(settings.config.clone(), name).map_err(from_rustls)?;
        Ok(Self::wrap(conn.into()))
    }

    pub fn server(config: &Arc<ServerConfig>) -> Result<Self> {
        let conn = ServerConnection::new(config.clone()).map_err(from_rustls)?;
        Ok(Self::wrap(conn.into()))
    }

    fn wrap(conn: Connection) -> Self {
        TlsSession {
            state: Mutex::new(conn),
            outgoing: Mutex::default(),
            read_lock: SideLock::default(),
            read_side: Mutex::new(ReadSide {
                buf: vec![0; 18 * 1024],
                pending: Vec::new(),
                eof: false,
            }),
        }
    }

    /// The negotiated protocol, e.g. `"TLSv1.3"`.
    pub fn version(&self) -> Option<&'static str> {
        lock(&self.state).protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        })
    }

    /// Sends every record queued: first what an earlier, interrupted write left, then what
    /// rustls has produced since. Resumable after `EINTR`: unsent bytes stay in `out`.
    fn send_records(&self, out: &mut Outgoing, sock: &Sock, wait: Wait) -> Result<()> {
        loop {
            if out.sent == out.records.len() {
                out.records.clear();
                out.sent = 0;
                let mut conn = lock(&self.state);
                while conn.wants_write() {
                    conn.write_tls(&mut out.records)?;
                }
                if out.records.is_empty() {
                    return Ok(());
                }
            }
            sock.sendall(&out.records, 0, wait, &mut out.sent)?;
        }
    }

    /// Sends the records rustls queued (handshake messages, alerts, a key update).
    fn flush(&self, sock: &Sock, wait: Wait) -> Result<()> {
        self.send_records(&mut lock(&self.outgoing), sock, wait)
    }

    /// [`TlsSession::flush`] unless another thread is sending: that thread sends what rustls
    /// queued along with its own records, and a reader must not wait for a blocked writer.
    fn flush_if_idle(&self, sock: &Sock, wait: Wait) -> Result<()> {
        match self.outgoing.try_lock() {
            Ok(mut out) => self.send_records(&mut out, sock, wait),
            Err(TryLockError::Poisoned(p)) => self.send_records(&mut p.into_inner(), sock, wait),
            Err(TryLockError::WouldBlock) => Ok(()),
        }
    }

    /// Hands pending ciphertext to rustls as far as it takes it, processing as it goes, and
    /// records the end of stream once everything before it was taken.
    fn absorb(&self, sock: &Sock, wait: Wait, side: &mut ReadSide) -> Result<()> {
        let processed = {
            let mut conn = lock(&self.state);
            let mut rest = &side.pending[..];
            let mut result = Ok(());
            while !rest.is_empty() && conn.wants_read() {
                if conn.read_tls(&mut rest)? == 0 {
                    break;
                }
                result = conn.process_new_packets().map(|_| ());
                if result.is_err() {
                    break;
                }
            }
            let taken = side.pending.len() - rest.len();
            side.pending.drain(..taken);
            if result.is_ok() && side.eof && side.pending.is_empty() {
                conn.read_tls(&mut &[][..])?; // the end of stream
                result = conn.process_new_packets().map(|_| ());
            }
            result
        };
        if let Err(err) = processed {
            // rustls queued an alert for the peer: send it, then report.
            let _ = self.flush_if_idle(sock, wait);
            return Err(from_rustls(err));
        }
        Ok(())
    }

    /// Reads more ciphertext from the socket into `side.pending` (or notes the end).
    fn fill(&self, sock: &Sock, wait: Wait, side: &mut ReadSide) -> Result<()> {
        let ReadSide { buf, pending, eof } = side;
        let n = sock.recv_into(buf, 0, wait)?;
        if n == 0 {
            *eof = true;
        } else {
            pending.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    /// Runs the handshake to completion. Restartable after `EINTR`.
    pub fn handshake(&self, sock: &Sock, wait: Wait) -> Result<()> {
        let _lock = self.read_lock.take(wait)?;
        let mut side = lock(&self.read_side);
        loop {
            self.flush(sock, wait)?;
            if !lock(&self.state).is_handshaking() {
                return Ok(());
            }
            if side.eof {
                return Err(eof_in_handshake());
            }
            if side.pending.is_empty() {
                self.fill(sock, wait, &mut side)?;
            }
            self.absorb(sock, wait, &mut side)?;
        }
    }

    /// Reads plaintext; `Ok(0)` is the end of the stream (a peer that closes without
    /// `close_notify` also ends it, like Python's `suppress_ragged_eofs=True`).
    pub fn read(&self, sock: &Sock, out: &mut [u8], wait: Wait) -> Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let _lock = self.read_lock.take(wait)?;
        let mut side = lock(&self.read_side);
        loop {
            let wants_write = {
                let mut conn = lock(&self.state);
                match conn.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e.into()),
                }
                conn.wants_write()
            };
            if wants_write {
                self.flush_if_idle(sock, wait)?; // a key update or alert the peer is owed
            }
            if side.eof && side.pending.is_empty() {
                return Ok(0);
            }
            if side.pending.is_empty() {
                self.fill(sock, wait, &mut side)?;
            }
            self.absorb(sock, wait, &mut side)?;
        }
    }

    /// Writes all of `data`, resuming after the `*consumed` bytes earlier calls handed to
    /// rustls: call it again after `EINTR` with the same `consumed`. Records of an earlier,
    /// interrupted write go out first. The caller holds its stream's write lock, so that two
    /// threads' data do not interleave.
    pub fn write_all(
        &self,
        sock: &Sock,
        data: &[u8],
        wait: Wait,
        consumed: &mut usize,
    ) -> Result<()> {
        let mut out = lock(&self.outgoing);
        loop {
            self.send_records(&mut out, sock, wait)?;
            if *consumed >= data.len() {
                return Ok(());
            }
            // A piece at a time: never more than one piece of ciphertext in memory.
            let end = (*consumed + WRITE_CHUNK).min(data.len());
            *consumed += lock(&self.state).writer().write(&data[*consumed..end])?;
        }
    }

    /// Records wait to be sent: handshake messages, data, an alert (a non-blocking caller
    /// waits for the socket to be writable rather than readable).
    pub fn wants_send(&self) -> bool {
        let out = lock(&self.outgoing);
        out.sent < out.records.len() || lock(&self.state).wants_write()
    }

    /// Sends the records an interrupted write left, if any.
    pub fn flush_pending(&self, sock: &Sock, wait: Wait) -> Result<()> {
        self.flush(sock, wait)
    }

    /// Sends `close_notify` (best effort, without waiting): the peer sees a clean end. Skipped
    /// while another thread is sending: a record cannot be cut into, and `close()` or
    /// `shutdown()` must not wait for a writer blocked on a peer that does not read (the
    /// socket's own shutdown then wakes that writer).
    pub fn close_notify(&self, sock: &Sock) {
        let mut out = match self.outgoing.try_lock() {
            Ok(out) => out,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        lock(&self.state).send_close_notify();
        let _ = self.send_records(&mut out, sock, Wait::NonBlocking);
    }
}
