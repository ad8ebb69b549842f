//! Gateway handlers on an asyncio event loop: `await gateway.serve()` runs them on the running
//! loop, and a gateway with `async def` handlers started by `start()` runs one loop on each
//! handler thread (`sockwire.aio` holds the Python side of both).
//!
//! The loop watches the handler queue's eventfd and takes up to [`BATCH`] events per wake-up,
//! as a handler thread does per GIL acquisition. A plain handler runs at once; an `async def`
//! one becomes a task, and its client is *busy* until the task is done: the client's next
//! events wait in its own queue, so its packets are handled in order, while other clients'
//! handlers run meanwhile.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use pyo3::prelude::*;

use super::gateway::{
    call_route, client_info, handler_error, send_reply, Handlers, Handling, BATCH,
};
use super::registry::ClientInfo;
use crate::format::Header;
use crate::gateway::{Departure, Event, Inbox, Session};

/// Events waiting behind running handlers, over all clients, past which the loop stops taking
/// events: the handler queue then fills, and connections stop reading, as with handler threads
/// that fall behind.
const HELD_LIMIT: usize = 1024;

/// What is left to do once an `async def` handler is done.
enum After {
    /// Queue the reply to this request.
    Reply(Header),
    /// Nothing (`on_connect`).
    Nothing,
    /// The client's `on_disconnect` ran: forget the client, and tell the gateway it is gone.
    Departed(Departure),
}

#[doc = pydoc!("_HandlerLoop")]
#[pyclass(module = "sockwire._core", name = "_HandlerLoop")]
pub struct HandlerLoop {
    gateway: usize,
    handlers: Arc<Handlers>,
    inbox: Inbox,
    /// `loop.create_task`, once attached to a loop.
    create_task: Option<Py<PyAny>>,
    /// Resolved when the gateway has stopped.
    finished: Option<Py<PyAny>>,
    handling: Option<Handling>,
    /// One `ClientInfo` per connection.
    clients: HashMap<u64, Py<ClientInfo>>,
    /// Clients with a handler running, and the events waiting for it to finish.
    busy: HashMap<u64, VecDeque<Event>>,
    /// The task of each client's running `async def` handler.
    tasks: HashMap<u64, Py<PyAny>>,
    /// Events in `busy`.
    held: usize,
    /// Events are not taken while too many are held.
    paused: bool,
    batch: Vec<Event>,
    /// Sessions with replies to write.
    woken: Vec<Arc<Session>>,
}

impl HandlerLoop {
    pub(super) fn new(gateway: usize, handlers: Arc<Handlers>, inbox: Inbox) -> HandlerLoop {
        HandlerLoop {
            gateway,
            handlers,
            inbox,
            create_task: None,
            finished: None,
            handling: None,
            clients: HashMap::new(),
            busy: HashMap::new(),
            tasks: HashMap::new(),
            held: 0,
            paused: false,
            batch: Vec::with_capacity(BATCH),
            woken: Vec::new(),
        }
    }

    /// Takes a batch of events and handles (or holds) each.
    fn take(&mut self, owner: &Bound<'_, Self>) {
        if self.held >= HELD_LIMIT {
            self.paused = true;
            self.inbox.pause();
            return;
        }
        let mut batch = std::mem::take(&mut self.batch);
        self.inbox.try_batch(BATCH, &mut batch);
        for event in batch.drain(..) {
            self.dispatch(owner, event);
        }
        self.batch = batch;
        self.flush();
    }

    /// Handles `event` now, or holds it until its client's running handler is done.
    fn dispatch(&mut self, owner: &Bound<'_, Self>, event: Event) {
        if let Some(token) = event.session().map(|s| s.token()) {
            if let Some(waiting) = self.busy.get_mut(&token) {
                waiting.push_back(event);
                self.held += 1;
                return;
            }
        }
        self.run(owner, event);
    }

