//! A lock on one side of a stream (its writes, or a TLS session's reads): one thread at a time,
//! held across blocking calls.
//!
//! A mutex guard cannot be held while a blocked write is interrupted by a signal, the GIL is
//! taken back to run the handler and the write resumes; this lock can. It keeps two threads'
//! frames (or TLS records) from interleaving on the wire.
//!
//! Two things a plain mutex gets wrong here:
//! - **Waiting must be interruptible.** A thread waiting for the lock returns `EINTR` every
//!   `SLICE`, so the binding layer can run Python's signal handlers (Ctrl-C) and wait again,
//!   and a timed call gives up at its deadline.
//! - **The holder may take it again.** A signal handler runs on the thread whose send it
//!   interrupted, while that send holds the lock; if the handler sends on the same stream, it
//!   must not wait for itself. It nests instead, and writes what the interrupted send left
//!   unwritten before its own data (the stdlib's socket, which has no such lock, completes too).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::socket::Wait;

/// How long a waiter sleeps before returning `EINTR` so that signal handlers can run: the
/// longest a Ctrl-C waits to be noticed by a thread waiting for the lock.
const SLICE: Duration = Duration::from_millis(50);

/// Who holds the lock, how many times (nested takes by the same thread), and how many threads
/// wait for it.
#[derive(Debug, Default)]
struct Holder {
    thread: Option<ThreadId>,
    depth: usize,
    waiters: usize,
}

/// The right to use one side of a stream, taken by one thread at a time.
#[derive(Debug, Default)]
pub struct SideLock {
    holder: Mutex<Holder>,
    freed: Condvar,
}

/// The lock being held; dropping it gives it back (or leaves one level of nesting).
#[derive(Debug)]
pub struct SideGuard<'a>(&'a SideLock);

impl SideLock {
    fn lock(&self) -> MutexGuard<'_, Holder> {
        self.holder.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the lock as `wait` allows (call it without holding the GIL). While another thread
    /// holds it: `EAGAIN` at once for a non-blocking call, `Timeout` at the deadline, and
    /// `EINTR` after each `SLICE` of waiting, for the caller to run signal handlers and call
    /// again. The thread already holding the lock gets it again at once.
    pub fn take(&self, wait: Wait) -> Result<SideGuard<'_>> {
        let me = thread::current().id();
        let mut holder = self.lock();
        let started = Instant::now();
        loop {
            match holder.thread {
                None => {
                    holder.thread = Some(me);
                    holder.depth = 1;
                    return Ok(SideGuard(self));
                }
                Some(t) if t == me => {
                    holder.depth += 1;
                    return Ok(SideGuard(self));
                }
                Some(_) => {}
            }
            let slice = match wait {
                Wait::NonBlocking => return Err(Error::os(libc::EAGAIN)),
                Wait::Blocking => SLICE,
                Wait::Until(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout);
                    }
                    left.min(SLICE)
                }
            };
            if started.elapsed() >= SLICE {
                return Err(Error::os(libc::EINTR));
            }
            holder.waiters += 1;
            holder = self
                .freed
                .wait_timeout(holder, slice)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            holder.waiters -= 1;
        }
    }

    /// Takes the lock only if nobody else holds it.
    pub fn try_take(&self) -> Option<SideGuard<'_>> {
        self.take(Wait::NonBlocking).ok()
    }
}

impl Drop for SideGuard<'_> {
    fn drop(&mut self) {
        let mut holder = self.0.lock();
        holder.depth -= 1;
        if holder.depth == 0 {
            holder.thread = None;
            // NOTE: std's Condvar makes a futex syscall on every notify, waiter or not: one
            // per Connection.send and per request. Skipping it when nobody waits took a
            // Connection.request round trip from 8.65-8.80 to 8.10-8.38 µs (medians of 11 runs
            // of 5,000, threaded echo server on the same CPU; three runs each).
            let waited = holder.waiters > 0;
            drop(holder);
            if waited {
                self.0.freed.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Takes the lock the way the binding layer does: retrying after each `EINTR`.
    fn take_retrying(lock: &SideLock, wait: Wait) -> Result<SideGuard<'_>> {
        loop {
            match lock.take(wait) {
                Err(e) if e.is_interrupted() => continue,
                r => return r,
            }
        }
    }

    #[test]
    fn one_holder_at_a_time() {
        let lock = Arc::new(SideLock::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (lock, inside) = (lock.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _t = take_retrying(&lock, Wait::Blocking).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn the_holder_nests_and_the_turn_frees_after_the_outermost_guard() {
        let lock = Arc::new(SideLock::default());
        let outer = lock.take(Wait::Blocking).unwrap();
        let inner = lock.take(Wait::NonBlocking).unwrap();
        drop(inner);
        let other = {
            let lock = lock.clone();
            std::thread::spawn(move || lock.take(Wait::NonBlocking).map(drop))
        };
        assert_eq!(
            other.join().unwrap().unwrap_err().errno(),
            Some(libc::EAGAIN)
        );
        drop(outer);
        let other = std::thread::spawn(move || lock.take(Wait::NonBlocking).map(drop));
        assert!(other.join().unwrap().is_ok());
    }

    #[test]
    fn a_waiter_is_interrupted_each_slice_and_times_out_at_its_deadline() {
        let lock = Arc::new(SideLock::default());
        let _held = lock.take(Wait::Blocking).unwrap();
        let lock2 = lock.clone();
        let waiter = std::thread::spawn(move || {
            let start = Instant::now();
            let first = lock2.take(Wait::Blocking).map(drop).unwrap_err();
            let interrupted_after = start.elapsed();
            let deadline = Instant::now() + Duration::from_millis(120);
            let mut interruptions = 0;
            let last = loop {
                match lock2.take(Wait::Until(deadline)) {
                    Err(e) if e.is_interrupted() => interruptions += 1,
                    r => break r.map(drop),
                }
            };
            (first, interrupted_after, interruptions, last)
        });
        let (first, after, interruptions, last) = waiter.join().unwrap();
        assert!(first.is_interrupted(), "{first:?}");
        assert!(after >= SLICE && after < SLICE * 10, "{after:?}");
        assert!(interruptions >= 1);
        assert!(matches!(last, Err(Error::Timeout)), "{last:?}");
    }
}
