//! permessage-deflate (RFC 7692): the §7.2.3 examples byte for byte, negotiation tables,
//! bounded inflation, corrupt and truncated payloads, round trips, and interop with Python's
//! zlib (C zlib) when `python3` is there.

use proptest::prelude::*;
use surge_proto::close::CloseCode;
use surge_proto::deflate::codec::{
    Compressor, CompressorConfig, DecompressError, Decompressor, SMALL_MESSAGE, STREAM_FIXED_UP_TO,
    TAIL,
};
use surge_proto::deflate::header::{elements, Element, SyntaxError};
use surge_proto::deflate::negotiate::{
    ClientOffer, Decline, ParamError, Params, RawParams, ResponseError, ServerPolicy,
};
use surge_proto::deflate::SharedCodecs;
use surge_proto::Role;

const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
const CAP: usize = 1 << 20;

fn compressor(no_context_takeover: bool) -> Compressor {
    Compressor::new(CompressorConfig { no_context_takeover, ..CompressorConfig::default() })
        .unwrap()
}

fn inflate(d: &mut Decompressor, payload: &[u8]) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    d.decompress(payload, true, &mut out, CAP).map(|()| out)
}

// ---------------------------------------------------------------- RFC 7692 §7.2.3

#[test]
fn rfc_7_2_3_1_hello_compressed() {
    let mut out = Vec::new();
    compressor(true).compress(b"Hello", &mut out).unwrap();
    assert_eq!(out, HELLO);
    assert_eq!(inflate(&mut Decompressor::new(15).unwrap(), &HELLO).unwrap(), b"Hello");
}

#[test]
fn rfc_7_2_3_1_hello_fragmented() {
    // The same payload in two frames: 0xf2 0x48 0xcd, then 0xc9 0xc9 0x07 0x00.
    let mut d = Decompressor::new(15).unwrap();
    let mut out = Vec::new();
    d.decompress(&HELLO[..3], false, &mut out, CAP).unwrap();
    d.decompress(&HELLO[3..], true, &mut out, CAP).unwrap();
    assert_eq!(out, b"Hello");
}

#[test]
fn rfc_7_2_3_2_context_takeover() {
    let mut c = compressor(false);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    c.compress(b"Hello", &mut first).unwrap();
    c.compress(b"Hello", &mut second).unwrap();
    assert_eq!(first, HELLO);
    // The RFC shows zlib's `f2 00 11 00 00` (a literal, then a match of 4); the fixed-code
    // compressor finds the whole message in the window: one match of 5 at distance 5.
    assert_eq!(second, [0x02, 0x13, 0x00, 0x00]);
    let mut d = Decompressor::new(15).unwrap();
    assert_eq!(inflate(&mut d, &first).unwrap(), b"Hello");
    assert_eq!(inflate(&mut d, &second).unwrap(), b"Hello");
}

#[test]
fn rfc_7_2_3_2_no_context_takeover_repeats_the_same_bytes() {
    let mut c = compressor(true);
    let mut d = Decompressor::shared();
    for _ in 0..3 {
        let mut out = Vec::new();
        c.compress(b"Hello", &mut out).unwrap();
        assert_eq!(out, HELLO);
        let mut text = Vec::new();
        d.decompress_message(&out, &mut text, CAP).unwrap();
        assert_eq!(text, b"Hello");
    }
}

proptest! {
    /// A short message without context takeover (one block of fixed Huffman codes, made in
    /// Rust) inflates back to itself, in any inflater, and comes out no more than 10 % (and
    /// two bytes) longer than zlib's dynamic block: JSON-like records repeated and cut
    /// anywhere, up to the short message limit, at every level (repetition is where dynamic
    /// codes gain most: all matches, few distinct symbols).
    #[test]
    fn short_messages_inflate_back_and_compress_about_as_well_as_zlib(
        fields in prop::collection::vec((0usize..6, 0u32..100_000), 1..12),
        cut in 1usize..=SMALL_MESSAGE,
        level in 1u8..=9,
    ) {
        const KEYS: [&str; 6] = ["type", "symbol", "price", "qty", "side", "ts"];
        let mut record = String::from("{");
        for (key, value) in &fields {
            record += &format!("\"{}\":\"{value}\",", KEYS[*key]);
        }
        let record = record.repeat(SMALL_MESSAGE / record.len() + 1);
        let message = &record.as_bytes()[..cut];
        let config =
            CompressorConfig { no_context_takeover: true, level, ..CompressorConfig::default() };
        let mut codecs = SharedCodecs::new(0);
        let (mut fixed, mut zlib) = (Vec::new(), Vec::new());
        codecs.compress(config, message, &mut fixed).unwrap();
        Compressor::new(config).unwrap().compress(message, &mut zlib).unwrap();
        prop_assert!(fixed.len() <= zlib.len() + zlib.len() / 10 + 2, "{} > {}", fixed.len(), zlib.len());
        let mut back = Vec::new();
        codecs.inflate(&fixed, &mut back, CAP).unwrap();
        prop_assert_eq!(&back, &message);
        let mut narrow = Decompressor::new(8).unwrap();
        back.clear();
        narrow.decompress(&fixed, true, &mut back, CAP).unwrap();
        prop_assert_eq!(&back, &message, "a window of 8 bits (zlib's 9) reads it");
    }
}

