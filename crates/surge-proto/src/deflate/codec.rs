//! Compressing and inflating permessage-deflate messages (RFC 7692 §7.2).
//!
//! A [`Compressor`] turns a message into the payload of a compressed message: raw DEFLATE,
//! a sync flush, the trailing `00 00 ff ff` removed; without context takeover its window is
//! reset after each message. A [`Decompressor`] appends `00 00 ff ff` and inflates, in
//! chunks, into the caller's `Vec`, never letting it grow past the caller's cap.
//!
//! Neither allocates per message once warm: the backend state is made once, and output goes
//! into the caller's buffer, which keeps its capacity from one message to the next.
//!
//! **Sharing.** Without context takeover nothing is carried from one message to the next,
//! so one [`Compressor`] (for `server_no_context_takeover`) and one [`Decompressor`] (for
//! `client_no_context_takeover`) can serve every connection of an event loop, as long as
//! each message is compressed or inflated whole before the next connection's:
//! [`Compressor::compress`] takes a whole message, and [`Decompressor::decompress_message`]
//! resets, then inflates a whole message. The reset also keeps one connection's messages
//! from referring back into another's (a crafted distance would otherwise read them).

use super::backend::{self, Until};
use super::negotiate::{Direction, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use super::window::Window;
use super::window::MAX_FIXED_UP_TO;
pub use super::window::STREAM_FIXED_UP_TO;

/// The empty stored block a sync flush ends with, removed by the sender, appended by the
/// receiver (§7.2.1, §7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How much a decompressor inflates per step before checking the cap.
pub const CHUNK: usize = 16 * 1024;

/// The longest message that a loop's [`SharedCodecs`](super::SharedCodecs) compresses, when
/// nothing is carried from one message to the next, in one block of DEFLATE's fixed Huffman
/// codes instead of with zlib: at this size zlib spends most of its time building dynamic
/// trees that come out no smaller (see `fixed.rs`).
pub const SMALL_MESSAGE: usize = 250;

/// A setting outside what DEFLATE allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Window bits outside 8..=15.
    #[error("window bits must be 8..=15")]
    WindowBits,
    /// Memory level outside 1..=9.
    #[error("memory level must be 1..=9")]
    MemLevel,
    /// Compression level outside 0..=9.
    #[error("compression level must be 0..=9")]
    Level,
}

/// How a compressor is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompressorConfig {
    /// The window, 8..=15; 8 opens zlib's 9-bit window, whose matches reach back at most 250
    /// bytes, so the stream stays valid for a 256-byte window.
    pub window_bits: u8,
    /// zlib's memLevel, 1..=9: the size of the hash chains and of the pending buffer.
    pub mem_level: u8,
    /// Compression level, 0 (stored) ..= 9 (best).
    pub level: u8,
    /// Reset the window after every message.
    pub no_context_takeover: bool,
}

impl Default for CompressorConfig {
    /// Window 15, memLevel 8 (zlib's default), level 6, context takeover.
    fn default() -> Self {
        Self { window_bits: MAX_WINDOW_BITS, mem_level: 8, level: 6, no_context_takeover: false }
    }
}

impl CompressorConfig {
    /// The setup for the messages this endpoint sends under the agreed `direction`
    /// (`params.sent_by(my_role)`), keeping this config's level and memory level and never a
    /// larger window than this config's.
    pub fn for_direction(self, direction: Direction) -> Self {
        Self {
            window_bits: self.window_bits.min(direction.window_bits),
            no_context_takeover: self.no_context_takeover || direction.no_context_takeover,
            ..self
        }
    }
}

/// Why a message could not be compressed. Not expected with a valid configuration: it
/// would be a backend bug, and the connection should close with 1011.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// The backend reported an error.
    #[error("deflate failed")]
    Backend,
}

/// Compresses permessage-deflate messages for one direction; see the [module docs](self).
///
/// With context takeover, a message of up to [`STREAM_FIXED_UP_TO`] bytes is compressed in
/// Rust against the stream's own window, as one block of fixed Huffman codes (`window.rs`),
/// and a longer one by zlib, which is made only when the first such message comes; the two
/// hand the window to each other, so that every message may refer back into all that came
/// before it, whoever compressed it.
///
/// ```
/// use surge_proto::deflate::codec::{Compressor, CompressorConfig, Decompressor};
///
/// let mut deflate = Compressor::new(CompressorConfig::default()).unwrap();
/// let mut wire = Vec::new();
/// deflate.compress(b"Hello", &mut wire).unwrap();
/// assert_eq!(wire, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]); // RFC 7692 §7.2.3.1
///
/// let mut inflate = Decompressor::new(15).unwrap();
/// let mut text = Vec::new();
/// inflate.decompress(&wire, true, &mut text, 1 << 20).unwrap();
/// assert_eq!(text, b"Hello");
/// ```
pub struct Compressor {
    config: CompressorConfig,
    /// zlib: every message without context takeover; with it, the long ones (made for the
    /// first).
    zlib: Option<backend::Deflate>,
    /// With context takeover at a level above 0: the stream's window, for messages of up
    /// to `fixed_up_to` bytes.
    window: Option<Box<Window>>,
    fixed_up_to: usize,
    /// zlib's window is the stream's: no message went to `window` since zlib's last.
    zlib_current: bool,
}

