//! Events from the connections to the handler threads: one bounded queue per thread, and a
//! client's events always on the same one, so its packets are handled in order.
//!
//! A connection waits when its thread's queue is full, and stops reading meanwhile: when
//! handlers fall behind, the gateway stops reading sockets instead of buffering without end.
//!
//! A waiting handler thread is woken once per busy period of the runtime worker that queued
//! events for it (see [`runtime::wake_when_idle`]), or at once past [`WAKE_AT`] events, not
//! once per event: the handler then takes a batch per GIL acquisition.
//!
//! A handler thread waits on a condition variable; an asyncio loop that handles events (async
//! handlers) watches the queue's eventfd instead, and takes what is queued without blocking.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::session::{Reason, Session};
use crate::bell::EventFd;
use crate::framed::Packet;
use crate::runtime;

/// Events queued per handler thread before connections wait (each event holds what one read
/// decoded, so this bounds the packets waiting for handlers too).
pub const QUEUE_EVENTS: usize = 1024;

/// Events queued that wake a waiting handler thread at once, without waiting for the runtime
/// worker to run out of work (it may never, under load).
pub const WAKE_AT: usize = 64;

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

impl Event {
    /// The client the event is about (None for `Shutdown`).
    pub fn session(&self) -> Option<&Arc<Session>> {
        match self {
            Event::Connected(s) | Event::Packets(s, _) | Event::Disconnected(s, _, _) => Some(s),
            Event::Drained(DrainMark(s)) => Some(s),
            Event::Shutdown => None,
        }
    }
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

#[derive(Debug, Default)]
struct State {
    events: VecDeque<Event>,
    /// The handler thread is waiting for events.
    waiting: bool,
    /// A wake-up is on its way (at once, or when the worker parks).
    wake_pending: bool,
}

/// One handler thread's queue.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<State>,
    /// The handler thread waits here...
    ready: Condvar,
    /// ...or, for an event loop, on this fd's readability.
    fd: Option<EventFd>,
    /// Connections wait here for room.
    room: Notify,
}

impl Queue {
    fn wake_now(&self) {
        match &self.fd {
            Some(fd) => fd.signal(),
            None => self.ready.notify_one(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `event` if there is room (`Err` gives it back); arranges the wake-up.
    fn push(self: &Arc<Self>, event: Event, limit: usize) -> Result<(), Event> {
        let mut state = self.lock();
        if state.events.len() >= limit {
            return Err(event);
        }
        state.events.push_back(event);
        if state.waiting && !state.wake_pending {
            state.wake_pending = true;
            let defer = state.events.len() < WAKE_AT;
            drop(state);
            if !(defer && runtime::wake_when_idle(self.clone())) {
                self.wake_now();
            }
        }
        Ok(())
    }
}

impl runtime::Wake for Queue {
    fn wake(&self) {
        self.wake_now();
    }
}

/// The sending side: one queue per handler thread.
#[derive(Debug)]
pub(super) struct Dispatch {
    queues: Vec<Arc<Queue>>,
}

impl Dispatch {
    /// `threads` queues, woken through an eventfd each when `on_loop` (their events are
    /// handled on an event loop), else through a condition variable.
    pub(super) fn new(threads: usize, on_loop: bool) -> std::io::Result<(Dispatch, Vec<Inbox>)> {
        let queue = || -> std::io::Result<Arc<Queue>> {
            let fd = if on_loop { Some(EventFd::new()?) } else { None };
            Ok(Arc::new(Queue {
                fd,
                ..Queue::default()
            }))
        };
        let queues = (0..threads.max(1))
            .map(|_| queue())
            .collect::<Result<Vec<_>, _>>()?;
        let inboxes = queues.iter().map(|q| Inbox { queue: q.clone() }).collect();
        Ok((Dispatch { queues }, inboxes))
    }

    pub(super) fn threads(&self) -> usize {
        self.queues.len()
    }

    /// Queues `event` for handler thread `thread`; if its queue is full, returns what to await
    /// until there is room. Not an `async fn`: the waiting state is boxed, paid only while a
    /// connection waits, not kept in every connection's task.
    pub(super) fn send(
        &self,
        thread: usize,
        event: Event,
    ) -> Result<(), Pin<Box<impl Future<Output = ()> + '_>>> {
        let queue = &self.queues[thread];
        match queue.push(event, QUEUE_EVENTS) {
            Ok(()) => Ok(()),
            Err(event) => Err(Box::pin(Dispatch::wait_for_room(queue, event))),
        }
    }

    async fn wait_for_room(queue: &Arc<Queue>, mut event: Event) {
        loop {
            let room = queue.room.notified();
            tokio::pin!(room);
            room.as_mut().enable(); // registered before the check: no wake-up is missed
            match queue.push(event, QUEUE_EVENTS) {
                Ok(()) => return,
                Err(back) => event = back,
            }
            room.await;
        }
    }

    /// Queues an event a connection sends once in its life (its arrival, its departure) past
    /// the limit: two per client at most, so the queue stays bounded, and the connection's task
    /// keeps no waiting state for them.
    pub(super) fn send_once(&self, thread: usize, event: Event) {
        let _ = self.queues[thread].push(event, usize::MAX);
    }

    /// Queues `event` from outside the runtime, past the limit (`stop()` sending Shutdown).
    pub(super) fn send_now(&self, thread: usize, event: Event) {
        let queue = &self.queues[thread];
        let _ = queue.push(event, usize::MAX);
        queue.wake_now();
    }
}

/// A handler thread's side of its queue.
#[derive(Debug)]
pub struct Inbox {
    queue: Arc<Queue>,
}

impl Inbox {
    /// Blocks the calling thread (never a runtime thread) until there are events, then moves
    /// up to `max` of them into `out`.
    pub fn next_batch(&mut self, max: usize, out: &mut Vec<Event>) {
        let queue = &self.queue;
        let mut state = queue.lock();
        while state.events.is_empty() {
            state.waiting = true;
            state.wake_pending = false;
            state = queue.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.waiting = false;
        let was_full = state.events.len() >= QUEUE_EVENTS;
        let n = state.events.len().min(max);
        out.extend(state.events.drain(..n));
        drop(state);
        if was_full {
            queue.room.notify_waiters();
        }
    }

    /// The eventfd an event loop watches (queues made `on_loop` only).
    pub fn fileno(&self) -> Option<std::os::fd::RawFd> {
        self.queue.fd.as_ref().map(EventFd::fileno)
    }

    /// For an event loop: moves up to `max` queued events into `out` without blocking. The
    /// eventfd turns readable again when more events are queued, or at once if some are left.
    pub fn try_batch(&mut self, max: usize, out: &mut Vec<Event>) {
        let queue = &self.queue;
        if let Some(fd) = &queue.fd {
            fd.clear(); // before looking: an event queued from here on signals again
        }
        let mut state = queue.lock();
        let was_full = state.events.len() >= QUEUE_EVENTS;
        let n = state.events.len().min(max);
        out.extend(state.events.drain(..n));
        if state.events.is_empty() {
            state.waiting = true;
            state.wake_pending = false;
        } else {
            state.waiting = false;
            queue.wake_now();
        }
        drop(state);
        if was_full {
            queue.room.notify_waiters();
        }
    }

    /// For an event loop that cannot take events for now: the eventfd stays quiet until the
    /// loop calls [`Inbox::try_batch`] again.
    pub fn pause(&mut self) {
        if let Some(fd) = &self.queue.fd {
            fd.clear();
        }
        self.queue.lock().waiting = false;
    }
}
