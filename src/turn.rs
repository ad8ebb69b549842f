//! One writer at a time on a stream, across blocking calls.
//!
//! A mutex guard cannot be held while a blocked write is interrupted by a signal, the GIL is
//! taken back to run the handler and the write resumes; a turn can. It keeps two threads'
//! frames (or TLS records) from interleaving on the wire.

use std::sync::{Condvar, Mutex};

/// The right to write, taken by one thread at a time.
#[derive(Debug, Default)]
pub struct WriteTurn {
    busy: Mutex<bool>,
    freed: Condvar,
}

/// A turn being held; dropping it passes the turn on.
pub struct Turn<'a>(&'a WriteTurn);

impl WriteTurn {
    /// Waits for the turn (call it without holding the GIL).
    pub fn take(&self) -> Turn<'_> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            busy = self.freed.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        *busy = true;
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn one_holder_at_a_time() {
        let turn = Arc::new(WriteTurn::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (turn, inside) = (turn.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _t = turn.take();
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
}
