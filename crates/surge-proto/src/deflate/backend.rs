//! The one file that names the DEFLATE implementation.
//!
//! What a backend must provide, so that another one is this file rewritten and nothing else:
//!
//! - a raw (headerless, RFC 1951) compressor created from window bits (9..=15), memory level
//!   (1..=9) and level (0..=9), that compresses a slice into a slice with a sync flush
//!   (`Z_SYNC_FLUSH`: the output ends on a byte boundary with the empty stored block
//!   `00 00 ff ff`), reports bytes consumed and produced, and resets to an empty window
//!   without allocating;
//! - a raw decompressor created from window bits (8..=15) that inflates a slice into a slice
//!   with a sync flush, can stop at the next block boundary (`Z_BLOCK`), reports bytes
//!   consumed, bytes produced and the end of a final block, and resets to an empty window
//!   (its 15-bit form without allocating);
//! - every allocation through Rust's global allocator, so that a counting allocator sees the
//!   whole state;
//! - no `unsafe` in this crate to call it.
//!
//! The backend is zlib-rs (the Rust port of zlib-ng that flate2 uses for its `zlib-rs`
//! feature), called directly rather than through flate2 because flate2 cannot set the memory
//! level. Why this one and not C zlib: `benches/benches/deflate.rs` measures both, side by
//! side; the figures and the reasoning are in the [module docs](super).

use zlib_rs::{DeflateConfig, DeflateFlush, InflateFlush, Method, Status, Strategy};

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

/// A raw deflate compressor.
pub(crate) struct Deflate {
    inner: zlib_rs::Deflate,
}

impl Deflate {
    /// `window_bits` 9..=15, `mem_level` 1..=9, `level` 0..=9: checked by the caller.
    pub(crate) fn new(window_bits: u8, mem_level: u8, level: u8) -> Self {
        let config = DeflateConfig {
            level: i32::from(level),
            method: Method::Deflated,
            window_bits: -i32::from(window_bits),
            mem_level: i32::from(mem_level),
            strategy: Strategy::Default,
        };
        Self { inner: zlib_rs::Deflate::new_with_config(config) }
    }

    /// Compresses as much of `input` into `output` as fits, ending with a sync flush once all
    /// of `input` is in.
    pub(crate) fn sync_flush(
        &mut self,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Progress, Failed> {
        let (in0, out0) = (self.inner.total_in(), self.inner.total_out());
        let status =
            self.inner.compress(input, output, DeflateFlush::SyncFlush).map_err(|_| Failed)?;
        Ok(Progress {
            consumed: delta(self.inner.total_in(), in0),
            produced: delta(self.inner.total_out(), out0),
            stream_end: status == Status::StreamEnd,
        })
    }

    /// Forgets the window: the next output starts a stream that refers to nothing before it.
    pub(crate) fn reset(&mut self) {
        self.inner.reset();
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
    inner: zlib_rs::Inflate,
}

impl Inflate {
    /// `window_bits` 8..=15: checked by the caller.
    pub(crate) fn new(window_bits: u8) -> Self {
        Self { inner: zlib_rs::Inflate::new(false, window_bits) }
    }

    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        output: &mut [u8],
        until: Until,
    ) -> Result<Progress, Failed> {
        let (in0, out0) = (self.inner.total_in(), self.inner.total_out());
        let flush = match until {
            Until::Sync => InflateFlush::SyncFlush,
            Until::Block => InflateFlush::Block,
        };
        let status = self.inner.decompress(input, output, flush).map_err(|_| Failed)?;
        Ok(Progress {
            consumed: delta(self.inner.total_in(), in0),
            produced: delta(self.inner.total_out(), out0),
            stream_end: status == Status::StreamEnd,
        })
    }

    /// Forgets the window and any partial block, and sets the window to 15 bits (zlib-rs's
    /// reset always restores the default); the window's memory is kept.
    pub(crate) fn reset_to_15_bits(&mut self) {
        self.inner.reset(false);
    }
}

/// `now - before` as a `usize`; both are counters of bytes that fit in memory.
fn delta(now: u64, before: u64) -> usize {
    usize::try_from(now.saturating_sub(before)).unwrap_or(usize::MAX)
}
