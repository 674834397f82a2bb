//! RFC 6455 §5.3 payload masking: `out[i] = in[i] ^ key[(phase + i) % 4]`.
//!
//! Masking is an involution, so the same functions mask (client send) and unmask (server
//! receive). `phase` lets a payload be processed in pieces as it arrives off the wire: each call
//! returns the phase to hand to the call for the next piece.
//!
//! Buffers shorter than 32 bytes are masked inline in at most six scalar pieces (`u64`s, then
//! a `u32`, a `u16` and a byte). In place, buffers shorter than 128 bytes use the portable
//! `u64` word loop, which LLVM vectorizes, also inline. Longer ones go to the widest SIMD kernel
//! the CPU has (AVX2, else SSE2 on x86_64; NEON on little-endian aarch64); other architectures
//! stay on the word loop. The thresholds were measured on an AMD EPYC (AVX-512 class) and
//! checked with `benches/benches/mask.rs`.
//!
//! The SIMD kernels load the first and the last vector of the buffer up front and store them
//! last, and mask the body between them in whole vectors whose stores are aligned from 512
//! bytes on. The edge vectors overlap the body, so there is no scalar head or tail loop and no
//! branch on the length's low bits.
#![allow(unsafe_code)]

/// Buffers shorter than this are masked by [`mask_pieces`]: scalar pieces measured faster than
/// a vector here, most of all when the bytes had just been written.
const PIECES_MAX: usize = 32;
// `extend_masked` relies on `mask_pieces` writing every byte below `PIECES_MAX`.
const _: () = assert!(PIECES_MAX <= 32);

/// In place, buffers shorter than this use the inlined word loop rather than a SIMD kernel.
///
/// This favours a buffer masked again right after it was written, as a benchmark loop does: a
/// kernel's overlapping edge vectors then load bytes from two pending stores, which the CPU
/// cannot forward, and the word loop measured about 20% faster at 125 bytes. With lengths that
/// vary from call to call the kernels are faster from 32 bytes on (about 1.8x for random
/// lengths under 128), since the word loop's remainder branches mispredict.
const KERNEL_MIN: usize = 128;

/// From this length on, the SIMD kernels start their body at the first vector-aligned address
/// so that its stores do not split cache lines. Below it that measured no faster.
#[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_endian = "little")))]
const ALIGN_MIN: usize = 512;

/// XOR `buf` in place with the 4-byte `key`, where `buf[0]` lines up with `key[phase & 3]`.
///
/// Returns the phase for the byte that would follow: `(phase + buf.len()) & 3`, so a payload
/// that arrives in pieces can be unmasked piece by piece.
///
/// # Example
///
/// ```
/// use surge_proto::mask::apply_mask;
///
/// // RFC 6455 §5.7: a masked "Hello" as a client sends it.
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
///
/// // Unmask it in two pieces, carrying the phase across.
/// let (first, rest) = payload.split_at_mut(2);
/// let phase = apply_mask(first, key, 0);
/// assert_eq!(phase, 2);
/// assert_eq!(apply_mask(rest, key, phase), 1);
/// assert_eq!(&payload, b"Hello");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let next = next_phase(phase, buf.len());
    let key = rotate(key, phase);
    if buf.len() < PIECES_MAX {
        mask_small(buf, key);
    } else if buf.len() < KERNEL_MIN {
        mask_words(buf, key);
    } else {
        mask_large(buf, key);
    }
    next
}

/// Reference byte-at-a-time implementation (the scalar baseline for tests and benches).
///
/// This is the loop as it is usually written; it stays obviously correct so that every fast
/// path can be checked against it.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(i + phase) & 3];
    }
    next_phase(phase, buf.len())
}

/// Appends `src` masked with `key` (starting at `key[phase & 3]`) to `dst`, copying and masking
/// in one pass; returns the phase for the byte that would follow.
///
/// This is what a client uses to build an outgoing frame without first copying the payload
/// and then masking it in place.
///
/// ```
/// use surge_proto::mask::{apply_mask, extend_masked};
///
/// let key = [1, 2, 3, 4];
/// let mut frame = vec![0x81, 0x85]; // header bytes already written
/// let phase = extend_masked(&mut frame, b"Hello", key, 0);
/// assert_eq!(phase, 1);
/// apply_mask(&mut frame[2..], key, 0);
/// assert_eq!(&frame[2..], b"Hello");
/// ```
#[inline]
pub fn extend_masked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], phase: usize) -> usize {
    let next = next_phase(phase, src.len());
    let key = rotate(key, phase);
    if src.len() < PIECES_MAX {
        // SAFETY: `mask_pieces` needs no CPU feature and writes all of the
        // `src.len() < PIECES_MAX <= 32` bytes, as `extend_with` requires.
        unsafe { extend_with(dst, src, key, mask_pieces) };
    } else {
        extend_large(dst, src, key);
    }
    next
}

