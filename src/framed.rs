//! Packets over a stream: the receive side (read, split, decode, open) and the send side
//! (frames queued so that none is ever cut), shared by every way sockwire moves packets.
//!
//! [`FrameReader`] does no I/O of its own: it is handed the bytes a read produced and hands out
//! packets, so a blocking [`Stream`] and an async socket drive the same state machine, with the
//! same decoder and codecs. [`Framed`] is the blocking flavour: a reader and an [`Outbox`] over
//! a [`Stream`], as `Connection` uses them.
//!
//! Calls that wait take an `on_signal` hook: when a signal interrupts the wait (`EINTR`), the
//! hook runs (the binding layer runs Python's signal handlers there) and, unless it fails, the
//! call goes on where it was.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};

use bytes::Bytes;

use crate::decoder::{Decoder, Event};
use crate::error::{Error, Result};
use crate::format::{Format, Header};
use crate::socket::{retry, Wait};
use crate::stream::Stream;

/// How much one read asks the kernel for.
const READ_SIZE: usize = 1 << 16;

/// A packet as it arrived: its header values and its body, decrypted and decompressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub header: Header,
    /// Often a slice of what one read brought, shared with the other packets of that read.
    pub body: Bytes,
}

/// Decodes what one read brought, opening every frame (decrypt, decompress): each packet, or
/// the error of a bad frame, goes to `sink` in stream order. The packets of one read share one
/// copy of it instead of an allocation each.
// NOTE: a body copied into a Vec of its own per packet was 4-5% of a gateway echoing 64-byte
// packets (malloc, copy, free per packet, 1.1-1.2 M packets/s on one CPU).
pub fn decode_packets(decoder: &mut Decoder, data: &[u8], mut sink: impl FnMut(Result<Packet>)) {
    let format = decoder.format().clone();
    let chunk = Bytes::copy_from_slice(data);
    decoder.feed(&chunk, |event| {
        let packet = match event {
            Event::Frame { frame, body_start } => {
                format.open(frame, body_start).map(|(header, body)| Packet {
                    header,
                    body: match body {
                        Cow::Borrowed(part) => share(&chunk, part),
                        Cow::Owned(plain) => Bytes::from(plain),
                    },
                })
            }
            Event::Bad(e) => Err(e),
        };
        sink(packet);
    });
}

