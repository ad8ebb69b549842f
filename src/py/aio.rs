//! The private halves of `sockwire.aio` (`python/sockwire/aio.py` holds the asyncio side):
//! `_Bell`, which an event loop watches, and `_AsyncConn`, a connection driven by the runtime
//! ([`crate::async_conn`]). Every method returns at once; none waits for I/O.

use std::sync::Arc;
use std::time::Duration;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::convert::address_arg;
use super::format::{dict_fields, PacketFormat};
use super::packet::Packet;
use super::tls::TlsConfig;
use crate::async_conn::{AsyncConn, Target};
use crate::bell::Bell;
use crate::runtime;

#[doc = pydoc!("_Bell")]
#[pyclass(module = "sockwire._core", name = "_Bell", frozen)]
pub struct PyBell {
    pub(crate) inner: Arc<Bell>,
}

#[pymethods]
impl PyBell {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(PyBell {
            inner: Arc::new(Bell::new().map_err(crate::error::Error::from)?),
        })
    }

    #[doc = pydoc!("_Bell.fileno")]
    fn fileno(&self) -> i32 {
        self.inner.fileno()
    }

    #[doc = pydoc!("_Bell.take")]
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut tokens = Vec::new();
        self.inner.take(&mut tokens);
        PyList::new(py, tokens)
    }

    #[doc = pydoc!("_Bell.wake")]
    // NOTE: the same loop in Python cost about 1 µs per wake-up more (100 connections doing
    // request/response on uvloop: 113 k requests/s with the Python loop).
    #[pyo3(signature = (waiters, /))]
    fn wake(&self, py: Python<'_>, waiters: &Bound<'_, PyDict>) -> PyResult<()> {
        let mut tokens = Vec::new();
        self.inner.take(&mut tokens);
        let set_result = intern!(py, "set_result");
        let done = intern!(py, "done");
        for token in tokens {
            let key = token.into_pyobject(py)?;
            let Some(futures) = waiters.get_item(&key)? else {
                continue;
            };
            waiters.del_item(&key)?;
            for future in futures.cast::<PyList>()?.iter() {
                if !future.call_method0(done)?.is_truthy()? {
                    future.call_method1(set_result, (py.None(),))?;
                }
            }
        }
        Ok(())
    }
}

#[doc = pydoc!("_AsyncConn")]
#[pyclass(module = "sockwire._core", name = "_AsyncConn", frozen)]
pub struct PyAsyncConn {
    inner: AsyncConn,
    format: Py<PacketFormat>,
}

#[pymethods]
impl PyAsyncConn {
    #[new]
    #[pyo3(signature = (addr, format, timeout, tls, bell, token))]
    fn new(
        py: Python<'_>,
        addr: &Bound<'_, PyAny>,
        format: Option<Bound<'_, PacketFormat>>,
        timeout: Option<f64>,
        tls: Option<&Bound<'_, TlsConfig>>,
        bell: &Bound<'_, PyBell>,
        token: u64,
    ) -> PyResult<Self> {
        let family = match addr.cast::<PyTuple>() {
            Ok(t) if t.len() > 2 => libc::AF_INET6,
            _ => libc::AF_INET,
        };
        let hp = address_arg(family, addr, "connect")?;
        let tls = tls
            .map(|t| t.get().client_settings().cloned())
            .transpose()?;
        let format = match format {
            Some(f) => f.unbind(),
            None => Py::new(py, PacketFormat::default_format())?,
        };
        let handle = runtime::handle(None)?;
        let inner = AsyncConn::start(
            &handle,
            Target {
                host: hp.host,
                port: hp.port,
            },
            format.get().inner.clone(),
            timeout.map(Duration::from_secs_f64),
            tls,
            bell.get().inner.clone(),
            token,
        );
        Ok(PyAsyncConn { inner, format })
    }

    #[doc = pydoc!("_AsyncConn.format")]
    #[getter]
    fn format(&self, py: Python<'_>) -> Py<PacketFormat> {
        self.format.clone_ref(py)
    }

    #[doc = pydoc!("_AsyncConn.connected")]
    fn connected(&self) -> PyResult<Option<bool>> {
        match self.inner.connected() {
            None => Ok(None),
            Some(outcome) => outcome.map(|()| Some(true)).map_err(PyErr::from),
        }
    }

    #[doc = pydoc!("_AsyncConn.try_recv")]
    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, Packet>>> {
        match self.inner.try_recv() {
            None => Ok(None),
            Some(next) => Ok(Some(Packet::from_core(
                py,
                &self.format.get().inner,
                next?,
            )?)),
        }
    }

    #[doc = pydoc!("_AsyncConn.send")]
    #[pyo3(signature = (body, msg_id=0, **fields))]
    fn send(
        &self,
        body: &Bound<'_, PyAny>,
        msg_id: i64,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let frame = self.format.get().frame(body, msg_id, dict_fields(fields))?;
        Ok(self.inner.send(frame)?)
    }

    #[doc = pydoc!("_AsyncConn.send_many")]
    #[pyo3(signature = (items, msg_id=0, **fields))]
    fn send_many(
        &self,
        items: &Bound<'_, PyAny>,
        msg_id: i64,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let frames = self
            .format
            .get()
            .pack_all(items, msg_id, dict_fields(fields))?;
        Ok(self.inner.send(frames)?)
    }

    #[doc = pydoc!("_AsyncConn.has_room")]
    fn has_room(&self) -> bool {
        self.inner.has_room()
    }

    #[doc = pydoc!("_AsyncConn.close")]
    fn close(&self) {
        self.inner.close()
    }

    #[doc = pydoc!("_AsyncConn.finished")]
    fn finished(&self) -> bool {
        self.inner.finished()
    }
}
