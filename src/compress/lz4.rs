//! The LZ4 frame format: small bodies written as a frame of one block, and every frame read
//! block by block, each block's output sized by what its input can decode to.

use std::cell::RefCell;
use std::os::raw::{c_char, c_int};

use super::{corrupt, too_large, Algorithm};
use crate::error::Result;

/// The LZ4 frame magic number, little-endian.
pub(super) const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
/// Bodies up to one 64 KiB block are written as a frame of one block.
pub(super) const LZ4_BLOCK: usize = 64 * 1024;

// NOTE: lz4_flex's FrameEncoder/FrameDecoder allocate their 64 KiB block buffers for every
// frame: packing and unpacking a 512-byte body cost 1.00 + 1.26 µs through them. A frame of one
// block, written here with lz4_flex's block functions, is the same standard format (lz4.frame
// reads and writes it) for a fraction of that. Every frame is read here, block by block, with
// a block decoder (lz4_flex's when this was measured, the C library's now: see the NOTE in
// `lz4_read_frame`): FrameDecoder also zero-fills a whole block-size buffer (up to 4 MiB,
// whatever the block holds) before decoding a block, and a buffer of a block's announced length
// before reading it. A 29-byte frame of 4 MiB blocks holding 100 bytes cost 145 µs through it,
// 0.26 µs here; a 17-byte frame announcing a 4 MiB block cost 145 µs, 0.45 µs here (refused).
// And the single-block reader this replaces zero-filled the announced content size: a 37-byte
// frame announcing 8 MiB cost 297 µs, 0.56 µs here (refused). Honest bodies cost the same
// (33 bytes: 0.15 µs, 512 bytes: 0.21 / 0.20 µs) or less: 4 MiB of zeros in 64 KiB blocks
// 5217 / 573 µs, a 512-byte body that lz4.frame wrote without a content size 1.95 / 0.34 µs.

/// The LZ4 C library's functions used here that lz4-sys does not bind, declared as lz4.h
/// (1.10) declares them; lz4-sys builds and links the library they are in.
mod ffi {
    use std::os::raw::{c_char, c_int, c_void};

    // Nothing of lz4-sys's own is used: this links its library.
    use lz4_sys as _;

    extern "C" {
        pub fn LZ4_sizeofState() -> c_int;
        pub fn LZ4_initStream(buffer: *mut c_void, size: usize) -> *mut c_void;
        /// The compressor on a state that `LZ4_initStream` initialised: the hash table is
        /// cleared only when the state's offsets need it, not on every call.
        pub fn LZ4_compress_fast_extState_fastReset(
            state: *mut c_void,
            src: *const c_char,
            dst: *mut c_char,
            src_size: c_int,
            dst_capacity: c_int,
            acceleration: c_int,
        ) -> c_int;
        /// The bounds-checked decoder, with the `dict_size` bytes before `dst` as history (none
        /// when 0): it never writes past `dst_capacity` nor reads outside `src`, `dst` and the
        /// history, and reads of `dst` only get what it wrote there.
        pub fn LZ4_decompress_safe_usingDict(
            src: *const c_char,
            dst: *mut c_char,
            src_size: c_int,
            dst_capacity: c_int,
            dict_start: *const c_char,
            dict_size: c_int,
        ) -> c_int;
        /// The same decoder, stopping after `target_output_size` bytes.
        pub fn LZ4_decompress_safe_partial_usingDict(
            src: *const c_char,
            dst: *mut c_char,
            src_size: c_int,
            target_output_size: c_int,
            dst_capacity: c_int,
            dict_start: *const c_char,
            dict_size: c_int,
        ) -> c_int;
    }
}

