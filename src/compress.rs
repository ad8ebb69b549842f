//! Per-packet compression in each algorithm's standard format, readable by the reference
//! Python packages: zlib and gzip streams (stdlib `zlib`, `gzip`), the LZ4 *frame* format
//! (`lz4.frame`), zstd frames (`zstandard`), raw snappy (`cramjam.snappy.*_raw`) and brotli.
//!
//! Decompression never produces more than a caller-given limit: the stream decoders are read
//! through `Read::take(limit + 1)` and LZ4 frames block by block, so a bomb stops at the limit
//! (plus one byte that proves it) without allocating past it. And what a body costs follows its
//! own length and the output it really produces, never a size it announces: a length that
//! snappy, zstd or an LZ4 frame announces is checked against the limit and against the most its
//! input can decode to before anything is allocated, each LZ4 block gets room for what it can
//! hold rather than the frame's block size, and brotli's large buffers (sized from the lengths
//! its metablocks announce) are zero pages that cost nothing until written.
//!
//! Crates, measured on a 512-byte JSON body (compress / decompress, release build):
//! NOTE: flate2 with the zlib-rs backend, 10.2 / 2.7 µs, against 17.0 / 3.1 µs for the
//! miniz_oxide backend, for the same output size (153 vs 155 bytes).
//! NOTE: lz4_flex (pure Rust, maintained), 0.85 / 0.84 µs for the LZ4 frame format.
//! NOTE: zstd (the C library) with per-thread reused contexts, 3.6 / 1.6 µs; a fresh context per
//! call costs 11.7 / 9.4 µs, and the pure-Rust ruzstd decodes in 3.9 µs (and cannot encode).
//! NOTE: snap, 0.45 / 0.29 µs for raw snappy.
//! NOTE: brotli (the maintained Rust port), 28 / 2.6 µs at quality 5.

use std::cell::RefCell;
use std::io::{Read, Write};

use crate::error::{Error, Limit, Result};

/// A compression algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Zlib,
    Gzip,
    Lz4,
    Zstd,
    Snappy,
    Brotli,
}

impl Algorithm {
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "zlib" => Algorithm::Zlib,
            "gzip" => Algorithm::Gzip,
            "lz4" => Algorithm::Lz4,
            "zstd" => Algorithm::Zstd,
            "snappy" => Algorithm::Snappy,
            "brotli" => Algorithm::Brotli,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown compression {name:?}: use zlib, gzip, lz4, zstd, snappy or brotli"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Zlib => "zlib",
            Algorithm::Gzip => "gzip",
            Algorithm::Lz4 => "lz4",
            Algorithm::Zstd => "zstd",
            Algorithm::Snappy => "snappy",
            Algorithm::Brotli => "brotli",
        }
    }

    /// The level used when none is given, and the levels accepted.
    fn levels(self) -> Option<(i32, std::ops::RangeInclusive<i32>)> {
        match self {
            // zlib's own default (Python's Z_DEFAULT_COMPRESSION).
            Algorithm::Zlib | Algorithm::Gzip => Some((6, 0..=9)),
            // zstd's default; negative levels are its fast modes.
            Algorithm::Zstd => Some((3, -7..=22)),
            // NOTE: on a 512-byte JSON body, quality 11 (the brotli package's default) took
            // 783 µs to compress and quality 5 took 28 µs, both to 119 bytes: per-packet use
            // wants 5.
            Algorithm::Brotli => Some((5, 0..=11)),
            // The LZ4 frame format and raw snappy have no levels.
            Algorithm::Lz4 | Algorithm::Snappy => None,
        }
    }
}

/// A configured compressor: an algorithm, a level, and the smallest body worth compressing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compression {
    pub algorithm: Algorithm,
    /// The level in use (`None` for algorithms without levels).
    pub level: Option<i32>,
    /// Bodies shorter than this are sent uncompressed (needs a `flags` field to mark them).
    pub min_size: usize,
}

fn corrupt(algorithm: Algorithm, err: impl std::fmt::Display) -> Error {
    Error::Protocol(format!("corrupt {} body: {err}", algorithm.name()))
}

