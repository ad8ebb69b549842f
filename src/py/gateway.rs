//! `Gateway` over [`crate::gateway`]: routes and handlers, and the handler threads that run
//! them.
//!
//! A handler thread is a Rust thread attached to the interpreter for its whole life: it
//! releases the GIL while it waits for events, then takes it once for a whole batch (up to
//! [`BATCH`] events) and runs the handlers of every packet in it.
// NOTE: measured in the spike of ASYNC-BRIDGE.md on this machine: attaching to Python per item
// from a tokio worker cost 7.6-14 µs (a thread state made and freed each time); one thread
// attached once, waiting with the GIL released and running up to 256 items per GIL hold,
// 158-290 ns per item, and tokio never waits for the GIL. That is this design.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::convert::timeout_arg;
use super::format::{dict_fields, PacketFormat};
use super::gateway_loop::{loop_thread, HandlerLoop};
use super::gil::blocking;
use super::packet::Packet;
use super::registry::{ClientGroup, ClientInfo};
use super::setup::listen_address;
use super::tls::TlsConfig;
use crate::format::Header;
use crate::framed::Packet as CorePacket;
use crate::gateway::{Config, Event, Gateway as Core, Inbox, Reason, Sent, Session, Stats};
use crate::registry::{ClientRecord, Registry};
use crate::socket::{Timeout, Wait};

/// Events a handler thread takes per GIL acquisition at most.
pub(super) const BATCH: usize = 256;

/// Room a reply frame starts with: a small reply is written without growing its buffer.
const REPLY_CAPACITY: usize = 256;

/// A function the application registered, and whether calling it makes a coroutine.
pub(super) struct Handler {
    pub(super) func: Py<PyAny>,
    pub(super) is_async: bool,
}

impl Handler {
    fn new(func: &Bound<'_, PyAny>) -> PyResult<Handler> {
        let is_async = func
            .py()
            .import("inspect")?
            .call_method1("iscoroutinefunction", (func,))?
            .is_truthy()?;
        Ok(Handler {
            func: func.clone().unbind(),
            is_async,
        })
    }
}

/// The handlers, fixed once the gateway starts.
#[derive(Default)]
pub(super) struct Routes {
    by_id: HashMap<i64, Arc<Handler>>,
    default: Option<Arc<Handler>>,
    pub(super) on_connect: Option<Handler>,
    pub(super) on_disconnect: Option<Handler>,
}

impl Routes {
    /// Whether any handler is an `async def`: its gateway then handles events on event loops.
    fn any_async(&self) -> bool {
        let route = |h: &Arc<Handler>| h.is_async;
        self.by_id.values().any(route)
            || self.default.as_ref().is_some_and(route)
            || self.on_connect.as_ref().is_some_and(|h| h.is_async)
            || self.on_disconnect.as_ref().is_some_and(|h| h.is_async)
    }
}

/// What the handler threads share.
pub(super) struct Handlers {
    pub(super) routes: Routes,
    pub(super) format: Py<PacketFormat>,
    pub(super) stats: Arc<Stats>,
    logger: Py<PyAny>,
}

/// A started gateway and its handler threads.
struct Running {
    core: Arc<Core>,
    threads: Vec<JoinHandle<()>>,
}

