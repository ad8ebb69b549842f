//! The client registry behind `ClientGroup`: who is connected, keyed by file descriptor.
//!
//! One mutex guards a map; every operation holds it for a few hash-map steps only, so 5000
//! clients registering from many threads never wait on each other for long.

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// What the owner of a registration keeps with it (the Python layer: the client's `state`
/// dict); the registry never looks inside.
pub type ClientData = Arc<dyn Any + Send + Sync>;

/// One registered client: what the seed kept in its `{client_fd, fd_port}` dict, and a bit more.
#[derive(Clone)]
pub struct ClientRecord {
    /// The connection's file descriptor: the key of the registry.
    pub fd: i32,
    /// The peer's address; `fd_port` is its port.
    pub addr: SocketAddr,
    /// Seconds since the Unix epoch when the client was registered (like `time.time()`).
    pub connected_at: f64,
    /// Registration order; also tells two registrations of one fd number apart.
    pub token: u64,
    /// The registering owner's data, the same for the registration's whole life.
    pub data: Option<ClientData>,
}

impl PartialEq for ClientRecord {
    /// The same registration: fd and token (and what was recorded with them).
    fn eq(&self, other: &Self) -> bool {
        (self.fd, self.token, self.addr, self.connected_at)
            == (other.fd, other.token, other.addr, other.connected_at)
    }
}

impl std::fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRecord")
            .field("fd", &self.fd)
            .field("addr", &self.addr)
            .field("connected_at", &self.connected_at)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// A thread-safe registry of connected clients with an optional maximum.
#[derive(Debug)]
pub struct Registry {
    max: Option<usize>,
    clients: Mutex<HashMap<i32, ClientRecord>>,
    next_token: AtomicU64,
}

impl Registry {
    /// An empty registry that holds at most `max` clients (`None`: no limit).
    pub fn new(max: Option<usize>) -> Arc<Self> {
        Arc::new(Registry {
            max,
            clients: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
        })
    }

