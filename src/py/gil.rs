//! Every release of the GIL goes through here: blocking calls, waits that signals interrupt,
//! and CPU work on large inputs.
//!
//! Core calls that wait return `EINTR` when a signal interrupts them; the hook below runs
//! Python's signal handlers then (taking the GIL back for that moment) and the call goes on,
//! as CPython's own socket calls do (PEP 475). A handler that raises ends the call with its
//! exception.

use pyo3::prelude::*;

use crate::error::Result as CoreResult;
use crate::socket::retry;

/// The `on_signal` hook core calls take: runs Python's signal handlers from a thread that
/// released the GIL.
pub type OnSignal = fn() -> PyResult<()>;

fn run_signal_handlers() -> PyResult<()> {
    Python::attach(|py| py.check_signals())
}

/// Runs a blocking core call with the GIL released, retrying it after each signal whose
/// handlers did not raise (the call keeps its own progress and deadline).
pub fn blocking<T: Send>(py: Python<'_>, op: impl FnMut() -> CoreResult<T> + Send) -> PyResult<T> {
    py.detach(|| retry(op, &mut (run_signal_handlers as OnSignal)))
}

/// Runs a core flow that waits (connect, accept, a framed send or receive) with the GIL
/// released; the flow calls the hook it is given after each signal.
pub fn detached<T: Send>(
    py: Python<'_>,
    flow: impl FnOnce(&mut OnSignal) -> PyResult<T> + Send,
) -> PyResult<T> {
    py.detach(|| flow(&mut (run_signal_handlers as OnSignal)))
}

/// Runs a core call that does not wait for a peer (close, shutdown) with the GIL released.
pub fn released<T: Send>(py: Python<'_>, op: impl FnOnce() -> T + Send) -> T {
    py.detach(op)
}