thread_local! {
    /// The gateways whose handlers run on this thread (their addresses in memory), so that
    /// `stop()` from a handler does not wait for the thread it runs on: a handler thread, or
    /// the thread of an event loop running `await gateway.serve()`.
    static HANDLING_FOR: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Marks this thread as handling events for `gateway` until dropped.
pub(super) struct Handling(usize);

impl Handling {
    pub(super) fn new(gateway: usize) -> Handling {
        HANDLING_FOR.with_borrow_mut(|ids| ids.push(gateway));
        Handling(gateway)
    }

    fn here(gateway: usize) -> bool {
        HANDLING_FOR.with_borrow(|ids| ids.contains(&gateway))
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        HANDLING_FOR.with_borrow_mut(|ids| {
            if let Some(i) = ids.iter().position(|&id| id == self.0) {
                ids.remove(i);
            }
        });
    }
}

/// The gateways started and not stopped, for the exit hook.
static STARTED: Mutex<Vec<Py<Gateway>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[doc = pydoc!("Gateway")]
#[pyclass(module = "sockwire", name = "Gateway", frozen)]
pub struct Gateway {
    addr: Py<PyAny>,
    format: Py<PacketFormat>,
    max_clients: usize,
    handler_threads: usize,
    io_threads: Option<usize>,
    idle_timeout: Option<Duration>,
    send_queue: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
    reuse_port: bool,
    clients: Py<ClientGroup>,
    /// The counters, kept across `stop()` (and added to by a restart).
    stats: Arc<Stats>,
    routes: Mutex<Option<Routes>>,
    running: Mutex<Option<Running>>,
    /// Signalled when the gateway stops (for `serve_forever`).
    stopped: Condvar,
}

impl Gateway {
    fn id(&self) -> usize {
        self as *const Gateway as usize
    }

    fn registry(&self) -> &Arc<Registry> {
        &self.clients.get().inner
    }

    /// Changes the routes, which is only allowed before `start()`.
    fn edit_routes<T>(&self, edit: impl FnOnce(&mut Routes) -> PyResult<T>) -> PyResult<T> {
        let mut routes = lock(&self.routes);
        match routes.as_mut() {
            Some(routes) if lock(&self.running).is_none() => edit(routes),
            _ => Err(PyRuntimeError::new_err(
                "routes and handlers cannot change once the gateway has started",
            )),
        }
    }

    fn core(&self) -> PyResult<Arc<Core>> {
        lock(&self.running)
            .as_ref()
            .map(|r| r.core.clone())
            .ok_or_else(|| PyRuntimeError::new_err("the gateway is not running"))
    }

    /// The session `target` names: an fd (whoever is connected on it now) or a `ClientInfo`
    /// (that one connection, never its fd's next owner).
    fn session(&self, core: &Core, target: &Bound<'_, PyAny>) -> PyResult<Arc<Session>> {
        let found = if let Ok(info) = target.cast::<ClientInfo>() {
            core.session(&info.get().inner)
        } else if let Ok(fd) = target.extract::<i32>() {
            core.session_on_fd(fd)
        } else {
            return Err(PyTypeError::new_err(format!(
                "a client is an fd (int) or a ClientInfo, not {}",
                super::convert::type_name(target)
            )));
        };
        found
            .filter(|s| s.is_connected())
            .ok_or_else(|| PyKeyError::new_err(target.clone().unbind()))
    }

    fn frame(
        &self,
        body: &Bound<'_, PyAny>,
        msg_id: i64,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<u8>> {
        self.format.get().frame(body, msg_id, dict_fields(fields))
    }

    /// Starts the gateway: its handlers run on handler threads (each running an event loop
    /// when a handler is `async def`), or, `on_loop`, on the caller's running event loop
    /// through the [`HandlerLoop`] returned.
    fn start_core(slf: &Bound<'_, Self>, on_loop: bool) -> PyResult<Option<Py<HandlerLoop>>> {
        let py = slf.py();
        let this = slf.get();
        let mut running = lock(&this.running);
        if running.is_some() {
            if on_loop {
                return Err(PyRuntimeError::new_err("the gateway is already running"));
            }
            return Ok(None);
        }
        let routes = lock(&this.routes).take().unwrap_or_default();
        let loop_threads = !on_loop && routes.any_async();
        let addr = listen_address(py, this.addr.bind(py), "Gateway")?;
        let config = Config {
            addr,
            format: this.format.get().inner.clone(),
            max_clients: this.max_clients,
            // On the caller's loop, one queue: its events are all handled on that thread.
            handler_threads: if on_loop { 1 } else { this.handler_threads },
            io_threads: this.io_threads,
            idle_timeout: this.idle_timeout,
            send_queue: this.send_queue,
            tls: this.tls.clone(),
            reuse_port: this.reuse_port,
            notify_connect: routes.on_connect.is_some(),
            on_loop: on_loop || loop_threads,
        };
        let (registry, stats) = (this.registry().clone(), this.stats.clone());
        let started = py.detach(|| Core::start(config, registry, stats));
        let (core, inboxes) = match started {
            Ok(started) => started,
            Err(e) => {
                *lock(&this.routes) = Some(routes); // a failed start changes nothing
                return Err(e.into());
            }
        };
        let core = Arc::new(core);
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("sockwire.gateway",))?
            .unbind();
        let handlers = Arc::new(Handlers {
            routes,
            format: this.format.clone_ref(py),
            stats: core.stats().clone(),
            logger,
        });
        let id = this.id();
        let mut on_caller = None;
        let mut threads = Vec::new();
        for (i, inbox) in inboxes.into_iter().enumerate() {
            let handlers = handlers.clone();
            if on_loop {
                on_caller = Some(Py::new(py, HandlerLoop::new(id, handlers, inbox))?);
                continue;
            }
            let thread = std::thread::Builder::new().name(format!("sockwire-handler-{i}"));
            threads.push(if loop_threads {
                thread.spawn(move || loop_thread(id, handlers, inbox))?
            } else {
                thread.spawn(move || handler_thread(id, &handlers, inbox))?
            });
        }
        *running = Some(Running { core, threads });
        lock(&STARTED).push(slf.clone().unbind());
        Ok(on_caller)
    }

    /// Stops the gateway (see `stop` in the stub); a no-op once stopped. `wait` bounds the wait
    /// for the clients' `on_disconnect` (at exit, an event loop that would run them may be gone).
    fn stop_core(slf: &Bound<'_, Self>, timeout: Duration, wait: Wait) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let Some(core) = lock(&this.running).as_ref().map(|r| r.core.clone()) else {
            return Ok(());
        };
        core.begin_stop(timeout);
        if Handling::here(this.id()) {
            // Called from one of this gateway's handlers, whose thread must go on handling the
            // stop: another thread waits for the clients to leave and finishes the stop.
            let gateway = slf.clone().unbind();
            std::thread::spawn(move || {
                while let Err(e) = core.wait_until_empty(Wait::Blocking) {
                    if !e.is_interrupted() {
                        break;
                    }
                }
                gateway.get().finish_stop();
            });
            return Ok(());
        }
        match blocking(py, || core.wait_until_empty(wait)) {
            // (at exit) stop without them
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) => {}
            waited => waited?,
        }
        py.detach(|| this.finish_stop());
        Ok(())
    }

    /// Once every client has left: ends the handler threads and marks the gateway stopped.
    fn finish_stop(&self) {
        let Some(running) = lock(&self.running).take() else {
            return; // another thread finished the stop meanwhile
        };
        running.core.shut_handlers();
        for thread in running.threads {
            let _ = thread.join();
        }
        lock(&STARTED).retain(|g| g.get().id() != self.id());
        self.stopped.notify_all();
    }
}

