//! permessage-deflate on a connection: [`DeflateSession`], the [`Extension`] that sets and
//! honours RSV1, and [`SharedCodecs`], what a set of connections (an event loop's) shares.
//!
//! Each direction is served one of two ways, decided by the agreed [`Params`]:
//!
//! - **without context takeover** the sender resets its window after every message, so
//!   the loop's one compressor (per distinct [`CompressorConfig`]; messages of up to
//!   [`SMALL_MESSAGE`] bytes go to one block of fixed Huffman
//!   codes, which needs no zlib state) or its one 15-bit decompressor serves every
//!   connection, one whole message at a time. Such a connection
//!   holds nothing at rest; a compressed message that arrives in pieces (fragments, or a
//!   frame across reads) waits, compressed, in a buffer of its own until its last piece, and
//!   that buffer is freed then.
//! - **with context takeover** the connection owns its stream, made on its first message
//!   (an idle connection pays nothing for it), with the window and memory level chosen: a
//!   [`Compressor`] that compresses messages of up to
//!   [`STREAM_FIXED_UP_TO`](super::codec::STREAM_FIXED_UP_TO) bytes in Rust against its own
//!   window (20 KiB at window 12, memLevel 4) and makes zlib's state only for the first
//!   longer one, and zlib's inflater.
//!
//! Both count what they did in the shared [`DeflateStats`].
//!
//! ```
//! use std::{cell::RefCell, rc::Rc};
//! use surge_proto::connection::{Connection, Event, Limits};
//! use surge_proto::deflate::codec::CompressorConfig;
//! use surge_proto::deflate::session::{DeflateSession, SharedCodecs};
//! use surge_proto::deflate::{ClientOffer, ServerPolicy};
//! use surge_proto::message::Message;
//!
//! let offer = [ClientOffer::default().to_string()];
//! let params = ServerPolicy::default().negotiate(offer.iter().map(|v| v.as_bytes())).unwrap();
//! let codecs = Rc::new(RefCell::new(SharedCodecs::new(0)));
//! let server_ext = DeflateSession::server(codecs.clone(), &params, CompressorConfig::default());
//! let mut server = Connection::server_with(Limits::default(), server_ext);
//! let client_ext = DeflateSession::client(
//!     Rc::new(RefCell::new(SharedCodecs::new(0))), &params, CompressorConfig::default());
//! let mut client = Connection::client_with(Limits::default(), 7, client_ext);
//!
//! let mut wire = Vec::new();
//! client.send(Message::Text("hello hello hello hello"), &mut wire).unwrap();
//! assert_eq!(wire[0] & 0x40, 0x40, "RSV1: compressed");
//! let mut assembly = Vec::new();
//! let (_, event) = server.read(&mut wire, &mut assembly);
//! assert_eq!(event, Some(Event::Message(Message::Text("hello hello hello hello"))));
//! assert_eq!(codecs.borrow().stats().messages_inflated, 1);
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use super::codec::{
    CompressError, Compressor, CompressorConfig, DecompressError, Decompressor, SMALL_MESSAGE,
};
use super::fixed::FixedHuffman;
use super::negotiate::{Direction, Params};
use crate::error::ProtocolError;
use crate::extension::Extension;
use crate::Role;

/// RSV1, the bit of a compressed message's first frame (`FrameHeader::rsv`).
pub const RSV1: u8 = 0b100;

/// What a set of connections compressed and inflated, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeflateStats {
    /// Messages sent compressed.
    pub messages_compressed: u64,
    /// Their size before compression.
    pub bytes_before: u64,
    /// Their size after compression (payload bytes on the wire).
    pub bytes_after: u64,
    /// Compressed messages received and inflated.
    pub messages_inflated: u64,
    /// Their compressed size.
    pub inflated_from: u64,
    /// Their inflated size.
    pub inflated_to: u64,
}

/// The codecs that connections without context takeover share, made on first use, the
/// compression threshold, and the counters; one per event loop (an `Rc<RefCell<_>>`: a loop
/// is one thread).
pub struct SharedCodecs {
    threshold: usize,
    compressors: Vec<Compressor>,
    /// The hash chains of the compressor for short messages, made on first use.
    fixed: Option<Box<FixedHuffman>>,
    decompressor: Option<Decompressor>,
    stats: DeflateStats,
    /// Buffers that held a message's compressed pieces, kept for the next one: a message
    /// that arrives in pieces (a frame split between reads) costs no allocation at steady
    /// state, and an idle connection holds none.
    spare_pending: Vec<Vec<u8>>,
}

/// Whether a message of `len` bytes under `config` is compressed with fixed Huffman codes
/// (short, nothing carried to the next message, and compressed at all: level 0 is zlib's
/// stored blocks).
fn fixed_codes(config: CompressorConfig, len: usize) -> bool {
    config.no_context_takeover && config.level > 0 && (1..=SMALL_MESSAGE).contains(&len)
}

/// How many emptied pending buffers a loop keeps, and the largest it keeps.
const SPARE_PENDING: usize = 64;
const SPARE_PENDING_BYTES: usize = 64 << 10;

