//! RFC 6455 §5.3 payload masking: `out[i] = in[i] ^ key[(phase + i) % 4]`.
//!
//! Masking is an involution, so the same functions mask (client send) and unmask (server
//! receive). `phase` lets a payload be processed in pieces as it arrives off the wire: each call
//! returns the phase to hand to the call for the next piece.
//!
//! Every buffer is masked by one of a few kernels. Buffers shorter than [`SIMD_MIN`] bytes are
//! done with at most two overlapping word operations, inline, without touching the dispatcher.
//! Longer ones go to the widest SIMD kernel the CPU has (AVX2, else SSE2 on x86_64; NEON on
//! little-endian aarch64); other architectures use portable `u64` words.
//!
//! The SIMD kernels share one shape: the first and the last vector of the buffer are loaded and
//! masked up front with unaligned loads, the body in between is masked with stores aligned to
//! the vector width, and the two edge vectors are stored last. The edge vectors overlap the
//! body, but they were computed from the original bytes with the mask for their own position,
//! so they write exactly the values the body wrote there. This removes every scalar head and
//! tail loop and keeps stores from splitting cache lines.
#![allow(unsafe_code)]

/// Buffers shorter than this never reach the SIMD dispatcher: one or two overlapping word
/// operations beat a vector setup plus an atomic load and an indirect branch.
pub const SIMD_MIN: usize = 16;

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
    if buf.len() < SIMD_MIN {
        mask_small(buf, key);
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
    if src.len() < SIMD_MIN {
        extend_small(dst, src, key);
    } else {
        extend_large(dst, src, key);
    }
    next
}

/// Portable word-at-a-time kernel: 8 bytes per step with `u64` XOR, in safe code.
///
/// This is what [`apply_mask`] uses on architectures without a SIMD kernel. It uses unaligned
/// word loads (`u64::from_ne_bytes` on a chunk), which cost nothing extra on the CPUs this
/// engine targets and keep the code free of `unsafe`.
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

    /// [`apply_mask`] forced onto this kernel. Buffers shorter than [`SIMD_MIN`] take the
    /// same scalar path as in [`apply_mask`], since no SIMD kernel handles them.
    ///
    /// # Panics
    ///
    /// If the CPU cannot run this kernel (see [`Kernel::available`]).
    pub fn apply(self, buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
        let next = next_phase(phase, buf.len());
        let key = rotate(key, phase);
        match self.raw() {
            None => mask_words(buf, key),
            Some(_) if buf.len() < SIMD_MIN => mask_small(buf, key),
            // SAFETY: `raw` only hands out kernels this CPU can run.
            Some(kernel) => unsafe { apply_with(buf, key, kernel) },
        }
        next
    }

    /// [`extend_masked`] forced onto this kernel, with the same short-buffer rule as
    /// [`Kernel::apply`].
    ///
    /// # Panics
    ///
    /// If the CPU cannot run this kernel (see [`Kernel::available`]).
    pub fn extend(self, dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], phase: usize) -> usize {
        let next = next_phase(phase, src.len());
        let key = rotate(key, phase);
        match self.raw() {
            None => extend_words(dst, src, key),
            Some(_) if src.len() < SIMD_MIN => extend_small(dst, src, key),
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
/// Contract: the CPU can run the kernel; `len >= SIMD_MIN`; `src` valid for reads and `dst`
/// valid for writes of `len` bytes; `src` and `dst` either equal or not overlapping.
type RawKernel = unsafe fn(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]);

/// In-place masking through a raw kernel.
///
/// # Safety
///
/// The CPU can run `kernel`, and `buf.len() >= SIMD_MIN`.
#[inline(always)]
unsafe fn apply_with(buf: &mut [u8], key: [u8; 4], kernel: RawKernel) {
    debug_assert!(buf.len() >= SIMD_MIN);
    let p = buf.as_mut_ptr();
    // SAFETY: the caller vouches for the CPU and the length; `p` is valid for reads and writes
    // of `buf.len()` bytes, and kernels allow source and destination to be the same buffer.
    unsafe { kernel(p, p, buf.len(), key) }
}

/// Appending through a raw kernel, straight into `dst`'s spare capacity.
///
/// # Safety
///
/// The CPU can run `kernel`, and `src.len() >= SIMD_MIN`.
#[inline(always)]
unsafe fn extend_with(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], kernel: RawKernel) {
    debug_assert!(src.len() >= SIMD_MIN);
    dst.reserve(src.len());
    let out = dst.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    // SAFETY: the caller vouches for the CPU and the length. `reserve` made room for
    // `src.len()` bytes at `out`; `src` is a shared borrow, so it cannot overlap the spare
    // capacity of the exclusively borrowed `dst`. The kernel writes every one of those bytes,
    // so they are initialised before `set_len` exposes them.
    unsafe {
        kernel(src.as_ptr(), out, src.len(), key);
        dst.set_len(dst.len() + src.len());
    }
}