/// A handler thread: attached to Python for its whole life, waiting without the GIL.
fn handler_thread(gateway: usize, handlers: &Handlers, mut inbox: Inbox) {
    let _handling = Handling::new(gateway);
    Python::attach(|py| {
        let mut clients: HashMap<u64, Py<ClientInfo>> = HashMap::new();
        let mut batch = Vec::with_capacity(BATCH);
        let mut woken: Vec<Arc<Session>> = Vec::new();
        loop {
            py.detach(|| {
                // The replies of the last batch go out: written here when the socket takes
                // them, else by the connection's task.
                for session in woken.drain(..) {
                    session.flush();
                }
                inbox.next_batch(BATCH, &mut batch);
            });
            for event in batch.drain(..) {
                if !handle(py, handlers, &mut clients, &mut woken, event) {
                    return;
                }
            }
        }
    });
}

/// The `ClientInfo` handlers get for a session: one object per connection.
pub(super) fn client_info<'py>(
    py: Python<'py>,
    clients: &mut HashMap<u64, Py<ClientInfo>>,
    session: &Arc<Session>,
) -> PyResult<Bound<'py, ClientInfo>> {
    if let Some(info) = clients.get(&session.token()) {
        return Ok(info.bind(py).clone());
    }
    let info = Bound::new(
        py,
        ClientInfo {
            inner: session.registration(),
        },
    )?;
    clients.insert(session.token(), info.clone().unbind());
    Ok(info)
}

