//! The one file that names the DEFLATE implementation.
//!
//! What a backend must provide, so that another one is this file rewritten and nothing else:
//!
//! - a raw (headerless, RFC 1951) compressor created from window bits (9..=15), memory level
//!   (1..=9) and level (0..=9), that compresses a slice into a `Vec`'s spare capacity (no
//!   zero-filled room) with a sync flush (`Z_SYNC_FLUSH`: the output ends on a byte
//!   boundary with the empty stored block `00 00 ff ff`), reports bytes consumed and
//!   produced, and resets to an empty window, or to a given one (a dictionary), without
//!   allocating;
//! - a raw decompressor created from window bits (8..=15) that inflates a slice into a
//!   `Vec`'s spare capacity with a sync flush, can stop at the next block boundary
//!   (`Z_BLOCK`), reports bytes consumed, bytes produced and the end of a final block, and
//!   resets to an empty window (its 15-bit form without allocating);
//! - every allocation through Rust's global allocator, so that a counting allocator sees the
//!   whole state.
//!
//! The backend is C zlib (Cloudflare's fork, or the system's libz where that does not
//! build), called through raw bindings: the only way to choose zlib's memory level
//! (flate2 fixes it at 8) and to stop at a block boundary. Why C zlib and not zlib-rs: its
//! state per stream is a fraction of zlib-rs's (23.5 KiB against 151 KiB for a compressor
//! at window 12, memLevel 1), which is what makes per-connection streams affordable, and a
//! fresh window is cheaper to start from, which is what a shared compressor does for every
//! message; `benches/benches/deflate.rs` measures both; the figures are in the
//! [module docs](super).
//!
//! This is the crate's only `unsafe` outside the SIMD kernels: each block says why it holds,
//! and `tests/deflate.rs` runs again under AddressSanitizer (`asan.sh`).
#![allow(unsafe_code)]

use core::ffi::{c_int, c_uint, c_void};
use std::alloc::Layout;

/// Cloudflare's fork of C zlib where it builds (64-bit little-endian x86-64, with SSE4.2,
/// and ARM64): the same state sizes as zlib, its match finder hashes four bytes with the
/// CPU's CRC32 instruction and compares eight at a time, and its inflater copies in
/// 16-byte chunks; `benches/deflate/zlib-forks.sh` measures it against the system's zlib
/// (see the [module docs](super)). Elsewhere, C zlib through libz-sys. Both export zlib's
/// API, so the code below is the same for both; only how `z_stream` holds the allocator
/// functions differs.
#[cfg(all(target_endian = "little", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod z {
    pub(super) use cloudflare_zlib_sys::*;

    pub(super) fn allocator(
        alloc: alloc_func,
        free: free_func,
    ) -> (Option<alloc_func>, Option<free_func>) {
        (Some(alloc), Some(free))
    }
}
#[cfg(not(all(target_endian = "little", any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod z {
    pub(super) use libz_sys::*;

    pub(super) fn allocator(alloc: alloc_func, free: free_func) -> (alloc_func, free_func) {
        (alloc, free)
    }
}

/// What one call did: bytes of input consumed, bytes of output produced, whether the final
/// block ended (decompression only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub consumed: usize,
    pub produced: usize,
    pub stream_end: bool,
}

/// The stream failed: corrupt input, or (compression) an internal error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed;

/// Bytes in front of each block zlib gets from [`zalloc`]: the block's size, for [`zfree`];
/// 16 keeps the block as aligned as `malloc`'s.
const HEADER: usize = 16;

/// zlib's `zalloc`, through Rust's global allocator.
unsafe extern "C" fn zalloc(_opaque: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
    let Some(total) =
        (items as usize).checked_mul(size as usize).and_then(|n| n.checked_add(HEADER))
    else {
        return core::ptr::null_mut();
    };
    let Ok(layout) = Layout::from_size_align(total, HEADER) else {
        return core::ptr::null_mut();
    };
    // SAFETY: `layout` has a non-zero size (at least HEADER bytes).
    let base = unsafe { std::alloc::alloc(layout) };
    if base.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: `base` is valid for `total >= HEADER` bytes and 16-aligned, so for a usize.
    unsafe { base.cast::<usize>().write(total) };
    // SAFETY: HEADER <= total: the result is inside the block.
    unsafe { base.add(HEADER).cast() }
}

/// zlib's `zfree`, for blocks from [`zalloc`].
unsafe extern "C" fn zfree(_opaque: *mut c_void, ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: zlib frees only what `zalloc` gave it: `ptr` is HEADER bytes into a block
    // whose first word holds its size, and that size with HEADER alignment is the layout it
    // was allocated with (checked there).
    unsafe {
        let base = ptr.cast::<u8>().sub(HEADER);
        let total = base.cast::<usize>().read();
        std::alloc::dealloc(base, Layout::from_size_align_unchecked(total, HEADER));
    }
}

