//! permessage-deflate (RFC 7692) in the engine: the policy in [`Config`](crate::Config),
//! the negotiation at upgrade, and a broadcast compressed once per loop and parameter set.
//! The codecs and the RSV1 rules are surge-proto's ([`surge_proto::deflate`]).
//!
//! # Memory policies
//!
//! Heap bytes per stream with C zlib, the backend (the table and its command are in the
//! module docs of [`surge_proto::deflate`]):
//!
//! - [`DeflateMemory::Shared`] (**the default**): no context takeover in either direction.
//!   One compressor per distinct set of parameters and one decompressor per event loop
//!   serve every connection: 268 KiB + 40 KiB per loop at window 15, memLevel 8, made at
//!   the first compressed message (a client asking for a smaller window adds a compressor
//!   for that window, once per loop), plus 1 KiB of hash chains for messages up to 250
//!   bytes, which are compressed in Rust as one block of fixed Huffman codes (6.7x faster
//!   than zlib at 137 B, 0.3 % larger; see `surge_proto::deflate`).
//!   A connection holds nothing but its session, about
//!   48 bytes out of line (its record grows by the pointer, 8 bytes, deflate or not), plus
//!   a message in pieces, compressed, only while it arrives. It compresses a little worse
//!   (each message starts from an empty window: 1.19x for a 137 B JSON message, 5.25x for
//!   16 KiB of text) and costs about the same at 100,000 connections as at 10: that is why
//!   it is the default.
//! - [`DeflateMemory::PerConnection`]: context takeover with the chosen window and memory
//!   level; each connection makes its own compressor on its first compressed send and its
//!   own decompressor on its first compressed receive (an idle connection pays nothing for
//!   them). At window 12: 30.7 KiB (memLevel 4) or 23.5 KiB (memLevel 1) to compress plus
//!   11.4 KiB to inflate, when the client offers `client_max_window_bits` (browsers do);
//!   a client that does not may use 15 bits, and inflating it costs 40 KiB. About 4.2 GB
//!   at 100,000 active connections at `stream:12:4`, against 30 MB for `Shared`.
//!
//! A client may still ask for `server_no_context_takeover` or announce
//! `client_no_context_takeover` under `PerConnection`: that direction then uses the shared
//! codec.
//!
//! # Counters
//!
//! Each loop counts messages compressed and inflated and their bytes before and after
//! ([`surge_proto::deflate::DeflateStats`], in the loop's shared codecs), for a metrics
//! export to read.

use std::cell::RefCell;
use std::rc::Rc;

use surge_proto::deflate::codec::CompressorConfig;
use surge_proto::deflate::header::Element;
use surge_proto::deflate::{DeflateSession, Params, ServerPolicy, SharedCodecs};
use surge_proto::frame::{FrameHeader, MAX_HEADER_LEN};
use surge_proto::message::Message;

use crate::outbox::SharedFrame;
use crate::request::Request;

/// How compression state is kept; see the [module docs](self) for what each costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeflateMemory {
    /// No context takeover either way: per-loop codecs, nothing per connection at rest.
    Shared,
    /// Context takeover, a stream per connection and direction.
    PerConnection {
        /// The largest window, 9..=15, the server compresses with and asks the client for.
        window_bits: u8,
        /// zlib's memLevel of the compressor, 1..=9.
        mem_level: u8,
    },
}

/// permessage-deflate settings; turn it on with
/// [`ConfigBuilder::deflate`](crate::ConfigBuilder::deflate).
///
/// ```
/// use surge::{Config, DeflateConfig, DeflateMemory};
///
/// let config = Config::builder()
///     .listen("127.0.0.1:0".parse().unwrap())
///     .deflate(DeflateConfig {
///         memory: DeflateMemory::PerConnection { window_bits: 12, mem_level: 4 },
///         ..DeflateConfig::default()
///     })
///     .build()
///     .unwrap();
/// assert_eq!(config.deflate().unwrap().level, 6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeflateConfig {
    /// How state is kept.
    pub memory: DeflateMemory,
    /// Compression level 0..=9.
    pub level: u8,
    /// Messages shorter than this many bytes are sent uncompressed.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    /// [`DeflateMemory::Shared`], level 6, messages from 64 bytes compressed.
    fn default() -> Self {
        Self { memory: DeflateMemory::Shared, level: 6, threshold: 64 }
    }
}

