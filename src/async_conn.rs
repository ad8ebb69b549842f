//! A packet connection for a caller that must never wait on I/O (an asyncio event loop): one
//! task on the process runtime connects, writes what the caller queued, reads and decodes into
//! a [`FrameReader`], and rings the caller's [`Bell`] when something the caller waits for has
//! happened. The caller only ever takes a lock for a moment: to queue frames, to take a packet.
//!
//! The connection reuses the blocking library's pieces in non-blocking mode: the [`Stream`]
//! (plain or TLS, with its error mapping), the [`FrameReader`] (the same decoder and codecs as
//! `Connection`) and the [`Outbox`]. The task waits for the socket's readiness with tokio and
//! calls them with [`Wait::NonBlocking`].
//!
//! Nothing a caller gets is lost to cancellation: packets stay in the reader until taken (a
//! caller that stops waiting leaves them for the next), and frames are queued whole, so the
//! peer never sees half of one.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Poll;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::addr;
use crate::bell::Bell;
use crate::error::{Error, Result};
use crate::format::Format;
use crate::framed::{FrameReader, Outbox, Packet};
use crate::runtime::{self, Signal};
use crate::setup::client_options;
use crate::socket::{Timeout, Wait};
use crate::stream::Stream;
use crate::tls::{ClientSettings, TlsSession};

/// Reading stops while the caller has this many packets, or this many body bytes, not yet
/// taken (a caller that does not keep up does not make the connection buffer without end),
/// and resumes below half of it.
const PAUSE_PACKETS: usize = 4096;
const PAUSE_BYTES: usize = 1 << 20;

/// A sender waits while this many bytes are queued and not yet written (asyncio's transports
/// wait above 64 KiB; a larger mark lets a pipeline of requests go out in big writes).
pub const SEND_HIGH_WATER: usize = 1 << 20;

/// How long `close` goes on writing what was queued to a peer that does not read.
const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// Where to connect.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// How far the connection got.
#[derive(Debug)]
enum Phase {
    Connecting,
    Open,
    /// Connecting failed; the error, until reported.
    Failed(Option<Error>),
    /// The task has ended and the socket is closed.
    Finished,
}

/// The receiving side, shared by the task (which fills it) and the caller (which takes).
#[derive(Debug)]
struct ReadSide {
    phase: Phase,
    reader: FrameReader,
    /// Reading stopped for the caller to catch up.
    paused: bool,
    /// The socket failed on read: reported once, after the packets before it.
    error: Option<Error>,
}

/// The sending side: frames the caller queued and the task (or the caller) writes.
#[derive(Debug, Default)]
struct WriteSide {
    outbox: Outbox,
    /// The socket failed on write: every later send reports it (errno, or the message).
    errno: Option<i32>,
    error: Option<String>,
    close_requested: bool,
}

impl WriteSide {
    fn failed(&self) -> bool {
        self.errno.is_some() || self.error.is_some()
    }
}

// NOTE: with one lock for both sides, the loop's send and the runtime thread's read contended
// for it on every request/response (both threads on one CPU: the holder was switched out
// ringing the bell, 2.3 futex calls per request); two locks, and the bell rung after the lock
// is released, took that out.
#[derive(Debug)]
struct Inner {
    read: Mutex<ReadSide>,
    write: Mutex<WriteSide>,
    /// The connected stream, once connected. Written only under `write`'s lock (by the task,
    /// or by a sender finding nothing queued); read only by the task.
    stream: OnceLock<Stream>,
    /// The caller waits for something: ring the bell at the next change. Set under the lock
    /// of the side the caller found wanting, taken after the changer released that lock.
    armed: AtomicBool,
    /// Wakes the task: frames queued, reading may resume, close asked.
    task: Signal,
    bell: Arc<Bell>,
    token: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn read_side(&self) -> MutexGuard<'_, ReadSide> {
        lock(&self.read)
    }

    fn write_side(&self) -> MutexGuard<'_, WriteSide> {
        lock(&self.write)
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::Release);
    }

    /// Rings the bell if the caller waits. Called with no lock held: the caller, woken on
    /// another CPU or switched in on this one, must not find the lock still taken.
    fn news(&self) {
        if self.armed.swap(false, Ordering::AcqRel) {
            self.bell.ring(self.token);
        }
    }
}

/// The caller's handle; dropping it closes the connection.
#[derive(Debug)]
pub struct AsyncConn {
    inner: Arc<Inner>,
}