/// Appends fewer than [`SIMD_MIN`] masked bytes, masking them in a stack copy first.
#[inline(always)]
fn extend_small(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4]) {
    let mut tmp = [0u8; SIMD_MIN];
    let tmp = &mut tmp[..src.len()];
    tmp.copy_from_slice(src);
    mask_small(tmp, key);
    dst.extend_from_slice(tmp);
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
    let [a, b, c, d] = key;
    u64::from_ne_bytes([a, b, c, d, a, b, c, d])
}

/// Masks fewer than 16 bytes with a phase-0 key: two overlapping words, each computed from the
/// original bytes, so the overlap gets the same value from both.
#[inline(always)]
fn mask_small(buf: &mut [u8], key: [u8; 4]) {
    let len = buf.len();
    debug_assert!(len < 16);
    if len >= 8 {
        let tail_at = len - 8;
        let (head_key, tail_key) = (key_u64(key), key_u64(rotate(key, tail_at)));
        let head = read_u64(&buf[..8]) ^ head_key;
        let tail = read_u64(&buf[tail_at..]) ^ tail_key;
        buf[..8].copy_from_slice(&head.to_ne_bytes());
        buf[tail_at..].copy_from_slice(&tail.to_ne_bytes());
    } else if len >= 4 {
        let tail_at = len - 4;
        let head = read_u32(&buf[..4]) ^ u32::from_ne_bytes(key);
        let tail = read_u32(&buf[tail_at..]) ^ u32::from_ne_bytes(rotate(key, tail_at));
        buf[..4].copy_from_slice(&head.to_ne_bytes());
        buf[tail_at..].copy_from_slice(&tail.to_ne_bytes());
    } else {
        for (b, k) in buf.iter_mut().zip(key) {
            *b ^= k;
        }
    }
}

#[inline(always)]
fn read_u64(bytes: &[u8]) -> u64 {
    u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"))
}

#[inline(always)]
fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_ne_bytes(bytes[..4].try_into().expect("4 bytes"))
}

/// Body of [`apply_mask_word`] with a phase-0 key.
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

/// In-place masking of at least [`SIMD_MIN`] bytes with a phase-0 key.
#[inline]
fn mask_large(buf: &mut [u8], key: [u8; 4]) {
    #[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_endian = "little")))]
    // SAFETY: `masked_copy_best` picks a kernel this CPU can run; the length is checked by
    // the caller.
    unsafe {
        apply_with(buf, key, masked_copy_best)
    };
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_endian = "little")
    )))]
    mask_words(buf, key);
}

