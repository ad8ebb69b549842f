//! Per-packet compression in each algorithm's standard format, readable by the reference
//! Python packages: zlib and gzip streams (stdlib `zlib`, `gzip`), the LZ4 *frame* format
//! (`lz4.frame`), zstd frames (`zstandard`), raw snappy (`cramjam.snappy.*_raw`) and brotli.
//!
//! Decompression never produces more than a caller-given limit: every decoder is read through
//! `Read::take(limit + 1)`, so a bomb stops at the limit (plus one byte that proves it) without
//! allocating past it; snappy and zstd announce their length up front and are checked before
//! decoding.
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

use crate::error::{Error, Result};

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
                    "{} level must be in {}..={}, not {level}",
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
    /// `FrameTooLarge`, found without producing more than `limit + 1` bytes.
    pub fn decompress(&self, input: &[u8], limit: u64, out: &mut Vec<u8>) -> Result<()> {
        let algorithm = self.algorithm;
        let start = out.len();
        let read = |reader: &mut dyn Read, out: &mut Vec<u8>| -> Result<()> {
            reader
                .take(limit.saturating_add(1))
                .read_to_end(out)
                .map_err(|e| corrupt(algorithm, e))?;
            Ok(())
        };
        match algorithm {
            Algorithm::Zlib => read(&mut flate2::read::ZlibDecoder::new(input), out)?,
            // Several gzip members decode as one stream, as Python's gzip.decompress does.
            Algorithm::Gzip => read(&mut flate2::read::MultiGzDecoder::new(input), out)?,
            Algorithm::Lz4 => match lz4_read_single_block(input, limit, out) {
                Some(result) => result?,
                None => read(&mut lz4_flex::frame::FrameDecoder::new(input), out)?,
            },
            Algorithm::Zstd => {
                let size = zstd::zstd_safe::get_frame_content_size(input)
                    .ok()
                    .flatten();
                if let Some(n) = size.filter(|n| *n > limit) {
                    return Err(too_large(algorithm, n, limit));
                }
                // One-shot into a buffer of the announced size when there is one; a frame
                // without a size, several frames, or a size that lies, take the streaming
                // path, whose output stops at the limit.
                let one_shot = size.and_then(|n| {
                    ZSTD.with_borrow_mut(|z| {
                        let mut buf = Vec::with_capacity(n as usize);
                        let d = z.decompressor().ok()?;
                        d.decompress_to_buffer(input, &mut buf).ok()?;
                        Some(buf)
                    })
                });
                match one_shot {
                    Some(buf) => out.extend_from_slice(&buf),
                    None => {
                        let mut dec = zstd::stream::read::Decoder::with_buffer(input)
                            .map_err(|e| corrupt(algorithm, e))?;
                        read(&mut dec, out)?
                    }
                }
            }
            Algorithm::Brotli => read(&mut brotli::Decompressor::new(input, 4096), out)?,
            Algorithm::Snappy => {
                let n = snap::raw::decompress_len(input).map_err(|e| corrupt(algorithm, e))?;
                if n as u64 > limit {
                    return Err(too_large(algorithm, n as u64, limit));
                }
                out.resize(start + n, 0);
                let written = snap::raw::Decoder::new()
                    .decompress(input, &mut out[start..])
                    .map_err(|e| corrupt(algorithm, e))?;
                out.truncate(start + written);
            }
        }
        let produced = (out.len() - start) as u64;
        if produced > limit {
            out.truncate(start);
            return Err(too_large(algorithm, produced, limit));
        }
        Ok(())
    }
}

/// The LZ4 frame magic number, little-endian.
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
/// Bodies up to one 64 KiB block take the single-block path below.
const LZ4_BLOCK: usize = 64 * 1024;

// NOTE: lz4_flex's FrameEncoder/FrameDecoder allocate their 64 KiB block buffers for every
// frame: packing and unpacking a 512-byte body cost 1.00 + 1.26 µs through them. A frame of one
// block, written and read here with lz4_flex's block functions, is the same standard format
// (lz4.frame reads and writes it) for a fraction of that; anything else (several blocks,
// checksums, dictionaries) goes through FrameDecoder.

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

/// Reads an LZ4 frame of one block whose header states the content size, without the frame
/// decoder's buffers. `None`: the frame has another shape, for the frame decoder.
fn lz4_read_single_block(input: &[u8], limit: u64, out: &mut Vec<u8>) -> Option<Result<()>> {
    let bad = |what: &str| Some(Err(corrupt(Algorithm::Lz4, what)));
    let header = input.get(..15)?;
    let (flg, bd) = (header[4], header[5]);
    // version 01, content size present, no block checksums, no dictionary, reserved bits 0
    if header[..4] != LZ4_MAGIC || flg & 0xdb != 0x48 || bd & 0x8f != 0 {
        return None;
    }
    if (twox_hash::XxHash32::oneshot(0, &header[4..14]) >> 8) as u8 != header[14] {
        return bad("header checksum mismatch");
    }
    let content_size = u64::from_le_bytes(header[6..14].try_into().expect("8 bytes"));
    if content_size > limit {
        return Some(Err(too_large(Algorithm::Lz4, content_size, limit)));
    }
    let raw = u32::from_le_bytes(input.get(15..19)?.try_into().expect("4 bytes"));
    let size = (raw & 0x7fff_ffff) as usize;
    let block = input.get(19..19 + size)?;
    let rest = &input[19 + size..];
    let content_checksum = flg & 0x04 != 0;
    // exactly one block (or none), the end mark, and the checksum if announced
    let expected_rest = if content_checksum { 8 } else { 4 };
    if raw == 0 || rest.len() != expected_rest || rest[..4] != [0; 4] {
        return None;
    }
    let start = out.len();
    if raw & 0x8000_0000 != 0 {
        out.extend_from_slice(block);
    } else {
        out.resize(start + content_size as usize, 0);
        match lz4_flex::block::decompress_into(block, &mut out[start..]) {
            Ok(n) if n as u64 == content_size => {}
            _ => {
                out.truncate(start);
                return bad("block does not match the announced content size");
            }
        }
    }
    if out.len() - start != content_size as usize {
        out.truncate(start);
        return bad("block does not match the announced content size");
    }
    if content_checksum {
        let want = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if twox_hash::XxHash32::oneshot(0, &out[start..]) != want {
            out.truncate(start);
            return bad("content checksum mismatch");
        }
    }
    Some(Ok(()))
}

/// zstd contexts, one set per thread: creating them costs more than compressing a packet.
#[derive(Default)]
struct ZstdContexts {
    compressor: Option<(i32, zstd::bulk::Compressor<'static>)>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl ZstdContexts {
    fn compressor(&mut self, level: i32) -> std::io::Result<&mut zstd::bulk::Compressor<'static>> {
        if self.compressor.as_ref().is_none_or(|(l, _)| *l != level) {
            self.compressor = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        Ok(&mut self.compressor.as_mut().expect("set above").1)
    }

    fn decompressor(&mut self) -> std::io::Result<&mut zstd::bulk::Decompressor<'static>> {
        if self.decompressor.is_none() {
            self.decompressor = Some(zstd::bulk::Decompressor::new()?);
        }
        Ok(self.decompressor.as_mut().expect("set above"))
    }
}

thread_local! {
    static ZSTD: RefCell<ZstdContexts> = RefCell::new(ZstdContexts::default());
}

fn too_large(algorithm: Algorithm, produced: u64, limit: u64) -> Error {
    Error::FrameTooLarge {
        message: format!(
            "{} body decompresses past the limit of {limit} bytes",
            algorithm.name()
        ),
        length: produced,
        limit,
    }
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
}
