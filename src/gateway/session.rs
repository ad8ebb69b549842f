//! One connected client: its registration, its bounded outbound queue, and why it ends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::registry::ClientRecord;

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

/// Frames waiting for the connection's writer, and whether the connection is to end.
#[derive(Debug, Default)]
struct Outbound {
    frames: VecDeque<Bytes>,
    /// Set once the connection must end; the writer sees it and closes.
    end: Option<Reason>,
    /// The connection has ended: nothing more is queued.
    closed: bool,
}

/// A connected client of a gateway.
#[derive(Debug)]
pub struct Session {
    /// Its registration in the gateway's client group.
    pub record: ClientRecord,
    /// The handler thread its events go to (always the same one: its packets stay in order).
    pub thread: usize,
    out: Mutex<Outbound>,
    /// The most frames `out` holds before the client counts as a slow consumer.
    limit: usize,
    /// Wakes the connection's task: frames to write, or the connection is to end.
    pub(super) wake: Notify,
    /// Every event queued for this client's handlers before the stop marker was handled.
    drained: AtomicBool,
}

impl Session {
    pub(super) fn new(record: ClientRecord, thread: usize, limit: usize) -> Self {
        Session {
            record,
            thread,
            out: Mutex::default(),
            limit: limit.max(1),
            wake: Notify::new(),
            drained: AtomicBool::new(false),
        }
    }

    fn out(&self) -> MutexGuard<'_, Outbound> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame for the client and wakes its connection. A full queue ends the
    /// connection as a slow consumer: a client that stops reading must not make the gateway
    /// buffer without end.
    pub fn send(&self, frame: Bytes) -> Sent {
        let (sent, wake) = self.queue(frame);
        if wake {
            self.wake();
        }
        sent
    }

    /// [`Session::send`] without the wake-up, for a caller that queues a batch of frames and
    /// then wakes each connection once; the bool says whether this one needs [`Session::wake`].
    pub fn queue(&self, frame: Bytes) -> (Sent, bool) {
        let mut out = self.out();
        if out.closed || out.end.is_some() {
            return (Sent::Gone, false);
        }
        if out.frames.len() >= self.limit {
            out.end = Some(Reason::SlowConsumer);
            return (Sent::SlowConsumer, true);
        }
        let was_empty = out.frames.is_empty();
        out.frames.push_back(frame);
        // The writer takes every frame queued by the time it runs: one wake-up is enough.
        (Sent::Queued, was_empty)
    }

    /// Wakes the connection's task (frames to write, or the connection is to end).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Ends the connection with `reason`; false if it has already ended (or is ending).
    pub fn kick(&self, reason: Reason) -> bool {
        let mut out = self.out();
        if out.closed || out.end.is_some() {
            return false;
        }
        out.end = Some(reason);
        drop(out);
        self.wake.notify_one();
        true
    }

    /// Whether the client is still connected (and not being cut).
    pub fn is_connected(&self) -> bool {
        let out = self.out();
        !out.closed && out.end.is_none()
    }

    /// Moves the queued frames into `into`; the reason to end the connection, if there is one.
    pub(super) fn take_frames(&self, into: &mut VecDeque<Bytes>) -> Option<Reason> {
        let mut out = self.out();
        if into.is_empty() {
            std::mem::swap(into, &mut out.frames);
        } else {
            into.extend(out.frames.drain(..));
        }
        out.end.clone()
    }

    /// The connection has ended: later frames are refused, those still queued dropped.
    pub(super) fn close(&self) {
        let mut out = self.out();
        out.closed = true;
        out.frames = VecDeque::new();
    }

    /// The stop marker went through this client's handler thread.
    pub(super) fn set_drained(&self) {
        self.drained.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub(super) fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// The client's file descriptor and registration token.
    pub fn fd(&self) -> i32 {
        self.record.fd
    }

    pub fn token(&self) -> u64 {
        self.record.token
    }
}