impl Compression {
    pub fn new(algorithm: Algorithm, level: Option<i32>, min_size: usize) -> Result<Self> {
        let level = match (algorithm.levels(), level) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(Error::InvalidArgument(format!(
                    "{} has no compression levels",
                    algorithm.name()
                )))
            }
            (Some((default, _)), None) => Some(default),
            (Some((_, range)), Some(level)) if range.contains(&level) => Some(level),
            (Some((_, range)), Some(level)) => {
                return Err(Error::InvalidArgument(format!(
                    "{} level must be {} <= level <= {}, not {level}",
                    algorithm.name(),
                    range.start(),
                    range.end()
                )))
            }
        };
        Ok(Compression {
            algorithm,
            level,
            min_size,
        })
    }

    /// Appends the compressed form of `input` to `out`.
    pub fn compress(&self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let level = self.level.unwrap_or(0);
        let io = |e: std::io::Error| Error::Io(e);
        match self.algorithm {
            Algorithm::Zlib => {
                let mut enc =
                    flate2::write::ZlibEncoder::new(out, flate2::Compression::new(level as u32));
                enc.write_all(input).map_err(io)?;
                enc.finish().map_err(io)?;
            }
            Algorithm::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(out, flate2::Compression::new(level as u32));
                enc.write_all(input).map_err(io)?;
                enc.finish().map_err(io)?;
            }
            Algorithm::Lz4 if input.len() <= LZ4_BLOCK => lz4_single_block(input, out),
            Algorithm::Lz4 => {
                let mut enc = lz4_flex::frame::FrameEncoder::new(out);
                enc.write_all(input).map_err(io)?;
                enc.finish().map_err(|e| corrupt(self.algorithm, e))?;
            }
            Algorithm::Zstd => ZSTD.with_borrow_mut(|z| {
                // The frame records the content size (zstd's default), which lets the
                // receiver check the limit before decoding.
                let compressed = z.compressor(level)?.compress(input).map_err(io)?;
                out.extend_from_slice(&compressed);
                Ok::<_, Error>(())
            })?,
            Algorithm::Snappy => {
                let start = out.len();
                out.resize(start + snap::raw::max_compress_len(input.len()), 0);
                let n = snap::raw::Encoder::new()
                    .compress(input, &mut out[start..])
                    .map_err(|e| corrupt(self.algorithm, e))?;
                out.truncate(start + n);
            }
            Algorithm::Brotli => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: level,
                    ..Default::default()
                };
                brotli::BrotliCompress(&mut &input[..], out, &params).map_err(io)?;
            }
        }
        Ok(())
    }

    /// Appends the decompressed form of `input` to `out`; more than `limit` bytes of output is
    /// `FrameTooLarge`, found without producing more than `limit + 1` bytes. On an error `out`
    /// is left as it was.
    ///
    /// What a body costs is bounded by its own length and by the output it really produces
    /// (itself bounded by `limit`), never by a size it announces: an announced size the input
    /// cannot produce is refused before anything is allocated, and output grows with what
    /// actually decompresses.
    pub fn decompress(&self, input: &[u8], limit: u64, out: &mut Vec<u8>) -> Result<()> {
        let algorithm = self.algorithm;
        let start = out.len();
        let result = match algorithm {
            Algorithm::Zlib => read_limited(
                algorithm,
                &mut flate2::read::ZlibDecoder::new(input),
                limit,
                out,
            ),
            // Several gzip members decode as one stream, as Python's gzip.decompress does.
            Algorithm::Gzip => read_limited(
                algorithm,
                &mut flate2::read::MultiGzDecoder::new(input),
                limit,
                out,
            ),
            Algorithm::Lz4 => lz4_read_frame(input, limit, out),
            Algorithm::Zstd => zstd_decompress(input, limit, out),
            Algorithm::Brotli => read_limited(algorithm, &mut brotli_decoder(input), limit, out),
            Algorithm::Snappy => snappy_decompress(input, limit, out),
        };
        let produced = (out.len() - start) as u64;
        if result.is_err() || produced > limit {
            out.truncate(start);
        }
        result?;
        if produced > limit {
            return Err(too_large(algorithm, produced, limit));
        }
        Ok(())
    }
}

/// Reads a decoder to its end through `Read::take(limit + 1)`: the output grows with what the
/// decoder produces, and stops one byte past the limit, which proves the body too large.
fn read_limited(
    algorithm: Algorithm,
    reader: &mut dyn Read,
    limit: u64,
    out: &mut Vec<u8>,
) -> Result<()> {
    reader
        .take(limit.saturating_add(1))
        .read_to_end(out)
        .map_err(|e| corrupt(algorithm, e))?;
    Ok(())
}

/// The most output raw snappy can decode from `len` bytes. Its elements are a literal (a tag,
/// 0-4 length bytes, then the bytes themselves: at most one byte out per byte in), a copy with a
/// 1-byte offset (2 bytes, at most 11 out), with a 2-byte offset (3 bytes, at most 64 out) and
/// with a 4-byte offset (5 bytes, at most 64 out): at most 64 bytes out for every 3 in. Counting
/// the length prefix (1-5 bytes) as element bytes overstates the bound by at most 106 bytes.
fn snappy_max_output(len: usize) -> u64 {
    len as u64 * 64 / 3
}

