//! Python docstrings, read from `python/sockwire/_core.pyi` at build time (see build.rs).
//!
//! `#[doc = pydoc!("Class.method")]` on a `#[pyclass]`, `#[pymethods]` fn, getter or
//! `#[pyfunction]` gives it the stub's docstring for that name, cleaned as `inspect.cleandoc`
//! shows it; pyo3 still puts the text signature in front. A name the stub does not document is
//! a compile error.
//!
//! The macro is used by textual scope (`#[macro_use] mod doc;` first in `py/mod.rs`), not by
//! `use`: rustc cannot resolve an imported macro inside `#[doc = ...]` on a `#[pyclass]` item
//! ("cannot determine resolution for the macro").

include!(concat!(env!("OUT_DIR"), "/pydoc.rs"));
