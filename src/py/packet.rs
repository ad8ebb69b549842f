//! `PacketFormat`, `Packet` and `Decoder` over [`crate::format`] and [`crate::decoder`].

use std::cell::RefCell;
use std::sync::Arc;

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::codec::{cipher_arg, compression_arg, Cipher, Compression};
use super::convert::{size_arg, type_name, usize_arg, BytesArg};
use super::errors::set_attrs;
use crate::decoder::{Decoder as CoreDecoder, Event};
use crate::error::Error;
use crate::format::{Check, Format, Header, Order, Role, Spec, Value};

/// The default limit on a body: 8 MiB.
pub const DEFAULT_MAX_BODY: u64 = 8 << 20;

#[doc = pydoc!("Packet")]
#[pyclass(module = "sockwire", name = "Packet", frozen)]
pub struct Packet {
    body: Py<PyBytes>,
    msg_id: i64,
    flags: i64,
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
        let (header, body) = format.open(frame, body_start)?;
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

    fn header_pairs(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields
            .iter()
            .flat_map(|f| f.names.iter().map(|n| &**n).zip(&f.values))
    }

    fn same_header(&self, other: &Packet) -> bool {
        self.header_pairs().count() == other.header_pairs().count()
            && self
                .header_pairs()
                .all(|(name, value)| other.header_pairs().any(|(n, v)| n == name && v == value))
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
fn value_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
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

#[doc = pydoc!("PacketFormat")]
#[pyclass(module = "sockwire", name = "PacketFormat", frozen)]
pub struct PacketFormat {
    pub(crate) format: Arc<Format>,
}

fn order_arg(byteorder: &str) -> PyResult<Order> {
    match byteorder {
        "big" => Ok(Order::Big),
        "little" => Ok(Order::Little),
        _ => Err(PyValueError::new_err(format!(
            "byteorder must be 'big' or 'little', not {byteorder:?}"
        ))),
    }
}

/// `fields=`: a sequence of names. A bare string is refused (iterating it would give letters).
fn names_arg(fields: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if fields.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "fields must be a sequence of names, such as ('length', 'msg_id'), not a str",
        ));
    }
    fields
        .try_iter()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "fields must be a sequence of names, not {}",
                type_name(fields)
            ))
        })?
        .map(|name| {
            let name = name?;
            name.extract::<String>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "fields must hold str names, not {}",
                    type_name(&name)
                ))
            })
        })
        .collect()
}

fn expect_arg(expect: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, Value)>> {
    let mut out = Vec::new();
    if let Some(expect) = expect {
        for (k, v) in expect.iter() {
            out.push((k.extract::<String>()?, value_from_py(&v)?));
        }
    }
    Ok(out)
}