/// Runs the handlers an event calls for; false on `Shutdown`. Connections with replies to
/// write are added to `woken`.
fn handle(
    py: Python<'_>,
    handlers: &Handlers,
    clients: &mut HashMap<u64, Py<ClientInfo>>,
    woken: &mut Vec<Arc<Session>>,
    event: Event,
) -> bool {
    match event {
        Event::Connected(session) => {
            if let Some(on_connect) = &handlers.routes.on_connect {
                let called = client_info(py, clients, &session)
                    .and_then(|info| on_connect.func.bind(py).call1((info,)));
                if let Err(err) = called {
                    handler_error(py, handlers, "on_connect", err);
                }
            }
        }
        Event::Packets(session, packets) => {
            let info = match client_info(py, clients, &session) {
                Ok(info) => info,
                Err(err) => {
                    handler_error(py, handlers, "making the ClientInfo", err);
                    return true;
                }
            };
            let mut wake = false;
            for packet in packets {
                wake |= handle_packet(py, handlers, &info, &session, packet);
            }
            if wake {
                woken.push(session);
            }
        }
        Event::Drained(_mark) => {} // dropping it says this client's queue is done
        Event::Disconnected(session, reason, _departure) => {
            if let Some(on_disconnect) = &handlers.routes.on_disconnect {
                let called = client_info(py, clients, &session)
                    .and_then(|info| on_disconnect.func.bind(py).call1((info, reason.as_str())));
                if let Err(err) = called {
                    handler_error(py, handlers, "on_disconnect", err);
                }
            }
            clients.remove(&session.token());
        }
        Event::Shutdown => return false,
    }
    true
}

/// Runs a packet's handler and queues its reply; true if the connection needs a wake-up.
fn handle_packet(
    py: Python<'_>,
    handlers: &Handlers,
    info: &Bound<'_, ClientInfo>,
    session: &Session,
    packet: CorePacket,
) -> bool {
    match call_route(py, handlers, info, packet) {
        Some((reply, request, _)) => send_reply(py, handlers, session, &reply, &request),
        None => false,
    }
}

