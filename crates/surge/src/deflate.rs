//! permessage-deflate (RFC 7692) in the engine: the policy in [`Config`](crate::Config),
//! the negotiation at upgrade, and a broadcast compressed once per loop and parameter set.
//! The codecs and the RSV1 rules are surge-proto's ([`surge_proto::deflate`]).
//!
//! # Memory policies
//!
//! Measured with zlib-rs, the backend (heap bytes per stream; see the module docs of
//! [`surge_proto::deflate`] for the table and the command):
//!
//! - [`DeflateMemory::Shared`] (**the default**): no context takeover in either direction.
//!   One compressor per distinct set of parameters and one decompressor per event loop
//!   serve every connection; a connection holds nothing for deflate at rest (beyond its
//!   40-byte record), and a message in pieces only while it arrives. At window 15 and
//!   memLevel 8 the loop pays about 380 KiB + 47 KiB once. It compresses a little worse
//!   (each message starts from an empty window), and it is the only policy that costs the
//!   same at 100,000 connections as at 10: that is why it is the default.
//! - [`DeflateMemory::PerConnection`]: context takeover with the chosen window and memory
//!   level; each connection makes its own compressor on its first compressed send and its
//!   own decompressor on its first compressed receive (an idle connection pays nothing).
//!   With zlib-rs that is at least 151 KiB + 47 KiB per active connection at window 12,
//!   whatever the memory level: 20 GB at 100,000 connections, over the 64 KiB target.
//!
//! A client may still ask for `server_no_context_takeover` or announce
//! `client_no_context_takeover` under `PerConnection`: that direction then uses the shared
//! codec.

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