/// `part` as a slice of `chunk` when it lies in it (a frame decoded straight from the read),
/// else a copy (a frame the decoder assembled from several reads).
fn share(chunk: &Bytes, part: &[u8]) -> Bytes {
    let range = chunk.as_ptr_range();
    if range.start <= part.as_ptr() && part.as_ptr_range().end <= range.end {
        chunk.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

/// Why a stream gives no more packets.
#[derive(Debug)]
enum End {
    /// The peer closed it between frames.
    Closed,
    /// It was closed after the peer sent a bad frame (what was wrong with it).
    BadFrame(String),
}

/// The receive side of a packet stream: bytes in, packets out, in order.
#[derive(Debug)]
pub struct FrameReader {
    decoder: Decoder,
    /// Packets decoded and not yet taken, and the bytes of their bodies.
    ready: VecDeque<Packet>,
    ready_bytes: usize,
    /// A bad frame met after the packets in `ready`: reported once they are taken, and the
    /// stream cannot be trusted after it.
    failed: Option<Error>,
    ended: Option<End>,
    /// Where reads go.
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn new(format: Arc<Format>) -> Self {
        FrameReader {
            decoder: Decoder::new(format),
            ready: VecDeque::new(),
            ready_bytes: 0,
            failed: None,
            ended: None,
            buf: vec![0; READ_SIZE],
        }
    }

    /// The next packet, or what ends the stream, if the bytes received so far decide it.
    /// After a bad frame, every call reports that the stream was closed because of it.
    pub fn next_packet(&mut self) -> Option<Result<Packet>> {
        if let Some(packet) = self.pop_ready() {
            return Some(Ok(packet));
        }
        if let Some(error) = self.failed.take() {
            self.ended = Some(match error {
                // The peer closed inside a frame: reported once, then closed like any end.
                Error::IncompleteFrame { .. } => End::Closed,
                _ => End::BadFrame(error.to_string()),
            });
            return Some(Err(error));
        }
        match &self.ended {
            None => None,
            Some(End::Closed) => Some(Err(Error::ConnectionClosed)),
            Some(End::BadFrame(why)) => Some(Err(Error::ClosedAfterBadFrame(why.clone()))),
        }
    }

    /// The next packet if one is decoded and waiting (not an error or the end: those come
    /// from [`FrameReader::next_packet`]).
    fn pop_ready(&mut self) -> Option<Packet> {
        let packet = self.ready.pop_front()?;
        self.ready_bytes -= packet.body.len();
        Some(packet)
    }

    /// What was wrong with the bad frame that ended the stream, once it has been reported
    /// (the stream's owner then closes it).
    pub fn bad_frame(&self) -> Option<&str> {
        match &self.ended {
            Some(End::BadFrame(why)) => Some(why),
            _ => None,
        }
    }

    /// The buffer the next read fills.
    pub fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Takes in the `n` bytes a read put at the start of [`FrameReader::buffer`]; 0 is the end
    /// of the stream (inside a frame: `IncompleteFrame`).
    pub fn received(&mut self, n: usize) {
        if self.failed.is_some() || self.ended.is_some() {
            return; // nothing after a bad frame or the end is trusted
        }
        if n == 0 {
            match self.decoder.finish() {
                Ok(()) => self.ended = Some(End::Closed),
                Err(e) => self.failed = Some(e),
            }
            return;
        }
        let (ready, ready_bytes, failed) =
            (&mut self.ready, &mut self.ready_bytes, &mut self.failed);
        decode_packets(&mut self.decoder, &self.buf[..n], |packet| {
            if failed.is_some() {
                return;
            }
            match packet {
                Ok(p) => {
                    *ready_bytes += p.body.len();
                    ready.push_back(p)
                }
                Err(e) => *failed = Some(e),
            }
        });
    }

    /// Packets decoded and not yet taken, and the bytes of their bodies: what a reader that
    /// runs ahead of its consumer holds.
    pub fn queued(&self) -> (usize, usize) {
        (self.ready.len(), self.ready_bytes)
    }

    /// True once the stream has ended or a bad frame was met: reading more is pointless.
    pub fn is_done(&self) -> bool {
        self.failed.is_some() || self.ended.is_some()
    }

    /// Reads from `stream` until a packet (or the end) is there.
    pub fn read_packet<E: From<Error>>(
        &mut self,
        stream: &Stream,
        wait: Wait,
        on_signal: &mut impl FnMut() -> std::result::Result<(), E>,
    ) -> std::result::Result<Packet, E> {
        loop {
            if let Some(result) = self.next_packet() {
                return result.map_err(E::from);
            }
            let buf = &mut self.buf;
            let n = retry(|| stream.read(buf, 0, wait), on_signal)?;
            self.received(n);
        }
    }
}

/// Bytes to write on a stream, queued in order: a framed connection's outgoing frames.
///
/// A write that fails part way (a signal whose handler raises, a timeout, an error) leaves
/// the unwritten rest of its frames queued, and the next write sends them first, so the peer
/// never sees a frame cut short by a frame that follows it. Frames of which nothing went out
/// are dropped with the failed write that queued them: it reports that they were not sent.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Progress through `buf`: bytes sent (plain) or handed to TLS (a TLS stream's own
    /// records keep what the socket has not taken).
    sent: usize,
}

/// A buffer this large is released once sent, so one big write does not pin memory.
const KEEP_CAPACITY: usize = 1 << 16;

impl Outbox {
    /// Queues `frames`; returns the mark to give [`Outbox::abandon`] if writing them fails.
    pub fn push(&mut self, frames: Vec<u8>) -> usize {
        let mark = self.buf.len();
        if self.buf.is_empty() {
            self.buf = frames; // the usual case: nothing queued, no copy
        } else {
            self.buf.extend_from_slice(&frames);
        }
        mark
    }

    /// Writes everything queued (call again after `EINTR`); the caller holds the stream's
    /// write lock.
    pub fn flush(&mut self, stream: &Stream, wait: Wait) -> Result<()> {
        if self.buf.is_empty() {
            return stream.flush(wait);
        }
        stream.write_all(&self.buf, 0, wait, &mut self.sent)?;
        self.buf.clear();
        self.sent = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// After a failed flush: drops the frames queued at `mark` or later if none of their
    /// bytes went out.
    pub fn abandon(&mut self, mark: usize) {
        if self.sent <= mark {
            self.buf.truncate(mark);
        }
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }
}

/// Packets over a [`Stream`], blocking: one receiver at a time, any number of senders (their
/// frames never interleave), and the reason a bad frame closed it for the calls after.
#[derive(Debug)]
pub struct Framed {
    format: Arc<Format>,
    reader: Mutex<FrameReader>,
    /// Frames being written; locked only by the holder of the stream's write lock.
    outbox: Mutex<Outbox>,
    closed_because: OnceLock<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Framed {
    pub fn new(format: Arc<Format>) -> Self {
        Framed {
            reader: Mutex::new(FrameReader::new(format.clone())),
            format,
            outbox: Mutex::default(),
            closed_because: OnceLock::new(),
        }
    }

    pub fn format(&self) -> &Arc<Format> {
        &self.format
    }

    /// `Err` once a bad frame from the peer closed the connection.
    pub fn check_open(&self) -> Result<()> {
        match self.closed_because.get() {
            Some(why) => Err(Error::ClosedAfterBadFrame(why.clone())),
            None => Ok(()),
        }
    }

    /// The next packet. The packets before a bad frame are delivered first; then its error,
    /// and the stream is closed (it cannot be trusted after it).
    pub fn recv<E: From<Error>>(
        &self,
        stream: &Stream,
        wait: Wait,
        on_signal: &mut impl FnMut() -> std::result::Result<(), E>,
    ) -> std::result::Result<Packet, E> {
        // Never wait for this lock: two threads receiving on one connection is a bug in the
        // caller (which packet goes where would be random).
        let mut reader = match self.reader.try_lock() {
            Ok(r) => r,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Busy(
                    "another thread is already receiving on this Connection".into(),
                )
                .into())
            }
        };
        let result = reader.read_packet(stream, wait, on_signal);
        if let Some(why) = reader.bad_frame() {
            if self.closed_because.set(why.to_owned()).is_ok() {
                let _ = stream.close();
            }
        }
        result
    }

    /// The next packet if an earlier read already received and decoded it: what `recv` would
    /// return without reading, so without waiting. `None` when `recv` has more to do (read,
    /// report an error or the end, or say that another thread is receiving).
    pub fn recv_ready(&self) -> Option<Packet> {
        self.reader.try_lock().ok()?.pop_ready()
    }

    /// Sends `frames`, then receives the next packet: the reply, in a request/response
    /// protocol.
    // NOTE: polling before the first read of the reply (as CPython's timed sockets poll before
    // every read) measured no better than reading at once: 1.21-1.22x the hand-written loop
    // against 1.22-1.29x. The peer usually runs while the request is being sent, so the reply
    // is already there: 93 of 20,000 first reads found nothing.
    pub fn request<E: From<Error>>(
        &self,
        stream: &Stream,
        frames: Vec<u8>,
        wait: Wait,
        on_signal: &mut impl FnMut() -> std::result::Result<(), E>,
    ) -> std::result::Result<Packet, E> {
        self.send(stream, frames, wait, on_signal)?;
        self.recv(stream, wait, on_signal)
    }

    /// Sends `frames` whole, one sender at a time. The frames go through the outbox, not the
    /// caller's stack: if a signal handler sends on this connection while this send waits to
    /// resume, the handler (which gets the lock this thread holds) finishes writing these
    /// frames before its own; and if this send fails part way, the next send completes the
    /// cut frame first (see [`Outbox`]).
    pub fn send<E: From<Error>>(
        &self,
        stream: &Stream,
        frames: Vec<u8>,
        wait: Wait,
        on_signal: &mut impl FnMut() -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.check_open()?;
        let _lock = retry(|| stream.write_lock().take(wait), on_signal)?;
        let mark = lock(&self.outbox).push(frames);
        let result = retry(|| lock(&self.outbox).flush(stream, wait), on_signal);
        if result.is_err() {
            lock(&self.outbox).abandon(mark);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::Timeout;
    use crate::stream::test_pair;

    fn no_signals() -> Result<()> {
        Ok(())
    }

    #[test]
    fn a_cut_frame_stays_queued_and_frames_not_started_are_dropped() {
        let (stream, _peer) = test_pair();
        stream.sock.set_timeout(Timeout::NonBlocking).unwrap();
        let mut outbox = Outbox::default();
        let big = vec![7u8; 64 << 20]; // more than the socket buffers take
        let mark = outbox.push(big.clone());
        let err = outbox.flush(&stream, Wait::NonBlocking).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EAGAIN));
        outbox.abandon(mark);
        let cut = outbox.pending();
        assert!(cut > 0 && cut < big.len(), "{cut}");
        // The next write fails before its own frame starts: it is dropped, the cut one stays.
        let mark = outbox.push(b"next frame".to_vec());
        assert!(outbox.flush(&stream, Wait::NonBlocking).is_err());
        outbox.abandon(mark);
        assert!(outbox.pending() <= cut);
        assert!(outbox.pending() > 0);
    }

    fn fmt() -> Arc<Format> {
        Arc::new(Format::from_struct("!IH", &["length", "msg_id"], false, 64, &[]).unwrap())
    }

    #[test]
    fn packets_before_a_bad_frame_then_its_error_then_closed_for_good() {
        let (stream, peer) = test_pair();
        let framed = Framed::new(fmt());
        let mut wire = Vec::new();
        fmt().pack_into(&mut wire, b"one", 1, 0, &[]).unwrap();
        wire.extend_from_slice(&1000u32.to_be_bytes()); // too large
        wire.extend_from_slice(&[0, 0]);
        let mut sent = 0;
        peer.sendall(&wire, 0, Wait::Blocking, &mut sent).unwrap();
        let wait = Timeout::After(std::time::Duration::from_secs(5)).start();
        let one = framed.recv(&stream, wait, &mut no_signals).unwrap();
        assert_eq!((one.header.msg_id, &one.body[..]), (1, &b"one"[..]));
        let err = framed.recv(&stream, wait, &mut no_signals).unwrap_err();
        assert!(matches!(err, Error::FrameTooLarge { .. }), "{err:?}");
        assert_eq!(stream.sock.fileno(), -1); // closed
        for _ in 0..2 {
            let err = framed.recv(&stream, wait, &mut no_signals).unwrap_err();
            assert!(
                matches!(err, Error::ClosedAfterBadFrame(ref why) if why.contains("max_body")),
                "{err:?}"
            );
        }
        assert!(matches!(
            framed.send(&stream, b"x".to_vec(), wait, &mut no_signals),
            Err(Error::ClosedAfterBadFrame(_))
        ));
    }

    #[test]
    fn end_of_stream_between_and_inside_frames() {
        let (stream, peer) = test_pair();
        let framed = Framed::new(fmt());
        let mut wire = Vec::new();
        fmt().pack_into(&mut wire, b"whole", 0, 0, &[]).unwrap();
        wire.extend_from_slice(&[0, 0, 0, 9, 0]); // a cut frame
        let mut sent = 0;
        peer.sendall(&wire, 0, Wait::Blocking, &mut sent).unwrap();
        peer.shutdown(libc::SHUT_WR).unwrap();
        let wait = Wait::Blocking;
        assert_eq!(
            &framed.recv(&stream, wait, &mut no_signals).unwrap().body[..],
            b"whole"
        );
        assert!(matches!(
            framed.recv(&stream, wait, &mut no_signals),
            Err(Error::IncompleteFrame {
                expected: Some(15),
                ..
            })
        ));
    }
}