// NOTE: compressing one block, 2nd best of 15 interleaved rounds (ns; lz4_flex with its reused
// table / the C library's LZ4_compress_fast_extState_fastReset on a reused state / the C
// LZ4_compress_fast_extState): 64 B 104 / 68 / 157, 128 B 163 / 126 / 207, 256 B 224 / 213 /
// 306, 320 B 268 / 285, 512 B 397 / 437 / 490, 4 KiB 2779 / 3254 / 3149, 64 KiB 44150 / 51363 /
// 49975 (each call of lz4_flex clears its 8 KiB table; the C state is cleared only when its
// offsets need it, and always for 4 KiB and more). So bodies under 256 bytes go to the C library
// and the others to lz4_flex.
/// Bodies shorter than this are compressed by the C library, the others by lz4_flex.
const LZ4_C_BELOW: usize = 256;

/// The C compressor's state (an `LZ4_stream_t`), initialised, 8-aligned as it must be.
struct CState(Box<[u64]>);

impl CState {
    fn new() -> Self {
        // SAFETY: no arguments, no preconditions.
        let size = usize::try_from(unsafe { ffi::LZ4_sizeofState() }).expect("a size");
        let mut words = vec![0u64; size.div_ceil(8)].into_boxed_slice();
        // SAFETY: `words` is at least `size` bytes, 8-aligned (LZ4_stream_t's alignment), and
        // lives as long as the state.
        let stream = unsafe { ffi::LZ4_initStream(words.as_mut_ptr().cast(), size) };
        assert!(!stream.is_null(), "LZ4_initStream refused its buffer");
        CState(words)
    }
}

thread_local! {
    /// The LZ4 hash table, reused: allocating it was most of compressing a small body.
    static LZ4_TABLE: RefCell<lz4_flex::block::CompressTable> =
        RefCell::new(lz4_flex::block::CompressTable::default());
    /// The C compressor's state, reused: `LZ4_compress_fast_extState_fastReset` clears it only
    /// when it must.
    static LZ4_C_STATE: RefCell<CState> = RefCell::new(CState::new());
}

/// The frame header for `len` bytes of content, with room for the block size after it.
fn lz4_header(len: usize) -> [u8; LZ4_HEADER] {
    let mut header = [0; LZ4_HEADER];
    header[..4].copy_from_slice(&LZ4_MAGIC);
    // FLG: version 01, independent blocks, content size present. BD: 64 KiB blocks.
    header[4..6].copy_from_slice(&[0x68, 0x40]);
    header[6..14].copy_from_slice(&(len as u64).to_le_bytes());
    header[14] = (twox_hash::XxHash32::oneshot(0, &header[4..14]) >> 8) as u8;
    header
}

/// Magic, FLG, BD, content size, header checksum, and the block size.
const LZ4_HEADER: usize = 4 + 2 + 8 + 1 + 4;

