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
//!   [`CompressorConfig`] (`Eq + Hash`, after [`CompressorConfig::for_direction`]): a
//!   broadcast is compressed once per distinct config and the frame shared. A connection with
//!   context takeover compresses with its own `Compressor`.
//!
//! # The backend, measured
//!
//! zlib-rs 0.6 (the Rust port of zlib-ng) against C zlib 1.2.13 (the system's, through
//! libz-sys), measured by `benches/benches/deflate.rs` in one run:
//!
//! ```text
//! cargo bench -p surge-benches --bench deflate
//! ```
//!
//! State per stream, heap bytes, seen by a counting allocator that both libraries allocate
//! through (deflate once made; inflate after its first message, since C zlib allocates its
//! window on first use):
//!
//! ```text
//! bits memLevel | zlib-rs deflate  C zlib deflate | zlib-rs inflate  C zlib inflate
//!    9        1 |         137 216           9 216 |          47 552           7 816
//!    9        4 |         143 488          16 384 |          47 552           7 816
//!    9        8 |         251 008         139 264 |          47 552           7 816
//!   12        1 |         151 552          23 552 |          47 552          11 400
//!   12        4 |         157 824          30 720 |          47 552          11 400
//!   12        8 |         265 344         153 600 |          47 552          11 400
//!   15        1 |         266 240         138 240 |          47 552          40 072
//!   15        4 |         272 512         145 408 |          47 552          40 072
//!   15        8 |         380 032         268 288 |          47 552          40 072
//! ```
//!
//! The published figure holds: zlib-rs's compressor is 134 KiB at its smallest (its hash
//! table is fixed at 2^16 entries, 128 KiB, whatever the memLevel) against 9 KiB for C zlib;
//! its decompressor always allocates a 32 KiB window, whatever the window bits.
//!
//! Speed (level 6, window 15, memLevel 8, no context takeover; time per message, three runs
//! on a 2-core machine shared with other builds at a load of 6 to 9, so absolute figures are
//! high and noisy; both columns of a run come from the same process minutes apart):
//!
//! ```text
//!                          zlib-rs                  C zlib
//! compress 137 B JSON    20.8 / 16.6 / 13.6 us    13.3 / 10.2 / 8.8 us   (115 B out: 1.19x)
//! inflate  137 B JSON     4.4 /  4.3 /  3.3 us     5.0 /  5.0 / 3.4 us
//! compress 16 KiB text    500 /  495 /  335 us     470 /  513 / 324 us   (3233 B out: 5.07x)
//! inflate  16 KiB text   29.2 / 31.9 / 21.7 us    42.5 / 43.7 / 28.3 us
//! ```
//!
//! So C zlib compresses a small message from a fresh window about 1.6x faster (likely in
//! part the reset: zlib-rs clears its fixed 128 KiB hash table, C zlib 64 KiB at memLevel 8;
//! not profiled), zlib-rs inflates 4-16% faster at 137 B and 1.3-1.45x faster at 16 KiB,
//! and 16 KiB compression is a tie. For a 137 B echo (inflate + compress) C zlib cost about
//! 12 us to zlib-rs's 17 in the last run.
//!
//! **The default is zlib-rs, for what it can be called through, not for its figures.** It is
//! the only backend here that this crate can drive without `unsafe` and still set the
//! memory level and stop at a block boundary (`Z_BLOCK`, which the truncation check needs):
//! flate2, the safe wrapper of C zlib, fixes memLevel at 8 and has no `Z_BLOCK`. It needs
//! no C toolchain or system library. And the default policy
//! ([`negotiate::ServerPolicy::default`]) has no context takeover in either direction, so
//! one compressor and one decompressor per event loop serve every connection: its state is
//! paid per loop (418 KiB at window 15, memLevel 8), not per connection.
//!
//! **Where C zlib wins, and what that would take.** Small-message CPU (above), and
//! per-connection streams (context takeover) at 100,000 connections: at window 12 zlib-rs
//! costs 151 KiB + 46 KiB per connection whatever the memLevel, while C zlib at memLevel 4
//! costs 30 KiB + 11 KiB, under a 64 KiB budget. Calling C zlib with a chosen memLevel needs libz-sys and `unsafe` (flate2,
//! the safe wrapper, fixes memLevel at 8, 150 KiB at window 12): a second `backend.rs`, behind
//! a cargo feature. The bench's `c_zlib` module is that code, with its SAFETY comments.

mod backend;
pub mod codec;
pub mod header;
pub mod negotiate;
pub mod session;

pub use codec::{
    CompressError, Compressor, CompressorConfig, ConfigError, DecompressError, Decompressor,
};
pub use negotiate::{ClientOffer, Direction, Params, ServerPolicy};
pub use session::{DeflateSession, DeflateStats, SharedCodecs};