/// Calls the handler of `packet`'s route: what it returned (a coroutine for an `async def`
/// handler), the request's header, and the handler. None when there is nothing more to do (no
/// route, or the handler raised, which is logged).
pub(super) fn call_route<'py, 'h>(
    py: Python<'py>,
    handlers: &'h Handlers,
    info: &Bound<'py, ClientInfo>,
    packet: CorePacket,
) -> Option<(Bound<'py, PyAny>, Header, &'h Handler)> {
    let routes = &handlers.routes;
    let msg_id = packet.header.msg_id;
    let Some(handler) = routes.by_id.get(&msg_id).or(routes.default.as_ref()) else {
        handlers.stats.unrouted.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let format = handlers.format.get();
    let request = packet.header.clone();
    let result = Packet::from_core(py, &format.inner, packet)
        .and_then(|packet| handler.func.bind(py).call1((info, packet)));
    match result {
        Ok(reply) => Some((reply, request, handler)),
        Err(err) => {
            handler_error(
                py,
                handlers,
                &format!("the handler for msg_id {msg_id}"),
                err,
            );
            None
        }
    }
}

/// Queues a handler's reply to `request`; true if the connection needs a wake-up.
pub(super) fn send_reply(
    py: Python<'_>,
    handlers: &Handlers,
    session: &Session,
    reply: &Bound<'_, PyAny>,
    request: &Header,
) -> bool {
    if reply.is_none() {
        return false;
    }
    let mut frame = Vec::with_capacity(REPLY_CAPACITY);
    match handlers.format.get().pack_reply(&mut frame, reply, request) {
        // A full queue cuts the client as a slow consumer; a client gone meanwhile gets
        // nothing: neither is the handler's error.
        Ok(()) => session.queue(&frame).1,
        Err(err) => {
            let err = if err.is_instance_of::<PyTypeError>(py) {
                PyTypeError::new_err(format!(
                    "a handler returns None, bytes or a Packet, not {}",
                    super::convert::type_name(reply)
                ))
            } else {
                err
            };
            let what = format!("the reply to msg_id {}", request.msg_id);
            handler_error(py, handlers, &what, err);
            false
        }
    }
}

/// Logs a handler's exception with its traceback on `sockwire.gateway`, and counts it.
pub(super) fn handler_error(py: Python<'_>, handlers: &Handlers, what: &str, err: PyErr) {
    handlers
        .stats
        .handler_errors
        .fetch_add(1, Ordering::Relaxed);
    let kwargs = PyDict::new(py);
    let exc_info = (err.get_type(py), err.value(py), err.traceback(py));
    let _ = kwargs.set_item("exc_info", exc_info);
    let logged = handlers
        .logger
        .bind(py)
        .call_method("error", ("%s raised", what), Some(&kwargs));
    if let Err(e) = logged {
        e.write_unraisable(py, None);
    }
}

#[pymethods]
impl Gateway {
    #[new]
    #[pyo3(signature = (addr, format=None, *, max_clients=5000, handler_threads=1, io_threads=None, idle_timeout=None, send_queue=1024, tls=None, reuse_port=false))]
    #[allow(clippy::too_many_arguments)] // DESIGN's keywords
    fn new(
        py: Python<'_>,
        addr: &Bound<'_, PyAny>,
        format: Option<Bound<'_, PacketFormat>>,
        max_clients: i128,
        handler_threads: i128,
        io_threads: Option<i128>,
        idle_timeout: Option<&Bound<'_, PyAny>>,
        send_queue: i128,
        tls: Option<&Bound<'_, TlsConfig>>,
        reuse_port: bool,
    ) -> PyResult<Self> {
        let positive = |value: i128, name: &str| -> PyResult<usize> {
            let n = super::convert::usize_arg(value, name)?;
            if n == 0 {
                return Err(PyValueError::new_err(format!("{name} must be at least 1")));
            }
            Ok(n)
        };
        let max_clients = positive(max_clients, "max_clients")?;
        let idle_timeout = match idle_timeout.filter(|t| !t.is_none()) {
            None => None,
            Some(t) => match timeout_arg(t)? {
                Timeout::After(d) => Some(d),
                _ => return Err(PyValueError::new_err("idle_timeout must be above 0")),
            },
        };
        let format = match format {
            Some(f) => f.unbind(),
            None => Py::new(py, PacketFormat::default_format())?,
        };
        Ok(Gateway {
            addr: addr.clone().unbind(),
            format,
            max_clients,
            handler_threads: positive(handler_threads, "handler_threads")?,
            io_threads: io_threads.map(|n| positive(n, "io_threads")).transpose()?,
            idle_timeout,
            send_queue: positive(send_queue, "send_queue")?,
            tls: tls.map(|t| t.get().server_settings()).transpose()?,
            reuse_port,
            clients: Py::new(
                py,
                ClientGroup {
                    inner: Registry::new(Some(max_clients)),
                },
            )?,
            stats: Arc::default(),
            routes: Mutex::new(Some(Routes::default())),
            running: Mutex::new(None),
            stopped: Condvar::new(),
        })
    }

    #[doc = pydoc!("Gateway.route")]
    #[pyo3(signature = (*msg_ids))]
    fn route(slf: &Bound<'_, Self>, msg_ids: &Bound<'_, PyTuple>) -> PyResult<RouteDecorator> {
        let ids = msg_ids.extract::<Vec<i64>>()?;
        slf.get().edit_routes(|_| Ok(()))?;
        Ok(RouteDecorator {
            gateway: slf.clone().unbind(),
            msg_ids: ids,
        })
    }

    #[doc = pydoc!("Gateway.on_connect")]
    #[pyo3(signature = (handler, /))]
    fn on_connect<'py>(&self, handler: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let registered = Handler::new(&handler)?;
        self.edit_routes(|r| {
            r.on_connect = Some(registered);
            Ok(())
        })?;
        Ok(handler)
    }

    #[doc = pydoc!("Gateway.on_disconnect")]
    #[pyo3(signature = (handler, /))]
    fn on_disconnect<'py>(&self, handler: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let registered = Handler::new(&handler)?;
        self.edit_routes(|r| {
            r.on_disconnect = Some(registered);
            Ok(())
        })?;
        Ok(handler)
    }

    #[doc = pydoc!("Gateway.start")]
    fn start(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        Gateway::start_core(&slf, false)?;
        Ok(slf)
    }

    #[doc = pydoc!("Gateway.serve_forever")]
    fn serve_forever(slf: Bound<'_, Self>) -> PyResult<()> {
        Gateway::start_core(&slf, false)?;
        let py = slf.py();
        let this = slf.get();
        let waited = blocking(py, || {
            let running = lock(&this.running);
            if running.is_none() {
                return Ok(());
            }
            // Wake now and then to run signal handlers (Ctrl-C).
            let _ = this
                .stopped
                .wait_timeout(running, Duration::from_millis(50));
            Err(crate::error::Error::os(libc::EINTR))
        });
        if let Err(err) = waited {
            Gateway::stop_core(&slf, Duration::from_secs(5), Wait::Blocking)?;
            return Err(err);
        }
        Ok(())
    }

    #[doc = pydoc!("Gateway.serve")]
    fn serve(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        let aio = slf.py().import("sockwire.aio")?;
        aio.call_method1("_serve", (slf,))
    }

    /// Starts the gateway with its handlers on the running event loop (for `serve`).
    fn _start_on_loop(slf: &Bound<'_, Self>) -> PyResult<Py<HandlerLoop>> {
        let started = Gateway::start_core(slf, true)?;
        Ok(started.expect("a gateway started on a loop has its handler loop"))
    }

    #[doc = pydoc!("Gateway.stop")]
    #[pyo3(signature = (timeout=Some(5.0)), text_signature = "(self, timeout=5.0)")]
    fn stop(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = match timeout {
            None => Duration::from_secs(86400 * 365), // as long as the replies take
            Some(t) if t.is_nan() || t < 0.0 => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be >= 0, not {t}"
                )))
            }
            Some(t) => Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX),
        };
        Gateway::stop_core(slf, timeout, Wait::Blocking)
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        Gateway::start(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(slf: &Bound<'_, Self>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        Gateway::stop_core(slf, Duration::from_secs(5), Wait::Blocking)
    }

    #[doc = pydoc!("Gateway.running")]
    #[getter]
    fn running(&self) -> bool {
        lock(&self.running).is_some()
    }

    #[doc = pydoc!("Gateway.address")]
    #[getter]
    fn address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let core = self.core()?;
        super::convert::address_value(py, &core.address())
    }

    #[doc = pydoc!("Gateway.clients")]
    #[getter]
    fn clients(&self, py: Python<'_>) -> Py<ClientGroup> {
        self.clients.clone_ref(py)
    }

    #[doc = pydoc!("Gateway.max_clients")]
    #[getter]
    fn max_clients(&self) -> usize {
        self.max_clients
    }

    #[doc = pydoc!("Gateway.format")]
    #[getter]
    fn format(&self, py: Python<'_>) -> Py<PacketFormat> {
        self.format.clone_ref(py)
    }

    #[doc = pydoc!("Gateway.send")]
    #[pyo3(signature = (client, body, msg_id=0, **fields))]
    fn send(
        &self,
        client: &Bound<'_, PyAny>,
        body: &Bound<'_, PyAny>,
        msg_id: i64,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let core = self.core()?;
        let session = self.session(&core, client)?;
        let frame = self.frame(body, msg_id, fields)?;
        match session.send(&frame) {
            Sent::Queued => Ok(()),
            Sent::Gone | Sent::SlowConsumer => Err(PyKeyError::new_err(client.clone().unbind())),
        }
    }

    #[doc = pydoc!("Gateway.broadcast")]
    #[pyo3(signature = (body, msg_id=0, *, exclude=None, **fields))]
    fn broadcast(
        &self,
        body: &Bound<'_, PyAny>,
        msg_id: i64,
        exclude: Option<&Bound<'_, PyAny>>,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<usize> {
        let core = self.core()?;
        // What `exclude` names: fds, and single connections (ClientInfo).
        let mut fds = Vec::new();
        let mut registrations: Vec<ClientRecord> = Vec::new();
        if let Some(exclude) = exclude.filter(|e| !e.is_none()) {
            for item in exclude.try_iter()? {
                let item = item?;
                if let Ok(info) = item.cast::<ClientInfo>() {
                    registrations.push(info.get().inner.clone());
                } else {
                    fds.push(item.extract::<i32>().map_err(|_| {
                        PyTypeError::new_err(
                            "exclude holds clients: fds (int) or ClientInfo objects",
                        )
                    })?);
                }
            }
        }
        // Encoded once: every client gets the same bytes.
        let frame = self.frame(body, msg_id, fields)?;
        Ok(core.broadcast(&frame, |record| {
            fds.contains(&record.fd) || registrations.iter().any(|r| r == record)
        }))
    }

    #[doc = pydoc!("Gateway.kick")]
    #[pyo3(signature = (client, reason="kicked"))]
    fn kick(&self, client: &Bound<'_, PyAny>, reason: &str) -> PyResult<bool> {
        let Ok(core) = self.core() else {
            return Ok(false);
        };
        match self.session(&core, client) {
            Ok(session) => Ok(session.kick(Reason::Kicked(reason.to_owned()))),
            Err(e) if e.is_instance_of::<PyKeyError>(client.py()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    #[doc = pydoc!("Gateway.stats")]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (key, value) in self.stats.snapshot(self.registry().len()) {
            d.set_item(key, value)?;
        }
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let state = match lock(&self.running).as_ref() {
            Some(r) => format!("running on {}", r.core.address()),
            None => "stopped".to_owned(),
        };
        Ok(format!(
            "<Gateway {} {}, {} of max {} clients>",
            self.addr.bind(py).repr()?,
            state,
            self.registry().len(),
            self.max_clients
        ))
    }
}

