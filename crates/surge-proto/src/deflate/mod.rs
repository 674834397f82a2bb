//! permessage-deflate (RFC 7692), the parts that need no engine: negotiation and the codec.
//!
//! ```text
//!  Sec-WebSocket-Extensions values
//!        | header::elements  (one pass, no allocation)
//!        v
//!  negotiate::ServerPolicy::negotiate  -> Params  -> Display: the 101's extension value
//!  negotiate::ClientOffer (Display: the request's value) ::check_response -> Params
//!        |
//!        | Params::sent_by(role) -> Direction { no_context_takeover, window_bits }
//!        v
//!  codec::Compressor   whole message -> raw DEFLATE, sync flush, 00 00 ff ff removed
//!  codec::Decompressor fragments     -> + 00 00 ff ff, inflated in CHUNKs into the caller's
//!                                       Vec, never past the cap (1009), corrupt -> 1002
//! ```
//!
//! What it is not: it does not set or check RSV1 and does not decide which messages to
//! compress (a threshold); the connection's extension seam does, around these types. The
//! rules it must keep: RSV1 only on the first frame of a compressed message; RSV1 on a
//! continuation or control frame, or without the extension, is 1002; a text message is
//! validated as UTF-8 after inflation (1007).
//!
//! # Plugging into the extension seam
//!
//! What the connection and the engine do around these types:
//!
//! - **Handshake.** Server: `ServerPolicy::negotiate` over the request's
//!   `Sec-WebSocket-Extensions` values (or [`ServerPolicy::accept`] on each
//!   `Element::new(offer.name, offer.params)` from `UpgradeRequest::extensions()`); answer
//!   `Sec-WebSocket-Extensions: {params}` (the `Display` of [`Params`]). Client: send
//!   `ClientOffer`'s `Display`, and give the response's values to
//!   [`ClientOffer::check_response`] (an error fails the handshake).
//! - **RSV1.** Allowed (`0b100`) only when negotiated and only on the first frame of a data
//!   message; on a continuation or control frame, or without the extension: 1002. A message
//!   without RSV1 is not compressed and passes as it is.
//! - **Receive.** Each unmasked payload piece of an RSV1 message goes to
//!   [`Decompressor::decompress`]`(piece, last, assembly, max_len)`, which appends to the
//!   assembly buffer and keeps its length and capacity within `max_len` (+1): `TooLarge` is
//!   1009, `Corrupt` 1002; a text message is then validated as UTF-8 (1007). When the peer
//!   has no context takeover (`params.sent_by(peer).no_context_takeover`, which the default
//!   policy always asks of clients), one [`Decompressor::shared`] per loop serves every
//!   connection through [`Decompressor::decompress_message`], which needs the whole
//!   compressed message: a message in one frame inflates straight from the read buffer; a
//!   fragmented one either waits, compressed, in a per-connection buffer (bounded by the
//!   frame limits) or uses a per-connection `Decompressor::new(bits)` for that message.
//! - **Send.** Below a threshold a message goes out uncompressed (no RSV1). Otherwise
//!   [`Compressor::compress`] appends the payload and the first frame carries RSV1; a
//!   `CompressError` is a bug (1011). Without context takeover a compressor resets after each
//!   message, so one per loop serves every connection, and its output depends only on its
//!   [`CompressorConfig`] (`Eq + Hash`, after [`CompressorConfig::for_direction`]) and the
//!   message: a broadcast is compressed once per distinct config and the frame shared. A
//!   connection with context takeover compresses with its own `Compressor`, which keeps
//!   the stream's window in Rust and compresses a message of up to
//!   [`STREAM_FIXED_UP_TO`](codec::STREAM_FIXED_UP_TO) bytes against it in one block of
//!   fixed codes (`window.rs`: 137 B of JSON, a hundred streams in turn, 2.3 µs against
//!   zlib's 5.2, the same size out), and a longer one with zlib, handed the window.
//!   [`SharedCodecs`] compresses a message of up to
//!   [`SMALL_MESSAGE`](codec::SMALL_MESSAGE) bytes in Rust, as one block of DEFLATE's fixed
//!   Huffman codes (`fixed.rs`): zlib spends most of such a message building dynamic trees
//!   that come out no smaller (137 B of JSON: 1.1 µs against 7.5 µs, 116.0 B out against
//!   115.6 B, and its inflation 0.46 µs against 1.5 µs, the bench's `deflate-policy`).
//!
//! # The backend, measured
//!
//! C zlib (through raw bindings; `backend.rs`): Cloudflare's fork (cloudflare-zlib-sys) on
//! x86-64 and ARM64, the system's zlib through libz-sys elsewhere, against zlib-rs 0.6 (the
//! Rust port of zlib-ng), measured by `benches/benches/deflate.rs` in one run:
//!
//! ```text
//! cargo bench -p surge-benches --bench deflate
//! ```
//!
//! State per stream, heap bytes, seen by a counting allocator that both libraries allocate
//! through (deflate once made; inflate after its first message, since C zlib allocates its
//! window on first use). The C zlib columns are Cloudflare's (2026-12-02); the system's
//! zlib 1.2.13 held 8 B more per compressor and 1,936 B less per decompressor (7,816, 11,400
//! and 40,072 B at 9, 12 and 15 bits: Cloudflare's inflater pads its window for 16-byte
//! copies):
//!
//! ```text
//! bits memLevel | zlib-rs deflate  C zlib deflate | zlib-rs inflate  C zlib inflate
//!    9        1 |         137 216           9 208 |          47 552           9 752
//!    9        4 |         143 488          16 376 |          47 552           9 752
//!    9        8 |         251 008         139 256 |          47 552           9 752
//!   12        1 |         151 552          23 544 |          47 552          13 336
//!   12        4 |         157 824          30 712 |          47 552          13 336
//!   12        8 |         265 344         153 592 |          47 552          13 336
//!   15        1 |         266 240         138 232 |          47 552          42 008
//!   15        4 |         272 512         145 400 |          47 552          42 008
//!   15        8 |         380 032         268 280 |          47 552          42 008
//! ```
//!
//! Which C zlib (`benches/deflate/zlib-forks.sh 5 2000`: one harness linked against each,
//! rounds alternating them, pinned to one core; medians, and the time against the system's
//! zlib paired by round; JSON records in the load generator's format, 2026-12-02 11:35 UTC):
//!
//! ```text
//!                      system 1.2.13     zlib 1.3.1 -O3        Cloudflare's fork
//! 16 KiB, stream w12 m4  219 + 39.1 us    1.07x  0.99x  7.45   0.63x  0.64x  7.62 ratio
//! 16 KiB, shared w15 m8  183 + 37.8 us    1.01x  0.97x  6.80   0.70x  0.63x  6.90
//! 1 KiB, stream w12 m4  20.8 + 5.5 us     1.06x  1.02x  6.22   0.74x  0.77x  6.32
//! 1 KiB, shared w15 m8  23.7 + 6.7 us     1.01x  1.00x  3.51   0.82x  0.81x  3.52
//! ```
//!
//! (compress + inflate per message; then compress time and inflate time against the system's, and
//! the compression ratio.) Cloudflare's fork hashes four bytes with the CPU's CRC32 instruction and
//! compares eight bytes at a time in its match search, and inflates in 16-byte chunks: a third less
//! time for long messages, output 1-2 % smaller, the same memory. Its build needs SSE4.2 on x86-64
//! (every x86-64 CPU since 2008; it is compiled in, not detected) and a C compiler; the crate is
//! marked deprecated on crates.io (zlib-rs, the usual successor, is ruled out here by its memory:
//! below), and its code is frozen at zlib 1.2.8 with the 1.2.12 fix for distant matches
//! (CVE-2018-25032) carried over; the inflate path a peer reaches is zlib's raw inflate, with no
//! gzip header parsing (CVE-2022-37434's). Both bindings are zlib's API, so the fallback is the
//! other arm of `backend.rs`'s `z` module.
//!
//! The published figure holds: zlib-rs's compressor is 134 KiB at its smallest (its hash
//! table is fixed at 2^16 entries, 128 KiB, whatever the memLevel) against 9 KiB for C zlib;
//! its decompressor always allocates a 32 KiB window, whatever the window bits.
//!
//! Speed against zlib-rs (level 6, window 15, memLevel 8, no context takeover unless said;
//! criterion's middle estimate per message on the 2-core machine shared with other builds,
//! both columns from one process minutes apart, C zlib then the system's 1.2.13; the first
//! run's figures, with zlib-rs as the backend, were 13.3 / 20.8 us for the 137 B
//! compression, the same order):
//!
//! ```text
//!                                  zlib-rs     C zlib
//! compress 137 B JSON              10.6 us     8.1 us    (115 B out: 1.19x)
//! inflate  137 B JSON               3.0 us     4.3 us
//! compress 16 KiB text              406 us     359 us    (3120 B out: 5.25x)
//! inflate  16 KiB text             19.9 us    21.5 us
//! compress 137 B, w9 m1, reset      9.1 us     8.3 us
//! compress 137 B, w9 m1, takeover   2.4 us     2.3 us
//! compress 137 B, w9 m8, reset     14.7 us    12.2 us
//! ```
//!
//! **The backend is C zlib, for memory first.** The issue's budget of 64 KiB per active
//! connection at window 12 with context takeover is out of reach for zlib-rs whatever the
//! memLevel (151 KiB + 47 KiB), and within it for C zlib (23.5 + 13.3 KiB at memLevel 1, 30.7 +
//! 13.3 at memLevel 4). It also compresses from a fresh window 1.2-1.3x faster, which is what
//! the shared (no context takeover) compressor does for every message; zlib-rs inflated 5-30%
//! faster than 1.2.13 (Cloudflare's inflates in 0.64x 1.2.13's time). The price is `unsafe`:
//! raw FFI calls in one file, each with its `// SAFETY:` reasoning, allocations routed through
//! Rust's allocator (`zalloc`/`zfree`, so a counting allocator and ASan see them), the stream
//! boxed because zlib's state points back at it, and `tests/deflate.rs` run under
//! AddressSanitizer by `asan.sh` (the C library itself is not instrumented; the hand-over of
//! buffers and every allocation is). It needs a C compiler (Cloudflare's fork is built from
//! source; libz-sys builds its bundled copy where no system zlib is found). flate2 is no
//! alternative: it fixes memLevel at 8 (150 KiB at window 12) and has no `Z_BLOCK`.

mod backend;
pub mod codec;
mod fixed;
pub mod header;
pub mod negotiate;
mod prefetch;
pub mod session;
mod window;

pub use codec::{
    CompressError, Compressor, CompressorConfig, ConfigError, DecompressError, Decompressor,
};
pub use negotiate::{ClientOffer, Direction, Params, ServerPolicy};
pub use session::{DeflateSession, DeflateStats, SharedCodecs};
