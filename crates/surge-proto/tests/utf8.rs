//! `surge_proto::utf8` checked against `std::str::from_utf8` as the oracle: the verdict, and the
//! exact byte at which streaming validation fails.

use proptest::prelude::*;
use surge_proto::utf8::{validate, InvalidUtf8, Utf8Validator};

/// The index of the first byte at which the input seen so far can no longer be the start of
/// valid UTF-8, by std's definition: the first `i` such that `from_utf8(&bytes[..=i])` fails with
/// `error_len() == Some(_)`.
fn first_bad(bytes: &[u8]) -> Option<usize> {
    // Every prefix of the valid part is a valid prefix, so start there.
    let start = match std::str::from_utf8(bytes) {
        Ok(_) => return None,
        Err(e) => e.valid_up_to(),
    };
    (start..bytes.len())
        .find(|&i| std::str::from_utf8(&bytes[..=i]).is_err_and(|e| e.error_len().is_some()))
}

/// Feeds `pieces` in order and checks each `feed` against the oracle, then `finish`.
fn check_pieces(whole: &[u8], pieces: &[&[u8]]) {
    let bad = first_bad(whole);
    let valid = std::str::from_utf8(whole).is_ok();
    let mut v = Utf8Validator::new();
    let mut end = 0;
    for piece in pieces {
        end += piece.len();
        let expect_err = bad.is_some_and(|b| b < end);
        let got = v.feed(piece);
        assert_eq!(
            got.is_err(),
            expect_err,
            "{whole:02X?} in pieces {pieces:02X?}: feed up to {end} gave {got:?}, first bad byte {bad:?}"
        );
        // Once failed, every later feed fails too (`expect_err` stays true).
        if !expect_err {
            // At a piece boundary the validator is clean iff std sees no incomplete sequence.
            assert_eq!(v.is_clean(), std::str::from_utf8(&whole[..end]).is_ok());
        }
    }
    assert_eq!(v.finish().is_ok(), valid, "{whole:02X?} in pieces {pieces:02X?}: finish");
    assert!(v.is_clean());
}

/// Checks `whole` in one piece, split at every point into 2 pieces, and byte by byte.
fn check(whole: &[u8]) {
    let valid = std::str::from_utf8(whole).is_ok();
    assert_eq!(validate(whole).is_ok(), valid, "validate({whole:02X?})");
    if let Ok(s) = validate(whole) {
        assert_eq!(s.as_bytes(), whole);
    }
    check_pieces(whole, &[whole]);
    for split in 0..=whole.len() {
        let (a, b) = whole.split_at(split);
        check_pieces(whole, &[a, b]);
    }
    let bytes: Vec<&[u8]> = whole.chunks(1).collect();
    check_pieces(whole, &bytes);
    // Empty pieces change nothing.
    let with_empty: Vec<&[u8]> = whole.chunks(1).flat_map(|c| [c, &[][..]]).collect();
    check_pieces(whole, &with_empty);
}