fn borrowed(pairs: &[(String, Value)]) -> Vec<(&str, Value)> {
    pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

/// The values `pack` was given: `flags` and user fields by their `Role::User` index.
struct HeaderArgs {
    flags: i64,
    values: Vec<Option<Value>>,
}

impl PacketFormat {
    fn header_args(&self, fields: Option<&Bound<'_, PyDict>>) -> PyResult<HeaderArgs> {
        let f = &self.format;
        let mut args = HeaderArgs {
            flags: 0,
            values: vec![None; f.user_names.len()],
        };
        let Some(fields) = fields else {
            return Ok(args);
        };
        for (k, v) in fields.iter() {
            let name = k.cast::<PyString>()?.to_cow()?;
            match f.field_named(&name) {
                Some((i, _)) => match f.roles[i] {
                    Role::Length => {
                        return Err(PyTypeError::new_err(
                            "'length' is computed from the body; do not pass it",
                        ))
                    }
                    Role::MsgId => {
                        return Err(PyTypeError::new_err("pass msg_id as msg_id="));
                    }
                    Role::Flags => args.flags = v.extract()?,
                    Role::User(u) => args.values[u] = Some(value_from_py(&v)?),
                },
                None => return Err(f.no_such_field(&name).into()),
            }
        }
        Ok(args)
    }

    /// Appends the frame for one `pack_many`/`send_many` item: bytes-like (with the call's
    /// header values) or a `Packet` (with its own).
    fn pack_item(
        &self,
        out: &mut Vec<u8>,
        item: &Bound<'_, PyAny>,
        msg_id: i64,
        args: &HeaderArgs,
    ) -> PyResult<()> {
        if let Ok(p) = item.cast::<Packet>() {
            let p = p.get();
            let mut values = vec![None; self.format.user_names.len()];
            for (name, value) in p.header_pairs() {
                match self.format.user_names.iter().position(|n| &**n == name) {
                    Some(u) => values[u] = Some(value.clone()),
                    None => return Err(self.format.no_such_field(name).into()),
                }
            }
            let body = p.body.bind(item.py()).as_bytes();
            return Ok(self
                .format
                .pack_into(out, body, p.msg_id, p.flags, &values)?);
        }
        let body = BytesArg::extract(item)?;
        Ok(self
            .format
            .pack_into(out, body.as_slice(), msg_id, args.flags, &args.values)?)
    }

    /// Frames for many items, in one buffer.
    pub(crate) fn pack_all(
        &self,
        items: &Bound<'_, PyAny>,
        msg_id: i64,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<u8>> {
        let args = self.header_args(fields)?;
        let mut out = Vec::new();
        for item in items.try_iter()? {
            self.pack_item(&mut out, &item?, msg_id, &args)?;
        }
        Ok(out)
    }

    /// The frame for one body.
    pub(crate) fn pack_one(
        &self,
        out: &mut Vec<u8>,
        body: &Bound<'_, PyAny>,
        msg_id: i64,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let args = self.header_args(fields)?;
        let body = BytesArg::extract(body)?;
        Ok(self
            .format
            .pack_into(out, body.as_slice(), msg_id, args.flags, &args.values)?)
    }
}

impl PacketFormat {
    /// A format with the `compress=` and `cipher=` arguments applied.
    fn build(
        format: Format,
        compress: Option<&Bound<'_, PyAny>>,
        cipher: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let format = format.with_pipeline(compression_arg(compress)?, cipher_arg(cipher)?)?;
        Ok(PacketFormat {
            format: Arc::new(format),
        })
    }

    /// `PacketFormat()`: a 4-byte big-endian length, then the body.
    pub(crate) fn default_format() -> Self {
        PacketFormat::new("!I", None, false, DEFAULT_MAX_BODY.into(), None, None, None)
            .expect("the default format is valid")
    }
}

thread_local! {
    /// Reused by `pack` so that packing a small packet allocates only the result.
    static PACK_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

#[pymethods]
impl PacketFormat {
    #[new]
    #[pyo3(
        signature = (header="!I", fields=None, *, length_includes_header=false, max_body=DEFAULT_MAX_BODY as i128, expect=None, compress=None, cipher=None),
        text_signature = "(header='!I', fields=None, *, length_includes_header=False, max_body=8388608, expect=None, compress=None, cipher=None)"
    )]
    #[allow(clippy::too_many_arguments)] // the Python signature's keywords
    fn new(
        header: &str,
        fields: Option<&Bound<'_, PyAny>>,
        length_includes_header: bool,
        max_body: i128,
        expect: Option<&Bound<'_, PyDict>>,
        compress: Option<&Bound<'_, PyAny>>,
        cipher: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let fields = match fields {
            Some(f) => names_arg(f)?,
            None => vec!["length".to_owned()],
        };
        let names: Vec<&str> = fields.iter().map(String::as_str).collect();
        let expect = expect_arg(expect)?;
        let format = Format::from_struct(
            header,
            &names,
            length_includes_header,
            size_arg(max_body, "max_body")?,
            &borrowed(&expect),
        )?;
        PacketFormat::build(format, compress, cipher)
    }

    // Keyword-only after the first two: Java's constructor takes maxFrameLength first, and
    // `length_field(1024, 2, 3, 0, 0)` copied from it would otherwise be accepted positionally
    // with every value in the wrong place.
    #[doc = pydoc!("PacketFormat.length_field")]
    #[staticmethod]
    #[pyo3(
        signature = (offset, length, *, adjustment=0, strip=0, max_frame=DEFAULT_MAX_BODY as i128, byteorder="big", expect=None, compress=None, cipher=None),
        text_signature = "(offset, length, *, adjustment=0, strip=0, max_frame=8388608, byteorder='big', expect=None, compress=None, cipher=None)"
    )]
    #[allow(clippy::too_many_arguments)] // Netty's parameters, then the pipeline's
    fn length_field(
        offset: i128,
        length: i128,
        adjustment: i64,
        strip: i128,
        max_frame: i128,
        byteorder: &str,
        expect: Option<&Bound<'_, PyDict>>,
        compress: Option<&Bound<'_, PyAny>>,
        cipher: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let expect = expect_arg(expect)?;
        let format = Format::length_field(
            usize_arg(offset, "offset")?,
            usize_arg(length, "length")?,
            adjustment,
            usize_arg(strip, "strip")?,
            size_arg(max_frame, "max_frame")?,
            order_arg(byteorder)?,
            &borrowed(&expect),
        )?;
        PacketFormat::build(format, compress, cipher)
    }

    #[doc = pydoc!("PacketFormat.varint")]
    #[staticmethod]
    #[pyo3(
        signature = (max_body=DEFAULT_MAX_BODY as i128, *, compress=None, cipher=None),
        text_signature = "(max_body=8388608, *, compress=None, cipher=None)"
    )]
    fn varint(
        max_body: i128,
        compress: Option<&Bound<'_, PyAny>>,
        cipher: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let max_body = size_arg(max_body, "max_body")?;
        PacketFormat::build(Format::varint(max_body), compress, cipher)
    }

    #[doc = pydoc!("PacketFormat.compress")]
    #[getter]
    fn compress(&self) -> Option<Compression> {
        self.format
            .compression
            .clone()
            .map(|inner| Compression { inner })
    }

    #[doc = pydoc!("PacketFormat.cipher")]
    #[getter]
    fn cipher(&self) -> Option<Cipher> {
        self.format.cipher.clone().map(|inner| Cipher { inner })
    }

    #[doc = pydoc!("PacketFormat.fields")]
    #[getter]
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.format.fields.iter().map(|f| &*f.name))
    }

    #[doc = pydoc!("PacketFormat.header_size")]
    #[getter]
    fn header_size(&self) -> Option<usize> {
        self.format.fixed_header_size()
    }

    #[doc = pydoc!("PacketFormat.max_body")]
    #[getter]
    fn max_body(&self) -> u64 {
        self.format.max_body()
    }

    #[doc = pydoc!("PacketFormat.pack")]
    #[pyo3(signature = (body, msg_id=0, **fields))]
    fn pack<'py>(
        &self,
        py: Python<'py>,
        body: &Bound<'py, PyAny>,
        msg_id: i64,
        fields: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let pack = |out: &mut Vec<u8>| {
            out.clear();
            self.pack_one(out, body, msg_id, fields)?;
            Ok(PyBytes::new(py, out))
        };
        // Converting an argument can run Python code that calls pack() again (an __index__,
        // a buffer exporter): that inner call finds the scratch buffer in use and takes its own.
        PACK_SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut out) => pack(&mut out),
            Err(_) => pack(&mut Vec::new()),
        })
    }

    #[doc = pydoc!("PacketFormat.pack_many")]
    #[pyo3(signature = (items, msg_id=0, **fields))]
    fn pack_many<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
        msg_id: i64,
        fields: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.pack_all(items, msg_id, fields)?))
    }

    #[doc = pydoc!("PacketFormat.unpack")]
    fn unpack<'py>(
        &self,
        py: Python<'py>,
        frame: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, Packet>> {
        let data = BytesArg::extract(frame)?;
        let bytes = data.as_slice();
        match self.format.check(bytes) {
            Check::Frame { len, body_start } if len == bytes.len() => {
                Packet::from_frame(py, &self.format, bytes, body_start)
            }
            Check::Frame { len, .. } => Err(Error::Protocol(format!(
                "unpack() takes one frame: {len} bytes of frame, then {} more",
                bytes.len() - len
            ))
            .into()),
            Check::Incomplete { need, whole } => Err(Error::IncompleteFrame {
                partial: bytes.to_vec(),
                expected: whole.then_some(need as u64),
            }
            .into()),
            Check::Bad { error, .. } => Err(error.into()),
        }
    }

    #[doc = pydoc!("PacketFormat.decoder")]
    fn decoder(&self) -> Decoder {
        Decoder {
            inner: CoreDecoder::new(self.format.clone()),
            held: Vec::new(),
            held_bytes: 0,
        }
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PacketFormat>()
            .is_ok_and(|o| *o.get().format == *self.format)
    }

    fn __repr__(&self) -> String {
        let f = &self.format;
        let mut pipeline = String::new();
        if let Some(c) = self.compress() {
            pipeline.push_str(&format!(", compress={}", c.__repr__()));
        }
        if let Some(c) = self.cipher() {
            pipeline.push_str(&format!(", cipher={}", c.__repr__()));
        }
        let base = match &f.spec {
            Spec::Struct {
                header,
                length_includes_header,
                max_body,
            } => {
                let names: Vec<String> = f.fields.iter().map(|f| format!("'{}'", f.name)).collect();
                let comma = if names.len() == 1 { "," } else { "" };
                format!(
                    "PacketFormat('{header}', ({}{comma}), length_includes_header={}, max_body={max_body})",
                    names.join(", "),
                    if *length_includes_header { "True" } else { "False" }
                )
            }
            Spec::Netty {
                offset,
                length,
                adjustment,
                strip,
                max_frame,
                order,
            } => format!(
                "PacketFormat.length_field(offset={offset}, length={length}, adjustment={adjustment}, \
                 strip={strip}, max_frame={max_frame}, byteorder='{}')",
                if *order == Order::Big { "big" } else { "little" }
            ),
            Spec::Varint { max_body } => format!("PacketFormat.varint(max_body={max_body})"),
        };
        // Every form ends with ")": the pipeline goes before it.
        format!("{}{pipeline})", &base[..base.len() - 1])
    }
}

