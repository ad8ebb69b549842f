//! A frame's header values: read from a whole frame, and written for a new one (the length
//! computed from the body, constants filled in and checked, every value range-checked).

use crate::error::Result;
use crate::repr::str_repr;

use super::field::{coerce, int_value, show, Value};
use super::framing::{write_varint, Framing};
use super::{invalid, Format, Role};

/// Header values of one decoded frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub msg_id: i64,
    pub flags: i64,
    /// User fields, in `Format::user_names` order.
    pub values: Vec<Value>,
}

impl Format {
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

    /// Appends the header of a frame whose body (what follows the header) is `body_len` bytes.
    pub(super) fn write_header(
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
            Framing::LengthField { .. } => {
                let start = out.len();
                out.resize(start + self.header_size, 0);
                self.fill_header(&mut out[start..], body_len, msg_id, flags, values)
            }
        }
    }

    /// Writes a fixed-size header (`header_size` zeroed bytes, for a `LengthField` framing) for
    /// a body of `body_len` bytes.
    pub(super) fn fill_header(
        &self,
        header: &mut [u8],
        body_len: usize,
        msg_id: i64,
        flags: i64,
        values: &[Option<Value>],
    ) -> Result<()> {
        let Framing::LengthField {
            field, adjustment, ..
        } = self.framing
        else {
            unreachable!("only a length field framing has a fixed-size header");
        };
        let lf = &self.fields[field];
        let end = lf.offset + lf.code.size();
        // The LengthFieldPrepender convention: what follows the header is the body.
        let frame_len = (self.header_size + body_len) as i128;
        let length = frame_len - adjustment as i128 - end as i128;
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
                    self.write(&mut header[lf.offset..end], &value);
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
            self.write(&mut header[f.offset..f.offset + f.code.size()], &value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

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
        let f = crate::format::testing::int_magic(16);
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
    fn pack_checks_ranges_like_struct() {
        let f = Format::from_struct("!IB", &["length", "msg_id"], false, 1024, &[]).unwrap();
        let err = f.pack_into(&mut Vec::new(), b"", 256, 0, &[]).unwrap_err();
        assert!(err.to_string().contains("0 <= value <= 255"), "{err}");
    }
}
