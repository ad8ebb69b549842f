//! Where a frame ends: the check-then-parse of a length field (struct headers and Netty's
//! decoder) or a varint prefix, what is wrong with a bad frame, and how far to skip after one
//! (the resynchronisation rule).

use crate::error::{Error, Limit};
use crate::repr::str_repr;

use super::field::{show, Field};
use super::{protocol, Format, Spec};

/// How a format finds where a frame ends.
#[derive(Clone, Debug, PartialEq)]
pub enum Framing {
    /// A length field at a fixed position (struct headers and Netty's decoder).
    LengthField {
        /// Index of the length field in `Format::fields`.
        field: usize,
        /// Netty's `lengthAdjustment`: added to the length value to get what follows it.
        adjustment: i64,
        /// Netty's `initialBytesToStrip`: the body is the frame from here on.
        strip: usize,
        /// Netty's `maxFrameLength`: the whole adjusted frame must not be longer.
        max_frame: u64,
    },
    /// A protobuf varint of the body length, then the body.
    Varint { max_body: u64 },
}

/// What [`Format::check`] found at the start of a buffer.
#[derive(Debug)]
pub enum Check {
    /// Not enough bytes to decide: come back with at least `need` bytes. `whole` says `need`
    /// is the length of the whole frame (its header has arrived).
    Incomplete { need: usize, whole: bool },
    /// A whole frame of `len` bytes whose body starts at `body_start`.
    Frame { len: usize, body_start: usize },
    /// The frame is unacceptable; its first `skip` bytes (which may not all have arrived yet)
    /// must be discarded before decoding can resume. `garbage`: the header was not a frame's
    /// at all (a wrong magic number): `skip` leads to where the magic could start a frame, and
    /// the errors until the next good frame are one run of garbage.
    Bad {
        error: Error,
        skip: u64,
        garbage: bool,
    },
}

impl Format {
    /// Decides what the bytes at the start of `buf` are (see [`Check`]).
    pub fn check(&self, buf: &[u8]) -> Check {
        match self.framing {
            Framing::Varint { max_body } => check_varint(buf, max_body),
            Framing::LengthField {
                field,
                adjustment,
                strip,
                max_frame,
            } => {
                let lf = &self.fields[field];
                let end = lf.offset + lf.code.size();
                if buf.len() < end {
                    return Check::Incomplete {
                        need: end,
                        whole: false,
                    };
                }
                // Constants before the length's end are checked first: if the magic is wrong,
                // the length beside it is garbage too.
                if let Some(error) = self.expect_mismatch(buf, |f| f.offset + f.code.size() <= end)
                {
                    return self.bad_header(error, buf, end);
                }
                let value = self.int_at(lf, buf);
                if value < 0 {
                    let error = protocol(format!("negative length field: {value}"));
                    return self.bad_header(error, buf, end);
                }
                let frame_len = value + adjustment as i128 + end as i128;
                let min = match self.spec {
                    // A struct header is part of every frame.
                    Spec::Struct { .. } => self.header_size,
                    _ => end,
                };
                if frame_len < min as i128 {
                    let error = protocol(self.too_short_message(value, frame_len, min));
                    return self.bad_header(error, buf, end);
                }
                if frame_len > max_frame as i128 {
                    // The length is well formed, only too large: skip exactly that frame.
                    let skip = u64::try_from(frame_len).unwrap_or(u64::MAX);
                    return Check::Bad {
                        error: self.too_large(frame_len),
                        skip,
                        garbage: false,
                    };
                }
                let frame_len = frame_len as usize; // <= max_frame, which fits in memory
                if strip > frame_len {
                    return Check::Bad {
                        error: protocol(format!(
                            "Adjusted frame length ({frame_len}) is less than initialBytesToStrip: {strip}"
                        )),
                        skip: frame_len as u64,
                        garbage: false,
                    };
                }
                // A constant after the length: the frame's extent is known, skip the frame.
                if let Some(error) = self.expect_mismatch(buf, |f| f.offset + f.code.size() > end) {
                    return Check::Bad {
                        error,
                        skip: frame_len as u64,
                        garbage: false,
                    };
                }
                if buf.len() < frame_len {
                    return Check::Incomplete {
                        need: frame_len,
                        whole: true,
                    };
                }
                Check::Frame {
                    len: frame_len,
                    body_start: strip,
                }
            }
        }
    }

    /// What to skip after a header that cannot be a frame's (a wrong magic, a length that
    /// makes no sense), with `header_end` the end of its length field. Without a magic number
    /// there is no telling where the next frame starts: skip to `header_end`, as Netty does.
    /// With one, skip to the next place where the magic could start a frame (bytes at the end
    /// of `buf` that match its beginning count: the rest may be on its way).
    fn bad_header(&self, error: Error, buf: &[u8], header_end: usize) -> Check {
        match self.next_start(buf) {
            Some(skip) => Check::Bad {
                error,
                skip: skip as u64,
                garbage: true,
            },
            None => Check::Bad {
                error,
                skip: header_end as u64,
                garbage: false,
            },
        }
    }