    /// Handles `event`; true if it started a task, which its client now waits for.
    fn run(&mut self, owner: &Bound<'_, Self>, event: Event) -> bool {
        let py = owner.py();
        let handlers = self.handlers.clone();
        match event {
            Event::Connected(session) => {
                let Some(on_connect) = &handlers.routes.on_connect else {
                    return false;
                };
                let called = client_info(py, &mut self.clients, &session)
                    .and_then(|info| on_connect.func.bind(py).call1((info,)));
                match called {
                    Ok(coroutine) if on_connect.is_async => {
                        return self.spawn(owner, session, coroutine, "on_connect", After::Nothing)
                    }
                    Ok(_) => {}
                    Err(err) => handler_error(py, &handlers, "on_connect", err),
                }
            }
            Event::Packets(session, packets) => {
                let info = match client_info(py, &mut self.clients, &session) {
                    Ok(info) => info,
                    Err(err) => {
                        handler_error(py, &handlers, "making the ClientInfo", err);
                        return false;
                    }
                };
                let mut wake = false;
                let mut packets = packets.into_iter();
                while let Some(packet) = packets.next() {
                    let Some((result, request, handler)) = call_route(py, &handlers, &info, packet)
                    else {
                        continue;
                    };
                    if !handler.is_async {
                        wake |= send_reply(py, &handlers, &session, &result, &request);
                        continue;
                    }
                    let what = format!("the handler for msg_id {}", request.msg_id);
                    let rest: Vec<_> = packets.collect();
                    let spawned =
                        self.spawn(owner, session.clone(), result, &what, After::Reply(request));
                    if wake {
                        self.woken.push(session.clone());
                    }
                    if !spawned {
                        // (logged) the rest of the read goes on as if the handler had raised
                        return !rest.is_empty() && self.run(owner, Event::Packets(session, rest));
                    }
                    if !rest.is_empty() {
                        self.held += 1;
                        let waiting = self.busy.entry(session.token()).or_default();
                        waiting.push_front(Event::Packets(session, rest));
                    }
                    return true;
                }
                if wake {
                    self.woken.push(session);
                }
            }
            Event::Drained(_mark) => {} // dropping it says this client's events are done
            Event::Disconnected(session, reason, departure) => {
                if let Some(on_disconnect) = &handlers.routes.on_disconnect {
                    let called = client_info(py, &mut self.clients, &session).and_then(|info| {
                        on_disconnect.func.bind(py).call1((info, reason.as_str()))
                    });
                    match called {
                        Ok(coroutine) if on_disconnect.is_async => {
                            let after = After::Departed(departure);
                            let token = session.token();
                            if self.spawn(owner, session, coroutine, "on_disconnect", after) {
                                return true;
                            }
                            self.clients.remove(&token);
                            return false;
                        }
                        Ok(_) => {}
                        Err(err) => handler_error(py, &handlers, "on_disconnect", err),
                    }
                }
                self.clients.remove(&session.token());
            }
            Event::Shutdown => {
                if let Some(finished) = &self.finished {
                    let finished = finished.bind(py);
                    let done = finished.call_method0("done").and_then(|d| d.is_truthy());
                    if let Ok(false) = done {
                        let _ = finished.call_method1("set_result", (py.None(),));
                    }
                }
            }
        }
        false
    }

    /// Runs `coroutine` as a task on the loop; its client is busy until the task is done. False
    /// (logged) if no task could be made.
    fn spawn(
        &mut self,
        owner: &Bound<'_, Self>,
        session: Arc<Session>,
        coroutine: Bound<'_, PyAny>,
        what: &str,
        after: After,
    ) -> bool {
        let py = owner.py();
        let token = session.token();
        let done = HandlerDone {
            owner: owner.clone().unbind(),
            session,
            what: what.to_owned(),
            after: Some(after),
        };
        let spawned = match &self.create_task {
            Some(create_task) => create_task.bind(py).call1((&coroutine,)).and_then(|task| {
                task.call_method1("add_done_callback", (done,))?;
                Ok(task)
            }),
            None => Err(pyo3::exceptions::PyRuntimeError::new_err(
                "the gateway's handler loop is not attached to an event loop",
            )),
        };
        match spawned {
            Ok(task) => {
                self.tasks.insert(token, task.unbind());
                self.busy.entry(token).or_default();
                true
            }
            Err(err) => {
                let _ = coroutine.call_method0("close"); // never awaited: no warning about it
                handler_error(py, &self.handlers, what, err);
                false
            }
        }
    }

