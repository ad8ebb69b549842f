//! Values written the way Python's `repr()` writes them, for messages a Python user reads.

use std::fmt::Write;

/// `repr(b)` of a `bytes` value: `b'\xca\xfe'`, `b"it's"`.
pub fn bytes_repr(b: &[u8]) -> String {
    // Python quotes with ' unless the bytes hold a ' and no ".
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(b.len() + 3);
    out.push('b');
    out.push(quote);
    for &c in b {
        match c {
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\\' => out.push_str("\\\\"),
            c if c == quote as u8 => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            _ => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(quote);
    out
}

/// `repr(s)` of a `str` made of printable characters (names, format strings): `'magic'`.
pub fn str_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_like_python() {
        assert_eq!(bytes_repr(b"\xca\xfe"), r"b'\xca\xfe'");
        assert_eq!(bytes_repr(b"it's"), r#"b"it's""#);
        assert_eq!(bytes_repr(b"'\""), r#"b'\'"'"#);
        assert_eq!(bytes_repr(b"a\tb\n\\\x7f"), r"b'a\tb\n\\\x7f'");
        assert_eq!(bytes_repr(b""), "b''");
    }

    #[test]
    fn names_like_python() {
        assert_eq!(str_repr("magic"), "'magic'");
        assert_eq!(str_repr("it's"), "\"it's\"");
    }
}