/// A zlib stream, boxed: zlib's state points back at it, so it must never move.
struct Stream(Box<z::z_stream>);

// SAFETY: the stream and the state zlib hangs off it belong to this value alone; zlib keeps
// no thread-local or global state for a stream, and its allocator functions are Rust's
// global allocator, which any thread may call. Moving it to another thread is sound; it is
// never shared (no `Sync`).
unsafe impl Send for Stream {}

impl Stream {
    fn new() -> Self {
        let (zalloc, zfree) = z::allocator(zalloc, zfree);
        Stream(Box::new(z::z_stream {
            next_in: core::ptr::null_mut(),
            avail_in: 0,
            total_in: 0,
            next_out: core::ptr::null_mut(),
            avail_out: 0,
            total_out: 0,
            msg: core::ptr::null_mut(),
            state: core::ptr::null_mut(),
            zalloc,
            zfree,
            opaque: core::ptr::null_mut(),
            data_type: 0,
            adler: 0,
            reserved: 0,
        }))
    }

    /// Runs one call of `step` (`deflate` or `inflate`) from `input` into at most `room`
    /// bytes of `output`'s spare capacity (the caller reserves it), with `flush`, and
    /// appends what it produced to `output`; returns zlib's code and the progress. Writing
    /// into the spare capacity spares zero-filling room that a message mostly leaves unused
    /// (16 KiB of it per inflate call).
    fn run(
        &mut self,
        input: &[u8],
        output: &mut Vec<u8>,
        room: usize,
        flush: c_int,
        step: unsafe extern "C" fn(z::z_streamp, c_int) -> c_int,
    ) -> (c_int, usize, usize) {
        let spare = output.spare_capacity_mut();
        // Larger slices go in 4 GiB steps: the caller loops on the progress.
        let in_len = input.len().min(c_uint::MAX as usize) as c_uint;
        let out_len = room.min(spare.len()).min(c_uint::MAX as usize) as c_uint;
        let strm = &mut *self.0;
        strm.next_in = input.as_ptr().cast_mut();
        strm.avail_in = in_len;
        strm.next_out = spare.as_mut_ptr().cast();
        strm.avail_out = out_len;
        // SAFETY: the stream was initialised by deflateInit2_/inflateInit2_ (the only way a
        // `Deflate` or `Inflate` is made) and is boxed, so never moved since; next_in and
        // avail_in describe `input`, next_out and avail_out the first `out_len` bytes of
        // `output`'s spare capacity, both borrowed for the whole call. zlib only reads
        // through next_in (the `cast_mut` is for the C signature) and writes at most
        // avail_out bytes at next_out; it never reads output it did not write in this call
        // (inflate copies a back-reference from the output only within what this call
        // produced, from its window otherwise).
        let rc = unsafe { step(strm, flush) };
        let consumed = (in_len - strm.avail_in) as usize;
        let produced = (out_len - strm.avail_out) as usize;
        // No pointer into the caller's buffers outlives the call.
        strm.next_in = core::ptr::null_mut();
        strm.next_out = core::ptr::null_mut();
        strm.avail_in = 0;
        strm.avail_out = 0;
        // SAFETY: zlib wrote the `produced <= out_len` bytes that follow `output`'s length,
        // within its capacity: they are initialised.
        unsafe { output.set_len(output.len() + produced) };
        (rc, consumed, produced)
    }
}

/// The size zlib checks the stream structure against.
fn stream_size() -> c_int {
    core::mem::size_of::<z::z_stream>() as c_int
}

/// A raw deflate compressor.
pub(crate) struct Deflate {
    stream: Stream,
}

impl Deflate {
    /// `window_bits` 9..=15, `mem_level` 1..=9, `level` 0..=9: checked by the caller.
    pub(crate) fn new(window_bits: u8, mem_level: u8, level: u8) -> Self {
        let mut stream = Stream::new();
        // SAFETY: a fresh, boxed z_stream with our allocator; the version string and the
        // structure size are those the bindings were built against, as deflateInit2_ requires.
        let rc = unsafe {
            z::deflateInit2_(
                &mut *stream.0,
                c_int::from(level),
                z::Z_DEFLATED,
                -c_int::from(window_bits),
                c_int::from(mem_level),
                z::Z_DEFAULT_STRATEGY,
                z::zlibVersion(),
                stream_size(),
            )
        };
        // Only out of memory (which Rust's allocator does not return) or settings outside
        // the ranges the caller checks can fail here.
        assert_eq!(rc, z::Z_OK, "deflateInit2 with checked settings");
        Self { stream }
    }