/// Appends at least [`SIMD_MIN`] masked bytes to `dst` with a phase-0 key.
#[inline]
fn extend_large(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4]) {
    #[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_endian = "little")))]
    // SAFETY: `masked_copy_best` picks a kernel this CPU can run; the length is checked by
    // the caller.
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
/// kernel so that the intrinsics are compiled with that kernel's target features.
///
/// Contract (the caller's `# Safety`): `$len >= $width`; `$src` valid for reads and `$dst`
/// valid for writes of `$len` bytes; `$src` and `$dst` either equal or not overlapping.
///
/// Equal pointers are fine because every byte is read before it is written: the edge vectors
/// are loaded before the body loop stores anything, and the body loop loads each vector before
/// storing it.
#[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_endian = "little")))]
macro_rules! masked_copy_body {
    (
        $src:ident, $dst:ident, $len:ident, $key:ident, width: $width:expr,
        load: $load:path, store: $store:path, xor: $xor:path, splat: $splat:path $(,)?
    ) => {{
        const W: usize = $width;
        debug_assert!($len >= W);
        let tail_at = $len - W;
        // First store offset past 0 at which `$dst` is `W`-aligned, in 1..=W. The head vector
        // covers everything before it, and `W <= $len` keeps it inside the buffer.
        let mut i = W - ($dst.addr() & (W - 1));
        let head_key = i32::from_ne_bytes($key);
        let tail_key = i32::from_ne_bytes(rotate($key, tail_at));
        let body_key = i32::from_ne_bytes(rotate($key, i));
        // SAFETY: by the contract, `[0, $len)` is readable at `$src` and writable at `$dst`.
        // The head vector is `[0, W)` and the tail vector `[tail_at, $len)`, inside since
        // `W <= $len`. Body vectors start at `i` and are only touched while `i + W <= $len`.
        // All loads and stores are unaligned-tolerant.
        unsafe {
            let head = $xor($load($src.cast()), $splat(head_key));
            let tail = $xor($load($src.add(tail_at).cast()), $splat(tail_key));
            let mask = $splat(body_key);
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
            // What the body left, `[i, $len)`, is shorter than `W` and so inside the tail.
            $store($dst.cast(), head);
            $store($dst.add(tail_at).cast(), tail);
        }
    }};
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::rotate;
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
    /// `len >= 16`; `src` valid for reads and `dst` valid for writes of `len` bytes; `src` and
    /// `dst` either equal or not overlapping.
    #[inline]
    pub(super) unsafe fn sse2(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]) {
        masked_copy_body!(
            src, dst, len, key, width: 16,
            load: _mm_loadu_si128, store: _mm_storeu_si128, xor: _mm_xor_si128,
            splat: _mm_set1_epi32,
        );
    }

    /// AVX2 kernel: 32-byte vectors, or 16-byte ones below 32 bytes.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2; `len >= 16`; `src` valid for reads and `dst` valid for writes of
    /// `len` bytes; `src` and `dst` either equal or not overlapping.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]) {
        if len < 32 {
            // Expanded here rather than calling `sse2` so it is VEX-encoded, avoiding the
            // SSE/AVX transition penalty.
            masked_copy_body!(
                src, dst, len, key, width: 16,
                load: _mm_loadu_si128, store: _mm_storeu_si128, xor: _mm_xor_si128,
                splat: _mm_set1_epi32,
            );
        } else {
            masked_copy_body!(
                src, dst, len, key, width: 32,
                load: _mm256_loadu_si256, store: _mm256_storeu_si256, xor: _mm256_xor_si256,
                splat: _mm256_set1_epi32,
            );
        }
    }
}

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
mod neon {
    use super::rotate;
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
    /// `len >= 16`; `src` valid for reads and `dst` valid for writes of `len` bytes; `src` and
    /// `dst` either equal or not overlapping.
    #[inline]
    pub(super) unsafe fn neon(src: *const u8, dst: *mut u8, len: usize, key: [u8; 4]) {
        masked_copy_body!(
            src, dst, len, key, width: 16,
            load: vld1q_u8, store: vst1q_u8, xor: veorq_u8, splat: splat,
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
        for len in 0..SIMD_MIN {
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
