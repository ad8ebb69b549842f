//! The gateway's counters, as `stats()` reports them (DESIGN's keys, exactly).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters, updated from the connections and the handler threads.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub handler_errors: AtomicU64,
    pub unrouted: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub idle_disconnects: AtomicU64,
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    /// Every counter by its `stats()` key, with `active` (the clients connected now).
    pub fn snapshot(&self, active: usize) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("accepted", get(&self.accepted)),
            ("rejected", get(&self.rejected)),
            ("active", active as u64),
            ("packets_in", get(&self.packets_in)),
            ("packets_out", get(&self.packets_out)),
            ("bytes_in", get(&self.bytes_in)),
            ("bytes_out", get(&self.bytes_out)),
            ("protocol_errors", get(&self.protocol_errors)),
            ("handler_errors", get(&self.handler_errors)),
            ("unrouted", get(&self.unrouted)),
            ("slow_consumers", get(&self.slow_consumers)),
            ("idle_disconnects", get(&self.idle_disconnects)),
        ]
    }
}
