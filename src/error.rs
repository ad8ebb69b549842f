//! The one error type of the core. Every core operation returns [`Error`]; the binding layer
//! (`src/py/errors.rs`) turns each variant into the Python exception a stdlib user expects.

use std::fmt;
use std::io;

/// Everything that can go wrong in the core, by kind rather than by origin.
#[derive(Debug)]
pub enum Error {
    /// An operating-system error; carries the errno when there is one.
    Io(io::Error),
    /// A socket timeout expired (the stdlib's `TimeoutError("timed out")`, which has no errno).
    Timeout,
    /// A file could not be read (Python's `OSError` subclass with `filename` set, such as
    /// `FileNotFoundError`).
    File { path: String, source: io::Error },
    /// `getaddrinfo` failed: the stdlib raises `socket.gaierror(code, message)`.
    Resolve { code: i32, message: String },
    /// A client group already holds its maximum number of clients.
    ServerFull { max: usize },
    /// An argument the caller passed is out of its domain (the stdlib's `ValueError`).
    InvalidArgument(String),
    /// A header value for a field the format does not have (Python's `TypeError`, as for an
    /// unexpected keyword argument).
    NoSuchField(String),
    /// The bytes on the wire break the packet format.
    Protocol(String),
    /// A frame (or a body) is longer than the format allows.
    FrameTooLarge {
        /// Which limit it broke, which also says how the message reads.
        what: Limit,
        /// The frame's (or body's) length, as announced or as far as it got.
        length: u64,
        /// The limit it broke.
        limit: u64,
    },
    /// The stream ended inside a frame.
    IncompleteFrame {
        /// The bytes of the unfinished frame.
        partial: Vec<u8>,
        /// The frame's full length, when its header had arrived.
        expected: Option<u64>,
    },
    /// The peer closed the connection between frames.
    ConnectionClosed,
    /// sockwire closed the connection after the peer sent a bad frame (what was wrong).
    ClosedAfterBadFrame(String),
    /// Another thread is already doing what only one may do at a time (Python's
    /// `RuntimeError`).
    Busy(String),
    /// A packet failed authentication (wrong key, or altered in transit).
    Authentication(String),
    /// TLS failed: Python's `ssl` errors. Boxed: a rare error need not make every `Result`
    /// of the hot paths larger.
    Tls(Box<TlsError>),
}

/// A TLS failure, with what Python's `ssl` exceptions carry.
#[derive(Debug)]
pub struct TlsError {
    pub failure: TlsFailure,
    /// OpenSSL's reason code (`ssl.SSLError.reason`), e.g. `"CERTIFICATE_VERIFY_FAILED"`;
    /// empty when there is none.
    pub reason: &'static str,
    /// What went wrong, in words.
    pub message: String,
    /// For a certificate that failed verification: why (`verify_message`).
    pub verify_message: Option<String>,
}

impl TlsError {
    pub fn new(failure: TlsFailure, reason: &'static str, message: impl Into<String>) -> Self {
        TlsError {
            failure,
            reason,
            message: message.into(),
            verify_message: None,
        }
    }

    /// A certificate that failed verification, and why.
    pub fn cert_verify(why: String) -> Self {
        TlsError {
            failure: TlsFailure::CertVerify,
            reason: "CERTIFICATE_VERIFY_FAILED",
            message: format!("certificate verify failed: {why}"),
            verify_message: Some(why),
        }
    }
}

impl fmt::Display for TlsError {
    /// As OpenSSL's messages read in Python: `[SSL: REASON] message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            "" => write!(f, "[SSL] {}", self.message),
            reason => write!(f, "[SSL: {reason}] {}", self.message),
        }
    }
}

/// The limit a frame or a body broke, named as the user gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A struct header's body, against `max_body`.
    MaxBody,
    /// Netty's adjusted frame, against `max_frame` (`maxFrameLength`).
    MaxFrame,
    /// A varint prefix's body, against `max_body`.
    VarintBody,
    /// A body given to `pack`, before compression.
    PackedBody,
    /// A body once compressed and encrypted.
    SealedBody,
    /// A body's decompressed size (the algorithm's name).
    Decompressed(&'static str),
}