/// Portable word-at-a-time kernel: 8 bytes per step with `u64` XOR, in safe code.
///
/// [`apply_mask`] uses it for mid-sized buffers, and for all sizes on architectures without a
/// SIMD kernel. It uses unaligned word loads (`u64::from_ne_bytes` on a chunk), which cost
/// nothing extra on the CPUs this engine targets and keep the loop free of `unsafe`.
#[doc(hidden)]
pub fn apply_mask_word(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let next = next_phase(phase, buf.len());
    mask_words(buf, rotate(key, phase));
    next
}

/// A masking kernel, exposed so that tests and benchmarks can drive each one directly.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// [`apply_mask_word`]: portable `u64` words.
    Word,
    /// 16-byte SSE2 vectors (part of the x86_64 baseline, so always present).
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// 32-byte AVX2 vectors, when the CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// 16-byte NEON vectors (part of the aarch64 baseline, so always present).
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    Neon,
}

impl Kernel {
    /// The kernels this CPU can run.
    pub fn available() -> Vec<Kernel> {
        let mut all = vec![Kernel::Word];
        #[cfg(target_arch = "x86_64")]
        {
            all.push(Kernel::Sse2);
            if x86::has_avx2() {
                all.push(Kernel::Avx2);
            }
        }
        #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
        all.push(Kernel::Neon);
        all
    }

    /// [`apply_mask`] forced onto this kernel, whatever the length.
    ///
    /// # Panics
    ///
    /// If the CPU cannot run this kernel (see [`Kernel::available`]).
    pub fn apply(self, buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
        let next = next_phase(phase, buf.len());
        let key = rotate(key, phase);
        match self.raw() {
            None => mask_words(buf, key),
            // SAFETY: `raw` only hands out kernels this CPU can run.
            Some(kernel) => unsafe { apply_with(buf, key, kernel) },
        }
        next
    }

    /// [`extend_masked`] forced onto this kernel, whatever the length.
    ///
    /// # Panics
    ///
    /// If the CPU cannot run this kernel (see [`Kernel::available`]).
    pub fn extend(self, dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], phase: usize) -> usize {
        let next = next_phase(phase, src.len());
        let key = rotate(key, phase);
        match self.raw() {
            None => extend_words(dst, src, key),
            // SAFETY: `raw` only hands out kernels this CPU can run.
            Some(kernel) => unsafe { extend_with(dst, src, key, kernel) },
        }
        next
    }

    /// The raw SIMD kernel, or `None` for [`Kernel::Word`], which has no raw-pointer form.
    fn raw(self) -> Option<RawKernel> {
        match self {
            Kernel::Word => None,
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => Some(x86::sse2),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                assert!(x86::has_avx2(), "this CPU has no AVX2");
                Some(x86::avx2)
            }
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            Kernel::Neon => Some(neon::neon),
        }
    }
}

/// A SIMD kernel: masks `len` bytes from `src` into `dst` with a phase-0 key.
///
/// Contract: the CPU can run the kernel; `src` valid for reads and `dst` valid for writes of
/// `len` bytes; `src` and `dst` either equal or not overlapping.
type RawKernel = unsafe fn(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]);

/// In-place masking through a raw kernel.
///
/// # Safety
///
/// The CPU can run `kernel`.
#[inline(always)]
unsafe fn apply_with(buf: &mut [u8], key: [u8; 4], kernel: RawKernel) {
    let p = buf.as_mut_ptr();
    // SAFETY: the caller vouches for the CPU; `p` is valid for reads and writes of `buf.len()`
    // bytes, and kernels allow source and destination to be the same buffer.
    unsafe { kernel(p, p, buf.len(), key) }
}

/// Appending through a raw kernel, straight into `dst`'s spare capacity.
///
/// # Safety
///
/// The CPU can run `kernel`.
#[inline(always)]
unsafe fn extend_with(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], kernel: RawKernel) {
    dst.reserve(src.len());
    let out = dst.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    // SAFETY: the caller vouches for the CPU. `reserve` made room for `src.len()` bytes at
    // `out`; `src` is a shared borrow, so it cannot overlap the spare capacity of the
    // exclusively borrowed `dst`. The kernel writes every one of those bytes, so they are
    // initialised before `set_len` exposes them.
    unsafe {
        kernel(src.as_ptr(), out, src.len(), key);
        dst.set_len(dst.len() + src.len());
    }
}