    /// The maximum number of clients, if any.
    pub fn max(&self) -> Option<usize> {
        self.max
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, ClientRecord>> {
        // A panic while holding this lock cannot leave the map half-updated (each operation is a
        // single insert or remove), so a poisoned lock is still safe to use.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the client on `fd`. An fd already present is replaced: two live connections
    /// cannot share an fd, so the old entry is stale. Past `max` this fails with `ServerFull`.
    pub fn add(&self, fd: i32, addr: SocketAddr) -> Result<ClientRecord> {
        self.add_with(fd, addr, None)
    }

    /// [`Registry::add`], keeping `data` with the registration.
    pub fn add_with(
        &self,
        fd: i32,
        addr: SocketAddr,
        data: Option<ClientData>,
    ) -> Result<ClientRecord> {
        self.add_made(fd, addr, |_| data)
    }

    /// [`Registry::add`], keeping with the registration the data `make` makes from its record
    /// (which `make` sees without data); `make` runs only if the client is admitted.
    pub fn add_made(
        &self,
        fd: i32,
        addr: SocketAddr,
        make: impl FnOnce(&ClientRecord) -> Option<ClientData>,
    ) -> Result<ClientRecord> {
        let mut clients = self.lock();
        if let Some(max) = self.max {
            if clients.len() >= max && !clients.contains_key(&fd) {
                return Err(Error::ServerFull { max });
            }
        }
        let mut record = ClientRecord {
            fd,
            addr,
            connected_at: now(),
            token: self.next_token.fetch_add(1, Ordering::Relaxed),
            data: None,
        };
        record.data = make(&record);
        clients.insert(fd, record.clone());
        Ok(record)
    }

    /// Removes and returns the client on `fd`.
    pub fn remove(&self, fd: i32) -> Option<ClientRecord> {
        self.lock().remove(&fd)
    }

    /// Removes the client on `fd` only if it is still the registration `token` made.
    pub fn remove_registration(&self, fd: i32, token: u64) -> bool {
        let mut clients = self.lock();
        if clients.get(&fd).is_some_and(|r| r.token == token) {
            clients.remove(&fd);
            true
        } else {
            false
        }
    }

    pub fn get(&self, fd: i32) -> Option<ClientRecord> {
        self.lock().get(&fd).cloned()
    }

    /// The registration `token` made on `fd`, if it is still there.
    pub fn get_registration(&self, fd: i32, token: u64) -> Option<ClientRecord> {
        self.lock().get(&fd).filter(|r| r.token == token).cloned()
    }

    /// The client whose peer port is `port` (the seed's `fd_port` lookup).
    pub fn by_port(&self, port: u16) -> Option<ClientRecord> {
        self.lock()
            .values()
            .filter(|r| r.addr.port() == port)
            .min_by_key(|r| r.token)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, fd: i32) -> bool {
        self.lock().contains_key(&fd)
    }

    /// The data kept with every registration that has some.
    pub fn all_data(&self) -> Vec<ClientData> {
        self.lock()
            .values()
            .filter_map(|r| r.data.clone())
            .collect()
    }

    /// A copy of every record, in registration order.
    pub fn snapshot(&self) -> Vec<ClientRecord> {
        let mut all: Vec<ClientRecord> = self.lock().values().cloned().collect();
        all.sort_by_key(|r| r.token);
        all
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A socket's membership in a registry: closing the socket removes exactly this registration.
#[derive(Debug)]
pub struct Membership {
    pub registry: Arc<Registry>,
    pub fd: i32,
    pub token: u64,
}

impl Membership {
    /// Removes the registration; a later registration of the same fd number is left alone.
    pub fn leave(&self) {
        self.registry.remove_registration(self.fd, self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn add_get_remove() {
        let reg = Registry::new(None);
        let rec = reg.add(7, addr(5000)).unwrap();
        assert_eq!(reg.get(7), Some(rec.clone()));
        assert!(reg.contains(7));
        assert_eq!(reg.by_port(5000).map(|r| r.fd), Some(7));
        assert_eq!(reg.remove(7), Some(rec));
        assert!(reg.is_empty());
    }

    #[test]
    fn max_is_enforced_but_replacing_an_fd_is_not_growth() {
        let reg = Registry::new(Some(2));
        reg.add(1, addr(1)).unwrap();
        reg.add(2, addr(2)).unwrap();
        assert!(matches!(
            reg.add(3, addr(3)),
            Err(Error::ServerFull { max: 2 })
        ));
        reg.add(2, addr(22)).unwrap();
        assert_eq!(reg.len(), 2);
        assert_eq!(reg.get(2).unwrap().addr.port(), 22);
    }

    #[test]
    fn membership_removes_only_its_own_registration() {
        let reg = Registry::new(None);
        let first = reg.add(9, addr(1)).unwrap();
        let stale = Membership {
            registry: reg.clone(),
            fd: 9,
            token: first.token,
        };
        reg.add(9, addr(2)).unwrap(); // fd 9 reused by a new connection
        stale.leave();
        assert_eq!(reg.get(9).unwrap().addr.port(), 2);
    }

    #[test]
    fn snapshot_is_in_registration_order() {
        let reg = Registry::new(None);
        for fd in [30, 10, 20] {
            reg.add(fd, addr(fd as u16)).unwrap();
        }
        let fds: Vec<i32> = reg.snapshot().iter().map(|r| r.fd).collect();
        assert_eq!(fds, [30, 10, 20]);
    }

    #[test]
    fn concurrent_adds_never_exceed_max() {
        let reg = Registry::new(Some(100));
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let reg = reg.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .filter(|i| reg.add(t * 1000 + i, addr(1)).is_ok())
                        .count()
                })
            })
            .collect();
        let accepted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(accepted, 100);
        assert_eq!(reg.len(), 100);
    }
}
