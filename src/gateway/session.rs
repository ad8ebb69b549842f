//! One connected client: its registration, its bounded outbound buffer, and why it ends.
//!
//! Frames queued for a client are appended to one byte buffer (no allocation per frame).
//! Whoever holds the buffer's lock may write it to the socket: the handler thread does, without
//! waiting (`MSG_DONTWAIT`), once per batch of replies, so a reply usually leaves without waking
//! the connection's task; what the socket does not take then is the task's to write when the
//! socket is writable again.
// NOTE: with every reply handed to the connection's task (a frame allocated per reply, the task
// woken and polled to write it), 100 connections x 16 in flight ran at 1.2-1.29 M packets/s and
// 100 x 1 at 158-162 k requests/s, server on one CPU; writing from the handler thread at the
// end of its batch, 1.33 M packets/s and 188 k requests/s in the same runs.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::stats::{add, Stats};
use crate::registry::ClientRecord;
use crate::runtime::Signal;

/// Why a client's connection ended: the `on_disconnect` reason, with DESIGN's exact strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The peer closed the connection.
    Closed,
    /// A connection error (reset by the peer, ...).
    Reset,
    /// `kick()`, with the reason given to it.
    Kicked(String),
    /// Nothing arrived within `idle_timeout`.
    Idle,
    /// Its outbound queue filled up: it does not read what it is sent.
    SlowConsumer,
    /// A bad frame, one too large, or a body that does not decompress.
    ProtocolError,
    /// A body that failed decryption.
    AuthenticationFailed,
    /// The gateway stopped.
    Stopped,
}

impl Reason {
    pub fn as_str(&self) -> &str {
        match self {
            Reason::Closed => "closed",
            Reason::Reset => "reset",
            Reason::Kicked(why) => why,
            Reason::Idle => "idle",
            Reason::SlowConsumer => "slow consumer",
            Reason::ProtocolError => "protocol error",
            Reason::AuthenticationFailed => "authentication failed",
            Reason::Stopped => "stopped",
        }
    }
}

/// What became of a frame handed to [`Session::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    Queued,
    /// The client has left (or is leaving): nothing was queued.
    Gone,
    /// Its queue was full: the client is now cut as a slow consumer, and nothing was queued.
    SlowConsumer,
}

/// Bytes waiting to be written to the client, and whether the connection is to end.
#[derive(Debug, Default)]
struct Outbound {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    written: usize,
    /// Frames queued since `buf` was last empty: the slow-consumer limit counts these.
    frames: usize,
    /// Set once the connection must end; the connection's task sees it and closes.
    end: Option<Reason>,
    /// The connection has ended (its socket may be closed): nothing more is queued or written.
    closed: bool,
}

/// A buffer this large is released once written, so one burst does not pin memory.
const KEEP_CAPACITY: usize = 64 * 1024;

/// What [`Session::write_now`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Nothing left to write.
    All,
    /// The socket took part of it (or none): the rest waits for it to be writable.
    Part,
}

/// A connected client of a gateway: the data its registration in the client group keeps.
#[derive(Debug)]
pub struct Session {
    /// Its registration (without data: the registration holds the session, not the reverse).
    pub record: ClientRecord,
    /// The application's data for this connection (the Python layer's `state`), made when
    /// first asked for.
    pub app: OnceLock<Box<dyn std::any::Any + Send + Sync>>,
    /// The handler thread its events go to (always the same one: its packets stay in order).
    pub thread: usize,
    /// Whether bytes may be written straight to the socket (plain TCP; a TLS connection's task
    /// encrypts them first).
    direct: bool,
    out: Mutex<Outbound>,
    /// The most frames queued before the client counts as a slow consumer.
    limit: usize,
    /// Wakes the connection's task: bytes to write, or the connection is to end.
    pub(super) signal: Signal,
    /// Every event queued for this client's handlers before the stop marker was handled.
    drained: AtomicBool,
    /// The gateway's counters (packets and bytes out are counted here).
    stats: Arc<Stats>,
}

impl Session {
    pub(super) fn new(
        record: ClientRecord,
        thread: usize,
        limit: usize,
        direct: bool,
        stats: Arc<Stats>,
    ) -> Self {
        Session {
            record,
            app: OnceLock::new(),
            thread,
            direct,
            out: Mutex::default(),
            limit: limit.max(1),
            signal: Signal::default(),
            drained: AtomicBool::new(false),
            stats,
        }
    }

    fn out(&self) -> MutexGuard<'_, Outbound> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame for the client and wakes its connection. A full queue ends the
    /// connection as a slow consumer: a client that stops reading must not make the gateway
    /// buffer without end.
    pub fn send(&self, frame: &[u8]) -> Sent {
        let (sent, wake) = self.queue(frame);
        if wake {
            self.wake();
        }
        sent
    }