impl core::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Compressor").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Compressor {
    /// A compressor for `config`. Without context takeover this makes zlib's state (see the
    /// module docs of [`deflate`](super) for its size); with it, nothing until the first
    /// message (the window, then zlib's state for the first long message).
    pub fn new(config: CompressorConfig) -> Result<Self, ConfigError> {
        Self::with_fixed_up_to(config, STREAM_FIXED_UP_TO)
    }

    /// As [`new`](Self::new), with context takeover compressing messages of up to
    /// `max_len` bytes (at most 32 KiB) in Rust instead of up to [`STREAM_FIXED_UP_TO`]: `0`
    /// sends every message through zlib (the comparison the benches make).
    ///
    /// ```
    /// use surge_proto::deflate::codec::{Compressor, CompressorConfig};
    ///
    /// let mut zlib = Compressor::with_fixed_up_to(CompressorConfig::default(), 0).unwrap();
    /// let (mut first, mut second) = (Vec::new(), Vec::new());
    /// zlib.compress(b"Hello", &mut first).unwrap();
    /// zlib.compress(b"Hello", &mut second).unwrap();
    /// assert_eq!(second, [0xf2, 0x00, 0x11, 0x00, 0x00]); // zlib's, RFC 7692 §7.2.3.2
    /// ```
    pub fn with_fixed_up_to(config: CompressorConfig, max_len: usize) -> Result<Self, ConfigError> {
        if !(MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&config.window_bits) {
            return Err(ConfigError::WindowBits);
        }
        if !(1..=9).contains(&config.mem_level) {
            return Err(ConfigError::MemLevel);
        }
        if config.level > 9 {
            return Err(ConfigError::Level);
        }
        let zlib = config.no_context_takeover.then(|| Self::make_zlib(config));
        let fixed_up_to = max_len.min(MAX_FIXED_UP_TO);
        Ok(Self { config, zlib, window: None, fixed_up_to, zlib_current: true })
    }

    fn make_zlib(config: CompressorConfig) -> backend::Deflate {
        backend::Deflate::new(config.window_bits.max(9), config.mem_level, config.level)
    }

    /// The configuration it was made with.
    pub fn config(&self) -> CompressorConfig {
        self.config
    }

    /// Whether the stream keeps a window of its own, in Rust, for its short messages.
    fn keeps_window(&self) -> bool {
        !self.config.no_context_takeover && self.config.level > 0 && self.fixed_up_to > 0
    }

    /// Appends the compressed payload of the whole message `message` to `out` (without the
    /// trailing `00 00 ff ff`). The frame(s) carrying it have RSV1 set on the first frame
    /// only. An empty message compresses to the one byte `00`.
    ///
    /// Allocates only when `out` lacks the capacity, and for the state made on first use.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
        if message.is_empty() {
            // The header of an empty stored block, which the tail completes (§7.2.3.6). Not
            // asked of zlib: a second sync flush with no new input makes no output at all.
            // The window is untouched, so context takeover carries on unchanged.
            out.push(0x00);
            return Ok(());
        }
        let window = if self.keeps_window() {
            let (bits, mem_level) = (self.config.window_bits, self.config.mem_level);
            let up_to = self.fixed_up_to;
            Some(self.window.get_or_insert_with(|| Box::new(Window::new(bits, mem_level, up_to))))
        } else {
            None
        };
        if let Some(window) = window.filter(|_| message.len() <= self.fixed_up_to) {
            window.compress(message, self.config.level, out);
            self.zlib_current = false;
            return Ok(());
        }
        let start = out.len();
        let config = self.config;
        let zlib = self.zlib.get_or_insert_with(|| Self::make_zlib(config));
        if !self.zlib_current {
            zlib.reset_to(self.window.as_deref().map_or(&[], Window::recent));
            self.zlib_current = true;
        }
        let result = Self::compress_into(zlib, message, out);
        // A sync flush always ends with the empty stored block.
        let result = result.and_then(|()| match out.len() >= start + TAIL.len() {
            true if out.ends_with(&TAIL) => Ok(()),
            _ => Err(CompressError::Backend),
        });
        if result.is_err() {
            out.truncate(start);
            self.reset();
            return result;
        }
        out.truncate(out.len() - TAIL.len());
        if self.config.no_context_takeover {
            zlib.reset();
        } else if let Some(window) = self.window.as_deref_mut() {
            window.append(message);
        }
        Ok(())
    }

    fn compress_into(
        zlib: &mut backend::Deflate,
        message: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressError> {
        let mut input = message;
        // Room for the whole message in the common case: stored blocks cost 5 bytes per
        // 64 KiB, plus the flush markers.
        let mut room = message.len() + message.len() / 1024 + 64;
        loop {
            let len = out.len();
            out.reserve(room);
            let progress = match zlib.sync_flush(input, out, room) {
                Ok(progress) => progress,
                Err(backend::Failed) => {
                    out.truncate(len);
                    return Err(CompressError::Backend);
                }
            };
            input = input.get(progress.consumed..).unwrap_or_default();
            // Done when all the input is in and the flush did not fill the output.
            if input.is_empty() && progress.produced < room {
                return Ok(());
            }
            room = room.max(64) * 2;
        }
    }

    /// Forgets the window: the next message refers to nothing before it. Called after each
    /// message without context takeover; call it yourself to share one compressor among
    /// connections that keep context in no other way.
    pub fn reset(&mut self) {
        if let Some(zlib) = self.zlib.as_mut() {
            zlib.reset();
        }
        if let Some(window) = self.window.as_deref_mut() {
            window.clear();
        }
        self.zlib_current = true;
    }
}