impl core::fmt::Debug for SharedCodecs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedCodecs")
            .field("threshold", &self.threshold)
            .field("compressors", &self.compressors.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SharedCodecs {
    /// No codec yet; messages shorter than `threshold` bytes go out uncompressed.
    pub fn new(threshold: usize) -> Self {
        Self {
            threshold,
            compressors: Vec::new(),
            fixed: None,
            decompressor: None,
            stats: DeflateStats::default(),
            spare_pending: Vec::new(),
        }
    }

    /// An empty buffer for a message's compressed pieces.
    fn take_pending(&mut self) -> Vec<u8> {
        self.spare_pending.pop().unwrap_or_default()
    }

    /// Takes back a buffer from [`take_pending`](Self::take_pending).
    fn give_pending(&mut self, mut buffer: Vec<u8>) {
        if self.spare_pending.len() < SPARE_PENDING && buffer.capacity() <= SPARE_PENDING_BYTES {
            buffer.clear();
            self.spare_pending.push(buffer);
        }
    }

    /// What was compressed and inflated so far.
    pub fn stats(&self) -> DeflateStats {
        self.stats
    }

    /// Messages shorter than this go out uncompressed.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Compresses the whole `message` with the shared compressor for `config` (which must
    /// have `no_context_takeover`: its window is reset after the message), appending the
    /// payload of a compressed message to `out`. A message of up to
    /// [`SMALL_MESSAGE`] bytes is one block of fixed Huffman
    /// codes, made in Rust, not by zlib: the output still depends only on `config` and the
    /// message.
    pub fn compress(
        &mut self,
        config: CompressorConfig,
        message: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressError> {
        let start = out.len();
        if fixed_codes(config, message.len()) {
            self.fixed.get_or_insert_default().compress(message, config.level, out);
            self.count_compressed(message.len(), out.len() - start);
            return Ok(());
        }
        let index = match self.compressors.iter().position(|c| c.config() == config) {
            Some(index) => index,
            None => {
                let compressor = Compressor::new(config).map_err(|_| CompressError::Backend)?;
                self.compressors.push(compressor);
                self.compressors.len() - 1
            }
        };
        self.compressors[index].compress(message, out)?;
        self.count_compressed(message.len(), out.len() - start);
        Ok(())
    }

    /// Inflates one whole compressed message from a fresh window into `out`, within
    /// `max_len` bytes of `out`.
    pub fn inflate(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), DecompressError> {
        let start = out.len();
        self.decompressor
            .get_or_insert_with(Decompressor::shared)
            .decompress_message(payload, out, max_len)?;
        self.count_inflated(payload.len(), out.len() - start);
        Ok(())
    }

    fn count_compressed(&mut self, before: usize, after: usize) {
        self.stats.messages_compressed += 1;
        self.stats.bytes_before += before as u64;
        self.stats.bytes_after += after as u64;
    }

    fn count_inflated(&mut self, from: usize, to: usize) {
        self.stats.messages_inflated += 1;
        self.stats.inflated_from += from as u64;
        self.stats.inflated_to += to as u64;
    }
}

/// How a session reaches its [`SharedCodecs`]: shared by the connections of one thread
/// (`Rc<RefCell<SharedCodecs>>`, an event loop's), or owned (`Box<SharedCodecs>`, a client
/// connection that shares with nobody, and may move between threads).
pub trait Codecs {
    /// Runs `f` on the codecs.
    fn with<R>(&mut self, f: impl FnOnce(&mut SharedCodecs) -> R) -> R;
    /// Runs `f` on the codecs, read-only.
    fn peek<R>(&self, f: impl FnOnce(&SharedCodecs) -> R) -> R;
}

impl Codecs for Rc<RefCell<SharedCodecs>> {
    #[inline]
    fn with<R>(&mut self, f: impl FnOnce(&mut SharedCodecs) -> R) -> R {
        f(&mut self.borrow_mut())
    }

    #[inline]
    fn peek<R>(&self, f: impl FnOnce(&SharedCodecs) -> R) -> R {
        f(&self.borrow())
    }
}

impl Codecs for Box<SharedCodecs> {
    #[inline]
    fn with<R>(&mut self, f: impl FnOnce(&mut SharedCodecs) -> R) -> R {
        f(self)
    }

    #[inline]
    fn peek<R>(&self, f: impl FnOnce(&SharedCodecs) -> R) -> R {
        f(self)
    }
}

/// A connection's own streams (context takeover), each made on its first message.
#[derive(Debug, Default)]
struct OwnStreams {
    compressor: Option<Compressor>,
    decompressor: Option<Decompressor>,
    /// The current message's compressed size so far, for the counters.
    inflating_from: usize,
}

/// The permessage-deflate [`Extension`] of one connection; see the [module docs](self).
#[derive(Debug)]
pub struct DeflateSession<C: Codecs = Rc<RefCell<SharedCodecs>>> {
    shared: C,
    /// How this end compresses (`no_context_takeover`: with the shared compressor).
    send: CompressorConfig,
    /// How the peer compresses (`no_context_takeover`: inflate with the shared decompressor).
    receive: Direction,
    /// Streams of its own, for the directions with context takeover; made on first use.
    own: Option<Box<OwnStreams>>,
    /// The compressed pieces of a message in pieces that the shared decompressor inflates
    /// once it is whole; no capacity otherwise.
    pending: Vec<u8>,
}

impl<C: Codecs> DeflateSession<C> {
    /// The server end of a connection that agreed on `params`; `base` sets the level, the
    /// memory level and the largest window this end compresses with (the agreement may
    /// lower the window and impose no context takeover).
    pub fn server(shared: C, params: &Params, base: CompressorConfig) -> Self {
        Self::new(shared, params, Role::Server, base)
    }

    /// The client end; see [`server`](Self::server).
    pub fn client(shared: C, params: &Params, base: CompressorConfig) -> Self {
        Self::new(shared, params, Role::Client, base)
    }

    fn new(shared: C, params: &Params, role: Role, base: CompressorConfig) -> Self {
        let peer = match role {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        Self {
            shared,
            send: base.for_direction(params.sent_by(role)),
            receive: params.sent_by(peer),
            own: None,
            pending: Vec::new(),
        }
    }

    /// How this end compresses: the key under which a shared compressor's output (a
    /// broadcast's) is the same for every connection.
    pub fn send_config(&self) -> CompressorConfig {
        self.send
    }

    /// Whether this end compresses with the shared compressor, so that one compressed frame
    /// of a message serves every connection with the same [`send_config`](Self::send_config).
    pub fn shares_compressor(&self) -> bool {
        self.send.no_context_takeover
    }

    /// Whether a message of `len` bytes would be sent compressed.
    pub fn compresses(&self, len: usize) -> bool {
        self.shared.peek(|codecs| len >= codecs.threshold)
    }

    /// What the codecs this session counts into have done (shared with the loop's other
    /// connections, when they share them).
    pub fn stats(&self) -> DeflateStats {
        self.shared.peek(SharedCodecs::stats)
    }

    fn inflate_shared(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), DecompressError> {
        if !last {
            if self.pending.capacity() == 0 {
                self.pending = self.shared.with(SharedCodecs::take_pending);
            }
            self.pending.extend_from_slice(input);
            return Ok(());
        }
        if self.pending.is_empty() {
            // The whole message in one piece (or after empty ones): inflated where it lies.
            let unused = std::mem::take(&mut self.pending);
            return self.shared.with(|codecs| {
                if unused.capacity() > 0 {
                    codecs.give_pending(unused);
                }
                codecs.inflate(input, out, max_len)
            });
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(input);
        self.shared.with(|codecs| {
            let result = codecs.inflate(&pending, out, max_len);
            codecs.give_pending(pending);
            result
        })
    }

    fn inflate_own(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), DecompressError> {
        let own = self.own.get_or_insert_with(Box::default);
        let decompressor = match own.decompressor.as_mut() {
            Some(decompressor) => decompressor,
            None => {
                let made = Decompressor::new(self.receive.window_bits)
                    .map_err(|_| DecompressError::Corrupt)?;
                own.decompressor.insert(made)
            }
        };
        let result = decompressor.decompress(input, last, out, max_len);
        own.inflating_from += input.len();
        if result.is_err() || last {
            let from = std::mem::take(&mut own.inflating_from);
            if result.is_ok() {
                // `out` is the message's assembly buffer: it holds the whole message now.
                self.shared.with(|codecs| codecs.count_inflated(from, out.len()));
            }
        }
        result
    }

    fn compress_own(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
        let own = self.own.get_or_insert_with(Box::default);
        let compressor = match own.compressor.as_mut() {
            Some(compressor) => compressor,
            None => {
                let made = Compressor::new(self.send).map_err(|_| CompressError::Backend)?;
                own.compressor.insert(made)
            }
        };
        let start = out.len();
        compressor.compress(payload, out)?;
        let after = out.len() - start;
        self.shared.with(|codecs| codecs.count_compressed(payload.len(), after));
        Ok(())
    }
}

impl<C: Codecs> Extension for DeflateSession<C> {
    #[inline]
    fn allowed_rsv(&self) -> u8 {
        RSV1
    }

    #[inline]
    fn decodes(&self, rsv: u8) -> bool {
        rsv & RSV1 != 0
    }

    fn decode(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), ProtocolError> {
        let result = if self.receive.no_context_takeover {
            self.inflate_shared(input, last, out, max_len)
        } else {
            self.inflate_own(input, last, out, max_len)
        };
        result.map_err(|error| match error {
            DecompressError::TooLarge => ProtocolError::MessageTooLarge,
            _ => ProtocolError::CorruptCompression,
        })
    }

    #[inline]
    fn transforms_output(&self) -> bool {
        true
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Option<u8> {
        if !self.compresses(payload.len()) {
            return None;
        }
        let start = out.len();
        let result = if self.send.no_context_takeover {
            let config = self.send;
            self.shared.with(|codecs| codecs.compress(config, payload, out))
        } else {
            self.compress_own(payload, out)
        };
        match result {
            Ok(()) => Some(RSV1),
            // Not expected with a valid configuration; the message goes out as it is.
            Err(_) => {
                out.truncate(start);
                None
            }
        }
    }
}
