//! One client's connection, on one tokio task: it reads, splits and opens the client's frames
//! and hands them to its handler thread, writes what is queued for it, and ends it for one of
//! the reasons of [`Reason`].
//!
//! An idle connection costs little memory: reads go into a buffer per runtime thread, not per
//! connection (the readiness is awaited, then the read is made synchronously into that
//! buffer), and the decoder keeps only the start of an unfinished frame. TLS runs rustls on the
//! same readiness loop.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use rustls::ServerConnection;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

use super::dispatch::{Departure, DrainMark, Event};
use super::session::{Reason, Session};
use super::stats::add;
use super::Shared;
use crate::decoder::Decoder;
use crate::error::Error;
use crate::framed::{decode_packets, Packet};

/// How much one read takes from the socket.
const READ_SIZE: usize = 64 * 1024;

/// Frames written with one system call at most (`IOV_MAX` is 1024 on Linux).
const WRITE_FRAMES: usize = 64;

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
    tls: Option<Box<ServerConnection>>,
    decoder: Decoder,
    /// Frames taken from the session, not yet written (plain connections).
    pending: VecDeque<Bytes>,
    /// Bytes of `pending`'s first frame already written.
    written: usize,
    /// TLS records not yet written, and how much of them was.
    records: Vec<u8>,
    records_written: usize,
}

