//! `Connection`: packets over a connected `Socket`, and `connect()`.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock, TryLockError};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::convert::{blocking, timeout_arg};
use super::errors::ConnectionClosed;
use super::packet::{feed_into, Packet, PacketFormat};
use super::recipe::create_client;
use super::socket::Socket;
use super::tls::TlsConfig;
use crate::decoder::Decoder;
use crate::error::Error;
use crate::socket::Wait;
use crate::stream::Outbox;

/// How much one read asks the kernel for.
const READ_SIZE: usize = 1 << 16;

/// Receiving state: decoded packets not yet returned, and what ended the stream.
struct RecvState {
    decoder: Decoder,
    ready: VecDeque<Py<Packet>>,
    /// An error met after the packets in `ready`; raised once they are delivered.
    error: Option<PyErr>,
    eof: bool,
    scratch: Vec<u8>,
}

#[doc = pydoc!("Connection")]
#[pyclass(module = "sockwire", name = "Connection", frozen)]
pub struct Connection {
    sock: Py<Socket>,
    format: Py<PacketFormat>,
    recv: Mutex<RecvState>,
    /// Frames being written; locked only by the holder of the stream's write turn.
    outbox: Mutex<Outbox>,
    /// Why sockwire closed the connection (a bad frame from the peer), for the calls after.
    closed_because: OnceLock<String>,
}

impl Connection {
    pub(crate) fn wrap(sock: Py<Socket>, format: Py<PacketFormat>) -> Self {
        let decoder = Decoder::new(format.get().format.clone());
        Connection {
            sock,
            format,
            recv: Mutex::new(RecvState {
                decoder,
                ready: VecDeque::new(),
                error: None,
                eof: false,
                scratch: vec![0; READ_SIZE],
            }),
            outbox: Mutex::default(),
            closed_because: OnceLock::new(),
        }
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The error for a call on a connection sockwire closed because of a bad frame, if it did.
    fn closed_error(&self) -> Option<PyErr> {
        self.closed_because.get().map(|why| {
            ConnectionClosed::new_err(format!(
                "the connection was closed after the peer sent a bad frame ({why})"
            ))
        })
    }

    fn recv_state(&self) -> PyResult<MutexGuard<'_, RecvState>> {
        // Never wait for this lock while holding the GIL: two threads receiving on one
        // connection is a bug in the caller (which packet goes where would be random).
        match self.recv.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(PyRuntimeError::new_err(
                "another thread is already receiving on this Connection",
            )),
        }
    }

    /// Sends `frames` whole, one sender at a time, with the socket's timeout for the call.
    ///
    /// The frames go through the outbox, not the caller's stack: if a signal handler sends on
    /// this connection while this send waits to resume, the handler (which gets the turn this
    /// thread holds) finishes writing these frames before its own; and if this send fails part
    /// way, the next send completes the cut frame first (see [`Outbox`]).
    fn send_frames(&self, py: Python<'_>, frames: Vec<u8>) -> PyResult<()> {
        if let Some(err) = self.closed_error() {
            return Err(err);
        }
        let stream = &self.sock.get().stream;
        let wait = stream.sock.start();
        let _turn = blocking(py, || stream.write_turn().take(wait))?;
        let mark = self.outbox().push(frames);
        let result = blocking(py, || self.outbox().flush(stream, wait));
        if result.is_err() {
            self.outbox().abandon(mark);
        }
        result
    }

    fn recv_packet(&self, py: Python<'_>, wait: Wait) -> PyResult<Py<Packet>> {
        let mut st = self.recv_state()?;
        let st = &mut *st;
        let stream = &self.sock.get().stream;
        loop {
            if let Some(p) = st.ready.pop_front() {
                return Ok(p);
            }
            if let Some(err) = st.error.take() {
                // After a bad frame the stream cannot be trusted: the connection closes.
                let _ = self.closed_because.set(err.to_string());
                let _ = py.detach(|| stream.close());
                st.eof = true;
                return Err(err);
            }
            if let Some(err) = self.closed_error() {
                return Err(err);
            }
            if st.eof {
                return Err(Error::ConnectionClosed.into());
            }
            let scratch = &mut st.scratch;
            let n = blocking(py, || stream.read(scratch, 0, wait))?;
            if n == 0 {
                st.eof = true;
                st.decoder.finish()?;
                return Err(Error::ConnectionClosed.into());
            }
            // Packets before a bad frame are delivered, then its error; what follows it is not
            // trusted (the connection closes).
            let (ready, error) = (&mut st.ready, &mut st.error);
            feed_into(
                py,
                &mut st.decoder,
                &st.scratch[..n],
                &mut |item| match item {
                    Ok((p, _)) if error.is_none() => ready.push_back(p.unbind()),
                    Ok(_) => {}
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                },
            );
        }
    }

    /// The wait for one call: the socket's own timeout, or `timeout` when given.
    fn wait_for(&self, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Wait> {
        Ok(match timeout {
            None => self.sock.get().sock().start(),
            Some(t) => timeout_arg(t)?.start(),
        })
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

    #[doc = pydoc!("Connection.send")]
    #[pyo3(signature = (body, msg_id=0, **fields))]
    fn send(
        &self,
        py: Python<'_>,
        body: &Bound<'_, PyAny>,
        msg_id: i64,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let mut frame = Vec::new();
        self.format
            .get()
            .pack_one(&mut frame, body, msg_id, fields)?;
        self.send_frames(py, frame)
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
        let frames = self.format.get().pack_all(items, msg_id, fields)?;
        self.send_frames(py, frames)
    }

    #[doc = pydoc!("Connection.recv")]
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Packet>> {
        let wait = self.wait_for(timeout)?;
        self.recv_packet(py, wait)
    }

    #[doc = pydoc!("Connection.request")]
    #[pyo3(signature = (body, msg_id=0, timeout=None, **fields))]
    fn request(
        &self,
        py: Python<'_>,
        body: &Bound<'_, PyAny>,
        msg_id: i64,
        timeout: Option<&Bound<'_, PyAny>>,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<Packet>> {
        let wait = self.wait_for(timeout)?;
        self.send(py, body, msg_id, fields)?;
        self.recv_packet(py, wait)
    }

    #[doc = pydoc!("Connection.shutdown_write")]
    fn shutdown_write(&self, py: Python<'_>) -> PyResult<()> {
        self.shutdown(py, libc::SHUT_WR)
    }

    #[doc = pydoc!("Connection.shutdown")]
    #[pyo3(signature = (how, /))]
    fn shutdown(&self, py: Python<'_>, how: i32) -> PyResult<()> {
        if let Some(err) = self.closed_error() {
            return Err(err);
        }
        let stream = &self.sock.get().stream;
        Ok(py.detach(|| stream.shutdown(how))?)
    }

    #[doc = pydoc!("Connection.close")]
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let stream = &self.sock.get().stream;
        Ok(py.detach(|| stream.close())?)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<Packet>>> {
        match self.recv_packet(py, self.sock.get().sock().start()) {
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
