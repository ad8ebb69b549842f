//! The gateway: many clients on the process's tokio runtime, their packets handed to a few
//! handler threads, one client group.
//!
//! How a packet travels:
//! - `accept` (this file) admits a connection, or closes it at once past `max_clients`, and
//!   registers it in the client group;
//! - its task (`connection`) reads into a per-thread buffer, splits frames with the crate's one
//!   decoder, decrypts and decompresses with the crate's codecs, and queues what one read
//!   produced as one event for the client's handler thread (`dispatch`; always the same
//!   thread, so the client's packets stay in order). A full queue makes the task wait, and
//!   stop reading: when handlers fall behind, sockets are not read;
//! - a handler thread (in the Python layer) takes a batch of events per GIL acquisition, runs
//!   the handlers, and queues replies on the client's session (`session`): a bounded queue of
//!   frames, whose overflow cuts the client as a slow consumer;
//! - the task writes every frame queued by then with one vectored write.
//!
//! `stop` stops accepting and reading, lets every client's handlers finish what was queued,
//! writes the replies (until its deadline), closes, and waits until every `on_disconnect` ran.

mod connection;
mod dispatch;
mod session;
mod stats;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

pub use dispatch::{Departure, DrainMark, Event, Inbox};
pub use session::{Reason, Sent, Session};
pub use stats::Stats;

use crate::error::{Error, Result};
use crate::format::Format;
use crate::registry::{ClientData, ClientRecord, Registry};
use crate::runtime;
use crate::setup;
use crate::socket::Wait;

/// How a gateway is set up.
#[derive(Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub format: Arc<Format>,
    /// The most clients connected at once; past it, a new connection is closed at once.
    pub max_clients: usize,
    /// Handler threads (the seed's work threads).
    pub handler_threads: usize,
    /// The runtime's threads, when this gateway is the one to start it (`None`: one per CPU).
    pub io_threads: Option<usize>,
    /// A client that sends nothing for this long is cut as idle.
    pub idle_timeout: Option<Duration>,
    /// Frames queued per client before it counts as a slow consumer.
    pub send_queue: usize,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub reuse_port: bool,
    /// Whether handler threads are told of new clients (only when the application listens).
    pub notify_connect: bool,
    /// Whether the handlers wait on an event loop (their inboxes then have an eventfd).
    pub on_loop: bool,
}

/// Shared by the accept loop, every connection and the gateway's owner.
struct Shared {
    config: Config,
    /// The connected clients: each registration keeps its [`Session`] as its data.
    clients: Arc<Registry>,
    stats: Arc<Stats>,
    dispatch: dispatch::Dispatch,
    /// Turns true when the gateway stops: accepting ends (the accept loop watches it), and
    /// every connection stops reading (each is signalled, and checks `stopping`).
    stop: watch::Sender<bool>,
    stopping: AtomicBool,
    stop_deadline: Mutex<Option<Instant>>,
    /// Clients admitted whose `on_disconnect` has not run yet.
    live: Mutex<usize>,
    gone: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn departed(&self) {
        let mut live = lock(&self.live);
        *live -= 1;
        if *live == 0 {
            self.gone.notify_all();
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    fn stop_deadline(&self) -> Instant {
        lock(&self.stop_deadline).unwrap_or_else(Instant::now)
    }

    /// Admits a connection, or closes it at once when the gateway is full.
    fn admit(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        use std::os::fd::AsRawFd;
        let tls = match &self.config.tls {
            None => None,
            Some(config) => match rustls::ServerConnection::new(config.clone()) {
                Ok(conn) => Some(Box::new(conn)),
                Err(_) => return, // (a config rustls accepted makes sessions; close if not)
            },
        };
        let mut session = None;
        let admitted = self.clients.add_made(stream.as_raw_fd(), peer, |record| {
            let thread = (record.token as usize) % self.dispatch.threads();
            let (limit, direct) = (self.config.send_queue, tls.is_none());
            let made = Session::new(record.clone(), thread, limit, direct, self.stats.clone());
            let made = Arc::new(made);
            session = Some(made.clone());
            Some(made as ClientData)
        });
        let Some(session) = session.filter(|_| admitted.is_ok()) else {
            stats::add(&self.stats.rejected, 1);
            return; // dropping `stream` closes it: the client reads EOF
        };
        stats::add(&self.stats.accepted, 1);
        let _ = stream.set_nodelay(true);
        *lock(&self.live) += 1;
        tokio::spawn(connection::serve(self.clone(), stream, session, tls));
    }
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    address: SocketAddr,
}

impl Gateway {
    /// Binds, starts accepting on the process's runtime, and returns the gateway with one inbox
    /// per handler thread (the caller runs the threads). `clients` is the group clients are
    /// registered in (its maximum should be `max_clients`); `stats` the counters to add to.
    pub fn start(
        config: Config,
        clients: Arc<Registry>,
        stats: Arc<Stats>,
    ) -> Result<(Gateway, Vec<Inbox>)> {
        let handle = runtime::handle(config.io_threads)?;
        let sock = setup::listen(&config.addr, config.max_clients, config.reuse_port)?;
        let address = sock.local_addr()?;
        sock.set_timeout(crate::socket::Timeout::NonBlocking)?;
        let fd = sock.detach();
        // SAFETY: the fd was just detached from `sock`, which no longer owns it.
        let std_listener = unsafe {
            use std::os::fd::FromRawFd;
            std::net::TcpListener::from_raw_fd(fd)
        };
        let listener = {
            let _guard = handle.enter();
            TcpListener::from_std(std_listener)?
        };
        let (dispatch, inboxes) = dispatch::Dispatch::new(config.handler_threads, config.on_loop)?;
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            clients,
            stats,
            dispatch,
            stop,
            stopping: AtomicBool::new(false),
            stop_deadline: Mutex::new(None),
            live: Mutex::new(0),
            gone: Condvar::new(),
        });
        handle.spawn(accept(shared.clone(), listener));
        Ok((Gateway { shared, address }, inboxes))
    }