    /// [`Session::send`] without the wake-up, for a caller that queues a batch of frames and
    /// then writes or wakes each connection once; the bool says whether this one needs it.
    pub fn queue(&self, frame: &[u8]) -> (Sent, bool) {
        let mut out = self.out();
        if out.closed || out.end.is_some() {
            return (Sent::Gone, false);
        }
        if out.frames >= self.limit {
            out.end = Some(Reason::SlowConsumer);
            return (Sent::SlowConsumer, true);
        }
        let was_empty = out.written == out.buf.len();
        out.buf.extend_from_slice(frame);
        out.frames += 1;
        drop(out);
        add(&self.stats.packets_out, 1);
        (Sent::Queued, was_empty)
    }

    /// Wakes the connection's task (bytes to write, or the connection is to end).
    pub fn wake(&self) {
        self.signal.raise();
    }

    /// Writes what is queued without waiting, from any thread; wakes the connection's task
    /// for whatever the socket did not take (or to close, on an error).
    pub fn flush(&self) {
        if !self.direct {
            return self.wake();
        }
        let mut out = self.out();
        if out.closed {
            return;
        }
        match write_out(&mut out, self.record.fd, &self.stats) {
            Ok(Written::All) => {}
            Ok(Written::Part) | Err(_) => {
                drop(out);
                self.wake();
            }
        }
    }

    /// Writes what is queued as far as the socket takes it now (the connection's task).
    /// `Err(WouldBlock)` when it took nothing.
    pub(super) fn write_queued(&self) -> std::io::Result<Written> {
        write_out(&mut self.out(), self.record.fd, &self.stats)
    }

    /// Takes the queued bytes out (a TLS connection's task encrypts them itself).
    pub(super) fn take_bytes(&self, into: &mut Vec<u8>) {
        let mut out = self.out();
        let start = out.written;
        into.extend_from_slice(&out.buf[start..]);
        reset(&mut out);
    }

    /// Whether bytes are waiting to be written.
    pub(super) fn has_output(&self) -> bool {
        let out = self.out();
        out.written < out.buf.len()
    }

    /// Ends the connection with `reason`; false if it has already ended (or is ending).
    pub fn kick(&self, reason: Reason) -> bool {
        let mut out = self.out();
        if out.closed || out.end.is_some() {
            return false;
        }
        out.end = Some(reason);
        drop(out);
        self.wake();
        true
    }

    /// Whether the client is still connected (and not being cut).
    pub fn is_connected(&self) -> bool {
        let out = self.out();
        !out.closed && out.end.is_none()
    }

    /// The reason to end the connection, once there is one.
    pub(super) fn ending(&self) -> Option<Reason> {
        self.out().end.clone()
    }

    /// The connection has ended: later frames are refused, those still queued dropped, and
    /// nobody writes to its socket again (it is about to be closed).
    pub(super) fn close(&self) {
        let mut out = self.out();
        out.closed = true;
        out.buf = Vec::new();
        out.written = 0;
    }

    /// The stop marker went through this client's handler thread.
    pub(super) fn set_drained(&self) {
        self.drained.store(true, Ordering::Release);
        self.wake();
    }

    pub(super) fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// The record of its registration, with the session as its data (what `ClientInfo` holds).
    pub fn registration(self: &Arc<Self>) -> ClientRecord {
        ClientRecord {
            data: Some(self.clone()),
            ..self.record.clone()
        }
    }

    /// The client's file descriptor and registration token.
    pub fn fd(&self) -> i32 {
        self.record.fd
    }

    pub fn token(&self) -> u64 {
        self.record.token
    }
}

/// Empties a fully written buffer (releasing a large one).
fn reset(out: &mut Outbound) {
    if out.buf.capacity() > KEEP_CAPACITY {
        out.buf = Vec::new();
    } else {
        out.buf.clear();
    }
    out.written = 0;
    out.frames = 0;
}

/// One non-blocking `send` of what `out` holds.
fn write_out(out: &mut Outbound, fd: RawFd, stats: &Stats) -> std::io::Result<Written> {
    if out.closed {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    let pending = &out.buf[out.written..];
    if pending.is_empty() {
        return Ok(Written::All);
    }
    // SAFETY: `pending` is valid for its length; the fd stays open while `closed` is false,
    // and `closed` is only set under this same lock.
    let n = unsafe {
        libc::send(
            fd,
            pending.as_ptr().cast(),
            pending.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    add(&stats.bytes_out, n as u64);
    out.written += n as usize;
    if out.written == out.buf.len() {
        reset(out);
        return Ok(Written::All);
    }
    Ok(Written::Part)
}
