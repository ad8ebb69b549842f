//! The seed recipe's functions and `Listener`, over [`crate::setup`].

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use std::sync::Arc;

use super::convert::{address_arg, resolve, timeout_arg};
use super::gil::detached;
use super::registry::{client_data, ClientGroup};
use super::socket::{default_timeout, Socket};
use super::tls::TlsConfig;
use crate::registry::Registry;
use crate::setup;
use crate::socket::Timeout;

#[doc = pydoc!("Listener")]
#[pyclass(module = "sockwire", name = "Listener", extends = Socket, frozen)]
pub struct Listener {
    clients: Py<ClientGroup>,
    max_clients: usize,
    /// Accepted clients do a TLS handshake with this before they are handed out.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// The family an address tuple is for: IPv6 for a 4-tuple or a host with a colon.
fn family_of(addr: &Bound<'_, PyAny>) -> i32 {
    let Ok(tuple) = addr.cast::<PyTuple>() else {
        return libc::AF_INET;
    };
    let host_has_colon = tuple
        .get_item(0)
        .ok()
        .and_then(|h| {
            h.cast::<PyString>()
                .ok()
                .map(|s| s.to_string().contains(':'))
        })
        .unwrap_or(false);
    if tuple.len() == 4 || host_has_colon {
        libc::AF_INET6
    } else {
        libc::AF_INET
    }
}

/// The address a listener binds: `("", port)` is every IPv4 interface, a host with a colon
/// (or a 4-tuple) IPv6, as the stdlib reads them.
pub(crate) fn listen_address(
    py: Python<'_>,
    addr: &Bound<'_, PyAny>,
    caller: &str,
) -> PyResult<std::net::SocketAddr> {
    let family = family_of(addr);
    let hp = address_arg(family, addr, caller)?;
    resolve(py, family, &hp)
}

#[pymethods]
impl Listener {
    #[new]
    #[pyo3(signature = (addr, max, *, reuse_port=false, tls=None))]
    fn new(
        py: Python<'_>,
        addr: &Bound<'_, PyAny>,
        max: usize,
        reuse_port: bool,
        tls: Option<&Bound<'_, TlsConfig>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let tls = tls.map(|t| t.get().server_settings()).transpose()?;
        if max == 0 {
            return Err(PyValueError::new_err("max must be at least 1"));
        }
        let sockaddr = listen_address(py, addr, "server_listener")?;
        let sock = setup::listen(&sockaddr, max, reuse_port)?;
        let clients = Py::new(
            py,
            ClientGroup {
                inner: Registry::new(Some(max)),
            },
        )?;
        Ok(
            PyClassInitializer::from(Socket::adopt(py, sock)?).add_subclass(Listener {
                clients,
                max_clients: max,
                tls,
            }),
        )
    }

    #[doc = pydoc!("Listener.max_clients")]
    #[getter]
    fn max_clients(&self) -> usize {
        self.max_clients
    }

    #[doc = pydoc!("Listener.clients")]
    #[getter]
    fn clients(&self, py: Python<'_>) -> Py<ClientGroup> {
        self.clients.clone_ref(py)
    }
}

fn buffer_size(value: Option<i32>, name: &str) -> PyResult<Option<i32>> {
    match value {
        Some(v) if v <= 0 => Err(PyValueError::new_err(format!("{name} must be positive"))),
        v => Ok(v),
    }
}

#[doc = pydoc!("tcp_client_options")]
#[pyfunction]
#[pyo3(signature = (family=libc::AF_INET, *, nodelay=true, sndbuf=None, rcvbuf=None))]
pub fn tcp_client_options(
    py: Python<'_>,
    family: i32,
    nodelay: bool,
    sndbuf: Option<i32>,
    rcvbuf: Option<i32>,
) -> PyResult<Socket> {
    let sock = setup::client_options(
        family,
        nodelay,
        buffer_size(sndbuf, "sndbuf")?,
        buffer_size(rcvbuf, "rcvbuf")?,
    )?;
    Socket::adopt(py, sock)
}

#[doc = pydoc!("tcp_server_options")]
#[pyfunction]
#[pyo3(signature = (family=libc::AF_INET, *, reuse_addr=true, sndbuf=None, rcvbuf=None, blocking=true))]
pub fn tcp_server_options(
    py: Python<'_>,
    family: i32,
    reuse_addr: bool,
    sndbuf: Option<i32>,
    rcvbuf: Option<i32>,
    blocking: bool,
) -> PyResult<Socket> {
    let sock = setup::server_options(
        family,
        reuse_addr,
        buffer_size(sndbuf, "sndbuf")?,
        buffer_size(rcvbuf, "rcvbuf")?,
    )?;
    let socket = Socket::adopt(py, sock)?;
    if !blocking {
        socket.sock().set_timeout(Timeout::NonBlocking)?;
    }
    Ok(socket)
}

#[doc = pydoc!("server_listener")]
#[pyfunction]
#[pyo3(signature = (addr, max, *, reuse_port=false, tls=None))]
pub fn server_listener<'py>(
    py: Python<'py>,
    addr: &Bound<'py, PyAny>,
    max: usize,
    reuse_port: bool,
    tls: Option<&Bound<'py, TlsConfig>>,
) -> PyResult<Bound<'py, Listener>> {
    Bound::new(py, Listener::new(py, addr, max, reuse_port, tls)?)
}

#[doc = pydoc!("create_client")]
#[pyfunction]
#[pyo3(signature = (addr, *, timeout=None, tls=None))]
pub fn create_client<'py>(
    py: Python<'py>,
    addr: &Bound<'py, PyAny>,
    timeout: Option<&Bound<'py, PyAny>>,
    tls: Option<&Bound<'py, TlsConfig>>,
) -> PyResult<Bound<'py, Socket>> {
    let tls = tls.map(|t| t.get().client_settings()).transpose()?;
    let tuple = addr
        .cast::<PyTuple>()
        .map_err(|_| PyTypeError::new_err("create_client(): addr must be a (host, port) tuple"))?;
    let hp = address_arg(
        if tuple.len() == 2 {
            libc::AF_INET
        } else {
            libc::AF_INET6
        },
        addr,
        "create_client",
    )?;
    let timeout = match timeout {
        Some(t) => timeout_arg(t)?,
        None => default_timeout(py)?,
    };
    let stream = detached(py, |on_signal| {
        setup::create_client(&hp.host, hp.port, timeout, tls, on_signal)
    })?;
    Bound::new(py, Socket { inner: stream })
}

#[doc = pydoc!("accept_client_connect")]
#[pyfunction]
pub fn accept_client_connect<'py>(
    py: Python<'py>,
    listener: &Bound<'py, Listener>,
) -> PyResult<Bound<'py, Socket>> {
    let base = listener.as_super().get();
    let registry = &listener.get().clients.get().inner;
    let tls = listener.get().tls.as_ref();
    let stream = detached(py, |on_signal| {
        setup::accept_client(base.sock(), registry, Some(client_data()), tls, on_signal)
    })?;
    Bound::new(py, Socket::adopt_stream(py, stream)?)
}