/// Checks `case` alone and inside long runs of ASCII and of multi-byte text, so that the SIMD
/// paths of simdutf8 (64 bytes and more) see it too.
fn check_in_context(case: &[u8]) {
    check(case);
    let ascii = [b'a'; 70];
    let multi = "é€😀κόσμε".repeat(5);
    for pad in [&ascii[..], multi.as_bytes()] {
        check(&[pad, case].concat());
        check(&[case, pad].concat());
        check(&[pad, case, pad].concat());
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Autobahn TestSuite case 6.x payloads (and a few more), as hex.
const CASES: &[&str] = &[
    // 6.1 empty, 6.2 / 6.3 / 6.5 valid text.
    "",
    "48656c6c6f2dc2b540c39fc3b6c3a4c3bcc3a0c3a12d5554462d382121",
    "cebae1bdb9cf83cebcceb5",
    // 6.3.2 / 6.4.x: κόσμε followed by a surrogate or a code point above U+10FFFF.
    "cebae1bdb9cf83cebcceb5eda080656469746564",
    "cebae1bdb9cf83cebcceb5f4908080656469746564",
    "cebae1bdb9cf83cebcceb5f4",
    "cebae1bdb9cf83cebcceb5f490",
    "cebae1bdb9cf83cebcceb5ed",
    "cebae1bdb9cf83cebcceb5eda0",
    // 6.7 first possible sequence of each length, 6.8 5/6-byte forms.
    "00",
    "c280",
    "e0a080",
    "f0908080",
    "f888808080",
    "fc8480808080",
    // 6.9 last possible sequence of each length, 6.10 last 5/6-byte forms.
    "7f",
    "dfbf",
    "efbfbf",
    "f48fbfbf",
    "f7bfbfbf",
    "fbbfbfbfbf",
    "fdbfbfbfbfbf",
    // 6.11 other boundary conditions.
    "ed9fbf",
    "ee8080",
    "efbfbd",
    "f4908080",
    // 6.12 unexpected continuation bytes.
    "80",
    "bf",
    "80bf",
    "80bf80",
    "80bf80bf",
    "80bf80bf80",
    "80bf80bf80bf",
    "80bf80bf80bf80",
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
    // 6.13 lonely start characters.
    "c020c120c220c320c420c520c620c720c820c920ca20cb20cc20cd20ce20cf20d020d120d220d320d420d520d620d720d820d920da20db20dc20dd20de20",
    "e020e120e220e320e420e520e620e720e820e920ea20eb20ec20ed20ee20",
    "f020f120f220f320f420f520f620",
    "f820f920fa20",
    "fc20",
    // 6.14 sequences with the last continuation byte missing.
    "c0",
    "e080",
    "f08080",
    "f8808080",
    "fc80808080",
    "df",
    "efbf",
    "f7bfbf",
    "fbbfbfbf",
    "fdbfbfbfbf",
    "c2",
    "e0a0",
    "f09080",
    "f48fbf",
    // 6.15 concatenation of incomplete sequences.
    "c0e080f08080f8808080fc80808080dfefbff7bfbffbbfbfbffdbfbfbfbf",
    // 6.16 impossible bytes.
    "fe",
    "ff",
    "fefeffff",
    // 6.17 overlong ASCII, 6.18 maximum overlong sequences, 6.19 overlong NUL.
    "c0af",
    "e080af",
    "f08080af",
    "f8808080af",
    "fc80808080af",
    "c1bf",
    "e09fbf",
    "f08fbfbf",
    "f887bfbfbf",
    "fc83bfbfbfbf",
    "c080",
    "e08080",
    "f0808080",
    "f880808080",
    "fc8080808080",
    // 6.20 single surrogates, 6.21 paired surrogates.
    "eda080",
    "edadbf",
    "edae80",
    "edafbf",
    "edb080",
    "edbe80",
    "edbfbf",
    "eda080edb080",
    "eda080edbfbf",
    "edadbfedb080",
    "edadbfedbfbf",
    "edae80edb080",
    "edae80edbfbf",
    "edafbfedb080",
    "edafbfedbfbf",
    // 6.22 noncharacters (valid), 6.23 replacement character and friends.
    "efbfbe",
    "efbfbf",
    "f09fbfbe",
    "f09fbfbf",
    "f48fbfbe",
    "efb790",
    "efb7af",
    "efbfbd",
    "61efbfbd62",
    // A sequence cut short by ASCII or by another lead byte.
    "e28241",
    "f09f98e282ac",
    "c3c3a9",
    "e2e282ac",
    // Emoji, CJK, and mixed.
    "f09f9880f09f9881e4b8ade69687",
    "41c3a9e282acf09f9880",
];

#[test]
fn autobahn_style_cases_match_std() {
    for case in CASES {
        check_in_context(&hex(case));
    }
}

#[test]
fn all_one_and_two_byte_inputs_match_std() {
    for a in 0..=u8::MAX {
        check(&[a]);
        for b in 0..=u8::MAX {
            check(&[a, b]);
        }
    }
}

/// Bytes around every boundary that matters for UTF-8 validation.
const EDGES: &[u8] = &[
    0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF,
    0xF0, 0xF4, 0xF5, 0xFF,
];

#[test]
fn every_lead_byte_with_edge_continuations_matches_std() {
    for lead in 0x80..=u8::MAX {
        for &b in EDGES {
            for &c in EDGES {
                check(&[lead, b, c]);
                for &d in EDGES {
                    check(&[lead, b, c, d]);
                }
            }
        }
    }
}

#[test]
fn stays_failed_until_reset() {
    let mut v = Utf8Validator::new();
    assert_eq!(v.feed(b"ok\xFF"), Err(InvalidUtf8));
    assert!(!v.is_clean());
    assert_eq!(v.feed(b"fine"), Err(InvalidUtf8));
    assert_eq!(v.feed(b""), Err(InvalidUtf8));
    v.reset();
    assert!(v.is_clean());
    assert_eq!(v.feed(b"fine"), Ok(()));
    assert_eq!(v.feed(b"\xFF"), Err(InvalidUtf8));
    assert_eq!(v.finish(), Err(InvalidUtf8));
    assert_eq!(v.feed(b"fine"), Ok(()));
    assert_eq!(v.finish(), Ok(()));
}

#[test]
fn reset_drops_carried_bytes() {
    let mut v = Utf8Validator::new();
    v.feed(b"\xE2\x82").unwrap();
    assert!(!v.is_clean());
    v.reset();
    assert!(v.is_clean());
    // Without the reset, `AC` would complete the euro sign.
    assert_eq!(v.feed(b"\xAC"), Err(InvalidUtf8));
}

#[test]
fn default_and_new_agree() {
    assert!(Utf8Validator::default().is_clean());
    assert!(Utf8Validator::new().is_clean());
    assert_eq!(InvalidUtf8.to_string(), "invalid UTF-8");
}

/// Mostly-valid text: characters of every width, with a few bytes overwritten by arbitrary ones
/// and sometimes cut short.
fn text_with_corruption() -> impl Strategy<Value = Vec<u8>> {
    let ch = prop_oneof![
        4 => proptest::char::range('\0', '\x7F'),
        2 => proptest::char::range('\u{80}', '\u{7FF}'),
        2 => proptest::char::range('\u{800}', '\u{FFFF}'),
        2 => proptest::char::range('\u{10000}', '\u{10FFFF}'),
    ];
    (
        proptest::collection::vec(ch, 0..120),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        any::<Option<prop::sample::Index>>(),
    )
        .prop_map(|(chars, corruptions, cut)| {
            let mut bytes = chars.into_iter().collect::<String>().into_bytes();
            if !bytes.is_empty() {
                for (at, byte) in corruptions {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                if let Some(cut) = cut {
                    bytes.truncate(cut.index(bytes.len()));
                }
            }
            bytes
        })
}

/// Splits `bytes` at the given points (taken modulo its length, sorted).
fn pieces<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for end in at {
        out.push(&bytes[start..end]);
        start = end;
    }
    out.push(&bytes[start..]);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn chunked_matches_std(
        bytes in text_with_corruption(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        prop_assert_eq!(validate(&bytes).is_ok(), std::str::from_utf8(&bytes).is_ok());
        check_pieces(&bytes, &pieces(&bytes, &cuts));
        let byte_by_byte: Vec<&[u8]> = bytes.chunks(1).collect();
        check_pieces(&bytes, &byte_by_byte);
    }

    #[test]
    fn random_bytes_match_std(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        prop_assert_eq!(validate(&bytes).is_ok(), std::str::from_utf8(&bytes).is_ok());
        check_pieces(&bytes, &pieces(&bytes, &cuts));
    }
}

/// `validate`'s ASCII fast path (the one `unsafe` block in `utf8`) against std over every
/// length up to past its threshold, at every start offset, for ASCII and for inputs with one
/// non-ASCII or invalid byte at each position. Each case sits at the very end of its own
/// allocation, so that AddressSanitizer (asan.sh runs this file) sees any over-read.
#[test]
fn validate_matches_std_at_every_length_and_alignment() {
    for len in 0..=80 {
        for offset in 0..16 {
            let check = |edit: &dyn Fn(&mut [u8])| {
                let mut backing = vec![b'a'; offset + len];
                edit(&mut backing[offset..]);
                let piece = &backing[offset..];
                let ours = validate(piece).map(str::as_bytes).ok();
                let std = std::str::from_utf8(piece).map(str::as_bytes).ok();
                assert_eq!(ours, std, "len {len} offset {offset}: {piece:02X?}");
            };
            check(&|_| {});
            for at in 0..len {
                check(&|piece| piece[at] = 0x80);
                check(&|piece| piece[at] = 0xFF);
                check(&|piece| {
                    piece[at] = 0xC3;
                    if at + 1 < piece.len() {
                        piece[at + 1] = 0xA9; // é: a valid two-byte sequence
                    }
                });
            }
        }
    }
}