    /// For a format with a magic number (`expect` constants at or before the length field):
    /// the first offset after the start of `buf` where the magic could start a frame (bytes at
    /// the end of `buf` that match its beginning count: the rest may be on its way), else
    /// `buf.len()`. `None` for a format without one.
    pub fn next_start(&self, buf: &[u8]) -> Option<usize> {
        let Framing::LengthField { field, .. } = self.framing else {
            return None;
        };
        let length_end = self.fields[field].offset + self.fields[field].code.size();
        let magic: Vec<(usize, Vec<u8>)> = self
            .fields
            .iter()
            .filter(|f| f.offset + f.code.size() <= length_end)
            .filter_map(|f| {
                let want = f.expect.as_ref()?;
                let mut bytes = vec![0; f.code.size()];
                self.write(&mut bytes, want);
                Some((f.offset, bytes))
            })
            .collect();
        if magic.is_empty() {
            return None;
        }
        let could_start_at = |at: usize| {
            magic.iter().all(|(offset, bytes)| {
                let from = (at + offset).min(buf.len());
                let n = bytes.len().min(buf.len() - from);
                buf[from..from + n] == bytes[..n]
            })
        };
        Some(
            (1..buf.len())
                .find(|&at| could_start_at(at))
                .unwrap_or(buf.len()),
        )
    }

    /// Checks the `expect` constants among the fields `which` selects whose bytes are there.
    #[inline]
    fn expect_mismatch(&self, buf: &[u8], which: impl Fn(&Field) -> bool) -> Option<Error> {
        if !self.has_expect {
            return None;
        }
        self.fields.iter().filter(|f| which(f)).find_map(|f| {
            let want = f.expect.as_ref()?;
            if buf.len() < f.offset + f.code.size() {
                return None;
            }
            let got = self.field_value(f, buf);
            (got != *want).then(|| {
                protocol(format!(
                    "header field {} is {}, expected {}",
                    str_repr(&f.name),
                    show(f.code, &got),
                    show(f.code, want)
                ))
            })
        })
    }

    fn too_short_message(&self, value: i128, frame_len: i128, min: usize) -> String {
        match &self.spec {
            Spec::Struct { .. } => {
                format!("length field {value} is shorter than the {min}-byte header it includes")
            }
            _ => format!(
                "Adjusted frame length ({frame_len}) is less than lengthFieldEndOffset: {min}"
            ),
        }
    }

    /// The error for a frame over the limit, in the terms the format was given in: body and
    /// `max_body` for a struct header, the adjusted frame and `max_frame` for Netty's.
    fn too_large(&self, frame_len: i128) -> Error {
        let frame = u64::try_from(frame_len).unwrap_or(u64::MAX);
        match &self.spec {
            Spec::Struct { max_body, .. } => {
                Error::too_large(Limit::MaxBody, frame - self.header_size as u64, *max_body)
            }
            _ => Error::too_large(Limit::MaxFrame, frame, self.max_frame()),
        }
    }
}

/// Netty's `ProtobufVarint32FrameDecoder`: at most 5 bytes of varint, the length read as a
/// 32-bit int (negative is corrupt).
fn check_varint(buf: &[u8], max_body: u64) -> Check {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().take(5).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let prefix = i + 1;
            let length = value as u32 as i32; // Netty keeps the low 32 bits as an int
            if length < 0 {
                return Check::Bad {
                    error: protocol(format!("negative length: {length}")),
                    skip: prefix as u64,
                    garbage: false,
                };
            }
            let length = length as u64;
            if length > max_body {
                return Check::Bad {
                    error: Error::too_large(Limit::VarintBody, length, max_body),
                    skip: prefix as u64 + length,
                    garbage: false,
                };
            }
            let len = prefix + length as usize;
            if buf.len() < len {
                return Check::Incomplete {
                    need: len,
                    whole: true,
                };
            }
            return Check::Frame {
                len,
                body_start: prefix,
            };
        }
    }
    if buf.len() >= 5 {
        return Check::Bad {
            error: protocol("malformed varint."),
            skip: 5,
            garbage: false,
        };
    }
    Check::Incomplete {
        need: buf.len() + 1,
        whole: false,
    }
}