/// Portable appending: a copy, then the word kernel over the (now cache-hot) copy.
fn extend_words(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4]) {
    let start = dst.len();
    dst.extend_from_slice(src);
    mask_words(&mut dst[start..], key);
}

/// Phase of the byte after `len` bytes that started at `phase`.
#[inline(always)]
fn next_phase(phase: usize, len: usize) -> usize {
    phase.wrapping_add(len) & 3
}

/// The key as seen from a byte at `phase`: `rotate(key, p)[i] == key[(p + i) & 3]`.
///
/// Every kernel works on a rotated key with phase 0, which turns the per-byte index arithmetic
/// into one rotate per call.
#[inline(always)]
fn rotate(key: [u8; 4], phase: usize) -> [u8; 4] {
    let bits = 8 * (phase & 3) as u32;
    let word = u32::from_ne_bytes(key);
    let word = if cfg!(target_endian = "little") {
        word.rotate_right(bits)
    } else {
        word.rotate_left(bits)
    };
    word.to_ne_bytes()
}

/// The key repeated to fill a `u64`.
#[inline(always)]
fn key_u64(key: [u8; 4]) -> u64 {
    // Both halves are the same word, so this reads the same in either byte order.
    let word = u64::from(u32::from_ne_bytes(key));
    word | word << 32
}

/// Masks fewer than 32 bytes in place with a phase-0 key.
#[inline(always)]
fn mask_small(buf: &mut [u8], key: [u8; 4]) {
    debug_assert!(buf.len() < 32);
    let p = buf.as_mut_ptr();
    // SAFETY: `p` is valid for reads and writes of `buf.len()` bytes, and source and
    // destination may be the same buffer.
    unsafe { mask_pieces(p, p, buf.len(), key) }
}

/// Masks `n & 31` bytes from `src` into `dst` with a phase-0 key: up to three `u64` words, then
/// one piece for each remaining set bit of `n` (4, 2 and 1 bytes), so the key stays lined up
/// until the last two. Pieces never overlap.
///
/// Callers pass `n < 32`: higher bits of `n` are ignored, which is memory-safe but leaves
/// bytes unmasked (and, for `extend_with`, unwritten).
///
/// # Safety
///
/// `src` valid for reads and `dst` valid for writes of `n` bytes; `src` and `dst` either equal
/// or not overlapping.
#[inline(always)]
unsafe fn mask_pieces(src: *const u8, dst: *mut u8, n: usize, key: [u8; 4]) {
    debug_assert!(n < 32);
    let mut at = 0;
    // SAFETY: the pieces are the set bits of `n & 31` laid end to end, so together they cover
    // `[0, n & 31)`, inside what the caller guarantees; each is read before it is written.
    unsafe {
        // A loop rather than straight-line code, which LLVM would merge into a vector op that
        // measured slower when the bytes had just been stored.
        while at < n & 24 {
            let v = src.add(at).cast::<u64>().read_unaligned() ^ key_u64(key);
            dst.add(at).cast::<u64>().write_unaligned(v);
            at += 8;
        }
        if n & 4 != 0 {
            let v = src.add(at).cast::<u32>().read_unaligned() ^ u32::from_ne_bytes(key);
            dst.add(at).cast::<u32>().write_unaligned(v);
            at += 4;
        }
        let mut key = key;
        if n & 2 != 0 {
            let v =
                src.add(at).cast::<u16>().read_unaligned() ^ u16::from_ne_bytes([key[0], key[1]]);
            dst.add(at).cast::<u16>().write_unaligned(v);
            at += 2;
            key = rotate(key, 2);
        }
        if n & 1 != 0 {
            *dst.add(at) = *src.add(at) ^ key[0];
        }
    }
}