#[test]
fn zlib_compresses_the_rest() {
    let record = br#"{"type":"trade","symbol":"BTC-USD","price":"43127.55","side":"buy"},"#;
    let long = record.repeat(SMALL_MESSAGE / record.len() + 1);
    let reset = CompressorConfig { no_context_takeover: true, ..CompressorConfig::default() };
    let takeover = CompressorConfig::default();
    let stored = CompressorConfig { level: 0, ..reset };
    for (config, message) in
        [(reset, &long[..]), (takeover, &long[..60]), (stored, &long[..60]), (reset, &[][..])]
    {
        let (mut shared, mut zlib) = (Vec::new(), Vec::new());
        SharedCodecs::new(0).compress(config, message, &mut shared).unwrap();
        Compressor::new(config).unwrap().compress(message, &mut zlib).unwrap();
        assert_eq!(shared, zlib, "{config:?}, {} bytes", message.len());
    }
}

#[test]
fn rfc_7_2_3_3_uncompressed_block() {
    let payload = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
    assert_eq!(inflate(&mut Decompressor::new(15).unwrap(), &payload).unwrap(), b"Hello");
}

#[test]
fn rfc_7_2_3_4_bfinal_block() {
    let payload = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    for bits in [9, 12, 15] {
        let mut d = Decompressor::new(bits).unwrap();
        assert_eq!(inflate(&mut d, &payload).unwrap(), b"Hello");
        // The stream ended: the next message starts a new one.
        assert_eq!(inflate(&mut d, &HELLO).unwrap(), b"Hello");
        assert_eq!(inflate(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(), b"Hello");
        assert_eq!(inflate(&mut d, &payload).unwrap(), b"Hello");
    }
}

#[test]
fn rfc_7_2_3_5_two_blocks() {
    let payload = [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(inflate(&mut Decompressor::new(15).unwrap(), &payload).unwrap(), b"Hello");
}

#[test]
fn empty_message_after_another_with_context_takeover() {
    // zlib makes no output for a second sync flush with no new input: the compressor must
    // still produce the one-byte empty payload (found by proptest).
    let mut c = compressor(false);
    let mut d = Decompressor::new(15).unwrap();
    for message in [&b"Hello"[..], b"", b"", b"Hello", b""] {
        let mut wire = Vec::new();
        c.compress(message, &mut wire).unwrap();
        assert_eq!(inflate(&mut d, &wire).unwrap(), message);
    }
}

#[test]
fn rfc_7_2_3_6_empty_message() {
    let mut out = Vec::new();
    compressor(true).compress(b"", &mut out).unwrap();
    assert_eq!(out, [0x00]);
    assert_eq!(inflate(&mut Decompressor::new(15).unwrap(), &out).unwrap(), b"");
    // An empty payload is also an empty message, and leaves the stream where it was.
    let mut d = Decompressor::new(15).unwrap();
    assert_eq!(inflate(&mut d, &[]).unwrap(), b"");
    let mut out = Vec::new();
    d.decompress(&[], false, &mut out, CAP).unwrap();
    d.decompress(&[], true, &mut out, CAP).unwrap();
    assert_eq!(out, b"");
    assert_eq!(inflate(&mut d, &HELLO).unwrap(), b"Hello");
    assert_eq!(inflate(&mut d, &[]).unwrap(), b"");
    assert_eq!(inflate(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(), b"Hello");
}

// ---------------------------------------------------------------- corrupt, truncated, bombs

#[test]
fn corrupt_stream_is_1002() {
    let mut d = Decompressor::new(15).unwrap();
    // BTYPE 11 is reserved.
    let err = inflate(&mut d, &[0xff, 0xff, 0xff]).unwrap_err();
    assert_eq!(err, DecompressError::Corrupt);
    assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    // The decompressor is usable again for the next message.
    assert_eq!(inflate(&mut d, &HELLO).unwrap(), b"Hello");
}

#[test]
fn bytes_after_a_final_block_are_corrupt() {
    let payload = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x01];
    assert_eq!(
        inflate(&mut Decompressor::new(15).unwrap(), &payload),
        Err(DecompressError::Corrupt)
    );
    // ... also in a later fragment.
    let mut d = Decompressor::new(15).unwrap();
    let mut out = Vec::new();
    d.decompress(&payload[..7], false, &mut out, CAP).unwrap();
    assert_eq!(d.decompress(&[0x01], true, &mut out, CAP), Err(DecompressError::Corrupt));
}

#[test]
fn a_message_cut_inside_a_block_is_corrupt() {
    // A stored block announcing 5 bytes with 2 present swallows the tail as data.
    let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65];
    assert_eq!(
        inflate(&mut Decompressor::new(15).unwrap(), &stored),
        Err(DecompressError::Corrupt)
    );
    // A fixed-Huffman block cut before its end-of-block code: the tail's zero bits end it
    // early, and the boundary comes before the tail's end.
    let fixed = [0xf2, 0x48, 0xcd, 0xc9];
    assert_eq!(inflate(&mut Decompressor::new(15).unwrap(), &fixed), Err(DecompressError::Corrupt));
    // A dynamic-Huffman block cut in the middle, at every length.
    let text: Vec<u8> =
        (0..2000u32).flat_map(|i| format!("{{\"seq\":{i},\"v\":\"abc\"}}").into_bytes()).collect();
    let mut wire = Vec::new();
    compressor(true).compress(&text, &mut wire).unwrap();
    let mut detected = 0;
    let cuts: Vec<usize> = (1..wire.len() - 1).step_by(3).collect();
    for &cut in &cuts {
        let mut d = Decompressor::new(15).unwrap();
        match inflate(&mut d, &wire[..cut]) {
            Err(DecompressError::Corrupt) => detected += 1,
            Ok(out) => assert!(out.len() < text.len() && text.starts_with(&out), "cut {cut}"),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(detected * 10 >= cuts.len() * 9, "{detected} of {} cuts detected", cuts.len());
}

#[test]
fn bomb_stops_at_the_cap() {
    // 1 GiB of zeros would compress to about 1 MiB; 8 MiB of zeros is the same pattern.
    let mut wire = Vec::new();
    compressor(true).compress(&vec![0u8; 8 << 20], &mut wire).unwrap();
    assert!(wire.len() < 10 * 1024, "{}", wire.len());
    for cap in [0, 1, 1000, 16 * 1024, 16 * 1024 + 1, 1 << 20] {
        let mut d = Decompressor::new(15).unwrap();
        let mut out = Vec::new();
        let err = d.decompress(&wire, true, &mut out, cap).unwrap_err();
        assert_eq!(err, DecompressError::TooLarge);
        assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
        assert!(out.capacity() <= cap + 1, "cap {cap}: capacity {}", out.capacity());
    }
    // Exactly at the cap is fine.
    let mut d = Decompressor::new(15).unwrap();
    let mut out = Vec::new();
    d.decompress(&wire, true, &mut out, 8 << 20).unwrap();
    assert_eq!(out.len(), 8 << 20);
}

#[test]
fn a_1_gib_bomb_costs_the_cap() {
    // DEFLATE inflates at most about 1032 bytes per input byte, so 1 GiB needs about 1 MiB of
    // payload. With context takeover, 64 KiB of zeros after 64 KiB of zeros compresses to the
    // same few dozen bytes every time: 16,384 of them inflate to 1 GiB.
    let zeros = vec![0u8; 64 * 1024];
    let mut c = compressor(false);
    let (mut first, mut chunk, mut again) = (Vec::new(), Vec::new(), Vec::new());
    c.compress(&zeros, &mut first).unwrap();
    c.compress(&zeros, &mut chunk).unwrap();
    c.compress(&zeros, &mut again).unwrap();
    assert_eq!(chunk, again);
    let mut bomb = first;
    for _ in 1..16 * 1024 {
        bomb.extend_from_slice(&TAIL);
        bomb.extend_from_slice(&chunk);
    }
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    let t = std::time::Instant::now();
    for cap in [64 * 1024, 1 << 20] {
        let mut d = Decompressor::new(15).unwrap();
        let mut out = Vec::new();
        assert_eq!(d.decompress(&bomb, true, &mut out, cap), Err(DecompressError::TooLarge));
        assert!(out.capacity() <= cap + 1, "cap {cap}: capacity {}", out.capacity());
        assert!(out.iter().all(|&b| b == 0));
    }
    // Stopping at the cap means inflating about the cap, not the gigabyte.
    assert!(t.elapsed() < std::time::Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn the_cap_spans_fragments() {
    let mut wire = Vec::new();
    compressor(true).compress(&[7u8; 1000], &mut wire).unwrap();
    let mut d = Decompressor::new(15).unwrap();
    let mut out = Vec::new();
    let half = wire.len() / 2;
    d.decompress(&wire[..half], false, &mut out, 999).unwrap_or(());
    assert_eq!(d.decompress(&wire[half..], true, &mut out, 999), Err(DecompressError::TooLarge));
}

// ---------------------------------------------------------------- windows

#[test]
fn window_8_output_inflates_with_an_8_bit_window() {
    // Compressing "with 8" opens zlib's 9-bit window, whose matches reach back at most 250
    // bytes; an inflater with a 256-byte window (zlib-rs accepts 8 for inflate) must read it.
    let mut c = Compressor::new(CompressorConfig { window_bits: 8, ..CompressorConfig::default() })
        .unwrap();
    let mut rng = 0x1234_5678u32;
    let mut text = Vec::new();
    for _ in 0..20_000 {
        rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
        // Words from a small vocabulary at random distances: many matches of every length.
        text.extend_from_slice(
            [&b"alpha "[..], b"beta ", b"gamma ", b"delta! ", b"x"][(rng >> 16) as usize % 5],
        );
    }
    let mut inflater_8 = python_or_none();
    // Our inflater (8 means 9 bits) across messages, as the compressor keeps context; the
    // 8-bit check proper is C zlib's (Python), which takes a raw 8-bit window.
    let mut d = Decompressor::new(8).unwrap();
    for chunk in text.chunks(3000) {
        let mut wire = Vec::new();
        c.compress(chunk, &mut wire).unwrap();
        assert_eq!(inflate(&mut d, &wire).unwrap(), chunk);
        if let Some(py) = inflater_8.as_mut() {
            py.push((wire, chunk.to_vec()));
        }
    }
    if let Some(pairs) = inflater_8 {
        python_inflate_with_window(&pairs, 8);
    }
}

#[test]
fn short_messages_of_a_stream_slide_its_window_and_inflate_at_every_size() {
    // Messages of every length the window compresses in Rust, many times round its buffer:
    // each search prefetches its window's last messages and their links, which wrap around
    // the link table (this test also runs under AddressSanitizer, crates/surge-proto/asan.sh).
    for window_bits in [9, 12, 15] {
        let config = CompressorConfig { window_bits, mem_level: 4, ..CompressorConfig::default() };
        let mut c = Compressor::new(config).unwrap();
        let mut d = Decompressor::new(window_bits).unwrap();
        let mut rng = 0x9e37_79b9u32;
        for i in 0..3000usize {
            rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let len = 1 + (rng >> 8) as usize % STREAM_FIXED_UP_TO;
            let message: Vec<u8> =
                format!("{{\"seq\":{i},\"pad\":\"{}\"}}", "ab".repeat(len)).into_bytes();
            let message = &message[..len];
            let mut wire = Vec::new();
            c.compress(message, &mut wire).unwrap();
            assert_eq!(
                inflate(&mut d, &wire).unwrap(),
                message,
                "window {window_bits}, message {i}"
            );
        }
    }
}

#[test]
fn config_is_checked() {
    use surge_proto::deflate::ConfigError;
    let bad = |f: fn(&mut CompressorConfig)| {
        let mut config = CompressorConfig::default();
        f(&mut config);
        Compressor::new(config).unwrap_err()
    };
    assert_eq!(bad(|c| c.window_bits = 7), ConfigError::WindowBits);
    assert_eq!(bad(|c| c.window_bits = 16), ConfigError::WindowBits);
    assert_eq!(bad(|c| c.mem_level = 0), ConfigError::MemLevel);
    assert_eq!(bad(|c| c.mem_level = 10), ConfigError::MemLevel);
    assert_eq!(bad(|c| c.level = 10), ConfigError::Level);
    assert_eq!(Decompressor::new(7).unwrap_err(), ConfigError::WindowBits);
    assert_eq!(Decompressor::new(8).unwrap().window_bits(), 9);
    for bits in 8..=15 {
        for mem_level in 1..=9 {
            let config =
                CompressorConfig { window_bits: bits, mem_level, ..CompressorConfig::default() };
            let mut out = Vec::new();
            Compressor::new(config).unwrap().compress(b"Hello Hello Hello", &mut out).unwrap();
            let mut d = Decompressor::new(bits).unwrap();
            assert_eq!(inflate(&mut d, &out).unwrap(), b"Hello Hello Hello");
        }
    }
}

#[test]
fn shared_decompressor_does_not_leak_one_message_into_the_next() {
    let mut d = Decompressor::shared();
    let mut out = Vec::new();
    d.decompress_message(&HELLO, &mut out, CAP).unwrap();
    // With context, this message would read "Hello" again from the previous window.
    out.clear();
    assert_eq!(
        d.decompress_message(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, CAP),
        Err(DecompressError::Corrupt)
    );
}

// ---------------------------------------------------------------- header grammar

fn offer(value: &str) -> Option<Params> {
    ServerPolicy::default().negotiate([value.as_bytes()])
}

fn decline(value: &str) -> Decline {
    let mut it = elements([value.as_bytes()]);
    ServerPolicy::default().accept(it.next().unwrap()).unwrap_err()
}

#[test]
fn elements_across_lines_quotes_and_empties() {
    let values: [&[u8]; 3] =
        [b" , foo; a=\"x,y\" ,, bar ", b"", b"permessage-deflate;client_max_window_bits , baz;q"];
    let names: Vec<_> = elements(values).map(|e| e.unwrap().name()).collect();
    assert_eq!(names, ["foo", "bar", "permessage-deflate", "baz"]);
    let foo = elements(values).next().unwrap().unwrap();
    let p: Vec<_> = foo.params().map(Result::unwrap).collect();
    assert_eq!(p[0].name, "a");
    assert_eq!(p[0].value.unwrap().raw(), b"\"x,y\"");
    assert!(p[0].value.unwrap().is_quoted());
}

#[test]
fn malformed_elements_are_reported_and_skipped() {
    let values: [&[u8]; 1] =
        [b"=x, permessage-deflate; a b, permessage-deflate; a=, ok, p; x=\"open"];
    let got: Vec<_> = elements(values)
        .map(|e| e.map(|e| (e.name(), e.params().find_map(Result::err))).map_err(|e| e.error))
        .collect();
    assert_eq!(
        got,
        [
            Err(SyntaxError::Name),
            Ok(("permessage-deflate", Some(SyntaxError::Separator))),
            Ok(("permessage-deflate", Some(SyntaxError::ParamValue))),
            Ok(("ok", None)),
            Ok(("p", Some(SyntaxError::ParamValue))),
        ]
    );
}

#[test]
fn parsing_is_linear() {
    // 200,000 parameters in one element, and as many empty elements: a quadratic parser
    // would take minutes.
    let long = "permessage-deflate".to_string() + &"; x".repeat(200_000);
    let t = std::time::Instant::now();
    assert_eq!(Element::new("permessage-deflate", &long[19..]).params().count(), 200_000);
    let commas = ",".repeat(400_000) + "permessage-deflate";
    assert!(offer(&commas).is_some());
    let quoted = format!("a; b=\"{}\", permessage-deflate", "\\\"".repeat(200_000));
    assert!(offer(&quoted).is_some());
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
}

// ---------------------------------------------------------------- server negotiation

#[test]
fn server_defaults_ask_for_no_context_takeover_both_ways() {
    let params = offer("permessage-deflate").unwrap();
    assert_eq!(
        params.to_string(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    // Absent client_max_window_bits: the server inflates with 15 (Firefox).
    assert_eq!(params.sent_by(Role::Client).window_bits, 15);
    assert_eq!(params.client_max_window_bits, None);
}

#[test]
fn server_negotiation_table() {
    let policy = ServerPolicy {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        accept_8_bit_window: true,
    };
    let small = ServerPolicy { server_max_window_bits: 10, client_max_window_bits: 12, ..policy };
    // (policy, offer, expected response or None for declined)
    let table: &[(&ServerPolicy, &str, Option<&str>)] = &[
        (&policy, "permessage-deflate", Some("permessage-deflate")),
        (&policy, "PerMessage-Deflate", Some("permessage-deflate")),
        (
            &policy,
            "permessage-deflate; server_no_context_takeover",
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        (
            &policy,
            "permessage-deflate; client_no_context_takeover",
            Some("permessage-deflate; client_no_context_takeover"),
        ),
        (
            &policy,
            "permessage-deflate; server_max_window_bits=10",
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        (
            &policy,
            "permessage-deflate; server_max_window_bits=\"10\"",
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        (
            &policy,
            "permessage-deflate; server_max_window_bits=\"1\\0\"",
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        (
            &policy,
            "permessage-deflate; server_max_window_bits = 9",
            Some("permessage-deflate; server_max_window_bits=9"),
        ),
        (
            &policy,
            "permessage-deflate; server_max_window_bits=8",
            Some("permessage-deflate; server_max_window_bits=8"),
        ),
        (&policy, "permessage-deflate; client_max_window_bits", Some("permessage-deflate")),
        (
            &policy,
            "permessage-deflate; client_max_window_bits=12",
            Some("permessage-deflate; client_max_window_bits=12"),
        ),
        (
            &policy,
            "permessage-deflate; client_max_window_bits=8",
            Some("permessage-deflate; client_max_window_bits=8"),
        ),
        (&small, "permessage-deflate", Some("permessage-deflate; server_max_window_bits=10")),
        (
            &small,
            "permessage-deflate; server_max_window_bits=12",
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        (
            &small,
            "permessage-deflate; server_max_window_bits=9",
            Some("permessage-deflate; server_max_window_bits=9"),
        ),
        (
            &small,
            "permessage-deflate; client_max_window_bits",
            Some("permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"),
        ),
        (
            &small,
            "permessage-deflate; client_max_window_bits=15",
            Some("permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"),
        ),
        (
            &small,
            "permessage-deflate; client_max_window_bits=11",
            Some("permessage-deflate; server_max_window_bits=10; client_max_window_bits=11"),
        ),
        // Declined: bad values, duplicates, unknown parameters.
        (&policy, "permessage-deflate; server_max_window_bits", None),
        (&policy, "permessage-deflate; server_max_window_bits=7", None),
        (&policy, "permessage-deflate; server_max_window_bits=16", None),
        (&policy, "permessage-deflate; server_max_window_bits=010", None),
        (&policy, "permessage-deflate; server_max_window_bits=1a", None),
        (&policy, "permessage-deflate; server_max_window_bits=\"\"", None),
        (&policy, "permessage-deflate; client_max_window_bits=0", None),
        (&policy, "permessage-deflate; client_max_window_bits=255", None),
        (&policy, "permessage-deflate; server_no_context_takeover=1", None),
        (
            &policy,
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            None,
        ),
        (&policy, "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11", None),
        (&policy, "permessage-deflate; client_max_window_bits; client_max_window_bits=10", None),
        (&policy, "permessage-deflate; foo", None),
        (&policy, "permessage-deflate; client_max_window_bits=\"10", None),
        (&policy, "permessage-deflate;; client_max_window_bits", None),
        (&policy, "x-webkit-deflate-frame", None),
    ];
    for (policy, offer, expected) in table {
        let got = policy.negotiate([offer.as_bytes()]).map(|p| p.to_string());
        assert_eq!(got.as_deref(), *expected, "offer {offer:?}");
        // Whatever the server answers, the client that sent the offer accepts it back.
        if let Some(response) = got {
            let client = client_offer_from(offer);
            let params = client.check_response([response.as_bytes()]).unwrap().unwrap();
            assert_eq!(params, policy.negotiate([offer.as_bytes()]).unwrap(), "offer {offer:?}");
        }
    }
}

fn client_offer_from(value: &str) -> ClientOffer {
    let element = elements([value.as_bytes()]).next().unwrap().unwrap();
    let raw = RawParams::parse(&element).unwrap();
    ClientOffer {
        server_no_context_takeover: raw.server_no_context_takeover,
        client_no_context_takeover: raw.client_no_context_takeover,
        server_max_window_bits: raw.server_max_window_bits,
        client_max_window_bits: raw.client_max_window_bits,
        accept_8_bit_window: true,
    }
}

#[test]
fn server_declines_with_a_reason() {
    assert_eq!(
        decline("permessage-deflate; server_max_window_bits=16"),
        Decline::Param(ParamError::InvalidValue)
    );
    assert_eq!(decline("permessage-deflate; x"), Decline::Param(ParamError::Unknown));
    assert_eq!(
        decline("permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
        Decline::Param(ParamError::Duplicate)
    );
    assert_eq!(
        decline("permessage-deflate; a=\"b"),
        Decline::Param(ParamError::Syntax(SyntaxError::ParamValue))
    );
    assert_eq!(decline("foo"), Decline::OtherExtension);
    let strict = ServerPolicy { accept_8_bit_window: false, ..ServerPolicy::default() };
    let mut it = elements([&b"permessage-deflate; server_max_window_bits=8"[..]]);
    assert_eq!(strict.accept(it.next().unwrap()), Err(Decline::EightBitWindow));
}

#[test]
fn server_takes_the_first_acceptable_offer() {
    let values: [&[u8]; 2] = [
        b"permessage-deflate; server_max_window_bits=20, permessage-deflate; foo",
        b"x-other, permessage-deflate; server_max_window_bits=11, permessage-deflate",
    ];
    let params = ServerPolicy::default().negotiate(values).unwrap();
    assert_eq!(params.server_max_window_bits, Some(11));
    // Autobahn 13.7: several offers, the first acceptable wins.
    let v: [&[u8]; 1] = [b"permessage-deflate; client_no_context_takeover; server_max_window_bits=8, permessage-deflate; client_no_context_takeover, permessage-deflate"];
    assert_eq!(ServerPolicy::default().negotiate(v).unwrap().server_max_window_bits, Some(8));
    let none: [&[u8]; 1] = [b"permessage-deflate; foo, bar"];
    assert_eq!(ServerPolicy::default().negotiate(none), None);
}

#[test]
fn works_with_the_handshake_offers() {
    // `UpgradeRequest::extensions()` yields name and raw params; Element::new takes them.
    let element = Element::new("permessage-deflate", "client_max_window_bits=\"9\"");
    let params = ServerPolicy::default().accept(Ok(element)).unwrap();
    assert_eq!(params.client_max_window_bits, Some(9));
    assert_eq!(params.sent_by(Role::Client).window_bits, 9);
}

// ---------------------------------------------------------------- client side

#[test]
fn client_offer_strings() {
    assert_eq!(ClientOffer::default().to_string(), "permessage-deflate; client_max_window_bits");
    let all = ClientOffer {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: Some(10),
        client_max_window_bits: Some(Some(12)),
        accept_8_bit_window: true,
    };
    assert_eq!(
        all.to_string(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12"
    );
    // The server reads back what the client wrote.
    let raw =
        RawParams::parse(&elements([all.to_string().as_bytes()]).next().unwrap().unwrap()).unwrap();
    assert_eq!(raw.client_max_window_bits, Some(Some(12)));
    assert_eq!(raw.server_max_window_bits, Some(10));
}

#[test]
fn client_response_table() {
    use ResponseError as E;
    let default = ClientOffer::default();
    let bare = ClientOffer { client_max_window_bits: None, ..default };
    let asks = ClientOffer {
        server_no_context_takeover: true,
        server_max_window_bits: Some(10),
        client_max_window_bits: Some(Some(12)),
        ..default
    };
    let strict = ClientOffer { accept_8_bit_window: false, ..default };
    type Row<'a> = (&'a ClientOffer, &'a [&'a str], Result<Option<&'a str>, E>);
    let table: &[Row<'_>] = &[
        (&default, &[], Ok(None)),
        (&default, &[""], Ok(None)),
        (&default, &["permessage-deflate"], Ok(Some("permessage-deflate"))),
        (&default, &["permessage-deflate; client_max_window_bits=10"], Ok(Some("permessage-deflate; client_max_window_bits=10"))),
        (&default, &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"], Ok(Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"))),
        (&default, &["permessage-deflate; server_max_window_bits=9"], Ok(Some("permessage-deflate; server_max_window_bits=9"))),
        (&default, &["permessage-deflate; client_max_window_bits=8"], Ok(Some("permessage-deflate; client_max_window_bits=8"))),
        (&strict, &["permessage-deflate; client_max_window_bits=8"], Err(E::EightBitWindow)),
        (&default, &["permessage-deflate; client_max_window_bits"], Err(E::ClientWindowNotOffered)),
        (&bare, &["permessage-deflate; client_max_window_bits=10"], Err(E::ClientWindowNotOffered)),
        (&default, &["permessage-deflate; foo"], Err(E::Param(ParamError::Unknown))),
        (&default, &["permessage-deflate; server_max_window_bits=16"], Err(E::Param(ParamError::InvalidValue))),
        (&default, &["permessage-deflate; client_no_context_takeover; client_no_context_takeover"], Err(E::Param(ParamError::Duplicate))),
        (&default, &["permessage-deflate", "permessage-deflate"], Err(E::Repeated)),
        (&default, &["permessage-deflate, permessage-deflate"], Err(E::Repeated)),
        (&default, &["x-other"], Err(E::UnexpectedExtension)),
        (&default, &["permessage-deflate; a=\"b"], Err(E::Param(ParamError::Syntax(SyntaxError::ParamValue)))),
        (&asks, &["permessage-deflate; server_no_context_takeover; server_max_window_bits=10"], Ok(Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10"))),
        (&asks, &["permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=12"], Ok(Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=12"))),
        (&asks, &["permessage-deflate; server_max_window_bits=10"], Err(E::MissingServerNoContextTakeover)),
        (&asks, &["permessage-deflate; server_no_context_takeover; server_max_window_bits=11"], Err(E::WindowTooLarge)),
        (&asks, &["permessage-deflate; server_no_context_takeover"], Err(E::WindowTooLarge)),
        (&asks, &["permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=13"], Err(E::WindowTooLarge)),
    ];
    for (offer, response, expected) in table {
        let values: Vec<&[u8]> = response.iter().map(|s| s.as_bytes()).collect();
        let got = offer.check_response(values).map(|p| p.map(|p| p.to_string()));
        let expected = expected.map(|p| p.map(str::to_string));
        assert_eq!(got, expected, "offer {offer} response {response:?}");
    }
}

// ---------------------------------------------------------------- round trips

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(
        // Empty messages often: zlib treats a flush with no new input specially.
        messages in prop::collection::vec(prop_oneof![
            1 => Just(Vec::new()),
            4 => prop::collection::vec(prop::sample::select(b"ab {}\":,0123".to_vec()), 0..3000),
        ], 1..6),
        bits in 8u8..=15, mem_level in 1u8..=9, level in 0u8..=9, no_context_takeover: bool, split in 0usize..64,
    ) {
        let config = CompressorConfig { window_bits: bits, mem_level, level, no_context_takeover };
        let mut c = Compressor::new(config).unwrap();
        let mut d = Decompressor::new(bits).unwrap();
        let mut shared = Decompressor::shared();
        let (mut wire, mut out) = (Vec::new(), Vec::new());
        for message in &messages {
            wire.clear();
            out.clear();
            c.compress(message, &mut wire).unwrap();
            // Split into two fragments anywhere.
            let at = split.min(wire.len());
            d.decompress(&wire[..at], false, &mut out, message.len()).unwrap();
            d.decompress(&wire[at..], true, &mut out, message.len()).unwrap();
            prop_assert_eq!(&out, message);
            if no_context_takeover {
                out.clear();
                shared.decompress_message(&wire, &mut out, message.len()).unwrap();
                prop_assert_eq!(&out, message);
            }
            // One byte less of cap is over it.
            if no_context_takeover && !message.is_empty() {
                let mut small = Vec::new();
                let got = shared.decompress_message(&wire, &mut small, message.len() - 1);
                prop_assert_eq!(got, Err(DecompressError::TooLarge));
            }
        }
    }

    #[test]
    fn arbitrary_payloads_never_exceed_the_cap(payload in prop::collection::vec(any::<u8>(), 0..512), cap in 0usize..4096) {
        let mut d = Decompressor::new(15).unwrap();
        let mut out = Vec::new();
        let _ = d.decompress(&payload, true, &mut out, cap);
        prop_assert!(out.len() <= cap + 1 && out.capacity() <= cap + 1);
    }

    #[test]
    fn arbitrary_offers_never_panic_and_answers_read_back(value in "[ -~]{0,120}") {
        let policy = ServerPolicy::default();
        if let Some(params) = policy.negotiate([value.as_bytes()]) {
            let response = params.to_string();
            let element = elements([response.as_bytes()]).next().unwrap().unwrap();
            let raw = RawParams::parse(&element).unwrap();
            prop_assert_eq!(raw.server_max_window_bits, params.server_max_window_bits);
            prop_assert_eq!(raw.client_max_window_bits, params.client_max_window_bits.map(Some));
        }
    }
}

// ---------------------------------------------------------------- interop with C zlib

/// `Some(vec)` to collect (payload, expected) pairs when python3 is there.
fn python_or_none() -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    std::process::Command::new("python3")
        .arg("-c")
        .arg("import zlib")
        .output()
        .ok()?
        .status
        .success()
        .then(Vec::new)
}

/// Runs a script given on standard input (it may be larger than an argument may be).
fn python(script: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Inflates each payload + 00 00 ff ff with Python's zlib (C zlib) at `wbits`, in order on one
/// stream, and compares.
fn python_inflate_with_window(pairs: &[(Vec<u8>, Vec<u8>)], wbits: u8) {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    // One output byte per call: every match is then read from the window, so a distance
    // beyond it fails ("invalid distance too far back") instead of being served from the
    // output buffer.
    let mut script = format!(
        "import zlib\nd = zlib.decompressobj(wbits=-{wbits})\n\
         def inf(z):\n    out = []\n    while True:\n        o = d.decompress(z, 1)\n        \
         out.append(o)\n        z = d.unconsumed_tail\n        if not o and not z:\n            \
         return b''.join(out)\n"
    );
    for (payload, expected) in pairs {
        script += &format!(
            "assert inf(bytes.fromhex('{}') + b'\\x00\\x00\\xff\\xff') == bytes.fromhex('{}')\n",
            hex(payload),
            hex(expected)
        );
    }
    script += "print('ok')\n";
    let out = python(&script);
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn c_zlib_inflates_what_we_compress() {
    let Some(mut pairs) = python_or_none() else {
        eprintln!("python3 with zlib not found: interop skipped");
        return;
    };
    let mut c = compressor(false);
    for i in 0..50u32 {
        let message = format!(
            "{{\"type\":\"tick\",\"seq\":{i},\"price\":{}.25,\"sym\":\"ABC\"}}",
            100 + i % 7
        )
        .repeat(1 + (i as usize % 5));
        let mut wire = Vec::new();
        c.compress(message.as_bytes(), &mut wire).unwrap();
        pairs.push((wire, message.into_bytes()));
    }
    python_inflate_with_window(&pairs, 15);
}

#[test]
fn we_inflate_what_c_zlib_compresses() {
    if python_or_none().is_none() {
        eprintln!("python3 with zlib not found: interop skipped");
        return;
    }
    let script = "import zlib\nc = zlib.compressobj(wbits=-15)\nfor i in range(20):\n    m = ('{\"n\":%d,\"text\":\"hello hello hello\"}' % i).encode() * (i + 1)\n    z = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)\n    assert z.endswith(b'\\x00\\x00\\xff\\xff')\n    print(z[:-4].hex(), m.hex())\n";
    let out = python(script);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unhex = |s: &str| {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    let mut d = Decompressor::new(15).unwrap();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (payload, message) = line.split_once(' ').unwrap();
        assert_eq!(inflate(&mut d, &unhex(payload)).unwrap(), unhex(message));
    }
}
