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
//! NOTE: lz4_flex (pure Rust, maintained), 0.85 / 0.84 µs for the LZ4 frame format. Now
//! lz4_flex compresses, and the reference C library (lz4-sys) decodes and compresses bodies
//! under 256 bytes: 0.48 / 0.15 µs (PacketFormat.pack / unpack with lz4, less without).
//! NOTE: zstd (the C library) with per-thread reused contexts, 3.6 / 1.6 µs; a fresh context per
//! call costs 11.7 / 9.4 µs, and the pure-Rust ruzstd decodes in 3.9 µs (and cannot encode).
//! NOTE: snap, 0.45 / 0.29 µs for raw snappy.
//! NOTE: brotli (the maintained Rust port), 28 / 2.6 µs at quality 5.
//!
//! The files: this one holds the algorithms, their levels, and the compress / decompress
//! dispatch with its limit handling; `snappy`, `zstd`, `lz4` and `brotli` hold the machinery
//! each of those needs of its own (zlib and gzip are plain flate2 calls, made here).

mod brotli;
mod lz4;
mod snappy;
#[cfg(test)]
pub(crate) mod test_support;
mod zstd;

use std::io::{Read, Write};

use self::brotli::brotli_decoder;
use self::lz4::{lz4_read_frame, lz4_single_block, LZ4_BLOCK};
use self::snappy::snappy_decompress;
use self::zstd::{zstd_compress, zstd_decompress};
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
            Algorithm::Zstd => zstd_compress(input, level, out)?,
            Algorithm::Snappy => {
                let start = out.len();
                out.resize(start + snap::raw::max_compress_len(input.len()), 0);
                let n = snap::raw::Encoder::new()
                    .compress(input, &mut out[start..])
                    .map_err(|e| corrupt(self.algorithm, e))?;
                out.truncate(start + n);
            }
            Algorithm::Brotli => {
                let params = ::brotli::enc::BrotliEncoderParams {
                    quality: level,
                    ..Default::default()
                };
                ::brotli::BrotliCompress(&mut &input[..], out, &params).map_err(io)?;
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

fn too_large(algorithm: Algorithm, produced: u64, limit: u64) -> Error {
    Error::too_large(Limit::Decompressed(algorithm.name()), produced, limit)
}

#[cfg(test)]
mod tests {
    use super::test_support::{
        decode_counting, lz4_frame, noise, LZ4_4_MIB, LZ4_64_KIB, LZ4_LINKED, MIB,
    };
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

    /// A zstd frame announcing `n` bytes (single segment, 8-byte size) that holds one raw byte.
    fn zstd_announcing(n: u64) -> Vec<u8> {
        let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
        frame.extend_from_slice(&n.to_le_bytes());
        frame.extend_from_slice(&[0x09, 0, 0, b'a']); // the last block: raw, 1 byte
        frame
    }

    /// A brotli stream whose first metablock announces 16 MiB, stored, and holds 12 bytes.
    fn brotli_announcing_16_mib() -> Vec<u8> {
        // WBITS 24 ('1', '111'), ISLAST 0, MNIBBLES 6 ('10'), MLEN - 1 = 0xffffff, ISUNCOMPRESSED
        let bits: u32 = 1 | 7 << 1 | 2 << 5 | 0xff_ffff << 7 | 1 << 31;
        let mut body = bits.to_le_bytes().to_vec();
        body.extend_from_slice(b"abcdefghijkl");
        body
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
            let packed = ::zstd::stream::encode_all(&body[..], 3).unwrap();
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
}
