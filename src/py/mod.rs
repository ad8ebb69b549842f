//! The Python bindings: argument conversion, GIL release and error mapping over the core.

// First, so that `pydoc!` is in (textual) scope in every module below.
#[macro_use]
mod doc;
// Next, for `params!` and `fastcall!`.
#[macro_use]
pub mod fastcall;

pub mod aio;
pub mod codec;
pub mod connection;
pub mod convert;
pub mod decoder;
pub mod errors;
pub mod format;
pub mod gateway;
pub mod gateway_loop;
pub mod gil;
pub mod load;
pub mod packet;
pub mod registry;
pub mod setup;
pub mod socket;
pub mod tls;

use pyo3::prelude::*;
use pyo3::PyTypeInfo;

/// Registers every class, function and exception of `sockwire._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<socket::Socket>()?;
    m.add_class::<packet::Packet>()?;
    m.add_class::<codec::Compression>()?;
    m.add_class::<codec::Cipher>()?;
    m.add_class::<format::PacketFormat>()?;
    m.add_class::<decoder::Decoder>()?;
    m.add_class::<connection::Connection>()?;
    m.add_class::<tls::TlsConfig>()?;
    m.add_function(wrap_pyfunction!(connection::connect, m)?)?;
    m.add_class::<setup::Listener>()?;
    m.add_class::<registry::ClientInfo>()?;
    m.add_class::<registry::ClientGroup>()?;
    m.add_function(wrap_pyfunction!(setup::tcp_client_options, m)?)?;
    m.add_function(wrap_pyfunction!(setup::tcp_server_options, m)?)?;
    m.add_function(wrap_pyfunction!(setup::server_listener, m)?)?;
    m.add_function(wrap_pyfunction!(setup::create_client, m)?)?;
    m.add_function(wrap_pyfunction!(setup::accept_client_connect, m)?)?;
    m.add_class::<gateway::Gateway>()?;
    m.add_function(wrap_pyfunction!(gateway::_at_exit, m)?)?;
    m.add_function(wrap_pyfunction!(load::_load, m)?)?;
    m.add_class::<load::Swarm>()?;
    m.add_class::<aio::PyBell>()?;
    m.add_class::<aio::PyAsyncConn>()?;
    m.add_class::<gateway_loop::HandlerLoop>()?;
    fastcall::install::<format::PacketFormat>(
        m.py(),
        "pack",
        "($self, body, msg_id=0, **fields)",
        pydoc!("PacketFormat.pack"),
        fastcall!(format::PacketFormat, format::PacketFormat::pack_fast),
    )?;
    fastcall::install::<connection::Connection>(
        m.py(),
        "send",
        "($self, body, msg_id=0, **fields)",
        pydoc!("Connection.send"),
        fastcall!(connection::Connection, connection::Connection::send_fast),
    )?;
    fastcall::install::<connection::Connection>(
        m.py(),
        "request",
        "($self, body, msg_id=0, timeout=None, **fields)",
        pydoc!("Connection.request"),
        fastcall!(connection::Connection, connection::Connection::request_fast),
    )?;
    unordered::<packet::Packet>(m.py())?;
    unordered::<format::PacketFormat>(m.py())?;
    unordered::<codec::Compression>(m.py())?;
    unordered::<codec::Cipher>(m.py())?;
    unordered::<registry::ClientInfo>(m.py())?;
    Ok(())
}

/// Takes `__lt__`, `__le__`, `__gt__` and `__ge__` off a class that has equality but no order.
///
/// A class with `__eq__` gets a `tp_richcompare` slot, and CPython then puts all six comparison
/// wrappers in its dict, so `help()` lists `__lt__` and friends as if instances were ordered
/// (pyo3's `#[pyclass(eq)]` and `__richcmp__` fill the same slot). Deleting the four makes the
/// class look like a Python class that defines only `__eq__`; `<` raises the usual TypeError.
// NOTE: CPython cannot skip the wrappers for a type with tp_richcompare (`dict` lists them
// too). After the deletion it dispatches comparisons through the type's `__eq__`/`__ne__`
// wrappers (the generic slot Python classes use): two Packets compare with `==` in 90 ns
// instead of 32, with `!=` in 160 ns instead of 48. Editing the type's dict behind
// `type.__setattr__` would keep the fast slot, but CPython documents that dict as read-only.
fn unordered<T: PyTypeInfo>(py: Python<'_>) -> PyResult<()> {
    let ty = py.get_type::<T>();
    for name in ["__lt__", "__le__", "__gt__", "__ge__"] {
        ty.delattr(name)?;
    }
    Ok(())
}