#[inline(always)]
fn read_u64(bytes: &[u8]) -> u64 {
    u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// Body of [`apply_mask_word`] with a phase-0 key.
#[inline]
fn mask_words(buf: &mut [u8], key: [u8; 4]) {
    let word_key = key_u64(key);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let masked = read_u64(word) ^ word_key;
        word.copy_from_slice(&masked.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the phase-0 key still lines up.
    mask_small(words.into_remainder(), key);
}

/// In-place masking of at least [`KERNEL_MIN`] bytes with a phase-0 key.
#[inline]
fn mask_large(buf: &mut [u8], key: [u8; 4]) {
    #[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_endian = "little")))]
    // SAFETY: `masked_copy_best` picks a kernel this CPU can run.
    unsafe {
        apply_with(buf, key, masked_copy_best)
    };
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_endian = "little")
    )))]
    mask_words(buf, key);
}

/// Appends at least [`PIECES_MAX`] masked bytes to `dst` with a phase-0 key.
#[inline]
fn extend_large(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4]) {
    #[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_endian = "little")))]
    // SAFETY: `masked_copy_best` picks a kernel this CPU can run.
    unsafe {
        extend_with(dst, src, key, masked_copy_best)
    };
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_endian = "little")
    )))]
    extend_words(dst, src, key);
}

/// The widest kernel this CPU has, chosen per call from the cached CPUID answer.
///
/// # Safety
///
/// The [`RawKernel`] contract, less the CPU requirement.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn masked_copy_best(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]) {
    if x86::has_avx2() {
        // SAFETY: the caller upholds the kernel contract and the CPU has AVX2.
        unsafe { x86::avx2(src, dst, len, key) }
    } else {
        // SAFETY: the caller upholds the kernel contract; SSE2 is in the x86_64 baseline.
        unsafe { x86::sse2(src, dst, len, key) }
    }
}

/// NEON, which every aarch64 CPU has.
///
/// # Safety
///
/// The [`RawKernel`] contract, less the CPU requirement.
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
#[inline(always)]
unsafe fn masked_copy_best(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]) {
    // SAFETY: the caller upholds the kernel contract.
    unsafe { neon::neon(src, dst, len, key) }
}