impl Conn {
    fn has_output(&self) -> bool {
        !self.pending.is_empty() || self.records_written < self.records.len()
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
                    let bad = tls_decode(tls, &mut self.decoder, &buf[..n], batch);
                    tls_records(tls, &mut self.records, &mut self.records_written);
                    bad
                }
            };
            Ok(Got::Data { bytes: n, bad })
        })
    }

    /// Takes frames into the TLS session (plain connections keep them in `pending`).
    fn seal_pending(&mut self, shared: &Shared) {
        if let Some(tls) = self.tls.as_deref_mut() {
            let frames = self.pending.len();
            for frame in self.pending.drain(..) {
                let _ = tls.writer().write_all(&frame);
            }
            add(&shared.stats.packets_out, frames as u64);
            tls_records(tls, &mut self.records, &mut self.records_written);
        }
    }

    /// Writes what the socket takes now: queued frames in one vectored write, or TLS records.
    fn write(&mut self, shared: &Shared) -> io::Result<()> {
        if self.tls.is_some() {
            let n = match self.stream.try_write(&self.records[self.records_written..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            self.records_written += n;
            add(&shared.stats.bytes_out, n as u64);
            if self.records_written == self.records.len() {
                self.records.clear();
                self.records_written = 0;
            }
            return Ok(());
        }
        let mut slices: [IoSlice<'_>; WRITE_FRAMES] = [IoSlice::new(&[]); WRITE_FRAMES];
        let mut count = 0;
        for (i, frame) in self.pending.iter().take(WRITE_FRAMES).enumerate() {
            let skip = if i == 0 { self.written } else { 0 };
            slices[i] = IoSlice::new(&frame[skip..]);
            count += 1;
        }
        let mut n = match self.stream.try_write_vectored(&slices[..count]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        add(&shared.stats.bytes_out, n as u64);
        let mut done = 0;
        while let Some(front) = self.pending.front() {
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                break;
            }
            n -= left;
            self.written = 0;
            self.pending.pop_front();
            done += 1;
        }
        add(&shared.stats.packets_out, done);
        Ok(())
    }

    /// One last write that does not wait (a client being closed gets what fits).
    fn write_last(&mut self, shared: &Shared) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            tls_records(tls, &mut self.records, &mut self.records_written);
        }
        if self.has_output() {
            let _ = self.write(shared);
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

/// Moves the records rustls has queued (handshake, frames, alerts) into `records`.
fn tls_records(tls: &mut ServerConnection, records: &mut Vec<u8>, written: &mut usize) {
    if *written > 0 && *written == records.len() {
        records.clear();
        *written = 0;
    }
    while tls.wants_write() {
        if tls.write_tls(records).is_err() {
            break;
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
pub(super) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    session: Arc<Session>,
    tls: Option<Box<ServerConnection>>,
) {
    let mut conn = Conn {
        stream,
        tls,
        decoder: Decoder::new(shared.config.format.clone()),
        pending: VecDeque::new(),
        written: 0,
        records: Vec::new(),
        records_written: 0,
    };
    let reason = run(&shared, &session, &mut conn).await;
    session.close();
    // Out of the group before the fd can be reused by the next accept.
    shared
        .clients
        .remove_registration(session.fd(), session.token());
    shared.forget(session.token());
    if matches!(reason, Reason::Kicked(_) | Reason::Stopped) {
        conn.write_last(&shared);
    }
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
    shared
        .dispatch
        .send(thread, Event::Disconnected(session, reason, departure))
        .await;
}

/// The connection's life; returns why it ended.
async fn run(shared: &Arc<Shared>, session: &Arc<Session>, conn: &mut Conn) -> Reason {
    let mut stop = shared.stop.subscribe();
    let idle = shared.config.idle_timeout;
    let far = Instant::now() + std::time::Duration::from_secs(86400 * 365);
    let sleep = sleep_until(idle.map_or(far, |d| Instant::now() + d));
    tokio::pin!(sleep);
    let mut connected = conn.tls.is_none();
    if connected && shared.config.notify_connect {
        let event = Event::Connected(session.clone());
        shared.dispatch.send(session.thread, event).await;
    }
    let mut batch = Vec::new();
    loop {
        if *stop.borrow() {
            return stopping(shared, session, conn).await;
        }
        if let Some(reason) = session.take_frames(&mut conn.pending) {
            return reason;
        }
        conn.seal_pending(shared);
        tokio::select! {
            biased;
            _ = session.wake.notified() => {}
            _ = stop.changed() => {}
            ready = conn.stream.writable(), if conn.has_output() => {
                if let Err(e) = ready.and_then(|()| conn.write(shared)) {
                    return reason_of(&e);
                }
            }
            ready = conn.stream.readable() => {
                let got = ready.and_then(|()| conn.read(&mut batch));
                match got {
                    Ok(Got::Nothing) => {}
                    Ok(Got::Eof) => return Reason::Closed,
                    Err(e) => return reason_of(&e),
                    Ok(Got::Data { bytes, bad }) => {
                        add(&shared.stats.bytes_in, bytes as u64);
                        if let Some(d) = idle {
                            sleep.as_mut().reset(Instant::now() + d);
                        }
                        if !connected && conn.tls.as_ref().is_some_and(|t| !t.is_handshaking()) {
                            connected = true;
                            if shared.config.notify_connect {
                                let event = Event::Connected(session.clone());
                                shared.dispatch.send(session.thread, event).await;
                            }
                        }
                        if !batch.is_empty() {
                            add(&shared.stats.packets_in, batch.len() as u64);
                            let packets = std::mem::take(&mut batch);
                            let event = Event::Packets(session.clone(), packets);
                            shared.dispatch.send(session.thread, event).await;
                        }
                        if let Some(reason) = bad {
                            return reason;
                        }
                    }
                }
            }
            _ = &mut sleep, if idle.is_some() => return Reason::Idle,
        }
    }
}

/// The gateway is stopping: no more reading; the client's handlers finish what was queued for
/// them, their replies are written (until the stop deadline), then the connection closes.
async fn stopping(shared: &Arc<Shared>, session: &Arc<Session>, conn: &mut Conn) -> Reason {
    let mark = Event::Drained(DrainMark(session.clone()));
    shared.dispatch.send(session.thread, mark).await;
    let deadline = shared.stop_deadline();
    loop {
        if let Some(reason) = session.take_frames(&mut conn.pending) {
            return reason;
        }
        conn.seal_pending(shared);
        if session.is_drained() && !conn.has_output() {
            return Reason::Stopped;
        }
        tokio::select! {
            biased;
            _ = session.wake.notified() => {}
            ready = conn.stream.writable(), if conn.has_output() => {
                if ready.and_then(|()| conn.write(shared)).is_err() {
                    return Reason::Stopped;
                }
            }
            _ = sleep_until(deadline) => return Reason::Stopped,
        }
    }
}
