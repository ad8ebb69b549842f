//! Splitting a byte stream into frames, however it was chunked.
//!
//! The decoder keeps at most one unfinished frame (never more than the format's maximum frame
//! size); complete frames are handed out straight from the caller's bytes without copying them
//! into the buffer first. Every call decodes all the bytes it is given, bad frames included, so
//! no error path leaves more than that buffered.
//!
//! After a bad frame, decoding goes on (the resynchronisation rule, in [`Format::check`]):
//! - a frame over the limit is reported as soon as its length is read and its bytes are then
//!   skipped as they arrive (Netty's discard mode), so the frame after it still decodes;
//! - a wrong magic number (an `expect` constant at or before the length field) means the bytes
//!   are not a frame: the decoder skips to the next place the magic could start one, and the
//!   errors until the next good frame are one run of garbage, reported once; within the run a
//!   length is not trusted (a too-large one is garbage too, not a frame to discard);
//! - any other malformed header skips to the end of its length field, as Netty does (with a
//!   magic number, it resynchronises on the magic instead);
//! - a wrong constant after the length skips that one frame.

use std::sync::Arc;

use crate::error::Error;
use crate::format::{Check, Format};

/// A buffer this large is released once it empties, so one big frame does not pin memory.
const KEEP_CAPACITY: usize = 1 << 16;

/// What the decoder found in the stream, in order.
#[derive(Debug)]
pub enum Event<'a> {
    /// A complete frame whose body starts at `body_start`.
    Frame { frame: &'a [u8], body_start: usize },
    /// A bad frame (or the start of a run of garbage), already skipped.
    Bad(Error),
}

/// A streaming frame decoder for one format.
#[derive(Debug)]
pub struct Decoder {
    format: Arc<Format>,
    /// An unfinished frame.
    buf: Vec<u8>,
    /// Bytes of a rejected frame still to skip as they arrive.
    discard: u64,
    /// Inside a run of garbage: reported once, until the next good frame.
    garbage: bool,
}

impl Decoder {
    pub fn new(format: Arc<Format>) -> Self {
        Decoder {
            format,
            buf: Vec::new(),
            discard: 0,
            garbage: false,
        }
    }

    pub fn format(&self) -> &Arc<Format> {
        &self.format
    }

    /// Bytes buffered and not yet decoded: the start of an unfinished frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of a rejected frame still to be skipped.
    pub fn discarding(&self) -> u64 {
        self.discard
    }

