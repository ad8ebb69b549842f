//! `ClientInfo` and `ClientGroup`: the seed's client registry over [`crate::registry`].

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::convert::{address_value, type_name};
use super::socket::Socket;
use crate::gateway::Session;
use crate::registry::{ClientData, ClientRecord, Registry};
use crate::setup;

/// What a registration keeps for Python: the client's `state` dict, made on first use and
/// the same object for as long as the registration lives.
#[derive(Default)]
pub struct ClientState {
    state: OnceLock<Py<PyDict>>,
}

/// A fresh [`ClientState`], as every registration made from Python gets.
pub fn client_data() -> ClientData {
    Arc::new(ClientState::default())
}

#[doc = pydoc!("ClientInfo")]
#[pyclass(module = "sockwire", name = "ClientInfo", frozen)]
pub struct ClientInfo {
    pub(crate) inner: ClientRecord,
}

const KEYS: [&str; 4] = ["client_fd", "fd_port", "addr", "connected_at"];

#[pymethods]
impl ClientInfo {
    #[doc = pydoc!("ClientInfo.client_fd")]
    #[getter]
    fn client_fd(&self) -> i32 {
        self.inner.fd
    }

    #[doc = pydoc!("ClientInfo.fd_port")]
    #[getter]
    fn fd_port(&self) -> u16 {
        self.inner.addr.port()
    }

    #[doc = pydoc!("ClientInfo.addr")]
    #[getter]
    fn addr<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        address_value(py, &self.inner.addr)
    }

    #[doc = pydoc!("ClientInfo.connected_at")]
    #[getter]
    fn connected_at(&self) -> f64 {
        self.inner.connected_at
    }

    #[doc = pydoc!("ClientInfo.state")]
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let data = self.inner.data.as_deref();
        let state = match data.and_then(|d| d.downcast_ref::<Session>()) {
            // A gateway's client: the state lives with its session, made on first use.
            Some(session) => session
                .app
                .get_or_init(|| Box::new(ClientState::default()))
                .downcast_ref::<ClientState>(),
            None => data.and_then(|d| d.downcast_ref::<ClientState>()),
        };
        let state = state.ok_or_else(|| {
            pyo3::exceptions::PyAttributeError::new_err(
                "this client was registered without a state",
            )
        })?;
        Ok(state
            .state
            .get_or_init(|| PyDict::new(py).unbind())
            .bind(py)
            .clone())
    }

    fn __getitem__<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        Ok(match key {
            "client_fd" => self.client_fd().into_pyobject(py)?.into_any(),
            "fd_port" => self.fd_port().into_pyobject(py)?.into_any(),
            "addr" => self.addr(py)?.into_any(),
            "connected_at" => self.connected_at().into_pyobject(py)?.into_any(),
            _ => return Err(PyKeyError::new_err(key.to_owned())),
        })
    }

    #[doc = pydoc!("ClientInfo.keys")]
    fn keys(&self) -> Vec<&'static str> {
        KEYS.to_vec()
    }

    #[doc = pydoc!("ClientInfo.as_dict")]
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for key in KEYS {
            d.set_item(key, self.__getitem__(py, key)?)?;
        }
        Ok(d)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<ClientInfo>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        // fd and registration token identify a registration; equal records share both.
        (self.inner.fd as u64) << 32 ^ self.inner.token
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "ClientInfo(client_fd={}, fd_port={}, addr={}, connected_at={:.6})",
            self.inner.fd,
            self.fd_port(),
            self.addr(py)?.repr()?,
            self.inner.connected_at
        ))
    }
}

#[doc = pydoc!("ClientGroup")]
#[pyclass(module = "sockwire", name = "ClientGroup", frozen)]
pub struct ClientGroup {
    pub(crate) inner: Arc<Registry>,
}

fn info(inner: ClientRecord) -> ClientInfo {
    ClientInfo { inner }
}

/// The fd an `in` test or lookup names: an int, or anything with `fileno()`.
fn fd_of(obj: &Bound<'_, PyAny>) -> PyResult<i32> {
    match obj.extract::<i32>() {
        Ok(fd) => Ok(fd),
        Err(_) => obj.call_method0("fileno")?.extract(),
    }
}

/// The peer address of any socket-like object, through its `getpeername()`.
fn peer_of(sock: &Bound<'_, PyAny>) -> PyResult<SocketAddr> {
    if !sock.hasattr("getpeername")? || !sock.hasattr("fileno")? {
        return Err(PyTypeError::new_err(format!(
            "ClientGroup holds connected sockets (sockwire.Socket or socket.socket), not {}",
            type_name(sock)
        )));
    }
    let peer = sock.call_method0("getpeername")?;
    let tuple = peer.cast::<PyTuple>().map_err(|_| {
        PyTypeError::new_err("ClientGroup holds TCP sockets: getpeername() must return a tuple")
    })?;
    let host: String = tuple.get_item(0)?.extract()?;
    let port: u16 = tuple.get_item(1)?.extract()?;
    let ip: IpAddr = host
        .parse()
        .map_err(|_| PyTypeError::new_err(format!("not an IP address: {host:?}")))?;
    Ok(SocketAddr::new(ip, port))
}

#[pymethods]
impl ClientGroup {
    #[new]
    #[pyo3(signature = (max=None))]
    fn new(max: Option<usize>) -> Self {
        ClientGroup {
            inner: Registry::new(max),
        }
    }

    #[doc = pydoc!("ClientGroup.max")]
    #[getter]
    fn max(&self) -> Option<usize> {
        self.inner.max()
    }

    #[doc = pydoc!("ClientGroup.add")]
    fn add(&self, sock: &Bound<'_, PyAny>) -> PyResult<ClientInfo> {
        let peer = peer_of(sock)?;
        let record = match sock.cast::<Socket>() {
            Ok(s) => setup::register(&self.inner, s.get().sock(), peer, Some(client_data()))?,
            Err(_) => self
                .inner
                .add_with(fd_of(sock)?, peer, Some(client_data()))?,
        };
        Ok(info(record))
    }

    #[doc = pydoc!("ClientGroup.remove")]
    fn remove(&self, fd: i32) -> PyResult<ClientInfo> {
        self.inner
            .remove(fd)
            .map(info)
            .ok_or_else(|| PyKeyError::new_err(fd))
    }

    #[doc = pydoc!("ClientGroup.discard")]
    fn discard(&self, fd: i32) {
        self.inner.remove(fd);
    }

    #[doc = pydoc!("ClientGroup.get")]
    fn get(&self, fd: i32) -> Option<ClientInfo> {
        self.inner.get(fd).map(info)
    }

    #[doc = pydoc!("ClientGroup.by_port")]
    fn by_port(&self, port: u16) -> Option<ClientInfo> {
        self.inner.by_port(port).map(info)
    }

    #[doc = pydoc!("ClientGroup.len")]
    fn len(&self) -> usize {
        self.inner.len()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, fd: &Bound<'_, PyAny>) -> bool {
        fd_of(fd).is_ok_and(|fd| self.inner.contains(fd))
    }

    // Iterates over a snapshot, in registration order: adding or removing clients meanwhile
    // is safe. (A slot: its Python doc is the class's.)
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let items = self.inner.snapshot().into_iter().map(info);
        Ok(PyList::new(py, items)?.try_iter()?.into_any())
    }

    fn __repr__(&self) -> String {
        match self.inner.max() {
            Some(max) => format!("<ClientGroup {} of max {max} clients>", self.inner.len()),
            None => format!("<ClientGroup {} clients>", self.inner.len()),
        }
    }
}
