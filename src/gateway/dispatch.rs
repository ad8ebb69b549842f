//! Events from the connections to the handler threads: one bounded queue per thread, and a
//! client's events always on the same one, so its packets are handled in order.
//!
//! A connection waits when its thread's queue is full, and stops reading meanwhile: when
//! handlers fall behind, the gateway stops reading sockets instead of buffering without end.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::session::{Reason, Session};
use crate::framed::Packet;

/// Events queued per handler thread before connections wait (each event holds what one read
/// decoded, so this bounds the packets waiting for handlers too).
pub const QUEUE_EVENTS: usize = 256;

/// What a handler thread is given to do.
#[derive(Debug)]
pub enum Event {
    /// A client connected (sent only when the application listens for connections).
    Connected(Arc<Session>),
    /// Packets from one read of a client, in order.
    Packets(Arc<Session>, Vec<Packet>),
    /// Stop marker: every earlier event of this client has been handled once this one is
    /// dropped (handle events in order, dropping each when done).
    Drained(DrainMark),
    /// The client is gone; its registration is already removed. Dropping the event tells the
    /// gateway that its `on_disconnect` has run.
    Disconnected(Arc<Session>, Reason, Departure),
    /// The gateway stopped: the handler thread ends.
    Shutdown,
}

/// Dropped once a client's handler thread got past its stop marker.
#[derive(Debug)]
pub struct DrainMark(pub(super) Arc<Session>);

impl Drop for DrainMark {
    fn drop(&mut self) {
        self.0.set_drained();
    }
}

/// Dropped once a departed client's `on_disconnect` has run: `stop()` waits for all of them.
pub struct Departure(pub(super) Arc<super::Shared>);

impl std::fmt::Debug for Departure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Departure")
    }
}

impl Drop for Departure {
    fn drop(&mut self) {
        self.0.departed();
    }
}

/// The sending side: one queue per handler thread.
#[derive(Debug)]
pub(super) struct Dispatch {
    queues: Vec<mpsc::Sender<Event>>,
}

impl Dispatch {
    pub(super) fn new(threads: usize) -> (Dispatch, Vec<Inbox>) {
        let (queues, inboxes) = (0..threads.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE_EVENTS);
                (tx, Inbox { rx })
            })
            .unzip();
        (Dispatch { queues }, inboxes)
    }

    pub(super) fn threads(&self) -> usize {
        self.queues.len()
    }

    /// Queues `event` for handler thread `thread`, waiting while its queue is full.
    pub(super) async fn send(&self, thread: usize, event: Event) {
        // The receiving side only goes away after Shutdown, which comes after every client.
        let _ = self.queues[thread].send(event).await;
    }

    /// Queues `event` from outside the runtime (`stop()` sending Shutdown).
    pub(super) fn send_blocking(&self, thread: usize, event: Event) {
        let _ = self.queues[thread].blocking_send(event);
    }
}

/// A handler thread's side of its queue.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Event>,
}

impl Inbox {
    /// Blocks the calling thread (never a runtime thread) until there are events, then moves
    /// up to `max` of them into `out`. False once the gateway has shut this queue down.
    pub fn next_batch(&mut self, max: usize, out: &mut Vec<Event>) -> bool {
        let Some(first) = self.rx.blocking_recv() else {
            return false;
        };
        out.push(first);
        while out.len() < max {
            match self.rx.try_recv() {
                Ok(event) => out.push(event),
                Err(_) => break,
            }
        }
        true
    }
}
