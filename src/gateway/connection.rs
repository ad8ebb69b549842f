//! One client's connection, on one tokio task: it reads, splits and opens the client's frames
//! and hands them to its handler thread, writes what is queued for it, and ends it for one of
//! the reasons of [`Reason`].
//!
//! An idle connection costs little memory: reads go into a buffer per runtime thread, not per
//! connection (the readiness is awaited, then the read is made synchronously into that
//! buffer), and the decoder keeps only the start of an unfinished frame. TLS runs rustls on the
//! same readiness loop.
// NOTE: the task is what an idle connection costs. Awaiting stored futures in `select!`, it
// held 1,056 bytes; polling readiness directly 472; with arrival and departure queued past the
// limit and the wait for room boxed, 304 (tokio rounds a task to 128 bytes). Idle memory per
// connection at 10,000 connections went from 1,505 to 1,380 bytes (uvloop: 1,458).

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use rustls::ServerConnection;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant, Sleep};

use super::dispatch::{Departure, DrainMark, Event};
use super::session::{Reason, Session};
use super::stats::add;
use super::Shared;
use crate::decoder::Decoder;
use crate::error::Error;
use crate::framed::{decode_packets, Packet};
use crate::runtime;

/// How much one read takes from the socket.
const READ_SIZE: usize = 64 * 1024;

thread_local! {
    /// Where reads land (and, for TLS, ciphertext): one per runtime thread, used between two
    /// awaits only, so that no connection holds a read buffer of its own.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_SIZE]);
    /// Plaintext out of rustls, the same way.
    static PLAIN_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_SIZE]);
}

/// What one read brought.
enum Got {
    /// Nothing after all (readiness is a hint).
    Nothing,
    /// `bytes` from the socket; packets in the batch; `bad` if a bad frame ends the client.
    Data { bytes: usize, bad: Option<Reason> },
    /// The peer closed.
    Eof,
}

/// The connection's state between awaits.
struct Conn {
    stream: TcpStream,
    /// Boxed: a plain connection pays one pointer for it.
    tls: Option<Box<Tls>>,
    decoder: Decoder,
}

/// A TLS connection's own state.
struct Tls {
    session: ServerConnection,
    /// Plaintext taken from the gateway's session, and the records not yet written.
    plain: Vec<u8>,
    records: Vec<u8>,
    records_written: usize,
}

impl Conn {
    fn has_output(&self, session: &Session) -> bool {
        match &self.tls {
            None => session.has_output(),
            Some(tls) => tls.records_written < tls.records.len() || session.has_output(),
        }
    }

    /// Reads what the socket has, decodes it, and appends the packets to `batch`.
    fn read(&mut self, batch: &mut Vec<Packet>) -> io::Result<Got> {
        READ_BUF.with_borrow_mut(|buf| {
            let n = match self.stream.try_read(buf) {
                Ok(0) => return Ok(Got::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::Nothing),
                Err(e) => return Err(e),
            };
            let bad = match self.tls.as_deref_mut() {
                None => decode(&mut self.decoder, &buf[..n], batch),
                Some(tls) => {
                    let bad = tls_decode(&mut tls.session, &mut self.decoder, &buf[..n], batch);
                    tls.queue_records();
                    bad
                }
            };
            Ok(Got::Data { bytes: n, bad })
        })
    }

    /// TLS: takes the session's queued bytes into the TLS session, as records to write.
    fn seal(&mut self, session: &Session) {
        if let Some(tls) = self.tls.as_deref_mut() {
            session.take_bytes(&mut tls.plain);
            if !tls.plain.is_empty() {
                let _ = tls.session.writer().write_all(&tls.plain);
                tls.plain.clear();
                tls.queue_records();
            }
        }
    }

