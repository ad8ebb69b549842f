//! sockwire: TCP network programming for Python with a Rust core.
//!
//! The core modules (everything but `py`) never touch Python and are tested with `cargo test`;
//! `py` adapts them for the `sockwire._core` extension module.

pub mod addr;
pub mod async_conn;
pub mod bell;
pub mod cipher;
pub mod compress;
pub mod decoder;
pub mod error;
pub mod format;
pub mod framed;
pub mod gateway;
pub mod load;
pub mod registry;
pub mod repr;
pub mod runtime;
pub mod setup;
pub mod side_lock;
pub mod socket;
pub mod stream;
pub mod tls;

#[macro_use]
mod py;

use pyo3::prelude::*;

// The `sockwire._core` extension module.
#[doc = pydoc!("<module>")]
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::register(m)
}
