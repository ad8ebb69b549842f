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

use pyo3::exceptions::PyStopIteration;
use pyo3::intern;
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
    /// `loop.create_task` and `loop.call_soon`, once attached to a loop.
    create_task: Option<Py<PyAny>>,
    call_soon: Option<Py<PyAny>>,
    /// `sockwire.aio._go_on`: the task's coroutine for a handler that waits.
    go_on: Option<Py<PyAny>>,
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
    /// Sessions with replies to write, and whether a flush is scheduled.
    woken: Vec<Arc<Session>>,
    flush_pending: bool,
}

impl HandlerLoop {
    pub(super) fn new(gateway: usize, handlers: Arc<Handlers>, inbox: Inbox) -> HandlerLoop {
        HandlerLoop {
            gateway,
            handlers,
            inbox,
            create_task: None,
            call_soon: None,
            go_on: None,
            finished: None,
            handling: None,
            clients: HashMap::new(),
            busy: HashMap::new(),
            tasks: HashMap::new(),
            held: 0,
            paused: false,
            batch: Vec::with_capacity(BATCH),
            woken: Vec::new(),
            flush_pending: false,
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
                        return self.start(owner, session, coroutine, "on_connect", After::Nothing)
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
                let mut packets = packets.into_iter();
                while let Some(packet) = packets.next() {
                    let Some((result, request, handler)) = call_route(py, &handlers, &info, packet)
                    else {
                        continue;
                    };
                    if !handler.is_async {
                        self.reply(py, &session, &result, &request);
                        continue;
                    }
                    let what = format!("the handler for msg_id {}", request.msg_id);
                    let after = After::Reply(request);
                    if !self.start(owner, session.clone(), result, &what, after) {
                        continue; // it finished without waiting for anything
                    }
                    let rest: Vec<_> = packets.collect();
                    if !rest.is_empty() {
                        self.held += 1;
                        let waiting = self.busy.entry(session.token()).or_default();
                        waiting.push_front(Event::Packets(session, rest));
                    }
                    return true;
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
                            return self.start(owner, session, coroutine, "on_disconnect", after);
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

    /// Runs `coroutine` (an `async def` handler's) up to its first suspension, at once; if it
    /// suspends, a task goes on with it and the client is busy until it is done (true).
    fn start(
        &mut self,
        owner: &Bound<'_, Self>,
        session: Arc<Session>,
        coroutine: Bound<'_, PyAny>,
        what: &str,
        after: After,
    ) -> bool {
        // NOTE: most handlers of a request/response protocol finish without waiting, or
        // wait once. Taking the first step here, as Python 3.12's eager tasks do, saves a task
        // (create_task, a loop turn, a done callback) whenever they do not wait: an `async
        // def` echo went from 80k to ~NNNk requests/s (100 connections x 1 in flight; the
        // plain handler did 150k).
        let py = owner.py();
        let yielded = match coroutine.call_method1(intern!(py, "send"), (py.None(),)) {
            Ok(yielded) => yielded,
            Err(err) if err.is_instance_of::<PyStopIteration>(py) => {
                let value = err.value(py).getattr(intern!(py, "value"));
                self.finish(py, &session, what, value, after);
                return false;
            }
            Err(err) => {
                self.finish(py, &session, what, Err(err), after);
                return false;
            }
        };
        let token = session.token();
        let done = HandlerDone {
            owner: owner.clone().unbind(),
            session: session.clone(),
            what: what.to_owned(),
            after: Some(after),
        };
        let spawned = match (&self.create_task, &self.go_on) {
            (Some(create_task), Some(go_on)) => go_on
                .bind(py)
                .call1((&coroutine, yielded, done))
                .and_then(|task_coroutine| create_task.bind(py).call1((task_coroutine,))),
            _ => Err(pyo3::exceptions::PyRuntimeError::new_err(
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
                let _ = coroutine.call_method0("close");
                handler_error(py, &self.handlers, what, err);
                false
            }
        }
    }

    /// What follows an `async def` handler's end (`result`: what it returned or raised).
    fn finish(
        &mut self,
        py: Python<'_>,
        session: &Arc<Session>,
        what: &str,
        result: PyResult<Bound<'_, PyAny>>,
        after: After,
    ) {
        let result = result.map_err(|err| handler_error(py, &self.handlers, what, err));
        match after {
            After::Reply(request) => {
                if let Ok(reply) = result {
                    self.reply(py, session, &reply, &request);
                }
            }
            After::Departed(departure) => {
                self.clients.remove(&session.token());
                drop(departure);
            }
            After::Nothing => {}
        }
    }

    /// Queues a handler's reply; the session is flushed with the others of this loop turn.
    fn reply(
        &mut self,
        py: Python<'_>,
        session: &Arc<Session>,
        reply: &Bound<'_, PyAny>,
        request: &Header,
    ) {
        let wake = send_reply(py, &self.handlers, session, reply, request);
        if wake && !self.woken.last().is_some_and(|s| Arc::ptr_eq(s, session)) {
            self.woken.push(session.clone());
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
        self.flush_pending = false;
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
        let py = finished.py();
        let event_loop = finished.call_method0("get_loop")?;
        self.create_task = Some(event_loop.getattr("create_task")?.unbind());
        self.call_soon = Some(event_loop.getattr("call_soon")?.unbind());
        self.go_on = Some(py.import("sockwire.aio")?.getattr("_go_on")?.unbind());
        self.finished = Some(finished.unbind());
        self.handling = Some(Handling::new(self.gateway));
        Ok(())
    }

    #[doc = pydoc!("_HandlerLoop.detach")]
    fn detach(&mut self) {
        self.handling = None;
        self.create_task = None;
        self.call_soon = None;
    }

    #[doc = pydoc!("_HandlerLoop.cancel")]
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        for task in self.tasks.values() {
            task.bind(py).call_method0("cancel")?;
        }
        Ok(())
    }

    #[doc = pydoc!("_HandlerLoop.flush")]
    #[pyo3(name = "flush")]
    fn flush_replies(&mut self) {
        self.flush();
    }

    #[doc = pydoc!("_HandlerLoop.drain")]
    fn drain(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.try_borrow_mut()?.take(slf);
        Ok(())
    }
}

/// Called by the task of an `async def` handler that waited (`sockwire.aio._go_on`) with
/// what the handler returned, or the exception it raised.
#[pyclass(module = "sockwire._core", name = "_HandlerDone")]
struct HandlerDone {
    owner: Py<HandlerLoop>,
    session: Arc<Session>,
    what: String,
    after: Option<After>,
}

#[pymethods]
impl HandlerDone {
    fn __call__(
        &mut self,
        py: Python<'_>,
        result: Bound<'_, PyAny>,
        error: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let Some(after) = self.after.take() else {
            return Ok(()); // (called once)
        };
        let owner = self.owner.bind(py);
        let mut this = owner.try_borrow_mut()?;
        let result = match error {
            None => Ok(result),
            Some(exc) => Err(PyErr::from_value(exc)),
        };
        let token = self.session.token();
        this.tasks.remove(&token);
        this.finish(py, &self.session, &self.what, result, after);
        this.resume(owner, token);
        if this.paused && this.held < HELD_LIMIT {
            this.paused = false;
            this.take(owner);
        }
        // The replies of every handler finishing in this loop turn go out together, after it.
        if !this.woken.is_empty() && !this.flush_pending {
            if let Some(call_soon) = &this.call_soon {
                call_soon
                    .bind(py)
                    .call1((owner.getattr(intern!(py, "flush"))?,))?;
                this.flush_pending = true;
            } else {
                this.flush();
            }
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