/// Why a message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DecompressError {
    /// The message inflates to more than the cap: close with 1009 (Message Too Big).
    #[error("inflated message is larger than the limit")]
    TooLarge,
    /// The payload is not a valid DEFLATE stream, ends inside a block, or has bytes after a
    /// final block: close with 1002 (Protocol Error).
    #[error("corrupt permessage-deflate payload")]
    Corrupt,
}

impl DecompressError {
    /// The close code the connection should close with.
    pub fn close_code(&self) -> crate::close::CloseCode {
        match self {
            Self::TooLarge => crate::close::CloseCode::MESSAGE_TOO_BIG,
            Self::Corrupt => crate::close::CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// Inflates permessage-deflate messages for one direction; see the [module docs](self).
pub struct Decompressor {
    inner: backend::Inflate,
    window_bits: u8,
    /// The stream ended (a final block) or failed: the next message starts a new stream.
    needs_reset: bool,
    /// A message has begun and its last fragment has not come yet.
    in_message: bool,
    /// A final block ended the stream within the current message.
    ended: bool,
    /// Some payload byte of the current message has been fed to the inflater.
    fed: bool,
}

impl core::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Decompressor")
            .field("window_bits", &self.window_bits)
            .finish_non_exhaustive()
    }
}

impl Decompressor {
    /// A decompressor for a peer that compresses with at most `window_bits` (8..=15;
    /// `params.sent_by(peer_role).window_bits`). An 8 inflates with 9 bits: a larger window
    /// than the sender's is always correct.
    pub fn new(window_bits: u8) -> Result<Self, ConfigError> {
        if !(MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&window_bits) {
            return Err(ConfigError::WindowBits);
        }
        let window_bits = window_bits.max(9);
        Ok(Self {
            inner: backend::Inflate::new(window_bits),
            window_bits,
            needs_reset: false,
            in_message: false,
            ended: false,
            fed: false,
        })
    }

    /// A decompressor to share among every connection of a loop whose peers reset their
    /// window after each message: 15 bits, enough for any peer. Use it through
    /// [`decompress_message`](Self::decompress_message).
    pub fn shared() -> Self {
        Self {
            inner: backend::Inflate::new(MAX_WINDOW_BITS),
            window_bits: MAX_WINDOW_BITS,
            needs_reset: false,
            in_message: false,
            ended: false,
            fed: false,
        }
    }

    /// The window it inflates with.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Inflates one whole message from a fresh window: nothing before it is visible to it.
    /// The way to use a shared decompressor. Appends to `out`; `max_len` caps the inflated
    /// size as in [`decompress`](Self::decompress).
    pub fn decompress_message(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), DecompressError> {
        self.reset();
        self.decompress(payload, true, out, max_len)
    }