/// Writes `input` as an LZ4 frame of one block, with the content size in the header.
pub(super) fn lz4_single_block(input: &[u8], out: &mut Vec<u8>) {
    // NOTE: the frame was grown piece by piece (the pipeline hands an empty Vec: four
    // reallocations) and zero-filled at its largest size before compressing. Reserved once,
    // with the C compressor's block written into spare capacity, PacketFormat.pack (2nd best
    // of 8 alternating runs, Python timeit) of a 512-byte body went from 725 to 633 ns (lz4_flex
    // compresses it, as before) and of a 64-byte body from 385 to 287 ns (the C library).
    let max = lz4_flex::block::get_maximum_output_size(input.len());
    out.reserve(LZ4_HEADER + max + 4);
    let size_at = out.len() + LZ4_HEADER - 4;
    out.extend_from_slice(&lz4_header(input.len()));
    let data_at = out.len();
    let compressed = if input.len() < LZ4_C_BELOW {
        LZ4_C_STATE.with_borrow_mut(|state| {
            let dst = out.spare_capacity_mut();
            // SAFETY: the state was initialised by LZ4_initStream and is used by this thread
            // only; `input` is under 256 bytes; the C function writes at most `dst.len()` bytes
            // to `dst`, which is at least LZ4_compressBound(input.len()) (lz4_flex's maximum is
            // larger), and returns how many it wrote (0 on failure).
            let n = unsafe {
                ffi::LZ4_compress_fast_extState_fastReset(
                    state.0.as_mut_ptr().cast(),
                    input.as_ptr().cast(),
                    dst.as_mut_ptr().cast(),
                    input.len() as c_int,
                    dst.len().min(c_int::MAX as usize) as c_int,
                    1,
                )
            };
            let n = usize::try_from(n).unwrap_or(0);
            // SAFETY: the C function initialised the first `n` bytes of the spare capacity.
            unsafe { out.set_len(data_at + n) };
            n
        })
    } else {
        out.resize(data_at + max, 0);
        let dst = &mut out[data_at..];
        // A table for 64 KiB inputs replaces the reused one for good once used, and is twice
        // the size to clear: such rare inputs get a table of their own.
        let result = if input.len() >= u16::MAX as usize {
            lz4_flex::block::compress_into(input, dst)
        } else {
            LZ4_TABLE.with_borrow_mut(|table| {
                lz4_flex::block::compress_into_with_table(input, dst, table)
            })
        };
        result.unwrap_or(0)
    };
    let size = if compressed > 0 && compressed < input.len() {
        out.truncate(data_at + compressed);
        compressed as u32
    } else {
        // Incompressible: the block is stored as is, flagged by the high bit of its size.
        out.truncate(data_at);
        out.extend_from_slice(input);
        input.len() as u32 | 0x8000_0000
    };
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
/// ignores it. Each block is decoded by the C library's bounds-checked decoder into spare
/// capacity reserved at the least of what the block itself can decode to, the frame's block
/// size, what the announced content size leaves, and one byte past the limit: the allocation
/// follows the input, never an announced size.
pub(super) fn lz4_read_frame(input: &[u8], limit: u64, out: &mut Vec<u8>) -> Result<()> {
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
        out.reserve(room);
        // A linked block may copy from up to 64 KiB of what this frame's blocks decoded before
        // it, which lies just before where it decodes to.
        let history = if linked {
            at - start.max(at.saturating_sub(LZ4_WINDOW))
        } else {
            0
        };
        // NOTE: lz4_flex's safe decoder wants initialised output, so each block's room was
        // zero-filled first; the C decoder writes into spare capacity. One block, 2nd best of
        // 15 interleaved rounds, lz4_flex with the zero-fill / the C library into spare
        // capacity (ns): 64 B 30 / 20, 128 B 46 / 30, 256 B 74 / 59, 512 B 149 / 113, 4 KiB
        // 891 / 783, 64 KiB 16203 / 12299; 1 MiB in 64 KiB blocks 291 / 196 µs. Through
        // PacketFormat.unpack (as above): 512 bytes 327 -> 290 ns, 64 bytes 208 -> 194 ns.
        // The whole block, or (`partial`) only as much of it as the room holds.
        let mut decode = |partial: bool| {
            let base = out.as_mut_ptr();
            // SAFETY: `room` bytes of spare capacity follow `at` (reserved above), and the
            // decoder writes at most `room` bytes there; the `history` bytes before
            // `at` are initialised output. `len` and `room` are at most 4 MiB (`block_max`).
            unsafe {
                let dst = base.add(at);
                let dict = dst.sub(history).cast::<c_char>().cast_const();
                if !partial {
                    ffi::LZ4_decompress_safe_usingDict(
                        block.as_ptr().cast(),
                        dst.cast(),
                        len as c_int,
                        room as c_int,
                        dict,
                        history as c_int,
                    )
                } else {
                    ffi::LZ4_decompress_safe_partial_usingDict(
                        block.as_ptr().cast(),
                        dst.cast(),
                        len as c_int,
                        room as c_int,
                        room as c_int,
                        dict,
                        history as c_int,
                    )
                }
            }
        };
        let decoded = decode(false);
        if let Ok(n) = usize::try_from(decoded) {
            // SAFETY: the decoder wrote `n <= room` bytes at `at`.
            unsafe { out.set_len(at + n) };
        } else {
            // The block is corrupt, or decodes past its room: decoding only as much as the
            // room holds tells which, where the limit or the content size bounded the room.
            let bounded = room as u64 == past_limit || room as u64 == content_left;
            let cut = bounded && decode(true) == room as c_int;
            if cut && room as u64 == past_limit {
                return Err(too_large(algorithm, limit.saturating_add(1), limit));
            }
            if cut && room as u64 == content_left {
                return Err(bad("blocks exceed the announced content size"));
            }
            return Err(bad("invalid LZ4 block"));
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::compress::test_support::{
        decode_counting, lz4_frame, noise, LZ4_4_MIB, LZ4_LINKED, MIB,
    };
    use crate::compress::Compression;
    use crate::error::Error;

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
    fn a_block_cut_by_the_limit_or_the_content_size_says_which() {
        // The C decoder only says a block failed; decoding as much as the room holds tells a
        // block that decodes past the limit (or the announced size) from a corrupt one, and
        // a linked block needs the blocks before it for that too.
        let lz4 = Compression::new(Algorithm::Lz4, None, 0).unwrap();
        let body = noise(3000).repeat(50);
        let info = lz4_flex::frame::FrameInfo::new()
            .block_mode(lz4_flex::frame::BlockMode::Linked)
            .block_size(lz4_flex::frame::BlockSize::Max64KB);
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(&body).unwrap();
        let linked = enc.finish().unwrap();
        for limit in [3000, 70_000, 140_000, body.len() as u64 - 1] {
            let mut out = Vec::new();
            let err = lz4.decompress(&linked, limit, &mut out).unwrap_err();
            assert!(
                matches!(err, Error::FrameTooLarge { .. }),
                "limit {limit}: {err:?}"
            );
            assert!(out.is_empty());
        }
        let zeros_block = lz4_flex::block::compress(&[0; 1000]);
        let zeros = (zeros_block.len() as u32, &zeros_block[..]);
        for (content_size, blocks) in [(500, vec![zeros]), (1500, vec![zeros, zeros])] {
            let frame = lz4_frame(LZ4_LINKED, LZ4_4_MIB, Some(content_size), &blocks);
            let err = lz4
                .decompress(&frame, 8 * MIB, &mut Vec::new())
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("exceed the announced content size"),
                "{err:?}"
            );
        }
        // A corrupt block whose room the limit bounds is still corrupt.
        let mut bad_offset = zeros_block.clone();
        bad_offset[2] = 0xff; // the first match's offset, far before the output
        let frame = lz4_frame(
            LZ4_LINKED,
            LZ4_4_MIB,
            None,
            &[(bad_offset.len() as u32, &bad_offset[..])],
        );
        let err = lz4.decompress(&frame, 100, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    }

    #[test]
    fn small_bodies_round_trip_through_both_compressors() {
        // Under LZ4_C_BELOW bytes the C library compresses, from there lz4_flex; the C state
        // is reused across calls, so some rounds compress on a table with old entries.
        let lz4 = Compression::new(Algorithm::Lz4, None, 0).unwrap();
        let text = br#"{"id": 7, "name": "player7", "x": 10.5, "hp": 93}, "#.repeat(40);
        for _ in 0..3 {
            for len in [
                0,
                1,
                5,
                13,
                64,
                200,
                LZ4_C_BELOW - 1,
                LZ4_C_BELOW,
                700,
                2000,
            ] {
                for body in [&text[..len], &noise(len)[..]] {
                    let mut packed = Vec::new();
                    lz4.compress(body, &mut packed).unwrap();
                    let mut out = Vec::new();
                    lz4.decompress(&packed, 8 * MIB, &mut out).unwrap();
                    assert!(out == body, "{len} bytes");
                }
            }
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
}
