//! Splitting a byte stream into frames, however it was chunked.
//!
//! The decoder keeps at most one unfinished frame (never more than the format's maximum frame
//! size); complete frames are handed out straight from the caller's bytes without copying them
//! into the buffer first. A frame over the limit is reported as soon as its length is read and
//! its bytes are then skipped as they arrive (Netty's discard mode), so the frame after it
//! still decodes.

use std::sync::Arc;

use crate::error::Error;
use crate::format::{Check, Format};

/// A buffer this large is released once it empties, so one big frame does not pin memory.
const KEEP_CAPACITY: usize = 1 << 16;

/// A streaming frame decoder for one format.
#[derive(Debug)]
pub struct Decoder {
    format: Arc<Format>,
    /// Bytes not yet decoded: an unfinished frame, or (after an error) the rest of the chunk
    /// that held the bad frame.
    buf: Vec<u8>,
    /// Bytes of a rejected frame still to skip as they arrive.
    discard: u64,
}

impl Decoder {
    pub fn new(format: Arc<Format>) -> Self {
        Decoder {
            format,
            buf: Vec::new(),
            discard: 0,
        }
    }

    pub fn format(&self) -> &Arc<Format> {
        &self.format
    }

    /// Bytes buffered and not yet decoded.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of a rejected frame still to be skipped.
    pub fn discarding(&self) -> u64 {
        self.discard
    }

    /// Decodes `data`, calling `emit(frame, body_start)` for every complete frame in order.
    ///
    /// On a bad frame it returns the error at once; frames emitted before it stay emitted, the
    /// bad frame's bytes are skipped (now and in later calls), and the rest of `data` is kept to
    /// be decoded by the next call (`feed(&[])` decodes what is buffered). An error from `emit`
    /// is returned the same way, with the bytes after that frame kept.
    pub fn feed<E: From<Error>>(
        &mut self,
        mut data: &[u8],
        mut emit: impl FnMut(&[u8], usize) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.discard > 0 {
            let n = self.discard.min(data.len() as u64) as usize;
            data = &data[n..];
            self.discard -= n as u64;
        }
        // First finish what the buffer holds, taking from `data` only what it needs.
        while !self.buf.is_empty() {
            match self.format.check(&self.buf) {
                Check::Frame { len, body_start } => {
                    let result = emit(&self.buf[..len], body_start);
                    self.buf.drain(..len);
                    if let Err(e) = result {
                        self.buf.extend_from_slice(data);
                        return Err(e);
                    }
                }
                Check::Incomplete { need, .. } => {
                    let take = (need - self.buf.len()).min(data.len());
                    if take == 0 {
                        return Ok(());
                    }
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                }
                Check::Bad { error, skip } => {
                    let from_buf = skip.min(self.buf.len() as u64) as usize;
                    self.buf.drain(..from_buf);
                    let mut rest = skip - from_buf as u64;
                    if self.buf.is_empty() {
                        let n = rest.min(data.len() as u64) as usize;
                        data = &data[n..];
                        rest -= n as u64;
                    }
                    self.discard = rest;
                    self.buf.extend_from_slice(data);
                    return Err(error.into());
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
                    let result = emit(&data[..len], body_start);
                    data = &data[len..];
                    if let Err(e) = result {
                        self.buf.extend_from_slice(data);
                        return Err(e);
                    }
                }
                Check::Incomplete { .. } => {
                    self.buf.extend_from_slice(data);
                    return Ok(());
                }
                Check::Bad { error, skip } => {
                    let n = skip.min(data.len() as u64) as usize;
                    self.discard = skip - n as u64;
                    self.buf.extend_from_slice(&data[n..]);
                    return Err(error.into());
                }
            }
        }
        Ok(())
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
            let mut got = Vec::new();
            let r = decoder.feed::<Error>(chunk, |frame, start| {
                got.push(frame[start..].to_vec());
                Ok(())
            });
            out.extend(got.into_iter().map(Ok));
            if let Err(e) = r {
                out.push(Err(format!("{e:?}")
                    .split([' ', '(', '{'])
                    .next()
                    .unwrap()
                    .to_owned()));
            }
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

    #[test]
    fn finish_reports_the_unfinished_frame() {
        let format = Arc::new(Format::from_struct("!I", &["length"], false, 64, &[]).unwrap());
        let mut d = Decoder::new(format);
        d.feed::<Error>(b"\x00\x00\x00\x05abc", |_, _| Ok(()))
            .unwrap();
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
            d.feed::<Error>(std::slice::from_ref(b), |_, _| Ok(()))
                .unwrap();
            assert!(d.pending() <= 104);
        }
    }
}