    /// Inflates the next fragment of the current message (the payload of one frame), `fin`
    /// on the last one, appending to `out`.
    ///
    /// `max_len` caps `out.len()` (the assembly buffer holding the message: pass its current
    /// length plus the message cap if it holds more): past it the call stops with
    /// [`DecompressError::TooLarge`], `out` having grown in steps of at most [`CHUNK`] and its
    /// capacity to at most `max_len + 1` bytes (unless it had more before); a small payload
    /// that would inflate to gigabytes costs no more than that. After an error the message is abandoned and the
    /// next call starts a new one (the connection is expected to close).
    ///
    /// ```
    /// use surge_proto::deflate::codec::{Compressor, CompressorConfig, DecompressError, Decompressor};
    ///
    /// let mut deflate = Compressor::new(CompressorConfig::default()).unwrap();
    /// let (mut wire, mut out) = (Vec::new(), Vec::new());
    /// deflate.compress(&vec![0u8; 1 << 20], &mut wire).unwrap();   // 1 MiB of zeros
    /// assert!(wire.len() < 2048);
    /// let mut inflate = Decompressor::new(15).unwrap();
    /// assert_eq!(inflate.decompress(&wire, true, &mut out, 64 * 1024), Err(DecompressError::TooLarge));
    /// assert!(out.capacity() <= 64 * 1024 + 1);
    /// ```
    pub fn decompress(
        &mut self,
        fragment: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), DecompressError> {
        if !self.in_message {
            if self.needs_reset {
                self.reset();
            }
            self.in_message = true;
            self.ended = false;
            self.fed = false;
        }
        let result = self.inflate_fragment(fragment, fin, out, max_len);
        if result.is_err() {
            self.needs_reset = true;
            self.in_message = false;
        } else if fin {
            self.in_message = false;
        }
        result
    }

    fn inflate_fragment(
        &mut self,
        fragment: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), DecompressError> {
        if self.ended {
            // The stream ended with a final block in an earlier fragment of this message.
            return if fragment.is_empty() { Ok(()) } else { Err(DecompressError::Corrupt) };
        }
        self.fed |= !fragment.is_empty();
        let ended = self.inflate(fragment, Until::Sync, out, max_len)?;
        if ended.is_some_and(|left| left > 0) {
            return Err(DecompressError::Corrupt);
        }
        // An empty payload is an empty message: appending the tail to nothing would open a
        // stored block and leave the inflater inside its header.
        if ended.is_some() || !fin || !self.fed {
            return Ok(());
        }
        // The tail must close exactly one empty stored block: stop at the first block
        // boundary and check that it came at the tail's end with nothing inflated. A payload
        // cut inside a block shows here: its block swallows the tail's bytes (output, or a
        // boundary before the tail's end).
        let before = out.len();
        match self.inflate(&TAIL, Until::Block, out, max_len)? {
            Some(_) => Ok(()), // a final block completed by the tail; the rest is ours
            None if out.len() != before => Err(DecompressError::Corrupt),
            None => Ok(()),
        }
    }

    /// Inflates `input` into `out` within the cap. `Ok(Some(left))` when a final block ended
    /// the stream with `left` input bytes unread; `Ok(None)` when all of `input` was used.
    fn inflate(
        &mut self,
        mut input: &[u8],
        until: Until,
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<Option<usize>, DecompressError> {
        loop {
            let len = out.len();
            // One byte past the cap lets "exactly at the cap" and "over it" be told apart.
            let allowed = max_len.saturating_add(1).saturating_sub(len);
            let room = CHUNK.min(allowed);
            if room == 0 {
                return Err(DecompressError::TooLarge);
            }
            reserve_within(out, room, allowed);
            let progress = match self.inner.inflate(input, out, room, until) {
                Ok(progress) => progress,
                Err(backend::Failed) => {
                    out.truncate(len);
                    return Err(DecompressError::Corrupt);
                }
            };
            if out.len() > max_len {
                return Err(DecompressError::TooLarge);
            }
            input = input.get(progress.consumed..).unwrap_or_default();
            if progress.stream_end {
                self.ended = true;
                self.needs_reset = true;
                return Ok(Some(input.len()));
            }
            if progress.produced < room {
                // Output to spare: the inflater stopped for want of input, or at a block
                // boundary (Until::Block), with `input` left over.
                return if input.is_empty() { Ok(None) } else { Err(DecompressError::Corrupt) };
            }
        }
    }

    /// Starts a new stream: forgets the window and any partial message. Keeps the window's
    /// memory when the window is 15 bits; a smaller one is made anew (it allocates).
    pub fn reset(&mut self) {
        if self.window_bits == MAX_WINDOW_BITS {
            self.inner.reset_to_15_bits();
        } else {
            self.inner = backend::Inflate::new(self.window_bits);
        }
        self.needs_reset = false;
        self.in_message = false;
        self.ended = false;
        self.fed = false;
    }
}

/// Makes room for `room` more bytes in `out`, growing its capacity geometrically but never
/// past `limit` bytes beyond its length unless it already had more.
fn reserve_within(out: &mut Vec<u8>, room: usize, limit: usize) {
    let (len, needed) = (out.len(), out.len() + room);
    if needed > out.capacity() {
        let target = out.capacity().saturating_mul(2).clamp(needed, (len + limit).max(needed));
        out.reserve_exact(target - len);
    }
}