#[doc = pydoc!("Decoder")]
#[pyclass(module = "sockwire", name = "Decoder")]
pub struct Decoder {
    pub(crate) inner: CoreDecoder,
    /// Packets that followed a bad frame in an earlier `feed()`: the next call returns them.
    held: Vec<Py<Packet>>,
    /// Their size on the wire, counted in `pending`.
    held_bytes: usize,
}

/// Decodes `data` with `decoder`, calling `sink` in stream order with each packet (and its
/// size on the wire) or the error of each bad frame (or body that fails to decrypt or
/// decompress).
pub(crate) fn feed_into<'py>(
    py: Python<'py>,
    decoder: &mut CoreDecoder,
    data: &[u8],
    sink: &mut impl FnMut(PyResult<(Bound<'py, Packet>, usize)>),
) {
    let format = decoder.format().clone();
    decoder.feed(data, |event| match event {
        Event::Frame { frame, body_start } => {
            sink(Packet::from_frame(py, &format, frame, body_start).map(|p| (p, frame.len())))
        }
        Event::Bad(e) => sink(Err(e.into())),
    });
}

#[pymethods]
impl Decoder {
    #[doc = pydoc!("Decoder.feed")]
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let data = BytesArg::extract(data)?;
        let packets = PyList::new(py, self.held.drain(..))?;
        self.held_bytes = 0;
        let mut errors: Vec<PyErr> = Vec::new();
        let mut failed = None;
        let (held, held_bytes) = (&mut self.held, &mut self.held_bytes);
        feed_into(
            py,
            &mut self.inner,
            data.as_slice(),
            &mut |item| match item {
                Ok((p, _)) if errors.is_empty() => {
                    if let Err(e) = packets.append(p) {
                        failed.get_or_insert(e);
                    }
                }
                Ok((p, wire_len)) => {
                    held.push(p.unbind());
                    *held_bytes += wire_len;
                }
                Err(e) => errors.push(e),
            },
        );
        if let Some(e) = failed {
            return Err(e);
        }
        let mut errors = errors.into_iter();
        let Some(err) = errors.next() else {
            return Ok(packets);
        };
        let later = PyList::new(py, errors.map(|e| e.into_value(py)))?;
        set_attrs(
            py,
            &err,
            &[
                ("packets", packets.into_any()),
                ("later_errors", later.into_any()),
            ],
        );
        Err(err)
    }

    #[doc = pydoc!("Decoder.pending")]
    #[getter]
    fn pending(&self) -> usize {
        self.inner.pending() + self.held_bytes
    }

    #[doc = pydoc!("Decoder.format")]
    #[getter]
    fn format(&self) -> PacketFormat {
        PacketFormat {
            format: self.inner.format().clone(),
        }
    }

    fn __repr__(&self) -> String {
        format!("<Decoder pending={}>", self.pending())
    }
}