fn snappy_decompress(input: &[u8], limit: u64, out: &mut Vec<u8>) -> Result<()> {
    let algorithm = Algorithm::Snappy;
    let n = snap::raw::decompress_len(input).map_err(|e| corrupt(algorithm, e))?;
    if n as u64 > limit {
        return Err(too_large(algorithm, n as u64, limit));
    }
    // The decoder writes into initialised memory, so the announced length is zero-filled first:
    // only once it is a length the input can produce.
    // NOTE: a 14-byte body announcing 8 MiB cost 296 µs (zero-filling 8 MiB) before this check,
    // ~1900 times an honest 33-byte body (0.16 µs); 0.48 µs after (raising ProtocolError).
    if n as u64 > snappy_max_output(input.len()) {
        return Err(corrupt(
            algorithm,
            format!(
                "{} bytes cannot decode to the {n} bytes they announce",
                input.len()
            ),
        ));
    }
    let start = out.len();
    out.try_reserve_exact(n)
        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
    out.resize(start + n, 0);
    let written = snap::raw::Decoder::new()
        .decompress(input, &mut out[start..])
        .map_err(|e| corrupt(algorithm, e))?;
    out.truncate(start + written);
    Ok(())
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

fn zstd_decompress(input: &[u8], limit: u64, out: &mut Vec<u8>) -> Result<()> {
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

/// The LZ4 frame magic number, little-endian.
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
/// Bodies up to one 64 KiB block are written as a frame of one block.
const LZ4_BLOCK: usize = 64 * 1024;

// NOTE: lz4_flex's FrameEncoder/FrameDecoder allocate their 64 KiB block buffers for every
// frame: packing and unpacking a 512-byte body cost 1.00 + 1.26 µs through them. A frame of one
// block, written here with lz4_flex's block functions, is the same standard format (lz4.frame
// reads and writes it) for a fraction of that. Every frame is read here, block by block, with
// lz4_flex's block decoder: FrameDecoder also zero-fills a whole block-size buffer (up to 4 MiB,
// whatever the block holds) before decoding a block, and a buffer of a block's announced length
// before reading it. A 29-byte frame of 4 MiB blocks holding 100 bytes cost 145 µs through it,
// 0.26 µs here; a 17-byte frame announcing a 4 MiB block cost 145 µs, 0.45 µs here (refused).
// And the single-block reader this replaces zero-filled the announced content size: a 37-byte
// frame announcing 8 MiB cost 297 µs, 0.56 µs here (refused). Honest bodies cost the same
// (33 bytes: 0.15 µs, 512 bytes: 0.21 / 0.20 µs) or less: 4 MiB of zeros in 64 KiB blocks
// 5217 / 573 µs, a 512-byte body that lz4.frame wrote without a content size 1.95 / 0.34 µs.

thread_local! {
    /// The LZ4 hash table, reused: allocating it was most of compressing a small body.
    static LZ4_TABLE: RefCell<lz4_flex::block::CompressTable> =
        RefCell::new(lz4_flex::block::CompressTable::default());
}

/// Writes `input` as an LZ4 frame of one block, with the content size in the header.
fn lz4_single_block(input: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&LZ4_MAGIC);
    let descriptor_start = out.len();
    // FLG: version 01, independent blocks, content size present. BD: 64 KiB blocks.
    out.extend_from_slice(&[0x68, 0x40]);
    out.extend_from_slice(&(input.len() as u64).to_le_bytes());
    let checksum = (twox_hash::XxHash32::oneshot(0, &out[descriptor_start..]) >> 8) as u8;
    out.push(checksum);
    let size_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let data_at = out.len();
    out.resize(
        data_at + lz4_flex::block::get_maximum_output_size(input.len()),
        0,
    );
    let compressed = LZ4_TABLE.with_borrow_mut(|table| {
        lz4_flex::block::compress_into_with_table(input, &mut out[data_at..], table)
    });
    let size = match compressed {
        Ok(n) if n < input.len() => n as u32,
        // Incompressible: the block is stored as is, flagged by the high bit of its size.
        _ => {
            out.truncate(data_at);
            out.extend_from_slice(input);
            input.len() as u32 | 0x8000_0000
        }
    };
    out.truncate(data_at + (size & 0x7fff_ffff) as usize);
    out[size_at..data_at].copy_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // end mark
}

/// The most output an LZ4 block of `len` bytes can decode to. A block is a run of sequences:
/// a token, extra literal-length bytes, the literals, a 2-byte offset and extra match-length
/// bytes, the last sequence ending after its literals. Literals give one byte out per byte in;
/// a match gives at most 4 + 15 + 255 per extra length byte, so a sequence of `s` bytes with a
/// match gives at most 255 * s - 746 bytes (s >= 3), and one without at most s.
const LZ4_MAX_EXPANSION: u64 = 255;
/// How far back a match may reach: the history a linked block decodes against.
const LZ4_WINDOW: usize = 64 * 1024;

/// The maximum block size a frame's BD byte states.
fn lz4_block_max(bd: u8) -> Option<usize> {
    Some(match (bd >> 4) & 0x7 {
        4 => 64 * 1024,
        5 => 256 * 1024,
        6 => 1024 * 1024,
        7 => 4 * 1024 * 1024,
        _ => return None,
    })
}

/// Reads the first LZ4 frame of `input`; what follows it is ignored, as `lz4.frame.decompress`
/// ignores it. Each block's output is allocated (zero-filled, as lz4_flex's safe decoder wants
/// initialised memory) at the least of what the block itself can decode to, the frame's block
/// size, what the announced content size leaves, and one byte past the limit, then trimmed to
/// what it did decode: the allocation follows the input, never an announced size.
fn lz4_read_frame(input: &[u8], limit: u64, out: &mut Vec<u8>) -> Result<()> {
    let algorithm = Algorithm::Lz4;
    let bad = |what: &str| corrupt(algorithm, what);
    // The bytes at `pos..pos + n`, and `pos` moved past them; `None` past the input.
    let mut pos: usize = 0;
    let mut take = |n: usize| -> Option<&[u8]> {
        let bytes = input.get(pos..pos.checked_add(n)?)?;
        pos += n;
        Some(bytes)
    };
    let truncated = |what: &str| bad(&format!("truncated {what}"));
    let u32_at = |bytes: &[u8]| u32::from_le_bytes(bytes.try_into().expect("4 bytes"));

    // Magic, FLG, BD, the content size if FLG says so (a dictionary ID is refused below), and
    // the header checksum.
    // NOTE: taken piecemeal, with the descriptor hashed at a runtime length, the header cost a
    // 32-byte body 46 ns against 24 ns for the single-block reader this replaces (a Rust loop);
    // read in two fixed shapes, 33 ns.
    let short = take(7).ok_or_else(|| truncated("frame header"))?;
    if short[..4] != LZ4_MAGIC {
        return Err(bad("not an LZ4 frame (wrong magic number)"));
    }
    let (flg, bd) = (short[4], short[5]);
    if flg >> 6 != 0b01 {
        return Err(bad("unsupported frame version"));
    }
    if flg & 0x02 != 0 || bd & 0x8f != 0 {
        return Err(bad("reserved bits set in the frame header"));
    }
    if flg & 0x01 != 0 {
        return Err(bad("frames with a dictionary ID are not supported"));
    }
    let block_max = lz4_block_max(bd).ok_or_else(|| bad("unsupported maximum block size"))?;
    let (content_size, descriptor, header_checksum) = if flg & 0x08 != 0 {
        take(8).ok_or_else(|| truncated("frame header"))?;
        let header = &input[..15];
        let size = u64::from_le_bytes(header[6..14].try_into().expect("8 bytes"));
        (Some(size), &header[4..14], header[14])
    } else {
        (None, &short[4..6], short[6])
    };
    if (twox_hash::XxHash32::oneshot(0, descriptor) >> 8) as u8 != header_checksum {
        return Err(bad("header checksum mismatch"));
    }
    if let Some(n) = content_size.filter(|n| *n > limit) {
        return Err(too_large(algorithm, n, limit));
    }
    let linked = flg & 0x20 == 0;
    let block_checksums = flg & 0x10 != 0;
    let content_checksum = flg & 0x04 != 0;

    let start = out.len();
    loop {
        let word = u32_at(take(4).ok_or_else(|| truncated("frame (no end mark)"))?);
        if word == 0 {
            break;
        }
        let len = (word & 0x7fff_ffff) as usize;
        if len > block_max {
            return Err(bad("block larger than the frame's maximum block size"));
        }
        let block = take(len).ok_or_else(|| truncated("block"))?;
        if block_checksums
            && twox_hash::XxHash32::oneshot(0, block)
                != u32_at(take(4).ok_or_else(|| truncated("block"))?)
        {
            return Err(bad("block checksum mismatch"));
        }
        // Invariants: produced <= limit (checked after every block) and, with a content size,
        // produced <= content size.
        let produced = (out.len() - start) as u64;
        let past_limit = (limit - produced).saturating_add(1);
        let content_left = content_size.map_or(u64::MAX, |n| n - produced);
        if word & 0x8000_0000 != 0 {
            // A stored block: its bytes are the output.
            if len as u64 > content_left {
                return Err(bad("blocks exceed the announced content size"));
            }
            if len as u64 >= past_limit {
                return Err(too_large(algorithm, produced + len as u64, limit));
            }
            out.extend_from_slice(block);
            continue;
        }
        let room = (block_max as u64)
            .min(LZ4_MAX_EXPANSION * len as u64)
            .min(content_left)
            .min(past_limit) as usize;
        let at = out.len();
        out.resize(at + room, 0);
        let (history, dst) = out.split_at_mut(at);
        let decoded = if linked && at > start {
            let window = &history[start.max(at.saturating_sub(LZ4_WINDOW))..];
            lz4_flex::block::decompress_into_with_dict(block, dst, window)
        } else {
            lz4_flex::block::decompress_into(block, dst)
        };
        match decoded {
            Ok(n) => out.truncate(at + n),
            // Only the limit bounded the room: the block decodes past it.
            Err(lz4_flex::block::DecompressError::OutputTooSmall { .. })
                if room as u64 == past_limit =>
            {
                return Err(too_large(algorithm, limit.saturating_add(1), limit));
            }
            Err(lz4_flex::block::DecompressError::OutputTooSmall { .. })
                if room as u64 == content_left =>
            {
                return Err(bad("blocks exceed the announced content size"));
            }
            Err(e) => return Err(bad(&e.to_string())),
        }
        if (out.len() - start) as u64 > limit {
            return Err(too_large(algorithm, (out.len() - start) as u64, limit));
        }
    }
    let produced = (out.len() - start) as u64;
    if content_size.is_some_and(|n| n != produced) {
        return Err(bad("blocks do not match the announced content size"));
    }
    if content_checksum {
        let want = u32_at(take(4).ok_or_else(|| truncated("frame (no content checksum)"))?);
        if twox_hash::XxHash32::oneshot(0, &out[start..]) != want {
            return Err(bad("content checksum mismatch"));
        }
    }
    Ok(())
}

/// A brotli decoder reading `input`, whose memory comes from [`BrotliAlloc`].
fn brotli_decoder(input: &[u8]) -> impl Read + '_ {
    let buffer = BrotliBlock::Heap(vec![0u8; 4096].into_boxed_slice());
    let alloc = BrotliAlloc {
        heap_max: BROTLI_MAP_MIN.max(input.len().saturating_mul(BROTLI_HEAP_EXPANSION)),
    };
    brotli::reader::DecompressorCustomAlloc::new(input, buffer, alloc, alloc, alloc)
}