impl AsyncConn {
    /// Starts connecting to `target` on `runtime` (with TLS when `tls` is given, the handshake
    /// within the same `timeout`); [`AsyncConn::connected`] reports the outcome. `token` is
    /// what this connection rings `bell` with.
    pub fn start(
        runtime: &Handle,
        target: Target,
        format: Arc<Format>,
        timeout: Option<Duration>,
        tls: Option<ClientSettings>,
        bell: Arc<Bell>,
        token: u64,
    ) -> AsyncConn {
        let inner = Arc::new(Inner {
            read: Mutex::new(ReadSide {
                phase: Phase::Connecting,
                reader: FrameReader::new(format),
                paused: false,
                error: None,
            }),
            write: Mutex::default(),
            stream: OnceLock::new(),
            armed: AtomicBool::new(false),
            task: Signal::default(),
            bell,
            token,
        });
        runtime.spawn(run(inner.clone(), target, timeout, tls));
        AsyncConn { inner }
    }

    /// The outcome of connecting, once known (an error is reported once); `None` while it is
    /// in progress, and the bell rings when it is decided.
    pub fn connected(&self) -> Option<Result<()>> {
        let mut rd = self.inner.read_side();
        match &mut rd.phase {
            Phase::Connecting => {
                self.inner.arm();
                None
            }
            Phase::Open | Phase::Finished => Some(Ok(())),
            Phase::Failed(error) => Some(Err(error.take().unwrap_or(Error::ConnectionClosed))),
        }
    }

    /// The next packet, or what ended the stream, if already decided; `None` otherwise, and the
    /// bell rings when there is more.
    pub fn try_recv(&self) -> Option<Result<Packet>> {
        let mut rd = self.inner.read_side();
        let next = match rd.reader.next_packet() {
            Some(next) => Some(next),
            None => match rd.error.take() {
                Some(error) => {
                    rd.reader.received(0); // the calls after it see the end of the stream
                    Some(Err(error))
                }
                None => None,
            },
        };
        if next.is_none() {
            self.inner.arm();
        }
        if rd.paused {
            let (packets, bytes) = rd.reader.queued();
            if packets <= PAUSE_PACKETS / 2 && bytes <= PAUSE_BYTES / 2 {
                rd.paused = false;
                drop(rd);
                self.inner.task.raise();
            }
        }
        next
    }

    /// Queues `frames` (whole: they are written in full or, if the connection fails first, not
    /// at all after what already went out).
    pub fn send(&self, frames: Vec<u8>) -> Result<()> {
        let mut wr = self.inner.write_side();
        if wr.close_requested {
            return Err(Error::os(libc::EBADF));
        }
        if let Some(errno) = wr.errno {
            return Err(Error::os(errno));
        }
        if let Some(message) = &wr.error {
            return Err(Error::Io(std::io::Error::other(message.clone())));
        }
        let was_empty = wr.outbox.pending() == 0;
        wr.outbox.push(frames);
        if !was_empty {
            return Ok(()); // the task is writing already, and will write these next
        }
        // NOTE: handing every send to the runtime thread cost a thread wake-up per request:
        // one connection doing request/response against a uvloop echo server, all on one CPU,
        // made 44-47 k requests/s where uvloop's own streams made 64-74 k. Writing at once
        // when nothing is queued (non-blocking: the caller never waits) takes that wake-up out;
        // only what the socket does not take now is left to the task.
        if let Some(stream) = self.inner.stream.get() {
            let (done, news) = write(&mut wr, stream);
            drop(wr);
            if news {
                self.inner.news();
            }
            if done {
                return Ok(());
            }
        } else {
            drop(wr);
        }
        self.inner.task.raise();
        Ok(())
    }

    /// Whether a sender may queue more now; if not, the bell rings when it may.
    pub fn has_room(&self) -> bool {
        let wr = self.inner.write_side();
        let room = wr.outbox.pending() < SEND_HIGH_WATER || wr.failed() || wr.close_requested;
        if !room {
            self.inner.arm();
        }
        room
    }

    /// Asks the task to write what is queued (for at most a few seconds), close the stream
    /// (`close_notify` first over TLS) and end.
    pub fn close(&self) {
        let mut wr = self.inner.write_side();
        if !wr.close_requested {
            wr.close_requested = true;
            drop(wr);
            self.inner.task.raise();
        }
    }

    /// True once the task has closed the socket; if not, the bell rings when it has.
    pub fn finished(&self) -> bool {
        let rd = self.inner.read_side();
        let finished = matches!(rd.phase, Phase::Finished | Phase::Failed(_));
        if !finished {
            self.inner.arm();
        }
        finished
    }
}

