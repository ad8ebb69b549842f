//! Packet formats: how a header is laid out and how it says where a frame ends.
//!
//! Three ways to describe a format, one engine underneath:
//! - a `struct` header (`"!IH"` with field names), where `length` counts the body (or the whole
//!   frame with `length_includes_header`);
//! - Netty's `LengthFieldBasedFrameDecoder` parameters (offset, length, adjustment, strip,
//!   max frame), with Netty's semantics to the byte;
//! - a protobuf base-128 varint length prefix (Netty's `ProtobufVarint32FrameDecoder`).
//!
//! The first two are the same rule: `frame_len = length_value + adjustment + length_end`, where
//! `length_end` is where the length field ends; a struct header is the case where adjustment and
//! strip make the body exactly what follows the header. Decoding is check-then-parse (as in
//! mini-redis): [`Format::check`] decides from the bytes at hand whether a whole frame is there,
//! how long it is, or what is wrong with it, before any body is buffered.
//!
//! The files: `layout` reads `struct` strings, `field` holds one field's code and value and
//! their bytes, `framing` finds where frames end, `header` reads and writes header values,
//! `pipeline` compresses and encrypts bodies; this file builds a [`Format`] from its parts.

mod field;
mod framing;
mod header;
mod layout;
mod pipeline;

use std::sync::Arc;

use crate::cipher::Cipher;
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::repr::str_repr;

pub use field::{coerce, Code, Field, Order, Value};
pub use framing::{Check, Framing};
pub use header::Header;

/// `flags` bit 0: the body is compressed.
pub const COMPRESSED: i64 = 1;
/// `flags` bit 1: the body is encrypted.
pub const ENCRYPTED: i64 = 2;

/// The longest header accepted: far beyond any real protocol, and small enough that sizes
/// computed from it never overflow and a `pack()` never allocates absurdly.
pub const MAX_HEADER: usize = 1 << 16;

/// The role a header field plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Length,
    MsgId,
    Flags,
    /// Any other name: carried in `Packet.header`, in this index order.
    User(usize),
}

/// How a format was described, for messages and `repr`.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    Struct {
        header: String,
        length_includes_header: bool,
        max_body: u64,
    },
    Netty {
        offset: usize,
        length: usize,
        adjustment: i64,
        strip: usize,
        max_frame: u64,
        order: Order,
    },
    Varint {
        max_body: u64,
    },
}

/// A complete packet format.
#[derive(Clone, Debug, PartialEq)]
pub struct Format {
    pub fields: Vec<Field>,
    pub roles: Vec<Role>,
    /// Bytes the named fields span: the header parsed into `Packet` fields.
    pub header_size: usize,
    pub order: Order,
    pub framing: Framing,
    pub spec: Spec,
    /// Names of user fields, in `Role::User` order.
    pub user_names: Arc<[Box<str>]>,
    /// Indexes of the `msg_id` and `flags` fields, read for every frame.
    msg_id_field: Option<usize>,
    flags_field: Option<usize>,
    /// Whether any field has an `expect` constant (most formats have none).
    has_expect: bool,
    /// Applied to every body: compress, then encrypt on the way out; the reverse on the way in.
    pub compression: Option<Compression>,
    pub cipher: Option<Arc<Cipher>>,
}