/// What `@gateway.route(...)` returns: registers the function it decorates.
#[pyclass(module = "sockwire", name = "_RouteDecorator", frozen)]
pub struct RouteDecorator {
    gateway: Py<Gateway>,
    msg_ids: Vec<i64>,
}

#[pymethods]
impl RouteDecorator {
    fn __call__<'py>(&self, handler: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let registered = Arc::new(Handler::new(&handler)?);
        self.gateway.get().edit_routes(|routes| {
            if self.msg_ids.is_empty() {
                if routes.default.is_some() {
                    return Err(PyValueError::new_err(
                        "a default route is already registered",
                    ));
                }
                routes.default = Some(registered);
                return Ok(());
            }
            if let Some(id) = self.msg_ids.iter().find(|id| routes.by_id.contains_key(id)) {
                return Err(PyValueError::new_err(format!(
                    "msg_id {id} already has a route"
                )));
            }
            for id in &self.msg_ids {
                routes.by_id.insert(*id, registered.clone());
            }
            Ok(())
        })?;
        Ok(handler)
    }
}

#[doc = pydoc!("_at_exit")]
#[pyfunction]
pub fn _at_exit(py: Python<'_>) -> PyResult<()> {
    let started: Vec<Py<Gateway>> = std::mem::take(&mut *lock(&STARTED));
    for gateway in started {
        // Bounded: a gateway served on an event loop that is gone has no one left to run its
        // clients' on_disconnect.
        let wait = Wait::Until(std::time::Instant::now() + Duration::from_secs(2));
        let _ = Gateway::stop_core(gateway.bind(py), Duration::from_secs(1), wait);
    }
    py.detach(|| crate::runtime::shutdown(Duration::from_secs(1)));
    Ok(())
}