/// The body shared by the SIMD kernels, for vectors of `$width` bytes. It expands inside each
/// kernel so that the intrinsics are compiled with that kernel's target features. `$pieces`
/// masks buffers shorter than one vector, with the contract of [`mask_pieces`].
///
/// Contract (the caller's `# Safety`): `$src` valid for reads and `$dst` valid for writes of
/// `$len` bytes; `$src` and `$dst` either equal or not overlapping.
#[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_endian = "little")))]
macro_rules! masked_copy_body {
    (
        $src:ident, $dst:ident, $len:ident, $key:ident, width: $width:expr,
        load: $load:path, store: $store:path, xor: $xor:path, splat: $splat:path,
        pieces: $pieces:path $(,)?
    ) => {{
        const W: usize = $width;
        if $len < W {
            // SAFETY: `$len < W <= 32`, and the contract covers `[0, $len)`.
            unsafe { $pieces($src, $dst, $len, $key) };
        } else {
            let tail_at = $len - W;
            let mut i = if $len >= ALIGN_MIN { $dst.addr().wrapping_neg() & (W - 1) } else { 0 };
            // SAFETY: with `W <= $len`, the head `[0, W)` and the tail `[tail_at, $len)` are
            // inside the buffer the contract covers, and body vectors are only touched while
            // `i + W <= $len`. All loads and stores are unaligned-tolerant. In place, nothing is
            // loaded after a store that overlaps it: the edges are loaded first and stored last,
            // and the body vectors are disjoint.
            unsafe {
                // The edge vectors overlap the body (and the head may overlap the tail), but each
                // is computed from the original bytes with the mask for its own position, so it
                // stores the same values the body did. That replaces the branches a scalar head
                // and tail would take on the length and alignment, which mispredict when those
                // vary from call to call.
                let head = $xor($load($src.cast()), $splat(i32::from_ne_bytes($key)));
                let tail_key = i32::from_ne_bytes(rotate($key, tail_at));
                let tail = $xor($load($src.add(tail_at).cast()), $splat(tail_key));
                let mask = $splat(i32::from_ne_bytes(rotate($key, i)));
                while i + 4 * W <= $len {
                    let a = $xor($load($src.add(i).cast()), mask);
                    let b = $xor($load($src.add(i + W).cast()), mask);
                    let c = $xor($load($src.add(i + 2 * W).cast()), mask);
                    let d = $xor($load($src.add(i + 3 * W).cast()), mask);
                    $store($dst.add(i).cast(), a);
                    $store($dst.add(i + W).cast(), b);
                    $store($dst.add(i + 2 * W).cast(), c);
                    $store($dst.add(i + 3 * W).cast(), d);
                    i += 4 * W;
                }
                while i + W <= $len {
                    $store($dst.add(i).cast(), $xor($load($src.add(i).cast()), mask));
                    i += W;
                }
                // The body started below `W` and stopped within `W` of the end, so the head and
                // tail cover what it left.
                $store($dst.cast(), head);
                $store($dst.add(tail_at).cast(), tail);
            }
        }
    }};
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{mask_pieces, rotate, ALIGN_MIN};
    use std::arch::x86_64::{
        _mm256_loadu_si256, _mm256_set1_epi32, _mm256_storeu_si256, _mm256_xor_si256,
        _mm_loadu_si128, _mm_set1_epi32, _mm_storeu_si128, _mm_xor_si128,
    };
    use std::sync::atomic::{AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const ABSENT: u8 = 1;
    const PRESENT: u8 = 2;

    /// CPUID result for AVX2, detected on first use and cached.
    static AVX2: AtomicU8 = AtomicU8::new(UNKNOWN);

    #[inline(always)]
    pub(super) fn has_avx2() -> bool {
        if cfg!(target_feature = "avx2") {
            return true;
        }
        match AVX2.load(Ordering::Relaxed) {
            PRESENT => true,
            ABSENT => false,
            _ => detect_avx2(),
        }
    }

    // Racing first callers may each detect; they store the same answer.
    #[cold]
    fn detect_avx2() -> bool {
        let present = std::is_x86_feature_detected!("avx2");
        AVX2.store(if present { PRESENT } else { ABSENT }, Ordering::Relaxed);
        present
    }

    /// SSE2 kernel: 16-byte vectors.
    ///
    /// # Safety
    ///
    /// `src` valid for reads and `dst` valid for writes of `len` bytes; `src` and `dst` either
    /// equal or not overlapping.
    pub(super) unsafe fn sse2(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]) {
        masked_copy_body!(
            src, dst, len, key, width: 16,
            load: _mm_loadu_si128, store: _mm_storeu_si128, xor: _mm_xor_si128,
            splat: _mm_set1_epi32, pieces: mask_pieces,
        );
    }

    /// AVX2 kernel: 32-byte vectors.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2; `src` valid for reads and `dst` valid for writes of `len` bytes; `src`
    /// and `dst` either equal or not overlapping.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]) {
        masked_copy_body!(
            src, dst, len, key, width: 32,
            load: _mm256_loadu_si256, store: _mm256_storeu_si256, xor: _mm256_xor_si256,
            splat: _mm256_set1_epi32, pieces: mask_pieces,
        );
    }
}

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
mod neon {
    use super::{mask_pieces, rotate, ALIGN_MIN};
    use std::arch::aarch64::{uint8x16_t, veorq_u8, vld1q_u8, vst1q_u8};

    /// The key word in every 32-bit lane. Loaded from memory rather than built with
    /// `vdupq_n_*` so lane order is memory order by construction; LLVM folds it to a `dup`.
    #[inline(always)]
    fn splat(key: i32) -> uint8x16_t {
        let lanes = [key; 4];
        // SAFETY: `lanes` is 16 readable bytes, and NEON is in the aarch64 baseline.
        unsafe { vld1q_u8(lanes.as_ptr().cast()) }
    }

    /// NEON kernel: 16-byte vectors.
    ///
    /// # Safety
    ///
    /// `src` valid for reads and `dst` valid for writes of `len` bytes; `src` and `dst` either
    /// equal or not overlapping.
    pub(super) unsafe fn neon(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]) {
        masked_copy_body!(
            src, dst, len, key, width: 16,
            load: vld1q_u8, store: vst1q_u8, xor: veorq_u8, splat: splat, pieces: mask_pieces,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_lines_key_up_with_phase() {
        let key = [1, 2, 3, 4];
        for phase in 0..8 {
            let r = rotate(key, phase);
            for (i, &k) in r.iter().enumerate() {
                assert_eq!(k, key[(phase + i) & 3]);
            }
        }
    }

    #[test]
    fn small_path_matches_bytewise() {
        let key = [0xa5, 0x3c, 0x0f, 0x71];
        for len in 0..PIECES_MAX {
            for phase in 0..4 {
                let orig: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
                let mut want = orig.clone();
                apply_mask_bytewise(&mut want, key, phase);
                let mut got = orig.clone();
                mask_small(&mut got, rotate(key, phase));
                assert_eq!(got, want, "len {len} phase {phase}");
            }
        }
    }
}