/// `repr()` of a list of names: `['length', 'msg_id']`.
fn names_repr<S: AsRef<str>>(names: &[S]) -> String {
    let inner: Vec<String> = names.iter().map(|n| str_repr(n.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

fn protocol(msg: impl Into<String>) -> Error {
    Error::Protocol(msg.into())
}

impl Format {
    /// A format from a `struct` header string and one name per non-padding item.
    pub fn from_struct(
        header: &str,
        names: &[&str],
        length_includes_header: bool,
        max_body: u64,
        expect: &[(&str, Value)],
    ) -> Result<Format> {
        let (fields, header_size, order) = layout::struct_layout(header, names)?;
        let length = fields
            .iter()
            .position(|f| &*f.name == "length")
            .ok_or_else(|| {
                invalid(format!(
                    "header fields {} need a 'length' field",
                    names_repr(names)
                ))
            })?;
        let end = fields[length].offset + fields[length].code.size();
        // value counts the body (or the whole frame): frame_len = value + adjustment + end.
        let adjustment = if length_includes_header {
            -(end as i64)
        } else {
            header_size as i64 - end as i64
        };
        let framing = Framing::LengthField {
            field: length,
            adjustment,
            strip: header_size,
            max_frame: max_body.saturating_add(header_size as u64),
        };
        let spec = Spec::Struct {
            header: header.to_owned(),
            length_includes_header,
            max_body,
        };
        Format::new(fields, header_size, order, framing, spec, expect)
    }

    /// Netty's `LengthFieldBasedFrameDecoder(maxFrameLength, lengthFieldOffset,
    /// lengthFieldLength, lengthAdjustment, initialBytesToStrip)` with `failFast`. The bytes
    /// before the length field are the user field `prefix`.
    pub fn length_field(
        offset: usize,
        length: usize,
        adjustment: i64,
        strip: usize,
        max_frame: u64,
        order: Order,
        expect: &[(&str, Value)],
    ) -> Result<Format> {
        let code = match length {
            1..=4 => Code::UInt(length),
            // Netty reads an 8-byte length with getLong: signed.
            8 => Code::Int(8),
            _ => {
                return Err(invalid(format!(
                    "length must be 1, 2, 3, 4 or 8 bytes, not {length}"
                )))
            }
        };
        if offset > MAX_HEADER - length {
            return Err(invalid(format!(
                "offset {offset} puts the length field past the {MAX_HEADER}-byte header limit"
            )));
        }
        // Netty's own checks, with its messages (a Java constructor copied in the wrong order
        // usually ends up here: LengthFieldBasedFrameDecoder takes maxFrameLength first).
        if max_frame == 0 {
            return Err(invalid(format!(
                "maxFrameLength must be a positive integer: {max_frame} (max_frame)"
            )));
        }
        if max_frame < (offset + length) as u64 {
            return Err(invalid(format!(
                "maxFrameLength ({max_frame}) must be equal to or greater than lengthFieldOffset \
                 ({offset}) + lengthFieldLength ({length})."
            )));
        }
        let mut fields = Vec::new();
        if offset > 0 {
            fields.push(Field {
                name: "prefix".into(),
                code: Code::Bytes(offset),
                offset: 0,
                expect: None,
            });
        }
        fields.push(Field {
            name: "length".into(),
            code,
            offset,
            expect: None,
        });
        let framing = Framing::LengthField {
            field: usize::from(offset > 0), // after the prefix, if there is one
            adjustment,
            strip,
            max_frame,
        };
        let spec = Spec::Netty {
            offset,
            length,
            adjustment,
            strip,
            max_frame,
            order,
        };
        Format::new(fields, offset + length, order, framing, spec, expect)
    }

    /// A protobuf varint32 length prefix, then the body.
    pub fn varint(max_body: u64) -> Format {
        let framing = Framing::Varint { max_body };
        let spec = Spec::Varint { max_body };
        Format::new(Vec::new(), 0, Order::Big, framing, spec, &[])
            .expect("a format without fields is valid")
    }

    /// A format from its fields (their roles come from their names), its framing, and the
    /// `expect` constants.
    fn new(
        mut fields: Vec<Field>,
        header_size: usize,
        order: Order,
        framing: Framing,
        spec: Spec,
        expect: &[(&str, Value)],
    ) -> Result<Format> {
        let mut roles = Vec::new();
        let mut user_names = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if fields[..i].iter().any(|g| g.name == f.name) {
                return Err(invalid(format!(
                    "duplicate header field {}",
                    str_repr(&f.name)
                )));
            }
            let role = match &*f.name {
                "length" => Role::Length,
                "msg_id" => Role::MsgId,
                "flags" => Role::Flags,
                _ => {
                    user_names.push(f.name.clone());
                    Role::User(user_names.len() - 1)
                }
            };
            if matches!(role, Role::Length | Role::MsgId | Role::Flags) && !f.code.is_int() {
                return Err(invalid(format!(
                    "header field {} must be an integer",
                    str_repr(&f.name)
                )));
            }
            roles.push(role);
        }
        for (name, value) in expect {
            let Some(i) = fields.iter().position(|f| &*f.name == *name) else {
                return Err(invalid(format!(
                    "expect names {}, which is not a header field",
                    str_repr(name)
                )));
            };
            if roles[i] == Role::Length {
                return Err(invalid("the length field cannot be a constant"));
            }
            fields[i].expect = Some(coerce(&fields[i], value.clone())?);
        }
        Ok(Format {
            has_expect: fields.iter().any(|f| f.expect.is_some()),
            msg_id_field: roles.iter().position(|r| *r == Role::MsgId),
            flags_field: roles.iter().position(|r| *r == Role::Flags),
            fields,
            roles,
            header_size,
            order,
            framing,
            spec,
            user_names: Arc::from(user_names),
            compression: None,
            cipher: None,
        })
    }

    /// Adds compression and encryption to every body. They need the body to be exactly what
    /// follows the header, so a `length_field` format must strip its whole header; without a
    /// `flags` field every body is compressed, so `min_size` needs one.
    pub fn with_pipeline(
        mut self,
        compression: Option<Compression>,
        cipher: Option<Arc<Cipher>>,
    ) -> Result<Format> {
        if compression.is_none() && cipher.is_none() {
            return Ok(self);
        }
        if let Framing::LengthField { strip, .. } = self.framing {
            if strip != self.header_size {
                return Err(invalid(format!(
                    "compression and encryption apply to what follows the header: strip must \
                     be {} (offset + length), not {strip}",
                    self.header_size
                )));
            }
        }
        if let Some(c) = &compression {
            if c.min_size > 0 && self.flags_field.is_none() {
                return Err(invalid(
                    "min_size needs a \"flags\" header field to mark uncompressed bodies",
                ));
            }
        }
        self.compression = compression;
        self.cipher = cipher;
        Ok(self)
    }

    /// The `flags` bits the pipeline owns: set on send, cleared from received packets.
    pub fn pipeline_bits(&self) -> i64 {
        if self.flags_field.is_none() {
            return 0;
        }
        let mut bits = 0;
        if self.compression.is_some() {
            bits |= COMPRESSED;
        }
        if self.cipher.is_some() {
            bits |= ENCRYPTED;
        }
        bits
    }

    /// Index of the field with `role`.
    pub fn role_index(&self, role: Role) -> Option<usize> {
        self.roles.iter().position(|r| *r == role)
    }

    /// The field a user name refers to, if the format has it.
    pub fn field_named(&self, name: &str) -> Option<(usize, &Field)> {
        self.fields
            .iter()
            .enumerate()
            .find(|(_, f)| &*f.name == name)
    }

    /// Fixed header size in bytes, or `None` for a varint prefix.
    pub fn fixed_header_size(&self) -> Option<usize> {
        match self.framing {
            Framing::LengthField { .. } => Some(self.header_size),
            Framing::Varint { .. } => None,
        }
    }

    /// The largest body this format accepts.
    pub fn max_body(&self) -> u64 {
        match (&self.spec, &self.framing) {
            (Spec::Struct { max_body, .. }, _) => *max_body,
            (
                _,
                Framing::LengthField {
                    strip, max_frame, ..
                },
            ) => max_frame.saturating_sub(*strip as u64),
            (_, Framing::Varint { max_body }) => *max_body,
        }
    }

    /// The most bytes a decoder ever buffers for one frame.
    pub fn max_frame(&self) -> u64 {
        match self.framing {
            Framing::LengthField { max_frame, .. } => max_frame,
            Framing::Varint { max_body } => max_body + 5,
        }
    }

    /// A header value given for a field this format does not have (a `TypeError` in Python,
    /// like an unexpected keyword argument).
    pub fn no_such_field(&self, name: &str) -> Error {
        let names: Vec<&str> = self.fields.iter().map(|f| &*f.name).collect();
        Error::NoSuchField(format!(
            "this format has no {} field (its fields: {})",
            str_repr(name),
            names_repr(&names)
        ))
    }
}

/// Formats and checks the tests of several modules share.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// `!2sI` with the magic `b"\xca\xfe"` before a 4-byte length.
    pub(crate) fn bytes_magic(max_body: u64) -> Format {
        let magic = [("magic", Value::Bytes((*b"\xca\xfe").into()))];
        Format::from_struct("!2sI", &["magic", "length"], false, max_body, &magic).unwrap()
    }

    /// `!HI` with the magic `0xcafe` before a 4-byte length.
    pub(crate) fn int_magic(max_body: u64) -> Format {
        let magic = [("magic", Value::UInt(0xcafe))];
        Format::from_struct("!HI", &["magic", "length"], false, max_body, &magic).unwrap()
    }

    /// The length and body start of the whole frame at the start of `buf`.
    pub(crate) fn frame_of(format: &Format, buf: &[u8]) -> (usize, usize) {
        match format.check(buf) {
            Check::Frame { len, body_start } => (len, body_start),
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::frame_of;
    use super::*;

    #[test]
    fn struct_header_round_trip() {
        let f =
            Format::from_struct("!IHB", &["length", "msg_id", "flags"], false, 1024, &[]).unwrap();
        assert_eq!(f.header_size, 7);
        let mut out = Vec::new();
        f.pack_into(&mut out, b"hi", 258, 1, &[]).unwrap();
        assert_eq!(out, b"\x00\x00\x00\x02\x01\x02\x01hi");
        let (len, start) = frame_of(&f, &out);
        assert_eq!((len, start), (9, 7));
        let h = f.header(&out);
        assert_eq!((h.msg_id, h.flags), (258, 1));
    }

    #[test]
    fn native_alignment_matches_struct() {
        // struct.calcsize("@BI") == 8: the int is aligned to 4.
        let f = Format::from_struct("@BI", &["flags", "length"], false, 10, &[]).unwrap();
        assert_eq!(f.header_size, 8);
        assert_eq!(f.fields[1].offset, 4);
    }

    #[test]
    fn sizes_that_overflow_are_refused_at_construction() {
        for header in [
            "!18446744073709551615xI",
            "@18446744073709551613xQ",
            "!I100000000000000s",
            "!I1000000000000I",
            "!I65533sI",
        ] {
            let err = Format::from_struct(header, &["length"], false, 16, &[]).unwrap_err();
            assert!(
                err.to_string().contains("total struct size too long"),
                "{header}: {err}"
            );
        }
        for offset in [usize::MAX, 1 << 40, MAX_HEADER] {
            assert!(Format::length_field(offset, 4, 0, 0, 1 << 20, Order::Big, &[]).is_err());
        }
        // Java's argument order copied in: maxFrameLength 0 or below the header is refused.
        assert!(Format::length_field(1024, 2, 3, 0, 0, Order::Big, &[]).is_err());
        assert!(Format::length_field(8192, 2, 2, 0, 4, Order::Big, &[]).is_err());
    }
}