// NOTE: brotli sizes its ring buffer from the length a metablock announces (up to 16 MiB, the
// largest window), before any of it decodes, and its standard allocator zero-fills what it
// allocates: a 16-byte body announcing a 16 MiB metablock cost 615 µs, ~340 times an honest
// 33-byte body (1.8 µs). Fresh anonymous mappings are zero pages the kernel fills when first
// touched, so what such a body costs follows what it really writes: 8.2 µs (mapping, a few
// page faults, unmapping).
// NOTE: a page fault costs more than zero-filling the page (~1.8 µs a page here), so a body
// that really fills a mapped ring buffer pays for it: 1 MiB of zeros (a 17-byte body) decoded
// in 211 µs from the heap and in 580 µs mapped, 4 MiB in 1207 and 2356 µs. Allocations the
// input can account for stay on the heap, up to BROTLI_HEAP_EXPANSION times its length: that
// covers ordinary data (1 MiB of text, compressed 2.7 times: 2423 µs before, 2493 after; every
// ring buffer was mapped, 2820 µs), while a lying body zero-fills at most that many bytes per
// byte it sent.

/// Allocations smaller than this, or than `BROTLI_HEAP_EXPANSION` times the input, come from
/// the heap; larger ones are anonymous mappings.
const BROTLI_MAP_MIN: usize = 256 * 1024;
const BROTLI_HEAP_EXPANSION: usize = 64;