impl Drop for AsyncConn {
    fn drop(&mut self) {
        self.close();
    }
}

/// The socket's fd as tokio's `AsyncFd` wants it; the [`Stream`] owns and closes it.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A connected stream and its registration with the runtime. Fields drop in order: the
/// registration leaves epoll before the stream closes the fd.
struct Conn {
    fd: AsyncFd<Fd>,
    stream: Stream,
}

/// What the task's loop works with once connected.
struct Io<'a> {
    fd: &'a AsyncFd<Fd>,
    stream: &'a Stream,
}

fn would_block(e: &Error) -> bool {
    e.errno() == Some(libc::EAGAIN)
}

/// The connection's task.
async fn run(
    inner: Arc<Inner>,
    target: Target,
    timeout: Option<Duration>,
    tls: Option<ClientSettings>,
) {
    let opened = match timeout {
        Some(t) => tokio::time::timeout(t, open(&target, tls.as_ref()))
            .await
            .unwrap_or(Err(Error::Timeout)),
        None => open(&target, tls.as_ref()).await,
    };
    let fd = match opened {
        Ok(Conn { fd, stream }) => {
            let _ = inner.stream.set(stream);
            inner.read_side().phase = Phase::Open;
            inner.news();
            fd
        }
        Err(error) => {
            inner.read_side().phase = Phase::Failed(Some(error));
            inner.news();
            return;
        }
    };
    let stream = inner.stream.get().expect("set above");
    serve(&inner, Io { fd: &fd, stream }).await;
    drop(fd); // out of epoll before the fd closes
    let _ = stream.close(); // close_notify first over TLS
    inner.read_side().phase = Phase::Finished;
    inner.news();
}