pub(super) fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::testing::{bytes_magic, frame_of, int_magic};
    use crate::format::{Order, Value};

    const HELLO: &[u8] = b"HELLO, WORLD";

    fn netty(offset: usize, length: usize, adjustment: i64, strip: usize) -> Format {
        Format::length_field(offset, length, adjustment, strip, 1 << 20, Order::Big, &[]).unwrap()
    }

    /// The seven examples of Netty's `LengthFieldBasedFrameDecoder` javadoc, decode side.
    #[test]
    fn netty_javadoc_examples_decode() {
        let cat = |parts: &[&[u8]]| parts.concat();
        let cases: Vec<(Format, Vec<u8>, Vec<u8>)> = vec![
            (
                netty(0, 2, 0, 0),
                cat(&[b"\x00\x0c", HELLO]),
                cat(&[b"\x00\x0c", HELLO]),
            ),
            (
                netty(0, 2, 0, 2),
                cat(&[b"\x00\x0c", HELLO]),
                HELLO.to_vec(),
            ),
            (
                netty(0, 2, -2, 0),
                cat(&[b"\x00\x0e", HELLO]),
                cat(&[b"\x00\x0e", HELLO]),
            ),
            (
                netty(2, 3, 0, 0),
                cat(&[b"\xca\xfe\x00\x00\x0c", HELLO]),
                cat(&[b"\xca\xfe\x00\x00\x0c", HELLO]),
            ),
            (
                netty(0, 3, 2, 0),
                cat(&[b"\x00\x00\x0c\xca\xfe", HELLO]),
                cat(&[b"\x00\x00\x0c\xca\xfe", HELLO]),
            ),
            (
                netty(1, 2, 1, 3),
                cat(&[b"\xca\x00\x0c\xfe", HELLO]),
                cat(&[b"\xfe", HELLO]),
            ),
            (
                netty(1, 2, -3, 3),
                cat(&[b"\xca\x00\x10\xfe", HELLO]),
                cat(&[b"\xfe", HELLO]),
            ),
        ];
        for (i, (format, wire, body)) in cases.iter().enumerate() {
            let (len, start) = frame_of(format, wire);
            assert_eq!(len, wire.len(), "example {}", i + 1);
            assert_eq!(&wire[start..len], &body[..], "example {}", i + 1);
        }
    }

    #[test]
    fn too_large_fails_fast_with_the_frame_length_to_skip() {
        let f = Format::from_struct("!I", &["length"], false, 16, &[]).unwrap();
        match f.check(b"\x00\x00\x00\x20") {
            Check::Bad {
                error: Error::FrameTooLarge { length, .. },
                skip,
                garbage: false,
            } => assert_eq!((length, skip), (32, 36)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signed_length_rejects_negatives() {
        let f = Format::from_struct("!i", &["length"], false, 16, &[]).unwrap();
        assert!(matches!(
            f.check(b"\xff\xff\xff\xfe"),
            Check::Bad {
                error: Error::Protocol(_),
                skip: 4,
                garbage: false,
            }
        ));
    }

    #[test]
    fn expect_mismatch_is_a_protocol_error() {
        let f = bytes_magic(16);
        assert!(matches!(
            f.check(b"\xca\xfe\x00\x00\x00\x01x"),
            Check::Frame { len: 7, .. }
        ));
        // A wrong magic before the length: the bytes are garbage, skipped up to where the
        // magic could start a frame (here the end: no 0xca anywhere).
        assert!(matches!(
            f.check(b"\xde\xad\x00\x00\x00\x01x"),
            Check::Bad {
                error: Error::Protocol(_),
                skip: 7,
                garbage: true,
            }
        ));
        // ... or at the next magic, even one cut short by the end of the buffer.
        assert!(matches!(
            f.check(b"\xde\xad\x00\xca\xfe\x00\x00"),
            Check::Bad { skip: 3, .. }
        ));
        assert!(matches!(
            f.check(b"\xde\xad\x00\x01\x02\x03\xca"),
            Check::Bad { skip: 6, .. }
        ));
        // A wrong constant after the length: the frame (by its length) is skipped.
        let g = Format::from_struct(
            "!IB",
            &["length", "version"],
            false,
            16,
            &[("version", Value::UInt(2))],
        )
        .unwrap();
        assert!(matches!(
            g.check(b"\x00\x00\x00\x01\x03x"),
            Check::Bad {
                error: Error::Protocol(_),
                skip: 6,
                garbage: false,
            }
        ));
    }

    #[test]
    fn varint_prefix() {
        let f = Format::varint(1000);
        let mut out = Vec::new();
        f.pack_into(&mut out, &[7u8; 300], 0, 0, &[]).unwrap();
        assert_eq!(&out[..2], &[0xac, 0x02]);
        assert_eq!(frame_of(&f, &out), (302, 2));
        assert!(matches!(
            f.check(&[0xac]),
            Check::Incomplete {
                need: 2,
                whole: false
            }
        ));
        assert!(matches!(
            f.check(&[0xff; 5]),
            Check::Bad {
                error: Error::Protocol(_),
                skip: 5,
                garbage: false,
            }
        ));
    }

    #[test]
    fn mismatch_messages_read_like_python() {
        let f = bytes_magic(16);
        let Check::Bad { error, .. } = f.check(b"\xde\xad\x00\x00\x00\x00") else {
            panic!("not bad")
        };
        assert_eq!(
            error.to_string(),
            r"header field 'magic' is b'\xde\xad', expected b'\xca\xfe'"
        );
        let g = int_magic(16);
        let Check::Bad { error, .. } = g.check(b"\xbe\xef\x00\x00\x00\x00") else {
            panic!("not bad")
        };
        assert_eq!(
            error.to_string(),
            "header field 'magic' is 0xbeef, expected 0xcafe"
        );
    }
}
