//! Every release of the GIL goes through here: blocking calls, waits that signals interrupt,
//! and codec work on large bodies.
//!
//! Core calls that wait return `EINTR` when a signal interrupts them; the hook below runs
//! Python's signal handlers then (taking the GIL back for that moment) and the call goes on,
//! as CPython's own socket calls do (PEP 475). A handler that raises ends the call with its
//! exception.

use pyo3::prelude::*;

use crate::error::Result as CoreResult;
use crate::format::Format;
use crate::socket::retry;

/// The `on_signal` hook core calls take: runs Python's signal handlers from a thread that
/// released the GIL.
pub type OnSignal = fn() -> PyResult<()>;

fn run_signal_handlers() -> PyResult<()> {
    Python::attach(|py| py.check_signals())
}

/// Runs a blocking core call with the GIL released, retrying it after each signal whose
/// handlers did not raise (the call keeps its own progress and deadline).
pub fn blocking<T: Send>(py: Python<'_>, op: impl FnMut() -> CoreResult<T> + Send) -> PyResult<T> {
    py.detach(|| retry(op, &mut (run_signal_handlers as OnSignal)))
}

/// Runs a core flow that waits (connect, accept, a framed send or receive) with the GIL
/// released; the flow calls the hook it is given after each signal.
pub fn detached<T: Send>(
    py: Python<'_>,
    flow: impl FnOnce(&mut OnSignal) -> PyResult<T> + Send,
) -> PyResult<T> {
    py.detach(|| flow(&mut (run_signal_handlers as OnSignal)))
}

/// Runs a core call that does not wait for a peer (close, shutdown) with the GIL released.
pub fn released<T: Send>(py: Python<'_>, op: impl FnOnce() -> T + Send) -> T {
    py.detach(op)
}

// NOTE: measured here (release build, through PacketFormat.pack / unpack): taking the GIL back
// after releasing it costs ~80 ns; compressing with zlib, gzip or brotli costs 14-490 µs at
// any body size (zstd 5 µs and up); at 2 KiB, lz4 and AES-GCM take ~0.5 µs each way and zstd,
// zlib or brotli decompression 2.6-4.3 µs; a 64 KiB body 5-490 µs. As pyca/cryptography does
// (at 2 KiB), bodies of 2 KiB and more are compressed, encrypted and opened with the GIL
// released, and so is every zlib, gzip or brotli compression; below that the work is done
// before another thread could make use of the GIL.
/// Bodies this large or larger are compressed, encrypted and opened without the GIL.
pub const RELEASE_AT: usize = 2048;

/// Whether packing a body of `body_len` bytes in `format` is worth releasing the GIL for.
pub fn packing_releases(format: &Format, body_len: usize) -> bool {
    use crate::compress::Algorithm::{Brotli, Gzip, Zlib};
    match (&format.compression, &format.cipher) {
        (None, None) => false,
        (Some(c), _) if matches!(c.algorithm, Zlib | Gzip | Brotli) => true,
        _ => body_len >= RELEASE_AT,
    }
}

/// Whether opening (decrypting, decompressing) a frame of `frame_len` bytes in `format` is
/// worth releasing the GIL for.
pub fn opening_releases(format: &Format, frame_len: usize) -> bool {
    (format.compression.is_some() || format.cipher.is_some()) && frame_len >= RELEASE_AT
}

/// Runs codec work, without the GIL when `release` says it is worth it.
pub fn codec_work<T: Send>(py: Python<'_>, release: bool, work: impl FnOnce() -> T + Send) -> T {
    if release {
        py.detach(work)
    } else {
        work()
    }
}