/// Resolves, connects to each address in turn (as `socket.create_connection`), handshakes.
async fn open(target: &Target, tls: Option<&ClientSettings>) -> Result<Conn> {
    let candidates = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => {
            let (host, port) = (target.host.clone(), target.port);
            tokio::task::spawn_blocking(move || {
                addr::getaddrinfo(Some(&host), port, libc::AF_UNSPEC, 0)
            })
            .await
            .map_err(|_| Error::os(libc::ECANCELED))??
        }
    };
    let mut last = Error::os(libc::ECONNREFUSED);
    for candidate in candidates {
        match connect_one(&candidate).await {
            Ok(conn) => {
                if let Some(settings) = tls {
                    handshake(&conn, TlsSession::client(settings, &target.host)?).await?;
                }
                return Ok(conn);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn connect_one(addr: &SocketAddr) -> Result<Conn> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let sock = client_options(family, true, None, None)?;
    sock.set_timeout(Timeout::NonBlocking)?;
    // The connect starts before the socket joins epoll: an unconnected TCP socket polls as
    // hung up, and if the runtime polled it in that moment the hang-up would stick to the
    // registration (tokio keeps "read closed" for good), making every later read wake-up
    // spurious. Found as a spinning runtime thread in one run of twenty.
    let in_progress = match sock.start_connect(addr) {
        Ok(()) => false,
        Err(e) if e.errno() == Some(libc::EINPROGRESS) => true,
        Err(e) => return Err(e),
    };
    // SAFETY: the fd stays open and the same while the registration lives: `Conn` owns both,
    // drops the registration first, and the stream is closed only after that (see `run`).
    let fd = unsafe {
        AsyncFd::register_with_interest(Fd(sock.fileno()), Interest::READABLE | Interest::WRITABLE)
    }
    .map_err(std::io::Error::from)?;
    let conn = Conn {
        fd,
        stream: Stream::new(sock),
    };
    if in_progress {
        let _ready = conn.fd.writable().await?;
        conn.stream.sock.finish_connect(Wait::NonBlocking)?;
    }
    Ok(conn)
}

async fn handshake(conn: &Conn, session: TlsSession) -> Result<()> {
    loop {
        match conn.stream.handshake(&session, Wait::NonBlocking) {
            Ok(()) => break,
            Err(e) if would_block(&e) => {
                let mut ready = if session.wants_send() {
                    conn.fd.writable().await?
                } else {
                    conn.fd.readable().await?
                };
                ready.clear_ready();
            }
            Err(e) => return Err(e),
        }
    }
    conn.stream.set_tls(session);
    Ok(())
}

/// What the task woke up for.
enum Wake {
    Signal,
    Readable,
    Writable,
    /// `close` has written what it could in time.
    CloseDeadline,
}

/// How reading stands, as the task sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Waiting for the socket to be readable.
    On,
    /// Stopped until the caller takes packets (it raises the task's signal then).
    Paused,
    /// Over: the end of the stream, a bad frame or an error.
    Over,
}

/// Moves bytes until the caller closes (writing what it queued first).
async fn serve(inner: &Inner, conn: Io<'_>) {
    let mut close_by: Option<Instant> = None;
    let mut reading = Reading::On;
    loop {
        let want_write = {
            let wr = inner.write_side();
            let pending = wr.outbox.pending() > 0 || conn.stream.wants_send();
            let failed = wr.failed();
            if wr.close_requested {
                if close_by.is_none() {
                    close_by = Some(Instant::now() + CLOSE_FLUSH);
                }
                if !pending || failed {
                    return;
                }
            }
            pending && !failed
        };
        let want_read = reading == Reading::On;
        let deadline = close_by.map(tokio::time::sleep_until);
        tokio::pin!(deadline);
        let wake = std::future::poll_fn(|cx| {
            if inner.task.take(cx.waker()) {
                return Poll::Ready(Wake::Signal);
            }
            // Readiness is cleared as soon as it is seen, and the operation tried at once:
            // readiness that comes after this is seen by the next poll (tokio clears only
            // what it reported).
            if want_write {
                if let Poll::Ready(ready) = conn.fd.poll_write_ready(cx) {
                    if let Ok(mut guard) = ready {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Wake::Writable);
                }
            }
            if want_read {
                if let Poll::Ready(ready) = conn.fd.poll_read_ready(cx) {
                    if let Ok(mut guard) = ready {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Wake::Readable);
                }
            }
            if let Some(deadline) = deadline.as_mut().as_pin_mut() {
                if Future::poll(deadline, cx).is_ready() {
                    return Poll::Ready(Wake::CloseDeadline);
                }
            }
            Poll::Pending
        })
        .await;
        runtime::wake_if_overdue();
        match wake {
            Wake::Signal => {
                task_write(inner, conn.stream); // frames may have been queued
                if reading == Reading::Paused && !inner.read_side().paused {
                    reading = read(inner, &conn);
                }
            }
            Wake::Writable => {
                task_write(inner, conn.stream);
                if reading == Reading::On && conn.stream.tls().is_some() {
                    // A TLS read that owed the peer a record may have stopped on a full
                    // socket before draining it: read again now that it has room.
                    reading = read(inner, &conn);
                }
            }
            Wake::Readable => reading = read(inner, &conn),
            Wake::CloseDeadline => return,
        }
    }
}

/// Writes what the socket takes now: (nothing left, the caller has news). A failure counts as
/// nothing left: it is reported to every later send.
fn write(wr: &mut WriteSide, stream: &Stream) -> (bool, bool) {
    if wr.failed() {
        return (true, false);
    }
    let before = wr.outbox.pending();
    let done = match wr.outbox.flush(stream, Wait::NonBlocking) {
        Ok(()) => true,
        Err(e) if would_block(&e) => false,
        Err(e) => {
            wr.errno = e.errno();
            wr.error = Some(e.to_string());
            return (true, true);
        }
    };
    let room = before >= SEND_HIGH_WATER && wr.outbox.pending() < SEND_HIGH_WATER;
    (done, room)
}

fn task_write(inner: &Inner, stream: &Stream) {
    let (_, news) = write(&mut inner.write_side(), stream);
    if news {
        inner.news();
    }
}

/// Reads until the socket has nothing more or the caller has enough.
fn read(inner: &Inner, conn: &Io<'_>) -> Reading {
    let plain = conn.stream.tls().is_none();
    let mut rd = inner.read_side();
    let mut got = false;
    let reading = loop {
        if rd.reader.is_done() {
            break Reading::Over;
        }
        let (packets, bytes) = rd.reader.queued();
        if packets >= PAUSE_PACKETS || bytes >= PAUSE_BYTES {
            rd.paused = true;
            break Reading::Paused;
        }
        let buf = rd.reader.buffer();
        let size = buf.len();
        match conn.stream.read(buf, 0, Wait::NonBlocking) {
            Ok(n) => {
                rd.reader.received(n);
                got = true;
                // A short read emptied the socket (readiness was cleared before it, so what
                // comes next is seen): no need for a read that fails with EAGAIN. Over TLS the
                // plaintext size says nothing of what the socket still holds.
                if plain && n > 0 && n < size {
                    break Reading::On;
                }
            }
            Err(e) if would_block(&e) => break Reading::On,
            Err(e) => {
                rd.error = Some(e);
                got = true;
                break Reading::Over;
            }
        }
    };
    drop(rd);
    if got {
        inner.news();
    }
    reading
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn fmt() -> Arc<Format> {
        Arc::new(Format::from_struct("!I", &["length"], false, 1 << 20, &[]).unwrap())
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Waits (at most 5 s) for the bell, and returns the tokens rung.
    fn wait(bell: &Bell) -> Vec<u64> {
        let mut pfd = libc::pollfd {
            fd: bell.fileno(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd.
        assert_eq!(
            unsafe { libc::poll(&mut pfd, 1, 5000) },
            1,
            "the bell never rang"
        );
        let mut tokens = Vec::new();
        bell.take(&mut tokens);
        tokens
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        fmt().pack_into(&mut out, body, 0, 0, &[]).unwrap();
        out
    }

    fn start(rt: &tokio::runtime::Runtime, port: u16, bell: &Arc<Bell>) -> AsyncConn {
        let target = Target {
            host: "127.0.0.1".into(),
            port,
        };
        AsyncConn::start(rt.handle(), target, fmt(), None, None, bell.clone(), 7)
    }

    fn connected(conn: &AsyncConn, bell: &Bell) -> Result<()> {
        loop {
            if let Some(outcome) = conn.connected() {
                return outcome;
            }
            assert_eq!(wait(bell), [7]);
        }
    }

    fn recv(conn: &AsyncConn, bell: &Bell) -> Result<Packet> {
        loop {
            if let Some(next) = conn.try_recv() {
                return next;
            }
            wait(bell);
        }
    }

    #[test]
    fn packets_go_out_and_come_back_and_the_bell_rings_only_when_armed() {
        let rt = runtime();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => s.write_all(&buf[..n]).unwrap(),
                }
            }
        });
        let bell = Arc::new(Bell::new().unwrap());
        let conn = start(&rt, port, &bell);
        connected(&conn, &bell).unwrap();
        let mut two = frame(b"one");
        two.extend(frame(b"two"));
        conn.send(two).unwrap();
        assert_eq!(&recv(&conn, &bell).unwrap().body[..], b"one");
        assert_eq!(&recv(&conn, &bell).unwrap().body[..], b"two");
        conn.close();
        while !conn.finished() {
            wait(&bell);
        }
        echo.join().unwrap();
        assert!(matches!(conn.send(frame(b"late")), Err(e) if e.errno() == Some(libc::EBADF)));
    }

    #[test]
    fn a_refused_connection_is_reported_once_decided() {
        let rt = runtime();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let bell = Arc::new(Bell::new().unwrap());
        let conn = start(&rt, port, &bell);
        let err = connected(&conn, &bell).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ECONNREFUSED));
    }

    #[test]
    fn the_end_of_the_stream_comes_after_the_packets_before_it() {
        let rt = runtime();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut wire = frame(b"last");
            wire.extend_from_slice(&[0, 0, 0, 9, b'c', b'u', b't']); // a frame cut short
            s.write_all(&wire).unwrap();
        });
        let bell = Arc::new(Bell::new().unwrap());
        let conn = start(&rt, port, &bell);
        connected(&conn, &bell).unwrap();
        peer.join().unwrap();
        assert_eq!(&recv(&conn, &bell).unwrap().body[..], b"last");
        assert!(matches!(
            recv(&conn, &bell),
            Err(Error::IncompleteFrame { .. })
        ));
        assert!(matches!(recv(&conn, &bell), Err(Error::ConnectionClosed)));
    }

    #[test]
    fn reading_pauses_for_a_caller_that_does_not_keep_up_and_resumes() {
        let rt = runtime();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let total = 3 * PAUSE_PACKETS;
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let wire: Vec<u8> = (0..total).flat_map(|_| frame(&[b'x'; 100])).collect();
            s.write_all(&wire).unwrap();
        });
        let bell = Arc::new(Bell::new().unwrap());
        let conn = start(&rt, port, &bell);
        connected(&conn, &bell).unwrap();
        // Let the task read all it will, then check it stopped near the mark.
        std::thread::sleep(Duration::from_millis(300));
        let (queued, _) = conn.inner.read_side().reader.queued();
        assert!(
            queued >= PAUSE_PACKETS && queued < total,
            "{queued} packets held"
        );
        for _ in 0..total {
            recv(&conn, &bell).unwrap();
        }
        peer.join().unwrap();
        assert!(matches!(recv(&conn, &bell), Err(Error::ConnectionClosed)));
    }
}