    /// Writes what the socket takes now: the session's bytes, or TLS records.
    fn write(&mut self, shared: &Shared, session: &Session) -> io::Result<()> {
        if self.tls.is_none() {
            let written = self
                .stream
                .try_io(Interest::WRITABLE, || session.write_queued());
            return match written {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                Err(e) => Err(e),
            };
        }
        let tls = self.tls.as_deref_mut().expect("checked above");
        let n = match self.stream.try_write(&tls.records[tls.records_written..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        tls.records_written += n;
        add(&shared.stats.bytes_out, n as u64);
        if tls.records_written == tls.records.len() {
            tls.records.clear();
            tls.records_written = 0;
        }
        Ok(())
    }

    /// One last write that does not wait (a client being closed gets what fits).
    fn write_last(&mut self, shared: &Shared, session: &Session) {
        self.seal(session);
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.session.send_close_notify();
            tls.queue_records();
        }
        if self.has_output(session) {
            let _ = self.write(shared, session);
        }
    }
}

/// Decodes `data` into `batch`; the reason to cut the client if a frame was bad (the packets
/// before it are kept: nothing that arrived whole is lost).
fn decode(decoder: &mut Decoder, data: &[u8], batch: &mut Vec<Packet>) -> Option<Reason> {
    let mut bad = None;
    decode_packets(decoder, data, |packet| {
        if bad.is_some() {
            return; // nothing after a bad frame is trusted
        }
        match packet {
            Ok(packet) => batch.push(packet),
            Err(Error::Authentication(_)) => bad = Some(Reason::AuthenticationFailed),
            Err(_) => bad = Some(Reason::ProtocolError),
        }
    });
    bad
}

/// Feeds ciphertext to rustls and decodes the plaintext it gives.
fn tls_decode(
    tls: &mut ServerConnection,
    decoder: &mut Decoder,
    mut data: &[u8],
    batch: &mut Vec<Packet>,
) -> Option<Reason> {
    while !data.is_empty() {
        if tls.read_tls(&mut data).is_err() || tls.process_new_packets().is_err() {
            return Some(Reason::ProtocolError);
        }
        let bad = PLAIN_BUF.with_borrow_mut(|plain| loop {
            match tls.reader().read(plain) {
                Ok(0) => break None,
                Ok(n) => {
                    if let Some(bad) = decode(decoder, &plain[..n], batch) {
                        break Some(bad);
                    }
                }
                Err(_) => break None, // no more plaintext now (WouldBlock), or the end
            }
        });
        if bad.is_some() {
            return bad;
        }
    }
    None
}

impl Tls {
    /// Moves the records rustls has queued (handshake, frames, alerts) into `records`.
    fn queue_records(&mut self) {
        if self.records_written > 0 && self.records_written == self.records.len() {
            self.records.clear();
            self.records_written = 0;
        }
        while self.session.wants_write() {
            if self.session.write_tls(&mut self.records).is_err() {
                break;
            }
        }
    }
}

fn reason_of(e: &io::Error) -> Reason {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Reason::Reset,
        io::ErrorKind::BrokenPipe => Reason::Reset,
        _ => Reason::Reset,
    }
}

/// Serves one client from its first byte to its `on_disconnect`.
///
/// Not an `async fn`: an async fn keeps its arguments beside the locals made from them, and
/// every byte of this future is paid by every connection.
pub(super) fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    session: Arc<Session>,
    tls: Option<Box<ServerConnection>>,
) -> impl Future<Output = ()> {
    let mut conn = Conn {
        stream,
        tls: tls.map(|session| {
            Box::new(Tls {
                session: *session,
                plain: Vec::new(),
                records: Vec::new(),
                records_written: 0,
            })
        }),
        decoder: Decoder::new(shared.config.format.clone()),
    };
    async move {
        let reason = run(&shared, &session, &mut conn).await;
        end(shared, session, conn, reason);
    }
}

/// Closes the connection and tells its handlers.
fn end(shared: Arc<Shared>, session: Arc<Session>, mut conn: Conn, reason: Reason) {
    if matches!(reason, Reason::Kicked(_) | Reason::Stopped) {
        conn.write_last(&shared, &session);
    }
    // Nobody writes to the socket any more, and it leaves the group before its fd can be
    // reused by the next accept.
    session.close();
    shared
        .clients
        .remove_registration(session.fd(), session.token());
    drop(conn); // closes the socket
    match reason {
        Reason::Idle => add(&shared.stats.idle_disconnects, 1),
        Reason::SlowConsumer => add(&shared.stats.slow_consumers, 1),
        Reason::ProtocolError | Reason::AuthenticationFailed => {
            add(&shared.stats.protocol_errors, 1)
        }
        _ => {}
    }
    let departure = Departure(shared.clone());
    let thread = session.thread;
    let event = Event::Disconnected(session, reason, departure);
    shared.dispatch.send_once(thread, event);
}

/// What the connection's task woke up for.
enum Wake {
    /// Its signal: bytes queued, an end set, the stop, or its handlers drained.
    Signal,
    Writable(io::Result<()>),
    Readable(io::Result<()>),
    Idle,
}

