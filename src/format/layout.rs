//! `struct` format strings: byte order, alignment, codes and repeat counts, read into header
//! fields with their offsets, as `struct.calcsize` lays them out.

use crate::error::{Error, Result};
use crate::repr::str_repr;

use super::field::{Code, Field, Order};
use super::{invalid, names_repr, MAX_HEADER};

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

pub(super) fn native_order() -> Order {
    if cfg!(target_endian = "big") {
        Order::Big
    } else {
        Order::Little
    }
}

/// The fields a `struct` header string lays out for `names` (one per non-padding item), its
/// size in bytes and its byte order.
pub(super) fn struct_layout(header: &str, names: &[&str]) -> Result<(Vec<Field>, usize, Order)> {
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
    let fields = names
        .iter()
        .zip(codes)
        .map(|(name, (code, offset))| Field {
            name: (*name).into(),
            code,
            offset,
            expect: None,
        })
        .collect();
    Ok((fields, offset, order))
}
