//! brotli decoding with an allocator of its own: large blocks are fresh anonymous mappings,
//! zero pages that cost nothing until the decoder writes them.

use std::io::Read;

/// A brotli decoder reading `input`, whose memory comes from [`BrotliAlloc`].
pub(super) fn brotli_decoder(input: &[u8]) -> impl Read + '_ {
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

#[cfg(test)]
mod tests {
    use super::*;

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