/// Which `ssl` exception a TLS failure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// `ssl.SSLCertVerificationError`: the peer's certificate was not trusted.
    CertVerify,
    /// `ssl.SSLEOFError`: the peer closed in the middle of the protocol.
    Eof,
    /// `ssl.SSLError`: anything else (a plaintext peer, an alert, ...).
    Protocol,
}

/// Shorthand used across the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An OS error from a raw errno value.
    pub fn os(errno: i32) -> Self {
        Error::Io(io::Error::from_raw_os_error(errno))
    }

    /// The errno behind this error, if it is an OS error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// A frame or body over `limit`.
    pub fn too_large(what: Limit, length: u64, limit: u64) -> Self {
        Error::FrameTooLarge {
            what,
            length,
            limit,
        }
    }

    /// True for `EINTR`: the caller must run signal handlers, then retry.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Error::Io(e) if e.kind() == io::ErrorKind::Interrupted)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => match e.raw_os_error() {
                Some(code) => write!(f, "[Errno {code}] {}", strerror(code)),
                None => write!(f, "{e}"),
            },
            Error::Timeout => f.write_str("timed out"),
            Error::File { path, source } => match source.raw_os_error() {
                Some(code) => write!(f, "[Errno {code}] {}: {path:?}", strerror(code)),
                None => write!(f, "{source}: {path:?}"),
            },
            Error::Resolve { code, message } => write!(f, "[Errno {code}] {message}"),
            Error::ServerFull { max } => {
                write!(f, "server is full: it already holds {max} clients")
            }
            Error::InvalidArgument(msg)
            | Error::NoSuchField(msg)
            | Error::Protocol(msg)
            | Error::Authentication(msg) => f.write_str(msg),
            Error::FrameTooLarge {
                what,
                length,
                limit,
            } => match what {
                Limit::MaxBody => {
                    write!(f, "frame body of {length} bytes exceeds max_body ({limit})")
                }
                // Netty's own message.
                Limit::MaxFrame => {
                    write!(
                        f,
                        "Adjusted frame length exceeds {limit}: {length} - discarded"
                    )
                }
                Limit::VarintBody => {
                    write!(
                        f,
                        "varint body of {length} bytes exceeds max_body ({limit})"
                    )
                }
                Limit::PackedBody => {
                    write!(
                        f,
                        "body of {length} bytes exceeds the format's limit ({limit})"
                    )
                }
                Limit::SealedBody => write!(
                    f,
                    "compressed and encrypted body of {length} bytes exceeds the format's limit \
                     ({limit})"
                ),
                Limit::Decompressed(algorithm) => write!(
                    f,
                    "{algorithm} body decompresses past the limit of {limit} bytes"
                ),
            },
            Error::IncompleteFrame { partial, expected } => match expected {
                Some(n) => write!(
                    f,
                    "the stream ended inside a frame: {} of {n} bytes received",
                    partial.len()
                ),
                None => write!(
                    f,
                    "the stream ended inside a frame header: {} bytes received",
                    partial.len()
                ),
            },
            Error::ConnectionClosed => f.write_str("the peer closed the connection"),
            Error::ClosedAfterBadFrame(why) => write!(
                f,
                "the connection was closed after the peer sent a bad frame ({why})"
            ),
            Error::Busy(msg) => f.write_str(msg),
            Error::Tls(tls) => tls.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

/// The C library's message for an errno, exactly as CPython's `OSError.strerror` shows it.
pub fn strerror(code: i32) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: the XSI/GNU-agnostic `strerror_r` from the libc crate writes a NUL-terminated
    // message into `buf` (at most `buf.len()` bytes) and returns 0 on success.
    let rc = unsafe { libc::strerror_r(code, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return format!("Unknown error {code}");
    }
    // SAFETY: on success `buf` holds a NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_matches_libc_text() {
        assert_eq!(strerror(libc::ECONNREFUSED), "Connection refused");
        assert_eq!(strerror(libc::EBADF), "Bad file descriptor");
    }

    #[test]
    fn display_has_the_stdlib_shape() {
        assert_eq!(
            Error::os(libc::EBADF).to_string(),
            "[Errno 9] Bad file descriptor"
        );
        assert_eq!(Error::Timeout.to_string(), "timed out");
    }

    #[test]
    fn interrupted_is_recognised() {
        assert!(Error::os(libc::EINTR).is_interrupted());
        assert!(!Error::os(libc::EAGAIN).is_interrupted());
    }
}