    /// Decodes all of `data`, calling `sink` for every complete frame and every bad one, in
    /// stream order. Afterwards at most one unfinished frame is buffered.
    pub fn feed(&mut self, mut data: &[u8], mut sink: impl FnMut(Event<'_>)) {
        if self.discard > 0 {
            let n = self.discard.min(data.len() as u64) as usize;
            data = &data[n..];
            self.discard -= n as u64;
        }
        // First finish what the buffer holds, taking from `data` only what it needs.
        while !self.buf.is_empty() {
            match self.format.check(&self.buf) {
                Check::Frame { len, body_start } => {
                    self.garbage = false;
                    sink(Event::Frame {
                        frame: &self.buf[..len],
                        body_start,
                    });
                    self.buf.drain(..len);
                }
                Check::Incomplete { need, .. } => {
                    let take = (need - self.buf.len()).min(data.len());
                    if take == 0 {
                        return;
                    }
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                }
                Check::Bad {
                    error,
                    skip,
                    garbage,
                } => {
                    let (skip, garbage) = self.judge(&self.buf, skip, garbage);
                    self.report(error, garbage, &mut sink);
                    let from_buf = skip.min(self.buf.len() as u64) as usize;
                    self.buf.drain(..from_buf);
                    let rest = skip - from_buf as u64; // beyond the buffer: it is empty now
                    let n = rest.min(data.len() as u64) as usize;
                    data = &data[n..];
                    self.discard = rest - n as u64;
                }
            }
        }
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        // Then decode straight from the caller's bytes.
        while !data.is_empty() {
            match self.format.check(data) {
                Check::Frame { len, body_start } => {
                    self.garbage = false;
                    sink(Event::Frame {
                        frame: &data[..len],
                        body_start,
                    });
                    data = &data[len..];
                }
                Check::Incomplete { .. } => {
                    self.buf.extend_from_slice(data);
                    return;
                }
                Check::Bad {
                    error,
                    skip,
                    garbage,
                } => {
                    let (skip, garbage) = self.judge(data, skip, garbage);
                    self.report(error, garbage, &mut sink);
                    let n = skip.min(data.len() as u64) as usize;
                    data = &data[n..];
                    self.discard = skip - n as u64;
                }
            }
        }
    }

    /// What to skip for a bad frame at the start of `window`: inside a run of garbage a header
    /// that merely looks like a frame's is garbage too, and the search for the magic goes on.
    fn judge(&self, window: &[u8], skip: u64, garbage: bool) -> (u64, bool) {
        if self.garbage && !garbage {
            if let Some(next) = self.format.next_start(window) {
                return (next as u64, true);
            }
        }
        (skip, garbage)
    }

    /// Passes a bad frame on, unless it continues a run of garbage already reported.
    fn report(&mut self, error: Error, garbage: bool, sink: &mut impl FnMut(Event<'_>)) {
        if !(garbage && self.garbage) {
            sink(Event::Bad(error));
        }
        self.garbage = garbage;
    }

    /// At end of stream: the unfinished frame, if any, as an `IncompleteFrame` error.
    pub fn finish(&mut self) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let expected = match self.format.check(&self.buf) {
            Check::Incomplete { need, whole: true } => Some(need as u64),
            _ => None,
        };
        Err(Error::IncompleteFrame {
            partial: std::mem::take(&mut self.buf),
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Order;

    /// Feeds `chunks`, collecting frame bodies and error kinds in order.
    fn run(decoder: &mut Decoder, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, String>> {
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, |event| match event {
                Event::Frame { frame, body_start } => out.push(Ok(frame[body_start..].to_vec())),
                Event::Bad(e) => out.push(Err(format!("{e:?}")
                    .split([' ', '(', '{'])
                    .next()
                    .unwrap()
                    .to_owned())),
            });
        }
        out
    }

    fn netty(max: u64, offset: usize, length: usize, adj: i64, strip: usize) -> Decoder {
        Decoder::new(Arc::new(
            Format::length_field(offset, length, adj, strip, max, Order::Big, &[]).unwrap(),
        ))
    }

    fn too_long_stream() -> Vec<u8> {
        let mut buf = 32u32.to_be_bytes().to_vec();
        buf.extend(0u8..32);
        buf.extend(1u32.to_be_bytes());
        buf.push(b'a');
        buf
    }

    /// Netty's LengthFieldBasedFrameDecoderTest.testDiscardTooLongFrame1.
    #[test]
    fn discard_too_long_frame_1() {
        let mut d = netty(16, 0, 4, 0, 0);
        let out = run(&mut d, &[&too_long_stream(), b""]);
        assert_eq!(
            out,
            [
                Err("FrameTooLarge".into()),
                Ok(b"\x00\x00\x00\x01a".to_vec())
            ]
        );
    }

    /// Netty's LengthFieldBasedFrameDecoderTest.testDiscardTooLongFrame2.
    #[test]
    fn discard_too_long_frame_2() {
        let mut d = netty(16, 0, 4, 0, 0);
        let stream = too_long_stream();
        let out = run(&mut d, &[&stream[..14], &stream[14..]]);
        assert_eq!(
            out,
            [
                Err("FrameTooLarge".into()),
                Ok(b"\x00\x00\x00\x01a".to_vec())
            ]
        );
    }

    /// Netty's LengthFieldBasedFrameDecoderTest.testFailFastTooLongFrameRecovery.
    #[test]
    fn fail_fast_too_long_frame_recovery() {
        let mut d = netty(5, 0, 4, 0, 4);
        for _ in 0..2 {
            let out = run(&mut d, &[&[0, 0, 0, 2], &[0, 0, 0, 0, 0, 1, b'A']]);
            assert_eq!(out, [Err("FrameTooLarge".into()), Ok(b"A".to_vec())]);
        }
    }

    #[test]
    fn any_chunking_gives_the_same_frames() {
        let format =
            Arc::new(Format::from_struct("!IH", &["length", "msg_id"], false, 64, &[]).unwrap());
        let mut stream = Vec::new();
        for i in 0..50u16 {
            let body = vec![i as u8; (i % 7) as usize];
            format
                .pack_into(&mut stream, &body, i as i64, 0, &[])
                .unwrap();
        }
        let whole = run(&mut Decoder::new(format.clone()), &[&stream]);
        assert_eq!(whole.len(), 50);
        for size in [1, 2, 3, 5, 6, 7, 64] {
            let chunks: Vec<&[u8]> = stream.chunks(size).collect();
            let mut d = Decoder::new(format.clone());
            assert_eq!(run(&mut d, &chunks), whole, "chunks of {size}");
            assert_eq!(d.pending(), 0);
        }
    }

    fn magic_format() -> Arc<Format> {
        Arc::new(crate::format::testing::bytes_magic(64))
    }

    #[test]
    fn garbage_before_a_magic_is_one_error_and_the_next_frame_survives() {
        let format = magic_format();
        let mut stream = Vec::new();
        format.pack_into(&mut stream, b"one", 0, 0, &[]).unwrap();
        // Garbage with a false start inside: a partial magic, then a whole one with a bad length.
        stream.extend_from_slice(b"GET / HTTP/1.1\r\n\xca\x00\xca\xfe\xff\xff\xff\xff\r\n");
        format.pack_into(&mut stream, b"two", 0, 0, &[]).unwrap();
        for size in [1, 2, 3, 7, stream.len()] {
            let chunks: Vec<&[u8]> = stream.chunks(size).collect();
            let out = run(&mut Decoder::new(format.clone()), &chunks);
            assert_eq!(
                out,
                [
                    Ok(b"one".to_vec()),
                    Err("Protocol".into()),
                    Ok(b"two".to_vec())
                ],
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn a_stream_of_bad_frames_never_buffers_more_than_a_header() {
        let format = magic_format();
        let mut d = Decoder::new(format);
        let garbage = vec![0x41u8; 64 * 1024];
        let mut errors = 0;
        for _ in 0..200 {
            d.feed(&garbage, |e| {
                errors += usize::from(matches!(e, Event::Bad(_)))
            });
            assert!(d.pending() < 6, "{}", d.pending());
        }
        assert_eq!(errors, 1); // one run of garbage
    }

    #[test]
    fn finish_reports_the_unfinished_frame() {
        let format = Arc::new(Format::from_struct("!I", &["length"], false, 64, &[]).unwrap());
        let mut d = Decoder::new(format);
        d.feed(b"\x00\x00\x00\x05abc", |_| {});
        match d.finish() {
            Err(Error::IncompleteFrame { partial, expected }) => {
                assert_eq!(partial, b"\x00\x00\x00\x05abc");
                assert_eq!(expected, Some(9));
            }
            other => panic!("{other:?}"),
        }
        assert!(d.finish().is_ok());
    }

    #[test]
    fn buffered_bytes_never_exceed_one_frame() {
        let format = Arc::new(Format::from_struct("!I", &["length"], false, 100, &[]).unwrap());
        let mut d = Decoder::new(format);
        // A 100-byte body arriving one byte at a time.
        let mut frame = 100u32.to_be_bytes().to_vec();
        frame.extend([9u8; 100]);
        for b in &frame[..103] {
            d.feed(std::slice::from_ref(b), |_| {});
            assert!(d.pending() <= 104);
        }
    }
}
