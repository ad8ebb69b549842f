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

use std::borrow::Cow;
use std::sync::Arc;

use crate::cipher::{Cipher, OVERHEAD};
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::repr::{bytes_repr, str_repr};

/// `flags` bit 0: the body is compressed.
pub const COMPRESSED: i64 = 1;
/// `flags` bit 1: the body is encrypted.
pub const ENCRYPTED: i64 = 2;

/// Byte order of every multi-byte header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Big,
    Little,
}

/// What one header item holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// An unsigned integer of 1, 2, 3, 4 or 8 bytes.
    UInt(usize),
    /// A two's-complement integer of 1, 2, 4 or 8 bytes.
    Int(usize),
    /// Fixed bytes (`Ns`, or Netty's bytes before the length field).
    Bytes(usize),
}

impl Code {
    pub fn size(self) -> usize {
        match self {
            Code::UInt(n) | Code::Int(n) | Code::Bytes(n) => n,
        }
    }

    fn is_int(self) -> bool {
        !matches!(self, Code::Bytes(_))
    }
}

/// A header field's value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    Int(i64),
    UInt(u64),
    Bytes(Box<[u8]>),
}

/// A named item of the header.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: Box<str>,
    pub code: Code,
    pub offset: usize,
    /// A constant the field must hold (`expect=`): checked on decode, the default on encode.
    pub expect: Option<Value>,
}

/// The role a header field plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Length,
    MsgId,
    Flags,
    /// Any other name: carried in `Packet.header`, in this index order.
    User(usize),
}

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

/// Header values of one decoded frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub msg_id: i64,
    pub flags: i64,
    /// User fields, in `Format::user_names` order.
    pub values: Vec<Value>,
}

/// A `struct` format string, read: its byte order, whether items are aligned (native `@`),
/// and each code with its repeat count.
struct StructItems {
    order: Order,
    aligned: bool,
    items: Vec<(char, usize)>,
}

fn struct_items(spec: &str) -> Result<StructItems> {
    let (order, aligned, rest) = match spec.chars().next() {
        Some('!') | Some('>') => (Order::Big, false, &spec[1..]),
        Some('<') => (Order::Little, false, &spec[1..]),
        Some('=') => (native_order(), false, &spec[1..]),
        Some('@') => (native_order(), true, &spec[1..]),
        _ => (native_order(), true, spec),
    };
    let mut items = Vec::new();
    let mut count: Option<usize> = None;
    for c in rest.chars() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if let Some(d) = c.to_digit(10) {
            let n = count
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(d as usize));
            count = Some(n.ok_or_else(|| too_long(spec))?);
            continue;
        }
        if !"xBbHhIiLlQqs".contains(c) {
            return Err(invalid(format!(
                "unsupported header code '{c}' in {} (use x B b H h I i L l Q q s)",
                str_repr(spec)
            )));
        }
        items.push((c, count.take().unwrap_or(1)));
    }
    if count.is_some() {
        return Err(invalid(format!(
            "repeat count without a code in {}",
            str_repr(spec)
        )));
    }
    Ok(StructItems {
        order,
        aligned,
        items,
    })
}

/// `struct`'s error for a size that overflows, with the limit that applies here.
fn too_long(spec: &str) -> Error {
    invalid(format!(
        "total struct size too long: header {} is over {MAX_HEADER} bytes",
        str_repr(spec)
    ))
}

fn native_order() -> Order {
    if cfg!(target_endian = "big") {
        Order::Big
    } else {
        Order::Little
    }
}

