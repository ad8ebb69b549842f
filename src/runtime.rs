//! The one tokio runtime of the process: started by its first user, shut down once, before the
//! interpreter finalizes.
//!
//! Every gateway (and the load driver) runs on it; nothing ever creates a runtime per call. It
//! is owned here, not hidden in a static that can never be dropped, so that `shutdown` can stop
//! its threads while the interpreter is still whole: the Python package calls it from an
//! `atexit` hook, after stopping the gateways still running. A process that starts a gateway
//! and simply exits then exits cleanly instead of aborting in a runtime thread.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

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
    /// When the oldest deferred wake-up was deferred.
    static DEFERRED_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// How long a deferred wake-up may wait for its worker to run out of work.
const DEFER_AT_MOST: Duration = Duration::from_micros(200);

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
    let first = DEFERRED.with_borrow_mut(|d| {
        d.push(target);
        d.len() == 1
    });
    if first {
        DEFERRED_SINCE.set(Some(Instant::now()));
    } else {
        wake_if_overdue();
    }
    true
}

/// Wakes what was deferred on this worker if it has waited more than a moment: a worker kept
/// busy by other tasks may not park for a long time. Every task of this runtime calls it when
/// it wakes, so no deferred wake-up waits much longer than [`DEFER_AT_MOST`].
// NOTE: without it, a gateway's handler thread waited for as long as an unrelated busy task
// kept the worker from parking: a runtime thread spinning on a client connection stalled a
// gateway in the same process for good.
pub fn wake_if_overdue() {
    if let Some(since) = DEFERRED_SINCE.get() {
        if since.elapsed() > DEFER_AT_MOST {
            wake_deferred();
        }
    }
}

fn wake_deferred() {
    DEFERRED_SINCE.set(None);
    let deferred = DEFERRED.with_borrow_mut(std::mem::take);
    for target in deferred {
        target.wake();
    }
}

/// Wakes one task: raised from any thread, taken by the task when it polls. Smaller and
/// cheaper than a `Notify` whose future the task would keep and re-register in every turn of
/// its loop.
// NOTE: tokio's Notify cost 4% of the I/O thread's time in the gateway benchmark (registering
// and dropping a `Notified` in every turn), and its future was part of every connection's
// state; this is an atomic flag and a waker slot.
#[derive(Debug, Default)]
pub struct Signal {
    raised: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// True (and lowered) if it was raised since the last call; else `waker` is woken when
    /// it is.
    pub fn take(&self, waker: &Waker) -> bool {
        if self.raised.swap(false, Ordering::AcqRel) {
            return true;
        }
        let mut slot = self.waker.lock().unwrap_or_else(|p| p.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
        drop(slot);
        // Raised between the check and the registration: seen now, not lost.
        self.raised.swap(false, Ordering::AcqRel)
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
