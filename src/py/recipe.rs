//! The seed recipe's functions and `Listener`, over [`crate::recipe`].

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use super::convert::{address_arg, blocking, resolve, timeout_arg};
use super::registry::ClientGroup;
use super::socket::{connect_with, ConnectFailure, Socket};
use super::tls::TlsConfig;
use crate::addr;
use crate::error::Error;
use crate::recipe;
use crate::registry::Registry;
use crate::socket::{Sock, Timeout};
use crate::tls::TlsSession;
use std::sync::Arc;
use std::time::Duration;

#[doc = pydoc!("Listener")]
#[pyclass(module = "sockwire", name = "Listener", extends = Socket, frozen)]
pub struct Listener {
    clients: Py<ClientGroup>,
    max_clients: usize,
    /// Accepted clients do a TLS handshake with this before they are handed out.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// How long a server waits for a client's TLS handshake when the listener has no timeout of
/// its own: a client that connects and says nothing must not stall the accept loop forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
        let family = family_of(addr);
        let hp = address_arg(family, addr, "server_listener")?;
        let sockaddr = resolve(py, family, &hp)?;
        let sock = recipe::listen(&sockaddr, max, reuse_port)?;
        let clients = Py::new(
            py,
            ClientGroup {
                registry: Registry::new(Some(max)),
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
    let sock = recipe::client_options(
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
    let sock = recipe::server_options(
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
    let host = hp.host.clone();
    let candidates = blocking(py, || {
        addr::getaddrinfo(Some(&host), hp.port, libc::AF_UNSPEC, 0)
    })?;
    let mut last = Error::os(libc::ECONNREFUSED);
    for candidate in candidates {
        let family = if candidate.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let socket = Socket::adopt(py, recipe::client_options(family, true, None, None)?)?;
        if let Some(t) = timeout {
            socket.sock().set_timeout(timeout_arg(t)?)?;
        }
        match connect_with(py, socket.sock(), &candidate, socket.sock().start()) {
            Ok(()) => {
                if let Some(settings) = tls {
                    // The handshake shares the socket's timeout: a silent or plaintext server
                    // ends in TimeoutError or an ssl error, never a hang.
                    let session = TlsSession::client(settings, &host)?;
                    socket.start_tls(py, session, socket.sock().start())?;
                }
                return Bound::new(py, socket);
            }
            Err(ConnectFailure::Os(e)) => last = e,
            Err(ConnectFailure::Python(e)) => return Err(e),
        }
    }
    Err(last.into())
}

#[doc = pydoc!("accept_client_connect")]
#[pyfunction]
pub fn accept_client_connect<'py>(
    py: Python<'py>,
    listener: &Bound<'py, Listener>,
) -> PyResult<Bound<'py, Socket>> {
    let base = listener.as_super().get();
    let wait = base.sock().start();
    let (fd, peer) = blocking(py, || base.sock().accept(wait))?;
    // SAFETY: freshly accepted fd; dropping `sock` closes it.
    let sock = unsafe {
        Sock::from_raw(
            fd,
            base.sock().family(),
            base.sock().ty(),
            base.sock().proto(),
        )
    };
    let registry = &listener.get().clients.get().registry;
    // On ServerFull `sock` is dropped here, which closes the connection: the peer sees EOF.
    recipe::register(registry, &sock, peer)?;
    sock.setsockopt_int(libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    let socket = Socket::adopt(py, sock)?;
    if let Some(config) = &listener.get().tls {
        let wait = match base.sock().timeout() {
            Timeout::After(d) => Timeout::After(d),
            _ => Timeout::After(HANDSHAKE_TIMEOUT),
        }
        .start();
        // A failed handshake drops (closes) the connection, which leaves the group.
        socket.start_tls(py, TlsSession::server(config)?, wait)?;
    }
    Bound::new(py, socket)
}
