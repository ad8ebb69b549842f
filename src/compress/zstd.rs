//! zstd: per-thread reused contexts, and decoding one-shot when a frame states a size its
//! input can produce, streaming within the limit otherwise.

use std::cell::RefCell;

use super::{corrupt, read_limited, too_large, Algorithm};
use crate::error::{Error, Result};

/// Appends `input`, compressed at `level` with the thread's context, to `out`.
pub(super) fn zstd_compress(input: &[u8], level: i32, out: &mut Vec<u8>) -> Result<()> {
    ZSTD.with_borrow_mut(|z| {
        // The frame records the content size (zstd's default), which lets the
        // receiver check the limit before decoding.
        // NOTE: `bulk::Compressor::compress` allocated a Vec of `compress_bound` bytes and the
        // result was copied from it; compressing into `out`'s spare capacity saves the
        // allocation and the copy, for no measurable gain at 512 bytes (3.52 / 3.53 µs, 2nd
        // best of 15 interleaved rounds: the C library's work is all of it).
        out.reserve(zstd::zstd_safe::compress_bound(input.len()));
        let start = out.len();
        let mut tail = std::io::Cursor::new(&mut *out);
        tail.set_position(start as u64);
        z.compressor(level)?
            .compress_to_buffer(input, &mut tail)
            .map_err(Error::Io)?;
        Ok(())
    })
}

/// The most output a zstd body of `len` bytes can decode to. A block holds at most 128 KiB of
/// output and, to hold any, takes at least 4 bytes (a 3-byte header and the byte an RLE block
/// repeats); frame headers, empty raw blocks and skippable frames only add input.
const ZSTD_MAX_EXPANSION: u64 = 128 * 1024 / 4;

/// After a streaming decode that produced more than this, the thread's zstd context is dropped.
/// The streaming decoder keeps a window buffer sized from the frame header (up to 128 MiB);
/// only the pages the decode wrote are resident, so a context is kept after a small decode
/// (cheap: see the NOTE below) and dropped after a large one, which frees what it touched.
const ZSTD_KEEP_CONTEXT_UP_TO: usize = 1024 * 1024;

// NOTE: measured one-shot (into a buffer reserved at the announced size) against streaming for
// honest bodies with a content size: 64 KiB of JSON (ratio 21) 21 / 25 µs, 256 KiB (ratio 28)
// 80 / 93 µs, 1 MiB (ratio 39) 393 / 416 µs, 1 MiB of repeated JSON (ratio 6204) 167 / 308 µs,
// 1 MiB of zeros (ratio 20971) 74 / 260 µs: one-shot is never slower, whatever the ratio. And
// the reservation costs a lying body next to nothing, as it is never touched: 17-byte bodies
// announcing 1 KB, 64 KiB and 500 KB cost 0.65, 0.75 and 0.75 µs. So every announced size that
// passes the check against ZSTD_MAX_EXPANSION takes the one-shot path first.
// NOTE: the streaming path used a fresh context per body: 19-28 µs for a 13-byte body declaring
// a 128 KiB to 128 MiB window (a 512-byte body without a content size: 18.8 µs); with the
// thread's context 0.30-0.74 µs (1.9 µs).

pub(super) fn zstd_decompress(input: &[u8], limit: u64, out: &mut Vec<u8>) -> Result<()> {
    let algorithm = Algorithm::Zstd;
    let len = input.len() as u64;
    let size = zstd::zstd_safe::get_frame_content_size(input)
        .ok()
        .flatten();
    if let Some(n) = size {
        if n > limit {
            return Err(too_large(algorithm, n, limit));
        }
        // NOTE: a 17-byte body announcing 8 MiB cost 18.2 µs before this check (reserving
        // 8 MiB, then a fresh streaming context), ~90 times an honest 33-byte body (0.21 µs);
        // 0.48 µs after. One announcing 300 KB, which passes it: 18.2 µs before, 0.73 after.
        if n > len.saturating_mul(ZSTD_MAX_EXPANSION) {
            return Err(corrupt(
                algorithm,
                format!("{len} bytes cannot decode to the {n} bytes they announce"),
            ));
        }
    }
    ZSTD.with_borrow_mut(|z| {
        let dctx = z.decompressor()?;
        let start = out.len();
        // One call straight into `out`, after what it holds, when the frame states its size
        // (on failure the length of `out` is unchanged). A frame without a size, several
        // frames, a size that lies, or a reservation the allocator refuses, take the streaming
        // path, whose output grows with what decodes and stops at the limit.
        if let Some(n) = size.and_then(|n| usize::try_from(n).ok()) {
            if out.try_reserve_exact(n).is_ok() {
                let mut tail = std::io::Cursor::new(&mut *out);
                tail.set_position(start as u64);
                if dctx.decompress(&mut tail, input).is_ok() {
                    return Ok(());
                }
            }
        }
        let mut dec = zstd::stream::read::Decoder::with_context(input, dctx);
        let result = read_limited(algorithm, &mut dec, limit, out);
        drop(dec);
        if out.len() - start > ZSTD_KEEP_CONTEXT_UP_TO {
            z.decompressor = None;
        }
        result
    })
}

/// zstd contexts, one set per thread: creating them costs more than compressing a packet.
#[derive(Default)]
struct ZstdContexts {
    compressor: Option<(i32, zstd::bulk::Compressor<'static>)>,
    decompressor: Option<zstd::zstd_safe::DCtx<'static>>,
}

impl ZstdContexts {
    fn compressor(&mut self, level: i32) -> std::io::Result<&mut zstd::bulk::Compressor<'static>> {
        if self.compressor.as_ref().is_none_or(|(l, _)| *l != level) {
            self.compressor = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        Ok(&mut self.compressor.as_mut().expect("set above").1)
    }

    /// The decompression context, for one-shot and streaming decoding alike.
    fn decompressor(&mut self) -> Result<&mut zstd::zstd_safe::DCtx<'static>> {
        if self.decompressor.is_none() {
            self.decompressor = Some(zstd::zstd_safe::DCtx::try_create().ok_or_else(|| {
                Error::Io(std::io::Error::other(
                    "cannot allocate a zstd decompression context",
                ))
            })?);
        }
        Ok(self.decompressor.as_mut().expect("set above"))
    }
}

thread_local! {
    static ZSTD: RefCell<ZstdContexts> = RefCell::new(ZstdContexts::default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::test_support::{decode_counting, MIB};

    /// A zstd frame without a content size, with a window of 2^`log` bytes, holding one byte.
    fn zstd_with_window(log: u8) -> Vec<u8> {
        vec![
            0x28,
            0xb5,
            0x2f,
            0xfd,
            0x00,
            (log - 10) << 3,
            0x09,
            0,
            0,
            b'a',
        ]
    }

    #[test]
    fn zstd_windows_larger_than_the_data_still_decode() {
        // A 128 MiB window for one byte is legal (a streaming encoder does not know the size).
        let (result, allocated, _) =
            decode_counting(Algorithm::Zstd, &zstd_with_window(27), 8 * MIB);
        assert_eq!(result.unwrap(), b"a");
        assert!(allocated < 64 * 1024, "allocated {allocated} bytes");
    }
}