/// Waits for the next thing to do. Polls the socket's readiness directly rather than through
/// `select!` over stored futures: nothing but references lives in this future, so an idle
/// connection's task stays small.
async fn next_wake(
    session: &Session,
    conn: &Conn,
    sleep: &mut Option<Pin<Box<Sleep>>>,
    reading: bool,
) -> Wake {
    poll_fn(|cx| {
        if session.signal.take(cx.waker()) {
            return Poll::Ready(Wake::Signal);
        }
        if conn.has_output(session) {
            if let Poll::Ready(r) = conn.stream.poll_write_ready(cx) {
                return Poll::Ready(Wake::Writable(r));
            }
        }
        if reading {
            if let Poll::Ready(r) = conn.stream.poll_read_ready(cx) {
                return Poll::Ready(Wake::Readable(r));
            }
        }
        if let Some(sleep) = sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Idle);
            }
        }
        Poll::Pending
    })
    .await
}

/// The connection's life; returns why it ended.
async fn run(shared: &Arc<Shared>, session: &Arc<Session>, conn: &mut Conn) -> Reason {
    let idle = shared.config.idle_timeout;
    // Boxed, and only with an idle timeout: every byte of this future is paid per connection.
    let mut sleep = idle.map(|d| Box::pin(sleep_until(Instant::now() + d)));
    let mut connected = conn.tls.is_none();
    if connected && shared.config.notify_connect {
        let event = Event::Connected(session.clone());
        shared.dispatch.send_once(session.thread, event);
    }
    let mut batch = Vec::new();
    loop {
        if shared.is_stopping() {
            // Boxed: its state is paid only by a connection that is stopping.
            return Box::pin(stopping(shared, session, conn)).await;
        }
        if let Some(reason) = session.ending() {
            return reason;
        }
        conn.seal(session);
        let wake = next_wake(session, conn, &mut sleep, true).await;
        runtime::wake_if_overdue();
        match wake {
            Wake::Signal => {}
            Wake::Idle => return Reason::Idle,
            Wake::Writable(ready) => {
                if let Err(e) = ready.and_then(|()| conn.write(shared, session)) {
                    return reason_of(&e);
                }
            }
            Wake::Readable(ready) => match ready.and_then(|()| conn.read(&mut batch)) {
                Ok(Got::Nothing) => {}
                Ok(Got::Eof) => return Reason::Closed,
                Err(e) => return reason_of(&e),
                Ok(Got::Data { bytes, bad }) => {
                    add(&shared.stats.bytes_in, bytes as u64);
                    if let (Some(d), Some(sleep)) = (idle, sleep.as_mut()) {
                        sleep.as_mut().reset(Instant::now() + d);
                    }
                    if !connected
                        && conn
                            .tls
                            .as_ref()
                            .is_some_and(|t| !t.session.is_handshaking())
                    {
                        connected = true;
                        if shared.config.notify_connect {
                            let event = Event::Connected(session.clone());
                            shared.dispatch.send_once(session.thread, event);
                        }
                    }
                    if !batch.is_empty() {
                        add(&shared.stats.packets_in, batch.len() as u64);
                        let packets = std::mem::take(&mut batch);
                        let event = Event::Packets(session.clone(), packets);
                        if let Err(full) = shared.dispatch.send(session.thread, event) {
                            full.await;
                        }
                    }
                    if let Some(reason) = bad {
                        return reason;
                    }
                }
            },
        }
    }
}

/// The gateway is stopping: no more reading; the client's handlers finish what was queued for
/// them, their replies are written (until the stop deadline), then the connection closes.
async fn stopping(shared: &Arc<Shared>, session: &Arc<Session>, conn: &mut Conn) -> Reason {
    let mark = Event::Drained(DrainMark(session.clone()));
    if let Err(full) = shared.dispatch.send(session.thread, mark) {
        full.await;
    }
    let mut deadline = Some(Box::pin(sleep_until(shared.stop_deadline())));
    loop {
        if let Some(reason) = session.ending() {
            return reason;
        }
        conn.seal(session);
        if session.is_drained() && !conn.has_output(session) {
            return Reason::Stopped;
        }
        match next_wake(session, conn, &mut deadline, false).await {
            Wake::Signal | Wake::Readable(_) => {}
            Wake::Idle => return Reason::Stopped, // the deadline
            Wake::Writable(ready) => {
                if ready.and_then(|()| conn.write(shared, session)).is_err() {
                    return Reason::Stopped;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, C, D, F: Future>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every byte of the connection's task is paid by every connection, idle or not.
    #[test]
    fn serve_future_is_small() {
        let size = future_size(serve);
        eprintln!("serve future: {size} bytes");
        eprintln!(
            "Conn {} Decoder {} TcpStream {} Event {} Reason {}",
            std::mem::size_of::<Conn>(),
            std::mem::size_of::<Decoder>(),
            std::mem::size_of::<TcpStream>(),
            std::mem::size_of::<Event>(),
            std::mem::size_of::<Reason>()
        );
        assert!(size <= 320, "serve future: {size} bytes");
    }
}