    /// A client's handler is done: handles its held events until one starts a task again.
    fn resume(&mut self, owner: &Bound<'_, Self>, token: u64) {
        loop {
            let Some(waiting) = self.busy.get_mut(&token) else {
                return;
            };
            let Some(event) = waiting.pop_front() else {
                self.busy.remove(&token);
                return;
            };
            self.held -= 1;
            if self.run(owner, event) {
                return;
            }
        }
    }

    /// Writes the replies queued since the last flush (what the socket refuses, the
    /// connection's task writes).
    fn flush(&mut self) {
        for session in self.woken.drain(..) {
            session.flush();
        }
    }
}

#[pymethods]
impl HandlerLoop {
    #[doc = pydoc!("_HandlerLoop.fileno")]
    fn fileno(&self) -> i32 {
        self.inbox.fileno().unwrap_or(-1)
    }

    #[doc = pydoc!("_HandlerLoop.attach")]
    fn attach(&mut self, finished: Bound<'_, PyAny>) -> PyResult<()> {
        let event_loop = finished.call_method0("get_loop")?;
        self.create_task = Some(event_loop.getattr("create_task")?.unbind());
        self.finished = Some(finished.unbind());
        self.handling = Some(Handling::new(self.gateway));
        Ok(())
    }

    #[doc = pydoc!("_HandlerLoop.detach")]
    fn detach(&mut self) {
        self.handling = None;
        self.create_task = None;
    }

    #[doc = pydoc!("_HandlerLoop.cancel")]
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        for task in self.tasks.values() {
            task.bind(py).call_method0("cancel")?;
        }
        Ok(())
    }

    #[doc = pydoc!("_HandlerLoop.drain")]
    fn drain(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.try_borrow_mut()?.take(slf);
        Ok(())
    }
}

/// The done-callback of an `async def` handler's task.
#[pyclass(module = "sockwire._core", name = "_HandlerDone")]
struct HandlerDone {
    owner: Py<HandlerLoop>,
    session: Arc<Session>,
    what: String,
    after: Option<After>,
}

#[pymethods]
impl HandlerDone {
    fn __call__(&mut self, task: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = task.py();
        let owner = self.owner.bind(py);
        let mut this = owner.try_borrow_mut()?;
        let handlers = this.handlers.clone();
        let result = task.call_method0("result");
        let result = match result {
            Ok(result) => Some(result),
            Err(err) => {
                handler_error(py, &handlers, &self.what, err);
                None
            }
        };
        let token = self.session.token();
        this.tasks.remove(&token);
        match self.after.take() {
            Some(After::Reply(request)) => {
                let sent =
                    result.is_some_and(|r| send_reply(py, &handlers, &self.session, &r, &request));
                if sent {
                    this.woken.push(self.session.clone());
                }
            }
            Some(After::Departed(departure)) => {
                this.clients.remove(&token);
                drop(departure);
            }
            Some(After::Nothing) | None => {}
        }
        this.resume(owner, token);
        this.flush();
        if this.paused && this.held < HELD_LIMIT {
            this.paused = false;
            this.take(owner);
        }
        Ok(())
    }
}

/// A handler thread of a gateway with `async def` handlers: runs an event loop that handles
/// its events until the gateway stops.
pub(super) fn loop_thread(gateway: usize, handlers: Arc<Handlers>, inbox: Inbox) {
    Python::attach(|py| {
        let ran = Py::new(py, HandlerLoop::new(gateway, handlers.clone(), inbox)).and_then(|h| {
            let aio = py.import("sockwire.aio")?;
            aio.call_method1("_run_handler_loop", (h,)).map(drop)
        });
        if let Err(err) = ran {
            handler_error(py, &handlers, "the handler thread's event loop", err);
        }
    });
}
