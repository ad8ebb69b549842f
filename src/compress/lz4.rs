//! The LZ4 frame format: small bodies written as a frame of one block, and every frame read
//! block by block, each block's output sized by what its input can decode to.

use std::cell::RefCell;

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
pub(super) fn lz4_single_block(input: &[u8], out: &mut Vec<u8>) {
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
