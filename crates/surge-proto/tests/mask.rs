//! Every masking path checked against the byte-at-a-time reference.

use proptest::prelude::*;
use surge_proto::mask::{apply_mask, apply_mask_bytewise, apply_mask_word, extend_masked, Kernel};

/// Every length up to 300, then lengths around 512, where the SIMD kernels start aligning
/// their stores, and a few longer ones.
fn lengths() -> impl Iterator<Item = usize> {
    (0..=300).chain(500..=530).chain([1024, 4099])
}
// 32 offsets, so the AVX2 kernel meets every alignment of its 32-byte stores.
const MAX_OFFSET: usize = 31;
/// Bytes around the masked range that must come out untouched.
const GUARD: usize = 40;

/// Deterministic bytes that differ per position, so a misaligned key shows up.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn keys() -> impl Iterator<Item = [u8; 4]> {
    (1..=3u32).map(|s| pattern(4, s).try_into().unwrap())
}

type InPlace = dyn Fn(&mut [u8], [u8; 4], usize) -> usize;

/// Runs `f` over `len` bytes at `offset` inside a larger buffer, for every phase, and compares
/// with the reference, including the guard bytes on both sides.
fn check_in_place(name: &str, f: &InPlace) {
    for key in keys() {
        for len in lengths() {
            for offset in 0..=MAX_OFFSET {
                for phase in 0..4 {
                    let orig = pattern(offset + len + GUARD, len as u32);
                    let mut want = orig.clone();
                    let want_phase = apply_mask_bytewise(&mut want[offset..][..len], key, phase);
                    let mut got = orig.clone();
                    let got_phase = f(&mut got[offset..][..len], key, phase);
                    assert_eq!(got_phase, want_phase, "{name}: phase, len {len} phase {phase}");
                    assert!(
                        got == want,
                        "{name}: bytes differ, len {len} offset {offset} phase {phase} key {key:?}"
                    );
                    // Again with the buffer ending where its allocation does, so that
                    // AddressSanitizer (asan.sh) sees any access past the end.
                    let mut tight = orig[..offset + len].to_vec();
                    f(&mut tight[offset..], key, phase);
                    assert!(
                        tight == want[..offset + len],
                        "{name}: tight, len {len} offset {offset}"
                    );
                }
            }
        }
    }
}

type Extend = dyn Fn(&mut Vec<u8>, &[u8], [u8; 4], usize) -> usize;

/// As `check_in_place`, for the copying form: the source sits at `offset` and the output is
/// appended after a prefix of `offset` bytes, so both alignments vary.
fn check_extend(name: &str, f: &Extend) {
    for key in keys() {
        for len in lengths() {
            for offset in 0..=MAX_OFFSET {
                for phase in 0..4 {
                    let src = pattern(offset + len, len as u32 + 7);
                    let src = &src[offset..];
                    let mut want = src.to_vec();
                    let want_phase = apply_mask_bytewise(&mut want, key, phase);
                    let prefix = pattern(offset, 99);
                    let mut dst = prefix.clone();
                    let got_phase = f(&mut dst, src, key, phase);
                    assert_eq!(got_phase, want_phase, "{name}: phase, len {len} phase {phase}");
                    assert_eq!(&dst[..offset], &prefix[..], "{name}: prefix clobbered");
                    assert!(
                        dst[offset..] == want[..],
                        "{name}: bytes differ, len {len} offset {offset} phase {phase} key {key:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn bytewise_is_the_rfc_definition() {
    // RFC 6455 §5.7: masked "Hello".
    let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
    assert_eq!(apply_mask_bytewise(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0), 1);
    assert_eq!(&payload, b"Hello");
}

#[test]
fn dispatch_matches_bytewise() {
    check_in_place("apply_mask", &apply_mask);
}

#[test]
fn word_matches_bytewise() {
    check_in_place("word", &apply_mask_word);
}

#[test]
fn every_kernel_matches_bytewise() {
    for kernel in Kernel::available() {
        check_in_place(&format!("{kernel:?}"), &move |b, k, p| kernel.apply(b, k, p));
    }
}

#[test]
fn extend_masked_matches_bytewise() {
    check_extend("extend_masked", &extend_masked);
}

#[test]
fn every_kernel_extend_matches_bytewise() {
    for kernel in Kernel::available() {
        check_extend(&format!("{kernel:?} extend"), &move |d, s, k, p| kernel.extend(d, s, k, p));
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn this_cpu_gets_its_simd_kernels_tested() {
    let available = Kernel::available();
    assert!(available.contains(&Kernel::Sse2));
    assert_eq!(available.contains(&Kernel::Avx2), std::is_x86_feature_detected!("avx2"));
}

#[test]
fn masking_in_pieces_equals_masking_whole() {
    let key = [0xde, 0xad, 0xbe, 0xef];
    for len in [0, 1, 15, 16, 17, 31, 32, 33, 100, 129, 257] {
        let orig = pattern(len, 5);
        for phase in 0..4 {
            let mut whole = orig.clone();
            let end_phase = apply_mask(&mut whole, key, phase);
            for split in 0..=len {
                let mut pieces = orig.clone();
                let (a, b) = pieces.split_at_mut(split);
                let mid = apply_mask(a, key, phase);
                assert_eq!(apply_mask(b, key, mid), end_phase);
                assert_eq!(pieces, whole, "len {len} split {split} phase {phase}");

                let mut out = Vec::new();
                let mid = extend_masked(&mut out, &orig[..split], key, phase);
                assert_eq!(extend_masked(&mut out, &orig[split..], key, mid), end_phase);
                assert_eq!(out, whole, "extend: len {len} split {split} phase {phase}");
            }
        }
    }
}

#[test]
fn masking_twice_restores_the_payload() {
    let orig = pattern(70_000, 11);
    let mut buf = orig.clone();
    apply_mask(&mut buf, [1, 2, 3, 4], 3);
    assert_ne!(buf, orig);
    apply_mask(&mut buf, [1, 2, 3, 4], 3);
    assert_eq!(buf, orig);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn large_buffers_match_bytewise(
        data in prop::collection::vec(any::<u8>(), 0..70 * 1024),
        offset in 0usize..64,
        key in any::<[u8; 4]>(),
        phase in 0usize..4,
    ) {
        let offset = offset.min(data.len());
        let mut want = data.clone();
        let want_phase = apply_mask_bytewise(&mut want[offset..], key, phase);

        let mut got = data.clone();
        prop_assert_eq!(apply_mask(&mut got[offset..], key, phase), want_phase);
        prop_assert!(got == want);

        for kernel in Kernel::available() {
            let mut got = data.clone();
            prop_assert_eq!(kernel.apply(&mut got[offset..], key, phase), want_phase);
            prop_assert!(got == want, "{:?}", kernel);

            let mut out = data[..offset].to_vec();
            prop_assert_eq!(kernel.extend(&mut out, &data[offset..], key, phase), want_phase);
            prop_assert!(out == want, "{:?} extend", kernel);
        }

        let mut out = data[..offset].to_vec();
        prop_assert_eq!(extend_masked(&mut out, &data[offset..], key, phase), want_phase);
        prop_assert!(out == want);
    }
}
