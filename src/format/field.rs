//! One header field: what it holds (its code and width), its value, and how both are read from
//! and written to the bytes of a frame in the format's byte order.

use crate::error::Result;
use crate::repr::{bytes_repr, str_repr};

use super::{invalid, Format};

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

    pub(super) fn is_int(self) -> bool {
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

impl Format {
    /// The bits of an integer field, zero-extended.
    #[inline(always)]
    pub(super) fn read_bits(&self, bytes: &[u8]) -> u64 {
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
    pub(super) fn int_at(&self, field: &Field, frame: &[u8]) -> i128 {
        let bits = self.read_bits(&frame[field.offset..field.offset + field.code.size()]);
        match field.code {
            Code::Int(w) => {
                let shift = 64 - 8 * w as u32;
                i128::from(((bits << shift) as i64) >> shift)
            }
            _ => i128::from(bits),
        }
    }

    pub(super) fn field_value(&self, field: &Field, frame: &[u8]) -> Value {
        match field.code {
            Code::Bytes(n) => Value::Bytes(frame[field.offset..field.offset + n].into()),
            Code::UInt(_) => Value::UInt(self.int_at(field, frame) as u64),
            Code::Int(_) => Value::Int(self.int_at(field, frame) as i64),
        }
    }

    pub(super) fn write(&self, dst: &mut [u8], value: &Value) {
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
pub(super) fn int_value(code: Code, value: i128) -> Option<Value> {
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
pub(super) fn show(code: Code, value: &Value) -> String {
    let width = 2 * code.size();
    match value {
        Value::Int(v) if *v < 0 => format!("-0x{:0width$x}", v.unsigned_abs()),
        Value::Int(v) => format!("0x{v:0width$x}"),
        Value::UInt(v) => format!("0x{v:0width$x}"),
        Value::Bytes(b) => bytes_repr(b),
    }
}