/// The element types brotli's decoder allocates.
///
/// # Safety
///
/// An implementor must be a plain value type for which all-zero bytes are a valid value equal
/// to its `Default`, so that fresh zero pages can stand for a zero-filled allocation.
unsafe trait ZeroIsDefault: Copy + Default {}
// SAFETY: all-zero bytes are 0.
unsafe impl ZeroIsDefault for u8 {}
// SAFETY: all-zero bytes are 0.
unsafe impl ZeroIsDefault for u32 {}
// SAFETY: HuffmanCode is a repr(C) pair of integers, whose Default is both zero.
unsafe impl ZeroIsDefault for brotli::HuffmanCode {}

/// brotli's allocator for decoding: blocks up to `heap_max` bytes on the heap, larger ones
/// mapped.
#[derive(Clone, Copy)]
struct BrotliAlloc {
    heap_max: usize,
}

/// A block of memory from [`BrotliAlloc`].
enum BrotliBlock<T> {
    Heap(Box<[T]>),
    /// `len` elements of a private anonymous mapping, unmapped on drop.
    Mapped {
        ptr: std::ptr::NonNull<T>,
        len: usize,
    },
}

impl<T> Default for BrotliBlock<T> {
    fn default() -> Self {
        BrotliBlock::Heap(Box::default())
    }
}

impl<T: ZeroIsDefault> brotli::SliceWrapper<T> for BrotliBlock<T> {
    fn slice(&self) -> &[T] {
        match self {
            BrotliBlock::Heap(b) => b,
            // SAFETY: the mapping holds `len` elements, readable and writable, zero-filled
            // (valid values, by ZeroIsDefault) or written through `slice_mut`; it lives as long
            // as `self`, which it is borrowed from.
            BrotliBlock::Mapped { ptr, len } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
        }
    }
}

impl<T: ZeroIsDefault> brotli::SliceWrapperMut<T> for BrotliBlock<T> {
    fn slice_mut(&mut self) -> &mut [T] {
        match self {
            BrotliBlock::Heap(b) => b,
            // SAFETY: as in `slice`, and `&mut self` makes this borrow the only one.
            BrotliBlock::Mapped { ptr, len } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
        }
    }
}

impl<T> Drop for BrotliBlock<T> {
    fn drop(&mut self) {
        if let BrotliBlock::Mapped { ptr, len } = *self {
            // SAFETY: the mapping was made by `alloc_cell` with this length, and is unmapped
            // once, here; no borrow of it outlives `self`.
            unsafe { libc::munmap(ptr.as_ptr().cast(), len * std::mem::size_of::<T>()) };
        }
    }
}

impl<T: ZeroIsDefault> brotli::Allocator<T> for BrotliAlloc {
    type AllocatedMemory = BrotliBlock<T>;

    fn alloc_cell(&mut self, len: usize) -> BrotliBlock<T> {
        let bytes = len.saturating_mul(std::mem::size_of::<T>());
        if bytes < self.heap_max {
            return BrotliBlock::Heap(vec![T::default(); len].into_boxed_slice());
        }
        // SAFETY: a fresh private anonymous mapping, touching no existing memory; page
        // alignment suits every element type.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        match std::ptr::NonNull::new(ptr.cast::<T>()) {
            Some(ptr) if ptr.as_ptr().cast() != libc::MAP_FAILED => {
                BrotliBlock::Mapped { ptr, len }
            }
            // An empty block: the decoder reports an allocation failure.
            _ => BrotliBlock::default(),
        }
    }

    fn free_cell(&mut self, block: BrotliBlock<T>) {
        drop(block);
    }
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

