//! The one tokio runtime of the process: started by its first user, shut down once, before the
//! interpreter finalizes.
//!
//! Every gateway (and the load driver) runs on it; nothing ever creates a runtime per call. It
//! is owned here, not hidden in a static that can never be dropped, so that `shutdown` can stop
//! its threads while the interpreter is still whole: the Python package calls it from an
//! `atexit` hook, after stopping the gateways still running. A process that starts a gateway
//! and simply exits then exits cleanly instead of aborting in a runtime thread.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};

use crate::error::{Error, Result};

/// The runtime, once started; `None` again after `shutdown`.
static RUNTIME: Mutex<State> = Mutex::new(State::NotStarted);

enum State {
    NotStarted,
    Running(Runtime),
    ShutDown,
}

fn lock() -> MutexGuard<'static, State> {
    RUNTIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// A handle to the runtime, starting it with `workers` threads (default: one per CPU) if this
/// is its first use. The thread count of an already running runtime does not change.
pub fn handle(workers: Option<usize>) -> Result<Handle> {
    let mut state = lock();
    if let State::Running(rt) = &*state {
        return Ok(rt.handle().clone());
    }
    if matches!(*state, State::ShutDown) {
        return Err(Error::InvalidArgument(
            "the sockwire runtime was shut down (the interpreter is exiting)".into(),
        ));
    }
    let mut builder = Builder::new_multi_thread();
    builder.enable_all().thread_name("sockwire-io");
    if let Some(n) = workers {
        builder.worker_threads(n.max(1));
    }
    let rt = builder.build()?;
    let handle = rt.handle().clone();
    *state = State::Running(rt);
    Ok(handle)
}

/// Whether the runtime is running now.
pub fn is_running() -> bool {
    matches!(*lock(), State::Running(_))
}

/// Stops the runtime's threads, waiting at most `timeout` for its tasks to end; later calls to
/// [`handle`] fail. Call it with no gateway running (the tasks left are cancelled).
pub fn shutdown(timeout: Duration) {
    let state = std::mem::replace(&mut *lock(), State::ShutDown);
    if let State::Running(rt) = state {
        rt.shutdown_timeout(timeout);
    }
}
