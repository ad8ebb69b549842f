//! The Python bindings: argument conversion, GIL release and error mapping over the core.

// First, so that `pydoc!` is in (textual) scope in every module below.
#[macro_use]
mod doc;

pub mod codec;
pub mod connection;
pub mod convert;
pub mod errors;
pub mod packet;
pub mod recipe;
pub mod registry;
pub mod socket;
pub mod tls;

use pyo3::prelude::*;

/// Registers every class, function and exception of `sockwire._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<socket::Socket>()?;
    m.add_class::<packet::Packet>()?;
    m.add_class::<codec::Compression>()?;
    m.add_class::<codec::Cipher>()?;
    m.add_class::<packet::PacketFormat>()?;
    m.add_class::<packet::Decoder>()?;
    m.add_class::<connection::Connection>()?;
    m.add_class::<tls::TlsConfig>()?;
    m.add_function(wrap_pyfunction!(connection::connect, m)?)?;
    m.add_class::<recipe::Listener>()?;
    m.add_class::<registry::ClientInfo>()?;
    m.add_class::<registry::ClientGroup>()?;
    m.add_function(wrap_pyfunction!(recipe::tcp_client_options, m)?)?;
    m.add_function(wrap_pyfunction!(recipe::tcp_server_options, m)?)?;
    m.add_function(wrap_pyfunction!(recipe::server_listener, m)?)?;
    m.add_function(wrap_pyfunction!(recipe::create_client, m)?)?;
    m.add_function(wrap_pyfunction!(recipe::accept_client_connect, m)?)?;
    Ok(())
}