/// The longest header accepted: far beyond any real protocol, and small enough that sizes
/// computed from it never overflow and a `pack()` never allocates absurdly.
pub const MAX_HEADER: usize = 1 << 16;

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
        let StructItems {
            order,
            aligned,
            items,
        } = struct_items(header)?;
        let mut codes = Vec::new(); // (code, offset)
        let mut offset = 0usize;
        // Each step adds at most MAX_HEADER to an offset at most MAX_HEADER: no overflow.
        let grow = |offset: usize, by: usize| {
            Some(offset + by)
                .filter(|o| by <= MAX_HEADER && *o <= MAX_HEADER)
                .ok_or_else(|| too_long(header))
        };
        for (c, count) in items {
            match c {
                'x' => offset = grow(offset, count)?,
                's' => {
                    codes.push((Code::Bytes(count), offset));
                    offset = grow(offset, count)?;
                }
                _ => {
                    let size = match c {
                        'B' | 'b' => 1,
                        'H' | 'h' => 2,
                        'I' | 'i' => 4,
                        'L' | 'l' if aligned => std::mem::size_of::<libc::c_long>(),
                        'L' | 'l' => 4,
                        _ => 8, // Q q
                    };
                    grow(offset, count.saturating_mul(size))?;
                    for _ in 0..count {
                        if aligned {
                            offset = offset.div_ceil(size) * size;
                        }
                        let code = if c.is_ascii_uppercase() {
                            Code::UInt(size)
                        } else {
                            Code::Int(size)
                        };
                        codes.push((code, offset));
                        offset = grow(offset, size)?;
                    }
                }
            }
        }
        if codes.len() != names.len() {
            return Err(invalid(format!(
                "header {} has {} fields but {} names were given: {}",
                str_repr(header),
                codes.len(),
                names.len(),
                names_repr(names)
            )));
        }
        let fields: Vec<Field> = names
            .iter()
            .zip(codes)
            .map(|(name, (code, offset))| Field {
                name: (*name).into(),
                code,
                offset,
                expect: None,
            })
            .collect();
        let header_size = offset;
        let mut format = Format::assemble(fields, header_size, order, expect)?;
        let length = format.role_index(Role::Length).ok_or_else(|| {
            invalid(format!(
                "header fields {} need a 'length' field",
                names_repr(names)
            ))
        })?;
        let end = format.fields[length].offset + format.fields[length].code.size();
        // value counts the body (or the whole frame): frame_len = value + adjustment + end.
        let adjustment = if length_includes_header {
            -(end as i64)
        } else {
            header_size as i64 - end as i64
        };
        format.framing = Framing::LengthField {
            field: length,
            adjustment,
            strip: header_size,
            max_frame: max_body.saturating_add(header_size as u64),
        };
        format.spec = Spec::Struct {
            header: header.to_owned(),
            length_includes_header,
            max_body,
        };
        Ok(format)
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
        let mut format = Format::assemble(fields, offset + length, order, expect)?;
        format.framing = Framing::LengthField {
            field: usize::from(offset > 0), // after the prefix, if there is one
            adjustment,
            strip,
            max_frame,
        };
        format.spec = Spec::Netty {
            offset,
            length,
            adjustment,
            strip,
            max_frame,
            order,
        };
        Ok(format)
    }

    /// A protobuf varint32 length prefix, then the body.
    pub fn varint(max_body: u64) -> Format {
        Format {
            fields: Vec::new(),
            roles: Vec::new(),
            header_size: 0,
            order: Order::Big,
            framing: Framing::Varint { max_body },
            spec: Spec::Varint { max_body },
            user_names: Arc::from(Vec::new()),
            msg_id_field: None,
            flags_field: None,
            has_expect: false,
            compression: None,
            cipher: None,
        }
    }

    /// Fields with their roles and `expect` constants; framing is filled in by the caller.
    fn assemble(
        mut fields: Vec<Field>,
        header_size: usize,
        order: Order,
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
            framing: Framing::Varint { max_body: 0 },
            spec: Spec::Varint { max_body: 0 },
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

    /// The bits of an integer field, zero-extended.
    #[inline(always)]
    fn read_bits(&self, bytes: &[u8]) -> u64 {
        let big = self.order == Order::Big;
        match *bytes {
            [a] => u64::from(a),
            [a, b] if big => u64::from(u16::from_be_bytes([a, b])),
            [a, b] => u64::from(u16::from_le_bytes([a, b])),
            [a, b, c, d] if big => u64::from(u32::from_be_bytes([a, b, c, d])),
            [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
            [a, b, c, d, e, f, g, h] if big => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
            [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
            _ => {
                // 3-byte lengths (Netty's "medium")
                let fold = |acc: u64, b: &u8| acc << 8 | u64::from(*b);
                if big {
                    bytes.iter().fold(0, fold)
                } else {
                    bytes.iter().rev().fold(0, fold)
                }
            }
        }
    }

    /// An integer field's value, sign-extended for signed codes.
    #[inline(always)]
    fn int_at(&self, field: &Field, frame: &[u8]) -> i128 {
        let bits = self.read_bits(&frame[field.offset..field.offset + field.code.size()]);
        match field.code {
            Code::Int(w) => {
                let shift = 64 - 8 * w as u32;
                i128::from(((bits << shift) as i64) >> shift)
            }
            _ => i128::from(bits),
        }
    }

    fn field_value(&self, field: &Field, frame: &[u8]) -> Value {
        match field.code {
            Code::Bytes(n) => Value::Bytes(frame[field.offset..field.offset + n].into()),
            Code::UInt(_) => Value::UInt(self.int_at(field, frame) as u64),
            Code::Int(_) => Value::Int(self.int_at(field, frame) as i64),
        }
    }

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
                let body = frame - self.header_size as u64;
                Error::FrameTooLarge {
                    message: format!("frame body of {body} bytes exceeds max_body ({max_body})"),
                    length: body,
                    limit: *max_body,
                }
            }
            _ => Error::FrameTooLarge {
                message: format!(
                    "Adjusted frame length exceeds {}: {frame} - discarded",
                    self.max_frame()
                ),
                length: frame,
                limit: self.max_frame(),
            },
        }
    }

    /// The header values of a whole frame that [`Format::check`] accepted.
    #[inline]
    pub fn header(&self, frame: &[u8]) -> Header {
        // msg_id and flags above i64::MAX keep their bits; no protocol here uses them.
        let int = |i: Option<usize>| i.map_or(0, |i| self.int_at(&self.fields[i], frame) as i64);
        Header {
            msg_id: int(self.msg_id_field),
            flags: int(self.flags_field),
            values: if self.user_names.is_empty() {
                Vec::new()
            } else {
                self.fields
                    .iter()
                    .zip(&self.roles)
                    .filter(|(_, r)| matches!(r, Role::User(_)))
                    .map(|(f, _)| self.field_value(f, frame))
                    .collect()
            },
        }
    }

    /// The header values and the plain body of a whole frame: decrypted, then decompressed
    /// (at most `max_body` bytes), with the pipeline's `flags` bits cleared.
    pub fn open<'a>(&self, frame: &'a [u8], body_start: usize) -> Result<(Header, Cow<'a, [u8]>)> {
        let mut header = self.header(frame);
        let mut body = Cow::Borrowed(&frame[body_start..]);
        let flagged = |bit| self.flags_field.is_none() || header.flags & bit != 0;
        if let Some(cipher) = &self.cipher {
            if !flagged(ENCRYPTED) {
                // Accepting plaintext on an encrypted format would let anyone inject packets.
                return Err(Error::Authentication(
                    "unencrypted packet on a format with a cipher (flags bit 1 is clear)".into(),
                ));
            }
            let mut plain = Vec::with_capacity(body.len());
            cipher.open(&frame[..body_start], &body, &mut plain)?;
            body = Cow::Owned(plain);
        }
        if let Some(compression) = &self.compression {
            if flagged(COMPRESSED) {
                let mut plain = Vec::new();
                compression.decompress(&body, self.max_body(), &mut plain)?;
                body = Cow::Owned(plain);
            }
        }
        header.flags &= !self.pipeline_bits();
        Ok((header, body))
    }

    /// Appends one frame carrying `body` to `out`. `values` gives user fields by
    /// `Role::User` index (`None`: the `expect` constant, else zero).
    pub fn pack_into(
        &self,
        out: &mut Vec<u8>,
        body: &[u8],
        msg_id: i64,
        flags: i64,
        values: &[Option<Value>],
    ) -> Result<()> {
        let start = out.len();
        let result = self.pack_frame(out, body, msg_id, flags, values);
        if result.is_err() {
            out.truncate(start); // no half frame left behind
        }
        result
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

    fn pack_frame(
        &self,
        out: &mut Vec<u8>,
        body: &[u8],
        msg_id: i64,
        flags: i64,
        values: &[Option<Value>],
    ) -> Result<()> {
        // A value with nowhere to go is an error, never silently dropped.
        if msg_id != 0 && self.msg_id_field.is_none() {
            return Err(self.no_such_field("msg_id"));
        }
        if flags != 0 && self.flags_field.is_none() {
            return Err(self.no_such_field("flags"));
        }
        let max = self.max_body();
        let too_large = |len: usize, what: &str| Error::FrameTooLarge {
            message: format!("{what} of {len} bytes exceeds the format's limit ({max})"),
            length: len as u64,
            limit: max,
        };
        if body.len() as u64 > max {
            return Err(too_large(body.len(), "body"));
        }
        let bits = self.pipeline_bits();
        if flags & bits != 0 {
            return Err(invalid(format!(
                "flags bits {bits:#b} are set by the format's compression and encryption"
            )));
        }
        let mut flags = flags;
        let payload = match &self.compression {
            Some(c) if self.flags_field.is_none() || body.len() >= c.min_size => {
                let mut packed = Vec::new();
                c.compress(body, &mut packed)?;
                flags |= bits & COMPRESSED;
                Cow::Owned(packed)
            }
            _ => Cow::Borrowed(body),
        };
        flags |= bits & ENCRYPTED;
        let wire_len = payload.len() + if self.cipher.is_some() { OVERHEAD } else { 0 };
        if wire_len as u64 > max {
            return Err(too_large(wire_len, "compressed and encrypted body"));
        }
        let start = out.len();
        self.write_header(out, wire_len, msg_id, flags, values)?;
        match &self.cipher {
            Some(cipher) => {
                // The packed header is the associated data: it cannot be altered either.
                let header = out[start..].to_vec();
                cipher.seal(&header, &payload, out)
            }
            None => {
                out.extend_from_slice(&payload);
                Ok(())
            }
        }
    }

    /// Appends the header of a frame whose body (what follows the header) is `body_len` bytes.
    fn write_header(
        &self,
        out: &mut Vec<u8>,
        body_len: usize,
        msg_id: i64,
        flags: i64,
        values: &[Option<Value>],
    ) -> Result<()> {
        match self.framing {
            Framing::Varint { .. } => {
                write_varint(out, body_len as u64);
                Ok(())
            }
            Framing::LengthField {
                field, adjustment, ..
            } => {
                let lf = &self.fields[field];
                let end = lf.offset + lf.code.size();
                // The LengthFieldPrepender convention: what follows the header is the body.
                let frame_len = (self.header_size + body_len) as i128;
                let length = frame_len - adjustment as i128 - end as i128;
                let start = out.len();
                out.resize(start + self.header_size, 0);
                for (f, role) in self.fields.iter().zip(&self.roles) {
                    // What the caller gave (msg_id and flags of 0 are the defaults: not given).
                    let given = match role {
                        Role::Length => {
                            let value = int_value(lf.code, length).ok_or_else(|| {
                                invalid(format!(
                                    "a {}-byte length field cannot hold {length}",
                                    lf.code.size()
                                ))
                            })?;
                            self.write(&mut out[start + lf.offset..start + end], &value);
                            continue;
                        }
                        Role::MsgId => (msg_id != 0).then_some(Value::Int(msg_id)),
                        Role::Flags => (flags != 0).then_some(Value::Int(flags)),
                        Role::User(u) => values.get(*u).cloned().flatten(),
                    };
                    let value = match (given, &f.expect) {
                        (Some(v), Some(fixed)) => {
                            let v = coerce(f, v)?;
                            if v != *fixed {
                                return Err(invalid(format!(
                                    "header field {} is fixed to {} by expect=, not {}",
                                    str_repr(&f.name),
                                    show(f.code, fixed),
                                    show(f.code, &v)
                                )));
                            }
                            v
                        }
                        (Some(v), None) => coerce(f, v)?,
                        (None, Some(fixed)) => fixed.clone(),
                        (None, None) => continue, // zero bytes
                    };
                    self.write(
                        &mut out[start + f.offset..start + f.offset + f.code.size()],
                        &value,
                    );
                }
                Ok(())
            }
        }
    }

    fn write(&self, dst: &mut [u8], value: &Value) {
        let raw = match value {
            Value::Bytes(b) => {
                dst.copy_from_slice(b);
                return;
            }
            Value::Int(v) => *v as u64,
            Value::UInt(v) => *v,
        };
        let n = dst.len();
        match self.order {
            Order::Big => dst.copy_from_slice(&raw.to_be_bytes()[8 - n..]),
            Order::Little => dst.copy_from_slice(&raw.to_le_bytes()[..n]),
        }
    }
}

