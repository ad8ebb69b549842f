//! Argument conversion with the stdlib's rules and messages.

use std::net::SocketAddr;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyFloat, PyInt, PyString, PyTuple};

use super::gil::blocking;
use crate::addr::{self, HostPort};
use crate::socket::Timeout;

/// A size or count argument, taken as any int so that a negative or huge value gets a message
/// naming the argument (`max_body must be >= 0, not -1`) rather than pyo3's conversion error.
pub fn size_arg(value: i128, name: &str) -> PyResult<u64> {
    if value < 0 {
        return Err(PyValueError::new_err(format!(
            "{name} must be >= 0, not {value}"
        )));
    }
    u64::try_from(value)
        .ok()
        .filter(|v| usize::try_from(*v).is_ok())
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "{name} must be at most {}, not {value}",
                usize::MAX
            ))
        })
}

/// [`size_arg`] for a value used as an in-memory size or offset.
pub fn usize_arg(value: i128, name: &str) -> PyResult<usize> {
    Ok(size_arg(value, name)? as usize)
}

/// `settimeout()`'s argument: `None`, or a non-negative int or float of seconds, checked in
/// CPython's order and with its messages: NaN, then overflow of the nanosecond clock (either
/// sign), then negative values.
pub fn timeout_arg(value: &Bound<'_, PyAny>) -> PyResult<Timeout> {
    if value.is_none() {
        return Ok(Timeout::Blocking);
    }
    let nanos: i128 = if let Ok(f) = value.cast::<PyFloat>() {
        let secs = f.value();
        if secs.is_nan() {
            return Err(PyValueError::new_err("Invalid value NaN (not a number)"));
        }
        // Rounded away from zero, like CPython's _PyTime_ROUND_TIMEOUT: a tiny positive
        // timeout stays a timeout rather than becoming non-blocking.
        let ns = (secs * 1e9).abs().ceil().copysign(secs);
        if !(i64::MIN as f64..-(i64::MIN as f64)).contains(&ns) {
            return Err(PyOverflowError::new_err(
                "timestamp out of range for platform time_t",
            ));
        }
        ns as i128
    } else if value.is_instance_of::<PyInt>() {
        let too_large =
            || PyOverflowError::new_err("timestamp too large to convert to C _PyTime_t");
        let secs: i64 = value.extract().map_err(|_| too_large())?;
        let ns = i128::from(secs) * 1_000_000_000;
        if i64::try_from(ns).is_err() {
            return Err(too_large());
        }
        ns
    } else {
        return Err(PyTypeError::new_err(format!(
            "'{}' object cannot be interpreted as an integer",
            type_name(value)
        )));
    };
    if nanos < 0 {
        return Err(PyValueError::new_err("Timeout value out of range"));
    }
    Ok(match nanos as u64 {
        0 => Timeout::NonBlocking,
        n => Timeout::After(std::time::Duration::from_nanos(n)),
    })
}

/// `gettimeout()`'s value.
pub fn timeout_value(timeout: Timeout) -> Option<f64> {
    match timeout {
        Timeout::Blocking => None,
        Timeout::NonBlocking => Some(0.0),
        // nanoseconds / 1e9, as CPython's _PyTime_AsSecondsDouble: settimeout(1.14) reads back
        // as 1.14, where secs + nanos / 1e9 would give 1.1400000000000001.
        Timeout::After(d) => Some(d.as_nanos() as f64 / 1e9),
    }
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

/// Parses an address tuple for `family` with CPython's `getsockaddrarg` rules. `caller` names
/// the method in messages, as the stdlib does (`bind(): port must be 0-65535.`).
pub fn address_arg(family: i32, addr: &Bound<'_, PyAny>, caller: &str) -> PyResult<HostPort> {
    let family_name = match family {
        libc::AF_INET => "AF_INET",
        libc::AF_INET6 => "AF_INET6",
        _ => return Err(crate::error::Error::os(libc::EAFNOSUPPORT).into()),
    };
    let tuple = addr.cast::<PyTuple>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{caller}(): {family_name} address must be tuple, not {}",
            type_name(addr)
        ))
    })?;
    let n = tuple.len();
    let shape_ok = if family == libc::AF_INET {
        n == 2
    } else {
        (2..=4).contains(&n)
    };
    if !shape_ok {
        return Err(PyTypeError::new_err(if family == libc::AF_INET {
            "AF_INET address must be a pair (host, port)"
        } else {
            "AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])"
        }));
    }
    let host = host_arg(&tuple.get_item(0)?)?;
    let port = port_arg(&tuple.get_item(1)?, caller)?;
    let mut hp = HostPort::new(host, port);
    if n > 2 {
        hp.flowinfo = tuple
            .get_item(2)?
            .extract::<u32>()
            .ok()
            .filter(|f| *f <= 0xfffff)
            .ok_or_else(|| {
                PyOverflowError::new_err(format!("{caller}(): flowinfo must be 0-1048575."))
            })?;
    }
    if n > 3 {
        hp.scope_id = tuple.get_item(3)?.extract()?;
    }
    Ok(hp)
}