    /// The address it listens on (the port it got, for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    pub fn format(&self) -> &Arc<Format> {
        &self.shared.config.format
    }

    /// The client connected on `fd` now.
    pub fn session_on_fd(&self, fd: i32) -> Option<Arc<Session>> {
        session_of(self.shared.clients.get(fd)?)
    }

    /// The session of one registration, if that connection is still there: a record of a
    /// connection that has ended never names whoever has its fd now.
    pub fn session(&self, record: &ClientRecord) -> Option<Arc<Session>> {
        session_of(
            self.shared
                .clients
                .get_registration(record.fd, record.token)?,
        )
    }

    /// Every connected client.
    fn sessions(&self) -> Vec<Arc<Session>> {
        let all = self.shared.clients.all_data();
        all.into_iter().filter_map(|d| d.downcast().ok()).collect()
    }

    /// Queues `frame` to every client `exclude` does not name; returns how many it was queued to.
    pub fn broadcast(&self, frame: &[u8], exclude: impl Fn(&ClientRecord) -> bool) -> usize {
        self.sessions()
            .iter()
            .filter(|s| !exclude(&s.record))
            .filter(|s| s.send(frame) == Sent::Queued)
            .count()
    }

    /// Starts stopping: no more accepting or reading; connections close once their handlers
    /// are done and their replies written, or at `now + timeout`.
    pub fn begin_stop(&self, timeout: Duration) {
        let mut deadline = lock(&self.shared.stop_deadline);
        if deadline.is_none() {
            *deadline = Some(Instant::now() + timeout);
        }
        drop(deadline);
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.stop.send_replace(true);
        for session in self.sessions() {
            session.wake();
        }
    }

    /// Waits as `wait` allows until every client has left and its `on_disconnect` ran:
    /// `EINTR` every 50 ms (for the caller to run signal handlers), `Timeout` at a deadline.
    pub fn wait_until_empty(&self, wait: Wait) -> Result<()> {
        let slice = Duration::from_millis(50);
        let started = std::time::Instant::now();
        let mut live = lock(&self.shared.live);
        while *live > 0 {
            let step = match wait {
                Wait::NonBlocking => return Err(Error::os(libc::EAGAIN)),
                Wait::Blocking => slice,
                Wait::Until(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout);
                    }
                    left.min(slice)
                }
            };
            if started.elapsed() >= slice {
                return Err(Error::os(libc::EINTR));
            }
            live = self
                .shared
                .gone
                .wait_timeout(live, step)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }

    /// Whether `begin_stop` was called.
    pub fn is_stopping(&self) -> bool {
        *self.shared.stop.borrow()
    }

    /// Tells every handler thread to end once it has handled what is queued.
    pub fn shut_handlers(&self) {
        for thread in 0..self.shared.dispatch.threads() {
            self.shared.dispatch.send_now(thread, Event::Shutdown);
        }
    }
}