    /// Compresses as much of `input` as fits into `room` bytes appended to `output` (within
    /// its spare capacity), ending with a sync flush once all of `input` is in.
    pub(crate) fn sync_flush(
        &mut self,
        input: &[u8],
        output: &mut Vec<u8>,
        room: usize,
    ) -> Result<Progress, Failed> {
        let (rc, consumed, produced) =
            self.stream.run(input, output, room, z::Z_SYNC_FLUSH, z::deflate);
        match rc {
            // Z_BUF_ERROR: no progress was possible (no room); not an error of the stream.
            z::Z_OK | z::Z_BUF_ERROR => Ok(Progress { consumed, produced, stream_end: false }),
            _ => Err(Failed),
        }
    }

    /// Forgets the window and takes `dictionary` (at most the window's size, which the
    /// caller keeps) as the bytes the stream already carried: the next output may refer
    /// into them, as the peer's inflater holds them. Raw deflate allows it after a reset
    /// and after a sync-flushed block (zlib.h, `deflateSetDictionary`).
    pub(crate) fn reset_to(&mut self, dictionary: &[u8]) {
        self.reset();
        if dictionary.is_empty() {
            return;
        }
        // SAFETY: a stream initialised by deflateInit2_ and never moved, just reset (so no
        // input is pending); zlib copies the `len` bytes at the pointer into its window
        // during the call and keeps no pointer to them. The length fits a c_uint: the
        // caller passes at most a 32 KiB window.
        let rc = unsafe {
            z::deflateSetDictionary(
                &mut *self.stream.0,
                dictionary.as_ptr(),
                dictionary.len() as c_uint,
            )
        };
        // Z_STREAM_ERROR only for a stream in the middle of a block, which a reset is not.
        debug_assert_eq!(rc, z::Z_OK, "deflateSetDictionary after a reset");
    }

    /// Forgets the window: the next output starts a stream that refers to nothing before it.
    pub(crate) fn reset(&mut self) {
        // SAFETY: a stream initialised by deflateInit2_ and never moved; deflateReset keeps
        // its memory and only clears it.
        unsafe { z::deflateReset(&mut *self.stream.0) };
    }
}

impl Drop for Deflate {
    fn drop(&mut self) {
        // SAFETY: a stream initialised by deflateInit2_, ended once, here.
        unsafe { z::deflateEnd(&mut *self.stream.0) };
    }
}

/// How far a decompression call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Inflate all the input that the output has room for.
    Sync,
    /// Stop at the next block boundary (`Z_BLOCK`).
    Block,
}

/// A raw deflate decompressor.
pub(crate) struct Inflate {
    stream: Stream,
}

impl Inflate {
    /// `window_bits` 8..=15: checked by the caller.
    pub(crate) fn new(window_bits: u8) -> Self {
        let mut stream = Stream::new();
        // SAFETY: as in `Deflate::new`, for inflateInit2_.
        let rc = unsafe {
            z::inflateInit2_(
                &mut *stream.0,
                -c_int::from(window_bits),
                z::zlibVersion(),
                stream_size(),
            )
        };
        assert_eq!(rc, z::Z_OK, "inflateInit2 with checked settings");
        Self { stream }
    }

    /// Inflates `input` into at most `room` bytes appended to `output` (within its spare
    /// capacity).
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        output: &mut Vec<u8>,
        room: usize,
        until: Until,
    ) -> Result<Progress, Failed> {
        let flush = match until {
            Until::Sync => z::Z_SYNC_FLUSH,
            Until::Block => z::Z_BLOCK,
        };
        let (rc, consumed, produced) = self.stream.run(input, output, room, flush, z::inflate);
        match rc {
            z::Z_OK | z::Z_BUF_ERROR => Ok(Progress { consumed, produced, stream_end: false }),
            z::Z_STREAM_END => Ok(Progress { consumed, produced, stream_end: true }),
            // Z_DATA_ERROR (corrupt), Z_NEED_DICT (impossible raw), Z_MEM_ERROR,
            // Z_STREAM_ERROR: the message is lost either way.
            _ => Err(Failed),
        }
    }

    /// Forgets the window and any partial block, and sets the window to 15 bits; the
    /// window's memory is kept when it was already 15 bits.
    pub(crate) fn reset_to_15_bits(&mut self) {
        // SAFETY: a stream initialised by inflateInit2_ and never moved; inflateReset2 frees
        // (through our zfree) a window of another size, to be made again on first use.
        unsafe { z::inflateReset2(&mut *self.stream.0, -15) };
    }
}

impl Drop for Inflate {
    fn drop(&mut self) {
        // SAFETY: a stream initialised by inflateInit2_, ended once, here.
        unsafe { z::inflateEnd(&mut *self.stream.0) };
    }
}