fn too_large(algorithm: Algorithm, produced: u64, limit: u64) -> Error {
    Error::too_large(Limit::Decompressed(algorithm.name()), produced, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Algorithm; 6] = [
        Algorithm::Zlib,
        Algorithm::Gzip,
        Algorithm::Lz4,
        Algorithm::Zstd,
        Algorithm::Snappy,
        Algorithm::Brotli,
    ];

    fn sample() -> Vec<u8> {
        br#"{"player": 42, "pos": [1.5, 2.5], "name": "alice"}"#.repeat(20)
    }

    #[test]
    fn every_algorithm_round_trips() {
        for algorithm in ALL {
            let c = Compression::new(algorithm, None, 0).unwrap();
            let mut packed = Vec::new();
            c.compress(&sample(), &mut packed).unwrap();
            assert!(
                packed.len() < sample().len(),
                "{algorithm:?} did not compress"
            );
            let mut out = Vec::new();
            c.decompress(&packed, 1 << 20, &mut out).unwrap();
            assert_eq!(out, sample(), "{algorithm:?}");
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 4 << 20];
        for algorithm in ALL {
            let c = Compression::new(algorithm, None, 0).unwrap();
            let mut packed = Vec::new();
            c.compress(&zeros, &mut packed).unwrap();
            let mut out = Vec::new();
            let err = c.decompress(&packed, 4096, &mut out).unwrap_err();
            assert!(
                matches!(err, Error::FrameTooLarge { limit: 4096, .. }),
                "{algorithm:?}"
            );
            assert!(out.is_empty());
            assert!(
                out.capacity() < 1 << 20,
                "{algorithm:?} allocated {}",
                out.capacity()
            );
        }
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for algorithm in ALL {
            let c = Compression::new(algorithm, None, 0).unwrap();
            let err = c
                .decompress(b"\xff\xfe definitely not compressed", 1024, &mut Vec::new())
                .unwrap_err();
            // (snappy reads a huge announced length from the garbage: too large, also a
            // protocol error for Python)
            assert!(
                matches!(err, Error::Protocol(_) | Error::FrameTooLarge { .. }),
                "{algorithm:?}: {err:?}"
            );
        }
    }

    #[test]
    fn levels_are_checked() {
        assert!(Compression::new(Algorithm::Zlib, Some(10), 0).is_err());
        assert!(Compression::new(Algorithm::Lz4, Some(1), 0).is_err());
        assert_eq!(
            Compression::new(Algorithm::Zstd, None, 0).unwrap().level,
            Some(3)
        );
    }

    // --- what a body may cost ------------------------------------------------------------------

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts the bytes each thread asks Rust's allocator for, so that a test can tell what
    /// decoding a body allocated. (The zstd C library's own allocations and brotli's mapped
    /// blocks are not counted.) It serves every unit test of the crate: counting is one
    /// thread-local add.
    struct CountingAlloc;

    thread_local! {
        static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    }

    fn count(bytes: usize) {
        // try_with: the allocator also runs while thread-locals are torn down
        let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(bytes)));
    }

    // SAFETY: every call is forwarded unchanged to the system allocator.
    unsafe impl GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(layout.size());
            // SAFETY: the caller's guarantees, passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count(layout.size());
            // SAFETY: the caller's guarantees, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(new_size.saturating_sub(layout.size()));
            // SAFETY: the caller's guarantees, passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's guarantees, passed on.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static COUNTING: CountingAlloc = CountingAlloc;

    /// Decodes `body` into a fresh `Vec`: the result, the bytes this thread allocated meanwhile
    /// (frees not deducted), and the `Vec`'s capacity.
    fn decode_counting(
        algorithm: Algorithm,
        body: &[u8],
        limit: u64,
    ) -> (Result<Vec<u8>>, usize, usize) {
        let c = Compression::new(algorithm, None, 0).unwrap();
        let before = ALLOCATED.with(Cell::get);
        let mut out = Vec::new();
        let result = c.decompress(body, limit, &mut out);
        let allocated = ALLOCATED.with(Cell::get) - before;
        let capacity = out.capacity();
        (result.map(|()| out), allocated, capacity)
    }

    const MIB: u64 = 1 << 20;

    /// A raw snappy body announcing `n` bytes and holding a 9-byte literal.
    fn snappy_announcing(mut n: u64) -> Vec<u8> {
        let mut body = Vec::new();
        while n >= 0x80 {
            body.push(n as u8 | 0x80);
            n >>= 7;
        }
        body.push(n as u8);
        body.push(8 << 2); // a literal of 9 bytes
        body.extend_from_slice(b"abcdefghi");
        body
    }

    /// An LZ4 frame: FLG and BD as given (the content-size bit is set from `content_size`),
    /// the blocks, each after its size word, and the end mark.
    fn lz4_frame(flg: u8, bd: u8, content_size: Option<u64>, blocks: &[(u32, &[u8])]) -> Vec<u8> {
        let mut frame = LZ4_MAGIC.to_vec();
        frame.extend_from_slice(&[flg | content_size.map_or(0, |_| 0x08), bd]);
        if let Some(n) = content_size {
            frame.extend_from_slice(&n.to_le_bytes());
        }
        frame.push((twox_hash::XxHash32::oneshot(0, &frame[4..]) >> 8) as u8);
        for (word, data) in blocks {
            frame.extend_from_slice(&word.to_le_bytes());
            frame.extend_from_slice(data);
        }
        frame.extend_from_slice(&[0; 4]);
        frame
    }

    /// FLG: version 01, linked blocks; BD: 64 KiB and 4 MiB blocks.
    const LZ4_LINKED: u8 = 0x40;
    const LZ4_64_KIB: u8 = 0x40;
    const LZ4_4_MIB: u8 = 0x70;

    /// A zstd frame announcing `n` bytes (single segment, 8-byte size) that holds one raw byte.
    fn zstd_announcing(n: u64) -> Vec<u8> {
        let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
        frame.extend_from_slice(&n.to_le_bytes());
        frame.extend_from_slice(&[0x09, 0, 0, b'a']); // the last block: raw, 1 byte
        frame
    }

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

    /// A brotli stream whose first metablock announces 16 MiB, stored, and holds 12 bytes.
    fn brotli_announcing_16_mib() -> Vec<u8> {
        // WBITS 24 ('1', '111'), ISLAST 0, MNIBBLES 6 ('10'), MLEN - 1 = 0xffffff, ISUNCOMPRESSED
        let bits: u32 = 1 | 7 << 1 | 2 << 5 | 0xff_ffff << 7 | 1 << 31;
        let mut body = bits.to_le_bytes().to_vec();
        body.extend_from_slice(b"abcdefghijkl");
        body
    }

    /// Bytes no compressor can shrink (xorshift).
    fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn announced_sizes_cost_no_more_than_the_input_can_produce() {
        let zeros_block = lz4_flex::block::compress(&[0; 1000]);
        let zeros = (zeros_block.len() as u32, &zeros_block[..]);
        // Smallest announcements first: before a check, each allocated what it announced.
        let cases: Vec<(&str, Algorithm, Vec<u8>, u64)> = vec![
            (
                "snappy, under the limit",
                Algorithm::Snappy,
                snappy_announcing(8 * MIB - 1),
                8 * MIB,
            ),
            (
                "snappy, over the limit",
                Algorithm::Snappy,
                snappy_announcing(8 * MIB + 1),
                8 * MIB,
            ),
            (
                "snappy, 1 GiB",
                Algorithm::Snappy,
                snappy_announcing(1 << 30),
                1 << 30,
            ),
            (
                "snappy, 4 GiB",
                Algorithm::Snappy,
                snappy_announcing(u32::MAX as u64),
                u64::MAX,
            ),
            (
                "lz4, one block, under the limit",
                Algorithm::Lz4,
                lz4_frame(LZ4_LINKED, LZ4_64_KIB, Some(8 * MIB - 1), &[zeros]),
                8 * MIB,
            ),
            (
                "lz4, two blocks, under the limit",
                Algorithm::Lz4,
                lz4_frame(LZ4_LINKED, LZ4_4_MIB, Some(8 * MIB - 1), &[zeros, zeros]),
                8 * MIB,
            ),
            (
                "lz4, a 4 MiB block length past the input",
                Algorithm::Lz4,
                lz4_frame(
                    LZ4_LINKED,
                    LZ4_4_MIB,
                    None,
                    &[((4 * MIB - 1) as u32, b"abcdef")],
                ),
                8 * MIB,
            ),
            (
                "lz4, a 4 MiB stored block length past the input",
                Algorithm::Lz4,
                lz4_frame(
                    LZ4_LINKED,
                    LZ4_4_MIB,
                    None,
                    &[((4 * MIB) as u32 | 1 << 31, b"ab")],
                ),
                8 * MIB,
            ),
            (
                "lz4, 1 GiB",
                Algorithm::Lz4,
                lz4_frame(LZ4_LINKED, LZ4_64_KIB, Some(1 << 30), &[zeros]),
                1 << 30,
            ),
            (
                "lz4, 2^64 - 1",
                Algorithm::Lz4,
                lz4_frame(LZ4_LINKED, LZ4_4_MIB, Some(u64::MAX), &[zeros, zeros]),
                u64::MAX,
            ),
            (
                "zstd, under the limit",
                Algorithm::Zstd,
                zstd_announcing(8 * MIB - 1),
                8 * MIB,
            ),
            (
                "zstd, over the limit",
                Algorithm::Zstd,
                zstd_announcing(8 * MIB + 1),
                8 * MIB,
            ),
            (
                "zstd, 1 GiB",
                Algorithm::Zstd,
                zstd_announcing(1 << 30),
                1 << 30,
            ),
            // (2^64 - 1 and 2^64 - 2 read as "unknown" and "error")
            (
                "zstd, 2^64 - 3",
                Algorithm::Zstd,
                zstd_announcing(u64::MAX - 2),
                u64::MAX,
            ),
            (
                "brotli, 16 MiB",
                Algorithm::Brotli,
                brotli_announcing_16_mib(),
                8 * MIB,
            ),
            (
                "brotli, 16 MiB, no limit",
                Algorithm::Brotli,
                brotli_announcing_16_mib(),
                u64::MAX,
            ),
        ];
        for (what, algorithm, body, limit) in cases {
            let (result, allocated, capacity) = decode_counting(algorithm, &body, limit);
            let err = result.expect_err(what);
            assert!(
                matches!(err, Error::Protocol(_) | Error::FrameTooLarge { .. }),
                "{what}: {err:?}"
            );
            assert!(
                allocated < 64 * 1024,
                "{what}: a {}-byte body allocated {allocated} bytes",
                body.len()
            );
            assert!(
                capacity <= 64 * 1024,
                "{what}: out grew to {capacity} bytes"
            );
        }
    }

    #[test]
    fn lz4_blocks_allocate_what_they_hold_not_the_block_size() {
        // Honest frames with 4 MiB blocks, no content size, holding a little: decoding them
        // allocates about what they hold.
        let zeros_block = lz4_flex::block::compress(&[0; 1000]);
        let zeros = (zeros_block.len() as u32, &zeros_block[..]);
        let stored = (3 | 1 << 31, &b"abc"[..]);
        for (flg, blocks, want) in [
            (LZ4_LINKED, vec![zeros], vec![0; 1000]),
            (LZ4_LINKED | 0x20, vec![zeros, zeros], vec![0; 2000]),
            (
                LZ4_LINKED,
                vec![stored, zeros],
                [&b"abc"[..], &[0; 1000]].concat(),
            ),
        ] {
            let frame = lz4_frame(flg, LZ4_4_MIB, None, &blocks);
            let (result, allocated, _) = decode_counting(Algorithm::Lz4, &frame, 8 * MIB);
            assert_eq!(result.unwrap(), want);
            assert!(allocated < 64 * 1024, "allocated {allocated} bytes");
        }
    }

    #[test]
    fn zstd_windows_larger_than_the_data_still_decode() {
        // A 128 MiB window for one byte is legal (a streaming encoder does not know the size).
        let (result, allocated, _) =
            decode_counting(Algorithm::Zstd, &zstd_with_window(27), 8 * MIB);
        assert_eq!(result.unwrap(), b"a");
        assert!(allocated < 64 * 1024, "allocated {allocated} bytes");
    }

    #[test]
    fn honest_bodies_round_trip_whatever_their_ratio() {
        let repeated = noise(3000).repeat(100); // matches reach back across 64 KiB blocks
        let bodies: [(&str, Vec<u8>); 6] = [
            ("empty", Vec::new()),
            ("1 byte", b"x".to_vec()),
            ("sample", sample()),
            ("noise", noise(100_000)),
            ("repeated noise", repeated.clone()),
            ("4 MiB of zeros", vec![0; 4 << 20]),
        ];
        for algorithm in ALL {
            let c = Compression::new(algorithm, None, 0).unwrap();
            for (what, body) in &bodies {
                let mut packed = Vec::new();
                c.compress(body, &mut packed).unwrap();
                // appended after what `out` holds
                let mut out = b"prefix".to_vec();
                c.decompress(&packed, 8 * MIB, &mut out)
                    .unwrap_or_else(|e| panic!("{algorithm:?}, {what}: {e:?}"));
                assert!(out[6..] == body[..], "{algorithm:?}, {what}");
                assert_eq!(&out[..6], b"prefix");
            }
        }
        // Shapes sockwire does not write: zstd without a content size (the streaming path),
        // LZ4 frames with linked blocks, checksums and a content size, in 64 KiB and 4 MiB
        // blocks.
        let zstd = Compression::new(Algorithm::Zstd, None, 0).unwrap();
        let lz4 = Compression::new(Algorithm::Lz4, None, 0).unwrap();
        for (_, body) in &bodies {
            let packed = zstd::stream::encode_all(&body[..], 3).unwrap();
            let mut out = Vec::new();
            zstd.decompress(&packed, 8 * MIB, &mut out).unwrap();
            assert!(out == *body);
            for block_size in [
                lz4_flex::frame::BlockSize::Max64KB,
                lz4_flex::frame::BlockSize::Max4MB,
            ] {
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_mode(lz4_flex::frame::BlockMode::Linked)
                    .block_size(block_size)
                    .block_checksums(true)
                    .content_checksum(true)
                    .content_size(Some(body.len() as u64));
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
                enc.write_all(body).unwrap();
                let packed = enc.finish().unwrap();
                let mut out = Vec::new();
                lz4.decompress(&packed, 8 * MIB, &mut out).unwrap();
                assert!(out == *body, "lz4 {block_size:?}, {} bytes", body.len());
            }
        }
    }

    #[test]
    fn a_body_of_exactly_the_limit_decodes_and_one_byte_more_does_not() {
        let body = noise(3000).repeat(50);
        for algorithm in ALL {
            let c = Compression::new(algorithm, None, 0).unwrap();
            let mut packed = Vec::new();
            c.compress(&body, &mut packed).unwrap();
            let mut out = Vec::new();
            c.decompress(&packed, body.len() as u64, &mut out).unwrap();
            assert!(out == body, "{algorithm:?}");
            let err = c
                .decompress(&packed, body.len() as u64 - 1, &mut out)
                .unwrap_err();
            assert!(
                matches!(err, Error::FrameTooLarge { .. }),
                "{algorithm:?}: {err:?}"
            );
            assert!(
                out == body,
                "{algorithm:?}: a failed decode left `out` changed"
            );
        }
    }

    #[test]
    fn damaged_lz4_frames_are_protocol_errors() {
        let body = noise(3000).repeat(30);
        let info = lz4_flex::frame::FrameInfo::new()
            .block_mode(lz4_flex::frame::BlockMode::Linked)
            .block_checksums(true)
            .content_checksum(true)
            .content_size(Some(body.len() as u64));
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(&body).unwrap();
        let good = enc.finish().unwrap();
        let lz4 = Compression::new(Algorithm::Lz4, None, 0).unwrap();
        let mut cases = vec![good[..good.len() - 1].to_vec(), good[..40].to_vec()];
        for at in [4, 5, 6, 20, good.len() / 2, good.len() - 2] {
            let mut damaged = good.clone();
            damaged[at] ^= 0x10;
            cases.push(damaged);
        }
        // a legacy frame, and a skippable one
        cases.push(
            [
                &[0x02, 0x21, 0x4c, 0x18][..],
                &[4, 0, 0, 0, 0x40, b'a', b'b', b'c'],
            ]
            .concat(),
        );
        cases.push([&[0x50, 0x2a, 0x4d, 0x18][..], &[0; 4]].concat());
        for damaged in cases {
            let mut out = Vec::new();
            let err = lz4.decompress(&damaged, 8 * MIB, &mut out).unwrap_err();
            assert!(matches!(err, Error::Protocol(_)), "{err:?}");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn brotli_blocks_are_zeroed_heap_or_mapped_memory() {
        use brotli::{Allocator, SliceWrapper, SliceWrapperMut};
        let mut alloc = BrotliAlloc {
            heap_max: BROTLI_MAP_MIN,
        };
        for len in [0, 10, BROTLI_MAP_MIN - 1, BROTLI_MAP_MIN, 3 << 20] {
            let mut block: BrotliBlock<u8> = alloc.alloc_cell(len);
            assert_eq!(
                matches!(block, BrotliBlock::Mapped { .. }),
                len >= BROTLI_MAP_MIN
            );
            assert_eq!(block.slice().len(), len);
            assert!(block.slice().iter().all(|b| *b == 0));
            if len > 0 {
                block.slice_mut()[len - 1] = 7;
                assert_eq!(block.slice()[len - 1], 7);
            }
            alloc.free_cell(block);
        }
        let codes: BrotliBlock<brotli::HuffmanCode> = alloc.alloc_cell(BROTLI_MAP_MIN);
        assert!(codes
            .slice()
            .iter()
            .all(|c| *c == brotli::HuffmanCode::default()));
        let words: BrotliBlock<u32> = alloc.alloc_cell(BROTLI_MAP_MIN);
        assert!(words.slice().iter().all(|w| *w == 0));
    }
}