/// The smallest and largest values of an integer code.
fn int_range(code: Code) -> (i128, i128) {
    match code {
        Code::UInt(w) => (0, (1i128 << (8 * w)) - 1),
        Code::Int(w) => (-(1i128 << (8 * w - 1)), (1i128 << (8 * w - 1)) - 1),
        Code::Bytes(_) => (0, -1),
    }
}

/// `value` as an integer of `code`'s width and signedness, if it fits.
fn int_value(code: Code, value: i128) -> Option<Value> {
    let (lo, hi) = int_range(code);
    if !(lo..=hi).contains(&value) {
        return None;
    }
    match code {
        Code::UInt(_) => Some(Value::UInt(value as u64)),
        Code::Int(_) => Some(Value::Int(value as i64)),
        Code::Bytes(_) => None,
    }
}

/// Converts a value given for `field` to the field's code, with `struct`-like range errors.
pub fn coerce(field: &Field, value: Value) -> Result<Value> {
    match (field.code, value) {
        (Code::Bytes(n), Value::Bytes(b)) if b.len() == n => Ok(Value::Bytes(b)),
        (Code::Bytes(n), Value::Bytes(b)) => Err(invalid(format!(
            "header field {} takes {n} bytes, got {}",
            str_repr(&field.name),
            b.len()
        ))),
        (Code::Bytes(_), _) => Err(invalid(format!(
            "header field {} takes bytes",
            str_repr(&field.name)
        ))),
        (code, Value::Bytes(_)) => Err(invalid(format!(
            "header field {} takes an integer ({} bytes)",
            str_repr(&field.name),
            code.size()
        ))),
        (code, Value::Int(v)) => range_checked(field, code, v as i128),
        (code, Value::UInt(v)) => range_checked(field, code, v as i128),
    }
}

