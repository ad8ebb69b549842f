//! `Connection`: packets over a connected `Socket`, and `connect()`.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::convert::timeout_arg;
use super::fastcall::{int_arg, Args, Params};
use super::format::{dict_fields, PacketFormat};
use super::gil::{detached, released};
use super::packet::Packet;
use super::setup::create_client;
use super::socket::Socket;
use super::tls::TlsConfig;
use crate::framed::Framed;
use crate::socket::{Timeout, Wait};

#[doc = pydoc!("Connection")]
#[pyclass(module = "sockwire", name = "Connection", frozen)]
pub struct Connection {
    sock: Py<Socket>,
    format: Py<PacketFormat>,
    /// The packets' way in and out over the socket's stream.
    inner: Framed,
}

impl Connection {
    pub(crate) fn wrap(sock: Py<Socket>, format: Py<PacketFormat>) -> Self {
        let framed = Framed::new(format.get().inner.clone());
        Connection {
            sock,
            format,
            inner: framed,
        }
    }

    fn send_frames(&self, py: Python<'_>, frames: Vec<u8>) -> PyResult<()> {
        let stream = &self.sock.get().inner;
        let wait = stream.sock.start();
        detached(py, |on_signal| {
            self.inner.send(stream, frames, wait, on_signal)
        })
    }

    /// The next packet: one an earlier read already received and decoded, else read within
    /// `timeout` (`None`: the socket's own).
    fn recv_packet<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<Timeout>,
    ) -> PyResult<Bound<'py, Packet>> {
        // NOTE: one read takes in up to 64 KiB, many small packets: the calls after it find
        // their packet decoded and waiting. Taken before the clock is read for a deadline and
        // without releasing the GIL, recv() of 64-byte packets already received went from
        // 396-398 to 229-253 ns (medians of 31 runs of 20,000, both builds in one process).
        if let Some(packet) = self.inner.recv_ready() {
            return Packet::from_core(py, self.inner.format(), packet);
        }
        let wait = self.wait_for(timeout);
        let stream = &self.sock.get().inner;
        let packet = detached(py, |on_signal| self.inner.recv(stream, wait, on_signal))?;
        Packet::from_core(py, self.inner.format(), packet)
    }

    /// The wait for one call, its clock started: `timeout`, or the socket's own.
    fn wait_for(&self, timeout: Option<Timeout>) -> Wait {
        match timeout {
            None => self.sock.get().sock().start(),
            Some(t) => t.start(),
        }
    }
}

/// A call's `timeout=` argument: `None` when not given (the socket's own applies).
fn timeout_given(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Timeout>> {
    timeout.map(timeout_arg).transpose()
}

static SEND: Params<2> = params!("Connection.send", ["body", "msg_id"], required = 1);
static REQUEST: Params<3> = params!(
    "Connection.request",
    ["body", "msg_id", "timeout"],
    required = 1
);

impl Connection {
    /// `Connection.send(body, msg_id=0, **fields)`, installed by `fastcall::install`.
    pub(crate) fn send_fast<'py>(
        slf: &Bound<'py, Self>,
        args: Args<'_, 'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ([body, msg_id], fields) = args.parse(&SEND)?;
        let body = body.expect("parse() checks required arguments");
        let conn = slf.get();
        let frame = conn
            .format
            .get()
            .frame(&body, int_arg(msg_id, "msg_id")?, fields.iter())?;
        conn.send_frames(slf.py(), frame)?;
        Ok(slf.py().None().into_bound(slf.py()))
    }

    /// `Connection.request(body, msg_id=0, timeout=None, **fields)`, installed by
    /// `fastcall::install`.
    pub(crate) fn request_fast<'py>(
        slf: &Bound<'py, Self>,
        args: Args<'_, 'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ([body, msg_id, timeout], fields) = args.parse(&REQUEST)?;
        let body = body.expect("parse() checks required arguments");
        let (py, conn) = (slf.py(), slf.get());
        let wait = conn.wait_for(timeout_given(timeout.as_deref().filter(|t| !t.is_none()))?);
        let frame = conn
            .format
            .get()
            .frame(&body, int_arg(msg_id, "msg_id")?, fields.iter())?;
        // Send and receive in one release of the GIL.
        let stream = &conn.sock.get().inner;
        let reply = detached(py, |on_signal| {
            conn.inner.request(stream, frame, wait, on_signal)
        })?;
        Ok(Packet::from_core(py, conn.inner.format(), reply)?.into_any())
    }
}