/// The session a registration keeps.
fn session_of(record: ClientRecord) -> Option<Arc<Session>> {
    record.data?.downcast().ok()
}

/// Accepts until the gateway stops. Errors (out of fds, say) back off instead of spinning.
async fn accept(shared: Arc<Shared>, listener: TcpListener) {
    let mut stop = shared.stop.subscribe();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => shared.admit(stream, peer),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn config(max_clients: usize) -> Config {
        Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            format: Arc::new(Format::from_struct("!I", &["length"], false, 1 << 20, &[]).unwrap()),
            max_clients,
            handler_threads: 2,
            io_threads: Some(2),
            idle_timeout: None,
            send_queue: 64,
            tls: None,
            reuse_port: false,
            notify_connect: true,
            on_loop: false,
        }
    }

    /// Handler threads that echo every packet back, and record what happened.
    fn echo_threads(
        gw: &Arc<Gateway>,
        inboxes: Vec<Inbox>,
    ) -> Vec<std::thread::JoinHandle<Vec<String>>> {
        inboxes
            .into_iter()
            .map(|mut inbox| {
                let gw = gw.clone();
                std::thread::spawn(move || {
                    let mut log = Vec::new();
                    let mut batch = Vec::new();
                    loop {
                        inbox.next_batch(64, &mut batch);
                        for event in batch.drain(..) {
                            match event {
                                Event::Connected(s) => log.push(format!("connect {}", s.fd())),
                                Event::Packets(s, packets) => {
                                    for p in packets {
                                        let mut frame = Vec::new();
                                        gw.format()
                                            .pack_into(&mut frame, &p.body, 0, 0, &[])
                                            .unwrap();
                                        s.send(&frame);
                                    }
                                }
                                Event::Disconnected(_, reason, _) => {
                                    log.push(reason.as_str().to_owned())
                                }
                                Event::Drained(_) => {}
                                Event::Shutdown => return log,
                            }
                        }
                    }
                })
            })
            .collect()
    }

    fn round_trip(c: &mut std::net::TcpStream, body: &[u8]) -> Vec<u8> {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        c.write_all(&frame).unwrap();
        let mut len = [0u8; 4];
        c.read_exact(&mut len).unwrap();
        let mut reply = vec![0; u32::from_be_bytes(len) as usize];
        c.read_exact(&mut reply).unwrap();
        reply
    }

    #[test]
    fn echoes_turns_away_surplus_clients_and_stops() {
        let registry = Registry::new(Some(3));
        let (gw, inboxes) = Gateway::start(config(3), registry.clone(), Arc::default()).unwrap();
        let gw = Arc::new(gw);
        let threads = echo_threads(&gw, inboxes);
        let mut clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(gw.address()).unwrap())
            .collect();
        for (i, c) in clients.iter_mut().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            assert_eq!(
                round_trip(c, format!("hello {i}").as_bytes()),
                format!("hello {i}").as_bytes()
            );
        }
        assert_eq!(registry.len(), 3);
        let mut extra = std::net::TcpStream::connect(gw.address()).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(extra.read(&mut [0u8; 1]).unwrap(), 0); // closed at once
        gw.begin_stop(Duration::from_secs(2));
        loop {
            match gw.wait_until_empty(Wait::Blocking) {
                Err(e) if e.is_interrupted() => continue,
                r => break r.unwrap(),
            }
        }
        gw.shut_handlers();
        let logs: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(logs.iter().filter(|l| l.starts_with("connect")).count(), 3);
        assert_eq!(logs.iter().filter(|l| *l == "stopped").count(), 3);
        assert_eq!(registry.len(), 0);
        let snapshot = gw.stats().snapshot(0);
        assert!(snapshot.contains(&("rejected", 1)) && snapshot.contains(&("accepted", 3)));
        assert!(snapshot.contains(&("packets_in", 3)) && snapshot.contains(&("packets_out", 3)));
    }
}