fn range_checked(field: &Field, code: Code, v: i128) -> Result<Value> {
    int_value(code, v).ok_or_else(|| {
        let (lo, hi) = int_range(code);
        invalid(format!(
            "header field {} requires {lo} <= value <= {hi}, got {v}",
            str_repr(&field.name)
        ))
    })
}

/// A constant as a message shows it: bytes as Python writes them, integers in hex at the
/// field's width (constants are magic numbers, which specs write in hex).
fn show(code: Code, value: &Value) -> String {
    let width = 2 * code.size();
    match value {
        Value::Int(v) if *v < 0 => format!("-0x{:0width$x}", v.unsigned_abs()),
        Value::Int(v) => format!("0x{v:0width$x}"),
        Value::UInt(v) => format!("0x{v:0width$x}"),
        Value::Bytes(b) => bytes_repr(b),
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
                    error: Error::FrameTooLarge {
                        message: format!(
                            "varint body of {length} bytes exceeds max_body ({max_body})"
                        ),
                        length,
                        limit: max_body,
                    },
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

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
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

    fn frame_of(format: &Format, buf: &[u8]) -> (usize, usize) {
        match format.check(buf) {
            Check::Frame { len, body_start } => (len, body_start),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

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
        let f = Format::from_struct(
            "!2sI",
            &["magic", "length"],
            false,
            16,
            &[("magic", Value::Bytes((*b"\xca\xfe").into()))],
        )
        .unwrap();
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

    #[test]
    fn a_value_for_a_missing_field_is_refused() {
        let f = Format::from_struct("!I", &["length"], false, 16, &[]).unwrap();
        let err = f.pack_into(&mut Vec::new(), b"x", 5, 0, &[]).unwrap_err();
        assert!(matches!(err, Error::NoSuchField(_)), "{err:?}");
        assert!(matches!(
            f.pack_into(&mut Vec::new(), b"x", 0, 1, &[]),
            Err(Error::NoSuchField(_))
        ));
    }

    #[test]
    fn pack_checks_constants_and_leaves_nothing_behind_on_error() {
        let f = Format::from_struct(
            "!HI",
            &["magic", "length"],
            false,
            16,
            &[("magic", Value::UInt(0xcafe))],
        )
        .unwrap();
        let mut out = b"before".to_vec();
        let err = f
            .pack_into(&mut out, b"x", 0, 0, &[Some(Value::UInt(0xbeef))])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "header field 'magic' is fixed to 0xcafe by expect=, not 0xbeef"
        );
        assert_eq!(out, b"before");
        f.pack_into(&mut out, b"x", 0, 0, &[Some(Value::UInt(0xcafe))])
            .unwrap();
        assert_eq!(&out[6..], b"\xca\xfe\x00\x00\x00\x01x");
    }

    #[test]
    fn mismatch_messages_read_like_python() {
        let f = Format::from_struct(
            "!2sI",
            &["magic", "length"],
            false,
            16,
            &[("magic", Value::Bytes((*b"\xca\xfe").into()))],
        )
        .unwrap();
        let Check::Bad { error, .. } = f.check(b"\xde\xad\x00\x00\x00\x00") else {
            panic!("not bad")
        };
        assert_eq!(
            error.to_string(),
            r"header field 'magic' is b'\xde\xad', expected b'\xca\xfe'"
        );
        let g = Format::from_struct(
            "!HI",
            &["magic", "length"],
            false,
            16,
            &[("magic", Value::UInt(0xcafe))],
        )
        .unwrap();
        let Check::Bad { error, .. } = g.check(b"\xbe\xef\x00\x00\x00\x00") else {
            panic!("not bad")
        };
        assert_eq!(
            error.to_string(),
            "header field 'magic' is 0xbeef, expected 0xcafe"
        );
    }

    #[test]
    fn pack_checks_ranges_like_struct() {
        let f = Format::from_struct("!IB", &["length", "msg_id"], false, 1024, &[]).unwrap();
        let err = f.pack_into(&mut Vec::new(), b"", 256, 0, &[]).unwrap_err();
        assert!(err.to_string().contains("0 <= value <= 255"), "{err}");
    }

    fn piped(min_size: usize) -> Format {
        use crate::cipher::Algorithm as C;
        use crate::compress::Algorithm as Z;
        Format::from_struct("!IHB", &["length", "msg_id", "flags"], false, 1 << 20, &[])
            .unwrap()
            .with_pipeline(
                Some(Compression::new(Z::Zstd, None, min_size).unwrap()),
                Some(Arc::new(Cipher::new(C::Aes256Gcm, &[9; 32]).unwrap())),
            )
            .unwrap()
    }

    fn frame(f: &Format, body: &[u8], flags: i64) -> Vec<u8> {
        let mut out = Vec::new();
        f.pack_into(&mut out, body, 5, flags, &[]).unwrap();
        out
    }

    #[test]
    fn pipeline_round_trip_sets_and_clears_flag_bits() {
        let f = piped(64);
        let big = vec![b'a'; 1000];
        let wire = frame(&f, &big, 4);
        assert_eq!(wire[6] as i64, 4 | COMPRESSED | ENCRYPTED);
        assert!(wire.len() < 100);
        let (header, body) = f.open(&wire, 7).unwrap();
        assert_eq!((header.msg_id, header.flags, &body[..]), (5, 4, &big[..]));
        // A small body is not compressed, but still encrypted.
        let wire = frame(&f, b"hi", 0);
        assert_eq!(wire[6] as i64, ENCRYPTED);
        assert_eq!(&f.open(&wire, 7).unwrap().1[..], b"hi");
    }

    #[test]
    fn the_header_is_authenticated_too() {
        let f = piped(0);
        let mut wire = frame(&f, b"payload", 0);
        wire[5] ^= 1; // msg_id
        assert!(matches!(f.open(&wire, 7), Err(Error::Authentication(_))));
    }

    #[test]
    fn plaintext_is_refused_on_an_encrypted_format() {
        let f = piped(0);
        let plain =
            Format::from_struct("!IHB", &["length", "msg_id", "flags"], false, 1024, &[]).unwrap();
        let wire = frame(&plain, b"forged", 0);
        assert!(matches!(f.open(&wire, 7), Err(Error::Authentication(_))));
    }

    #[test]
    fn pipeline_bits_are_reserved() {
        let f = piped(0);
        assert!(f.pack_into(&mut Vec::new(), b"x", 0, 1, &[]).is_err());
    }

    #[test]
    fn pipeline_needs_the_whole_header_stripped() {
        let netty = Format::length_field(0, 2, 0, 0, 100, Order::Big, &[]).unwrap();
        let zstd = Compression::new(crate::compress::Algorithm::Zstd, None, 0).unwrap();
        assert!(netty.with_pipeline(Some(zstd), None).is_err());
    }
}