/// A host as the stdlib accepts it: `str` (IDNA-encoded when not ASCII), `bytes` or `bytearray`.
fn host_arg(host: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = host.cast::<PyString>() {
        let s = s.to_cow()?;
        if s.is_ascii() {
            return Ok(s.into_owned());
        }
        let encoded = host.call_method1("encode", ("idna",))?;
        return Ok(String::from_utf8_lossy(encoded.cast::<PyBytes>()?.as_bytes()).into_owned());
    }
    if let Ok(b) = host.cast::<PyBytes>() {
        return Ok(String::from_utf8_lossy(b.as_bytes()).into_owned());
    }
    if let Ok(b) = host.cast::<PyByteArray>() {
        return Ok(String::from_utf8_lossy(&b.to_vec()).into_owned());
    }
    Err(PyTypeError::new_err(format!(
        "str, bytes or bytearray expected, not {}",
        type_name(host)
    )))
}

fn port_arg(port: &Bound<'_, PyAny>, caller: &str) -> PyResult<u16> {
    let out_of_range = || PyOverflowError::new_err(format!("{caller}(): port must be 0-65535."));
    match port.extract::<i64>() {
        Ok(p) => u16::try_from(p).map_err(|_| out_of_range()),
        Err(e) if e.is_instance_of::<PyOverflowError>(port.py()) => Err(out_of_range()),
        Err(e) => Err(e),
    }
}

/// Resolves a parsed address, releasing the GIL only when a name lookup is needed.
pub fn resolve(py: Python<'_>, family: i32, hp: &HostPort) -> PyResult<SocketAddr> {
    match addr::resolve_literal(family, hp) {
        Some(r) => r.map_err(PyErr::from),
        None => blocking(py, || addr::resolve(family, hp)),
    }
}

/// An address as the stdlib returns it: `(host, port)` or `(host, port, flowinfo, scope_id)`.
pub fn address_value<'py>(py: Python<'py>, addr: &SocketAddr) -> PyResult<Bound<'py, PyTuple>> {
    match addr {
        SocketAddr::V4(a) => (a.ip().to_string(), a.port()).into_pyobject(py),
        SocketAddr::V6(a) => {
            (a.ip().to_string(), a.port(), a.flowinfo(), a.scope_id()).into_pyobject(py)
        }
    }
}

/// A read-only view of a bytes-like argument, as the stdlib's `y*` format takes it.
pub enum BytesArg<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(PyUntypedBuffer),
}

impl BytesArg<'_> {
    pub fn extract<'py>(obj: &Bound<'py, PyAny>) -> PyResult<BytesArg<'py>> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(BytesArg::Bytes(b.clone()));
        }
        let buf = PyUntypedBuffer::get(obj).map_err(|_| {
            PyTypeError::new_err(format!(
                "a bytes-like object is required, not '{}'",
                type_name(obj)
            ))
        })?;
        if !buf.is_c_contiguous() {
            return Err(PyBufferError::new_err(
                "memoryview: underlying buffer is not C-contiguous",
            ));
        }
        Ok(BytesArg::Buffer(buf))
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            BytesArg::Bytes(b) => b.as_bytes(),
            // SAFETY: a C-contiguous buffer of len_bytes bytes, kept alive (and, for
            // bytearray, kept from resizing) by the export we hold.
            BytesArg::Buffer(buf) => unsafe {
                std::slice::from_raw_parts(buf.buf_ptr() as *const u8, buf.len_bytes())
            },
        }
    }
}

/// A writable, C-contiguous buffer argument (`recv_into`'s `w*`).
pub fn writable_buffer(obj: &Bound<'_, PyAny>, caller: &str) -> PyResult<PyUntypedBuffer> {
    let error = || {
        PyTypeError::new_err(format!(
            "{caller}() argument 1 must be read-write bytes-like object, not {}",
            type_name(obj)
        ))
    };
    let buf = PyUntypedBuffer::get(obj).map_err(|_| error())?;
    // As the stdlib's w* format: a read-only or non-contiguous buffer is the wrong type.
    if buf.readonly() || !buf.is_c_contiguous() {
        return Err(error());
    }
    Ok(buf)
}
