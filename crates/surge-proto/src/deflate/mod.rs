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
//! # The backend, measured
//!
//! zlib-rs (the Rust port of zlib-ng) against C zlib 1.2.13 (the system's, through libz-sys),
//! both at level 6, measured by `benches/benches/deflate.rs` in one run (state: a counting
//! allocator that sees every byte either library asks for; speed: criterion):
//!
//! ```text
//! cargo bench -p surge-benches --bench deflate
//! ```
//!
//! The figures are in that bench's docs and in the report of the commit that added it. In
//! short: zlib-rs's compressor always carries a 128 KiB hash table (`HASH_BITS` is fixed at
//! 16, memLevel does not shrink it), so its state is above 134 KiB at any setting, while C
//! zlib's shrinks with memLevel to a few KiB; zlib-rs is faster. The default here is zlib-rs,
//! because the default policy ([`negotiate::ServerPolicy::default`]) has no context takeover
//! in either direction: one compressor and one decompressor per event loop, so the state's
//! size is paid per loop, not per connection, and speed is what is left to choose on. It is
//! also pure Rust, so calling it needs no `unsafe`. A per-connection context-takeover policy
//! at 100,000 connections is where C zlib at a low memLevel wins; `backend.rs` is the one
//! file that would change.

mod backend;
pub mod codec;
pub mod header;
pub mod negotiate;

pub use codec::{
    CompressError, Compressor, CompressorConfig, ConfigError, DecompressError, Decompressor,
};
pub use negotiate::{ClientOffer, Direction, Params, ServerPolicy};
