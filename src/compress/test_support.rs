//! Test helpers shared by the compression tests: a global allocator that counts what each
//! thread allocates, and bodies built by hand.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::lz4::LZ4_MAGIC;
use super::{Algorithm, Compression};
use crate::error::Result;

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
pub(super) fn decode_counting(
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

pub(super) const MIB: u64 = 1 << 20;

/// An LZ4 frame: FLG and BD as given (the content-size bit is set from `content_size`),
/// the blocks, each after its size word, and the end mark.
pub(super) fn lz4_frame(
    flg: u8,
    bd: u8,
    content_size: Option<u64>,
    blocks: &[(u32, &[u8])],
) -> Vec<u8> {
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
pub(super) const LZ4_LINKED: u8 = 0x40;
pub(super) const LZ4_64_KIB: u8 = 0x40;
pub(super) const LZ4_4_MIB: u8 = 0x70;

/// Bytes no compressor can shrink (xorshift).
pub(crate) fn noise(len: usize) -> Vec<u8> {
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