#[pymethods]
impl Connection {
    #[new]
    #[pyo3(signature = (sock, format=None))]
    fn new(
        py: Python<'_>,
        sock: &Bound<'_, PyAny>,
        format: Option<Bound<'_, PacketFormat>>,
    ) -> PyResult<Self> {
        let sock: Py<Socket> = match sock.cast::<Socket>() {
            Ok(s) => s.clone().unbind(),
            // A stdlib socket is adopted: sockwire takes over its fd.
            Err(_) => Socket::adopt_stdlib(&py.get_type::<Socket>(), sock, "Connection()")?
                .cast_into::<Socket>()?
                .unbind(),
        };
        let format = match format {
            Some(f) => f.unbind(),
            None => Py::new(py, PacketFormat::default_format())?,
        };
        Ok(Connection::wrap(sock, format))
    }

    #[doc = pydoc!("Connection.socket")]
    #[getter]
    fn socket(&self, py: Python<'_>) -> Py<Socket> {
        self.sock.clone_ref(py)
    }

    #[doc = pydoc!("Connection.format")]
    #[getter]
    fn format(&self, py: Python<'_>) -> Py<PacketFormat> {
        self.format.clone_ref(py)
    }

    #[doc = pydoc!("Connection.fileno")]
    fn fileno(&self) -> i32 {
        self.sock.get().sock().fileno()
    }

    #[doc = pydoc!("Connection.send_many")]
    #[pyo3(signature = (items, msg_id=0, **fields))]
    fn send_many(
        &self,
        py: Python<'_>,
        items: &Bound<'_, PyAny>,
        msg_id: i64,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let frames = self
            .format
            .get()
            .pack_all(items, msg_id, dict_fields(fields))?;
        self.send_frames(py, frames)
    }

    #[doc = pydoc!("Connection.recv")]
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, Packet>> {
        self.recv_packet(py, timeout_given(timeout)?)
    }

    #[doc = pydoc!("Connection.shutdown_write")]
    fn shutdown_write(&self, py: Python<'_>) -> PyResult<()> {
        self.shutdown(py, libc::SHUT_WR)
    }

    #[doc = pydoc!("Connection.shutdown")]
    #[pyo3(signature = (how, /))]
    fn shutdown(&self, py: Python<'_>, how: i32) -> PyResult<()> {
        self.inner.check_open()?;
        let stream = &self.sock.get().inner;
        Ok(released(py, || stream.shutdown(how))?)
    }

    #[doc = pydoc!("Connection.close")]
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let stream = &self.sock.get().inner;
        Ok(released(py, || stream.close())?)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, Packet>>> {
        match self.recv_packet(py, None) {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.is_instance_of::<super::errors::ConnectionClosed>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<Connection {} {}>",
            self.sock.bind(py).repr()?,
            self.format.bind(py).repr()?
        ))
    }
}

#[doc = pydoc!("connect")]
#[pyfunction]
#[pyo3(signature = (addr, format=None, *, timeout=None, tls=None))]
pub fn connect(
    py: Python<'_>,
    addr: &Bound<'_, PyAny>,
    format: Option<Bound<'_, PacketFormat>>,
    timeout: Option<&Bound<'_, PyAny>>,
    tls: Option<&Bound<'_, TlsConfig>>,
) -> PyResult<Connection> {
    let sock = create_client(py, addr, timeout, tls)?.unbind();
    let format = match format {
        Some(f) => f.unbind(),
        None => Py::new(py, PacketFormat::default_format())?,
    };
    Ok(Connection::wrap(sock, format))
}