impl DeflateConfig {
    /// Whether the settings are within what DEFLATE allows.
    pub(crate) fn is_valid(&self) -> bool {
        let memory_ok = match self.memory {
            DeflateMemory::Shared => true,
            DeflateMemory::PerConnection { window_bits, mem_level } => {
                (9..=15).contains(&window_bits) && (1..=9).contains(&mem_level)
            }
        };
        memory_ok && self.level <= 9
    }

    fn policy(&self) -> ServerPolicy {
        match self.memory {
            DeflateMemory::Shared => ServerPolicy::default(),
            DeflateMemory::PerConnection { window_bits, .. } => ServerPolicy {
                server_no_context_takeover: false,
                client_no_context_takeover: false,
                server_max_window_bits: window_bits,
                client_max_window_bits: window_bits,
                ..ServerPolicy::default()
            },
        }
    }

    /// The compressor before the agreement narrows it.
    fn base(&self) -> CompressorConfig {
        let (window_bits, mem_level) = match self.memory {
            DeflateMemory::Shared => (15, 8),
            DeflateMemory::PerConnection { window_bits, mem_level } => (window_bits, mem_level),
        };
        CompressorConfig { window_bits, mem_level, level: self.level, no_context_takeover: false }
    }

    /// The first acceptable offer of `request`, if any.
    pub(crate) fn negotiate(&self, request: &Request<'_>) -> Option<Params> {
        let policy = self.policy();
        request
            .extensions()
            .find_map(|offer| policy.accept(Ok(Element::new(offer.name, offer.params))).ok())
    }

    /// The connection's extension for the agreed `params`.
    pub(crate) fn session(&self, codecs: &LoopCodecs, params: &Params) -> DeflateSession {
        DeflateSession::server(Rc::clone(codecs), params, self.base())
    }
}

/// A loop's shared codecs and counters (one thread: an `Rc`).
pub(crate) type LoopCodecs = Rc<RefCell<SharedCodecs>>;

/// The compressed forms of one broadcast, one per distinct compressor configuration, made
/// as connections need them.
#[derive(Debug, Default)]
pub(crate) struct CompressedBroadcast {
    frames: Vec<(CompressorConfig, SharedFrame)>,
}

impl CompressedBroadcast {
    /// The frame of `msg` compressed with the shared compressor for `config`.
    pub(crate) fn frame(
        &mut self,
        codecs: &LoopCodecs,
        config: CompressorConfig,
        msg: Message<'_>,
    ) -> Option<SharedFrame> {
        if let Some((_, frame)) = self.frames.iter().find(|(c, _)| *c == config) {
            return Some(frame.clone());
        }
        let mut buf = vec![0; MAX_HEADER_LEN];
        codecs.borrow_mut().compress(config, msg.as_bytes(), &mut buf).ok()?;
        let payload_len = buf.len() - MAX_HEADER_LEN;
        let header = FrameHeader {
            fin: true,
            rsv: surge_proto::deflate::session::RSV1,
            opcode: msg.opcode(),
            mask: None,
            payload_len: payload_len as u64,
        };
        let mut encoded = [0; MAX_HEADER_LEN];
        let header_len = header.encode(&mut encoded);
        let start = MAX_HEADER_LEN - header_len;
        buf[start..MAX_HEADER_LEN].copy_from_slice(&encoded[..header_len]);
        let frame = SharedFrame::from_frame(&buf[start..]);
        self.frames.push((config, frame.clone()));
        Some(frame)
    }
}
