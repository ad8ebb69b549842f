//! The one tokio runtime of the process: started by its first user, shut down once, before the
//! interpreter finalizes.
//!
//! Every gateway (and the load driver) runs on it; nothing ever creates a runtime per call. It
//! is owned here, not hidden in a static that can never be dropped, so that `shutdown` can stop
//! its threads while the interpreter is still whole: the Python package calls it from an
//! `atexit` hook, after stopping the gateways still running. A process that starts a gateway
//! and simply exits then exits cleanly instead of aborting in a runtime thread.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, MutexGuard};
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
    builder
        .enable_all()
        .thread_name("sockwire-io")
        .on_thread_start(|| ON_WORKER.set(true))
        .on_thread_park(wake_deferred);
    if let Some(n) = workers {
        builder.worker_threads(n.max(1));
    }
    let rt = builder.build()?;
    let handle = rt.handle().clone();
    *state = State::Running(rt);
    Ok(handle)
}

/// Something to wake once the worker thread that asked has no more tasks to run.
pub trait Wake: Send + Sync {
    fn wake(&self);
}

thread_local! {
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
    static DEFERRED: RefCell<Vec<Arc<dyn Wake>>> = const { RefCell::new(Vec::new()) };
}

/// Wakes `target` when this runtime worker thread is about to park (it has run every task it
/// could), so that the tasks of one busy period share one wake-up; false, and nothing done,
/// on any other thread (the caller wakes `target` itself).
// NOTE: waking a gateway's handler thread for every event made the I/O worker and the handler
// ping-pong: with both on one CPU, 25% of the server's time went to context switches and
// 100 connections x 16 in flight ran at 0.95-1.05 M packets/s. Waking it once per busy period
// lets each side work through a batch.
pub fn wake_when_idle(target: Arc<dyn Wake>) -> bool {
    if !ON_WORKER.get() {
        return false;
    }
    DEFERRED.with_borrow_mut(|d| d.push(target));
    true
}

fn wake_deferred() {
    let deferred = DEFERRED.with_borrow_mut(std::mem::take);
    for target in deferred {
        target.wake();
    }
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
