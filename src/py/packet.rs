//! `Packet`: a body and the header values that came with it, over [`crate::format::Header`].

use std::sync::Arc;

use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::convert::{type_name, BytesArg};
use super::gil::opening_releases;
use crate::format::{Format, Header, Value};

#[doc = pydoc!("Packet")]
#[pyclass(module = "sockwire", name = "Packet", frozen)]
pub struct Packet {
    pub(crate) body: Py<PyBytes>,
    pub(crate) msg_id: i64,
    pub(crate) flags: i64,
    /// User header fields, if the packet has any (most formats have none, and then a packet
    /// costs no extra allocation).
    fields: Option<Box<UserFields>>,
}

/// User header fields: names shared with the format, values per packet.
struct UserFields {
    names: Arc<[Box<str>]>,
    values: Vec<Value>,
}

impl UserFields {
    fn boxed(names: &Arc<[Box<str>]>, values: Vec<Value>) -> Option<Box<UserFields>> {
        (!values.is_empty()).then(|| {
            Box::new(UserFields {
                names: names.clone(),
                values,
            })
        })
    }
}

impl Packet {
    /// The packet a whole frame decodes to.
    pub(crate) fn from_frame<'py>(
        py: Python<'py>,
        format: &Format,
        frame: &[u8],
        body_start: usize,
    ) -> PyResult<Bound<'py, Packet>> {
        if format.compression.is_none() && format.cipher.is_none() {
            // The common case, kept lean: nothing to open, the body is the frame's tail.
            let header = format.header(frame);
            return Packet::build(py, format, header, &frame[body_start..]);
        }
        let (header, body) = if opening_releases(format, frame.len()) {
            py.detach(|| format.open(frame, body_start))?
        } else {
            format.open(frame, body_start)?
        };
        Packet::build(py, format, header, &body)
    }

    /// The Python object for a packet the core decoded.
    pub(crate) fn from_core<'py>(
        py: Python<'py>,
        format: &Format,
        packet: crate::framed::Packet,
    ) -> PyResult<Bound<'py, Packet>> {
        Packet::build(py, format, packet.header, &packet.body)
    }

    #[inline(always)]
    fn build<'py>(
        py: Python<'py>,
        format: &Format,
        header: Header,
        body: &[u8],
    ) -> PyResult<Bound<'py, Packet>> {
        Packet {
            body: PyBytes::new(py, body).unbind(),
            msg_id: header.msg_id,
            flags: header.flags,
            fields: UserFields::boxed(&format.user_names, header.values),
        }
        .into_untracked(py)
    }

    /// Makes the Python object, left out of the cycle collector: a packet holds only bytes and
    /// Rust data, so it can never be part of a reference cycle.
    // NOTE: pyo3 makes every class a GC type. Decoding 1M 64-byte frames into one list took
    // 622 ns/frame with the packets tracked (the collector kept re-scanning them) and
    // 173 ns/frame with the collector disabled; untracking gives the second figure.
    fn into_untracked(self, py: Python<'_>) -> PyResult<Bound<'_, Packet>> {
        let obj = Bound::new(py, self)?;
        // SAFETY: `obj` is a live, GC-tracked object we own; untracking is always allowed and
        // its dealloc copes with an untracked object.
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) };
        Ok(obj)
    }

    pub(crate) fn header_pairs(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields
            .iter()
            .flat_map(|f| f.names.iter().map(|n| &**n).zip(&f.values))
    }

    fn same_header(&self, other: &Packet) -> bool {
        self.header_pairs().count() == other.header_pairs().count()
            && self.header_pairs().all(|(name, value)| {
                other
                    .header_pairs()
                    .any(|(n, v)| n == name && same_value(v, value))
            })
    }
}

/// Header values compare as Python sees them: 5 is 5 whether it came in as a signed or an
/// unsigned field (a decoded `H` field and `Packet(..., room=5)` must be equal).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(i), Value::UInt(u)) | (Value::UInt(u), Value::Int(i)) => {
            u64::try_from(*i).is_ok_and(|i| i == *u)
        }
        _ => a == b,
    }
}

fn value_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Int(v) => v.into_pyobject(py)?.into_any(),
        Value::UInt(v) => v.into_pyobject(py)?.into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
    })
}

/// A header value given from Python: an int, or bytes for an `Ns` field.
pub(crate) fn value_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_instance_of::<pyo3::types::PyInt>() {
        return match obj.extract::<i64>() {
            Ok(v) => Ok(Value::Int(v)),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
                Ok(Value::UInt(obj.extract::<u64>()?))
            }
            Err(e) => Err(e),
        };
    }
    match BytesArg::extract(obj) {
        Ok(b) => Ok(Value::Bytes(b.as_slice().into())),
        Err(_) => Err(PyTypeError::new_err(format!(
            "header values are int or bytes, not {}",
            type_name(obj)
        ))),
    }
}

/// The bytes of a body argument, as a `bytes` object (kept as is when it already is one).
fn body_bytes<'py>(body: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    if let Ok(b) = body.cast::<PyBytes>() {
        return Ok(b.clone());
    }
    let data = BytesArg::extract(body)?;
    Ok(PyBytes::new(body.py(), data.as_slice()))
}

#[pymethods]
impl Packet {
    #[new]
    #[pyo3(signature = (body, msg_id=0, flags=0, **fields))]
    fn new(
        body: &Bound<'_, PyAny>,
        msg_id: i64,
        flags: i64,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut names = Vec::new();
        let mut values = Vec::new();
        if let Some(fields) = fields {
            for (k, v) in fields.iter() {
                names.push(k.cast::<PyString>()?.to_str()?.into());
                values.push(value_from_py(&v)?);
            }
        }
        Ok(Packet {
            body: body_bytes(body)?.unbind(),
            msg_id,
            flags,
            fields: UserFields::boxed(&Arc::from(names), values),
        })
    }

    #[doc = pydoc!("Packet.body")]
    #[getter]
    fn body(&self, py: Python<'_>) -> Py<PyBytes> {
        self.body.clone_ref(py)
    }

    #[doc = pydoc!("Packet.msg_id")]
    #[getter]
    fn msg_id(&self) -> i64 {
        self.msg_id
    }

    #[doc = pydoc!("Packet.flags")]
    #[getter]
    fn flags(&self) -> i64 {
        self.flags
    }

    #[doc = pydoc!("Packet.header")]
    #[getter]
    fn header<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, value) in self.header_pairs() {
            d.set_item(name, value_to_py(py, value)?)?;
        }
        Ok(d)
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> bool {
        let Ok(other) = other.cast::<Packet>() else {
            return false;
        };
        let other = other.get();
        self.msg_id == other.msg_id
            && self.flags == other.flags
            && self.body.bind(py).as_bytes() == other.body.bind(py).as_bytes()
            && self.same_header(other)
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        (self.body.bind(py), self.msg_id, self.flags)
            .into_pyobject(py)?
            .hash()
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.body.bind(py).as_bytes().len()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let body = self.body.bind(py);
        let n = body.as_bytes().len();
        let mut out = if n <= 48 {
            format!("Packet({}", body.repr()?)
        } else {
            let head = PyBytes::new(py, &body.as_bytes()[..32]);
            format!("Packet({}...({n} bytes)", head.repr()?)
        };
        out.push_str(&format!(", msg_id={}, flags={}", self.msg_id, self.flags));
        for (name, value) in self.header_pairs() {
            out.push_str(&format!(", {name}={}", value_to_py(py, value)?.repr()?));
        }
        out.push(')');
        Ok(out)
    }
}
