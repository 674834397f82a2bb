//! The permessage-deflate inflate path: arbitrary compressed bytes, in up to three fragments,
//! never panic and never grow the output past the cap (the buffer's capacity included); and
//! what the compressors make of the same bytes inflates back to them: zlib's and the loop's
//! shared codecs' (fixed Huffman codes up to 250 bytes, at the level a byte picks) as one
//! message, and a context-takeover stream's (fixed codes against its window up to 512
//! bytes, zlib above) as seven messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surge_proto::deflate::codec::{Compressor, CompressorConfig, DecompressError, Decompressor};
use surge_proto::deflate::SharedCodecs;

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let [bits, cap_lo, cap_hi, cut_a, cut_b, payload @ ..] = data else { return };
    let bits = 8 + bits % 8;
    let cap = usize::from(u16::from_le_bytes([*cap_lo, *cap_hi])) * 16;
    let a = usize::from(*cut_a).min(payload.len());
    let b = (a + usize::from(*cut_b)).min(payload.len());

    let mut d = Decompressor::new(bits).unwrap();
    let mut out = Vec::new();
    let fragments = [&payload[..a], &payload[a..b], &payload[b..]];
    let mut failed = false;
    for (i, fragment) in fragments.iter().enumerate() {
        let result = d.decompress(fragment, i == 2, &mut out, cap);
        assert!(out.len() <= cap + 1 && out.capacity() <= cap + 1, "cap {cap}: {}", out.capacity());
        match result {
            Ok(()) => assert!(out.len() <= cap),
            Err(DecompressError::TooLarge | DecompressError::Corrupt) => {
                failed = true;
                break;
            }
            Err(_) => unreachable!(),
        }
    }
    // After an error the next message starts a fresh stream.
    if failed {
        let mut again = Vec::new();
        d.decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], true, &mut again, 5).unwrap();
        assert_eq!(again, b"Hello");
    }

    CODECS.with(|codecs| {
        let (shared, compressors, loop_codecs) = &mut *codecs.borrow_mut();
        // The shared form, whole message. It resets first, so reusing it across runs keeps
        // each run independent (and saves making 47 KiB of state per run).
        let mut out = Vec::new();
        let _ = shared.decompress_message(payload, &mut out, cap);
        assert!(out.capacity() <= cap + 1);

        // Round trip of the same bytes as a message; no context takeover, so the compressor
        // too starts every run from an empty window.
        let c = compressors[usize::from(bits - 8)].get_or_insert_with(|| {
            let config = CompressorConfig {
                window_bits: bits,
                no_context_takeover: true,
                ..CompressorConfig::default()
            };
            Compressor::new(config).unwrap()
        });
        let mut wire = Vec::new();
        c.compress(payload, &mut wire).unwrap();
        let mut back = Vec::new();
        shared.decompress_message(&wire, &mut back, payload.len()).unwrap();
        assert_eq!(back, payload);

        let config = CompressorConfig { level: 1 + cut_a % 9, ..c.config() };
        wire.clear();
        loop_codecs.compress(config, payload, &mut wire).unwrap();
        back.clear();
        shared.decompress_message(&wire, &mut back, payload.len()).unwrap();
        assert_eq!(back, payload, "level {}", config.level);
    });
    // The same bytes as a stream of messages with context takeover (fresh per run, so runs
    // stay independent): the three pieces, the whole payload, and the pieces again in
    // reverse, which refer back into the window; at a level and memory level the bytes
    // pick. Short ones are compressed in Rust against the window, long ones by zlib (handed
    // the window first): each inflates back in turn, the later ones through the earlier
    // ones' window.
    let config = CompressorConfig {
        window_bits: bits,
        mem_level: 1 + cap_lo % 9,
        level: cut_b % 10,
        no_context_takeover: false,
    };
    let mut c = Compressor::new(config).unwrap();
    let mut d = Decompressor::new(bits).unwrap();
    let stream = fragments.iter().chain([&payload]).chain(fragments.iter().rev());
    for message in stream {
        let (mut wire, mut back) = (Vec::new(), Vec::new());
        c.compress(message, &mut wire).unwrap();
        d.decompress(&wire, true, &mut back, message.len()).unwrap();
        assert_eq!(back, *message, "{config:?}");
    }
}

type Codecs = (Decompressor, [Option<Compressor>; 8], SharedCodecs);

thread_local! {
    static CODECS: std::cell::RefCell<Codecs> =
        std::cell::RefCell::new((Decompressor::shared(), Default::default(), SharedCodecs::new(0)));
}
