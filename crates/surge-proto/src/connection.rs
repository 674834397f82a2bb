//! The WebSocket connection state machine: bytes in, events out, frames out.
//!
//! # Contract
//!
//! A [`Connection`] owns no socket, no thread and no clock. The caller moves bytes and time:
//!
//! - **Input.** [`Connection::read`] takes received bytes as `&mut [u8]` (payloads are
//!   unmasked in place) and returns how many it used and at most one [`Event`]. Call it again
//!   with the unused rest until it returns no event: by then every byte is consumed. A message
//!   that lies whole in the input is handed out borrowed from it, without a copy. A message
//!   that arrives in pieces (fragments, or a frame split across reads) is gathered in the
//!   caller's `assembly` buffer, which the caller keeps for the connection and passes again on
//!   every call; when [`Connection::is_assembling`] is false it is empty (or emptied on the
//!   next call) and can go back to a pool. Partial headers and control payloads (at most 14
//!   and 125 bytes) are kept inside; a control frame that came in pieces is handed out from
//!   the tail of `assembly`, cut off again on the next call. Every [`Event`] borrows what it
//!   carries (the input or `assembly`), so that it stays a few words, however many pass.
//! - **Output.** [`Connection::send`], [`Connection::ping`] and [`Connection::close`] append
//!   frames to the caller's buffer. Frames the protocol itself owes the peer (a pong, the
//!   Close reply or the Close that reports a violation) are queued and appended by
//!   [`Connection::poll_transmit`]; call it whenever the socket can take more bytes, and not
//!   while output is blocked: a queued pong is replaced by a newer one (RFC 6455 §5.5.3), so
//!   a ping flood against a peer that does not read costs nothing.
//! - **Time.** Only moves forward, and only through the caller: [`Connection::handle_input`]
//!   says when bytes arrived (once per batch read, before [`Connection::read`]),
//!   [`Connection::poll_timeout`] gives the instant at which [`Connection::handle_timeout`]
//!   must be called next. The connection keeps three timers on that one clock: with
//!   [`Limits::idle_timeout`], a ping after half of it without input and a Close 1001 after
//!   all of it; and the close handshake's deadline, [`Limits::close_timeout`] after our
//!   Close (or the input that carried the peer's Close or a violation).
//! - **End.** Once [`Connection::is_closed`] is true, flush what was written and close the
//!   TCP connection (a server closes first, RFC 6455 §7.1.1).
//!
//! Events come in wire order: every event before a [`Event::Close`] or [`Event::Error`], and
//! none after. Input after the peer's Close is ignored.
//!
//! # Example: the echo of the founding documents, as a server
//!
//! ```
//! use surge_proto::connection::{Connection, Event, Limits};
//! use surge_proto::message::Message;
//!
//! let mut conn = Connection::server(Limits::default());
//! let mut assembly = Vec::new();
//! let mut out = Vec::new();
//! let mut input = [
//!     0x81, 0x8F, 0x37, 0xFA, 0x21, 0x3D, 0x5F, 0x9F, 0x4D, 0x51, 0x58, 0xDA, 0x56, 0x58,
//!     0x55, 0x89, 0x4E, 0x5E, 0x5C, 0x9F, 0x55, // "hello websocket", masked
//!     0x88, 0x82, 0x37, 0xFA, 0x21, 0x3D, 0x34, 0x12, // Close 1000, masked
//! ];
//! let mut rest = &mut input[..];
//! loop {
//!     let (used, event) = conn.read(&mut *rest, &mut assembly);
//!     match event {
//!         Some(Event::Message(msg)) => conn.send(msg, &mut out).unwrap(),
//!         Some(Event::Close(frame)) => assert_eq!(frame.code().unwrap().as_u16(), 1000),
//!         Some(other) => panic!("{other:?}"),
//!         None => break,
//!     }
//!     rest = &mut rest[used..];
//! }
//! conn.poll_transmit(&mut out);
//! assert_eq!(out, b"\x81\x0Fhello websocket\x88\x02\x03\xE8");
//! assert!(conn.is_closed());
//! ```
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use crate::close::{
    CloseCode, CloseFrame, ControlPayload, ReceivedClose, MAX_CLOSE_REASON, MAX_CONTROL_PAYLOAD,
};
use crate::error::{ProtocolError, SendError};
use crate::extension::{Extension, NoExtension};
use crate::frame::{decode_header, encode_frame, DecodeRules, FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use crate::message::Message;
use crate::utf8::{self, Utf8Validator};
use crate::Role;

/// Limits a connection enforces while reading, before any memory is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest payload one frame may declare; past it, 1009.
    pub max_frame_size: u64,
    /// The largest message; past it, 1009. Continuation frames count their headers too, so a
    /// flood of tiny fragments pays for its overhead.
    pub max_message_size: u64,
    /// How long to wait for the peer's Close after sending ours, and to finish once the
    /// close handshake started.
    pub close_timeout: Duration,
    /// Silence (no input) after which a ping goes out (after half of it) and the connection
    /// closes with 1001 "idle timeout" (after all of it); `None`: never. Silence is measured
    /// from the instants given to [`Connection::handle_input`].
    pub idle_timeout: Option<Duration>,
}

impl Default for Limits {
    /// 16 MiB frames and messages, a 5 s close handshake, no idle timeout.
    fn default() -> Self {
        Limits {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            close_timeout: Duration::from_secs(5),
            idle_timeout: None,
        }
    }
}

/// [`Limits`] as a connection keeps them, 16 bytes smaller: the timeouts in nanoseconds,
/// with `u64::MAX` for never (a timeout past 584 years is one that never comes).
#[derive(Debug, Clone, Copy)]
struct HeldLimits {
    max_frame_size: u64,
    max_message_size: u64,
    close_timeout_ns: u64,
    idle_timeout_ns: u64,
}

impl HeldLimits {
    const NEVER: u64 = u64::MAX;

    fn new(limits: Limits) -> Self {
        let nanos = |timeout: Duration| u64::try_from(timeout.as_nanos()).unwrap_or(Self::NEVER);
        HeldLimits {
            max_frame_size: limits.max_frame_size,
            max_message_size: limits.max_message_size,
            close_timeout_ns: nanos(limits.close_timeout),
            idle_timeout_ns: limits.idle_timeout.map_or(Self::NEVER, nanos),
        }
    }

    fn timeout(nanos: u64) -> Option<Duration> {
        (nanos != Self::NEVER).then(|| Duration::from_nanos(nanos))
    }

    fn limits(&self) -> Limits {
        Limits {
            max_frame_size: self.max_frame_size,
            max_message_size: self.max_message_size,
            close_timeout: Self::timeout(self.close_timeout_ns).unwrap_or(Duration::MAX),
            idle_timeout: Self::timeout(self.idle_timeout_ns),
        }
    }
}

/// What [`Connection::read`] reports: small (a few words), since every message passes
/// through one; payloads are borrowed from the input or the assembly buffer, never copied
/// into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole data message.
    Message(Message<'a>),
    /// A ping's payload; its pong is already queued for [`Connection::poll_transmit`].
    Ping(&'a [u8]),
    /// A pong's payload.
    Pong(&'a [u8]),
    /// The peer's Close; the reply is queued (unless ours already went out). Last event.
    Close(ReceivedClose<'a>),
    /// The peer broke the protocol; a Close with [`ProtocolError::close_code`] is queued.
    /// Last event.
    Error(ProtocolError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Text,
    Binary,
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    remaining: u64,
    mask: Option<[u8; 4]>,
    opcode: OpCode,
    fin: bool,
    mask_phase: u8,
    /// No payload byte was read yet before the current `read` call: if the frame also ends
    /// in it, the whole payload lies in that call's input.
    fresh: bool,
}

/// A one-frame data message lying whole in the input (see `Connection::whole_message_ahead`).
#[derive(Debug, Clone, Copy)]
struct WholeMessage {
    kind: DataKind,
    header_len: usize,
    payload_len: usize,
    mask: Option<[u8; 4]>,
}

/// The data message being read, from its first frame to the one with FIN.
#[derive(Debug, Clone, Copy)]
struct MessageInProgress {
    kind: DataKind,
    /// The extension decodes this message's payload (its first frame carried RSV bits
    /// that say so).
    transformed: bool,
    /// Payload plus continuation headers so far, measured against `max_message_size`.
    budget_used: u64,
}

/// Control-frame state that most connections never need at a given moment: a control
/// frame split across reads, and a pong owed to the peer. Kept out of line and freed when
/// empty, so that an idle connection pays eight bytes for it.
#[derive(Debug, Clone, Default)]
struct ControlScratch {
    partial: ControlPayload,
    pending_pong: Option<ControlPayload>,
}

/// The Close frame owed to the peer: the echo of theirs, the report of a violation, or the
/// end of an idle connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwedClose {
    /// The peer's Close had no code: answer with an empty one.
    Empty,
    Code(CloseCode),
    /// 1001 "idle timeout".
    Idle,
}

/// What the connection's one instant (`Connection::clock`) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// The last input; no ping sent since. The idle ping is due half an idle timeout later.
    Idle,
    /// The last input; an idle ping is owed to the peer ([`Connection::poll_transmit`]).
    PingOwed,
    /// The last input; the idle ping went out. The idle close is due an idle timeout later.
    Pinged,
    /// The close handshake's deadline.
    Closing,
    /// The close handshake timed out: nothing is due any more.
    Expired,
}

/// One end of a WebSocket connection, after the opening handshake. See the
/// [module documentation](self) for the contract.
///
/// Small on purpose (about 140 bytes): an engine keeps one per open connection, and an idle
/// connection should cost little more than this.
#[derive(Debug, Clone)]
pub struct Connection<E: Extension = NoExtension> {
    limits: HeldLimits,
    /// The negotiated extension (zero-sized when none).
    extension: E,
    /// The instant the timers run from (see [`Timer`]); `None` before any input was noted
    /// and before any close.
    clock: Option<Instant>,
    timer: Timer,
    mask_state: u64,
    frame: Option<FrameInProgress>,
    message: Option<MessageInProgress>,
    control: Option<Box<ControlScratch>>,
    partial_header: [u8; MAX_HEADER_LEN],
    partial_header_len: u8,
    utf8: Utf8Validator,
    owed_close: Option<OwedClose>,
    role: Role,
    /// The last event borrowed the assembly buffer: empty it on the next read.
    release_assembly: bool,
    /// The last event was a control frame that came in pieces, lent from the tail of the
    /// assembly buffer: that many bytes are cut off it on the next read.
    control_tail: u8,
    /// The peer's Close or a violation ended the input.
    input_done: bool,
    failed: bool,
    close_sent: bool,
    close_received: bool,
}

impl Connection {
    /// The server end: expects masked frames, sends unmasked ones.
    pub fn server(limits: Limits) -> Self {
        Connection::new(Role::Server, limits, 0, NoExtension)
    }

    /// The client end: expects unmasked frames and masks what it sends with keys drawn from a
    /// generator seeded by `mask_seed`. The seed must come from a source the peer cannot
    /// predict (the operating system's), since masking exists to keep attacker-chosen bytes
    /// off the wire (RFC 6455 §10.3).
    pub fn client(limits: Limits, mask_seed: u64) -> Self {
        Connection::new(Role::Client, limits, mask_seed, NoExtension)
    }
}

impl<E: Extension> Connection<E> {
    /// The server end with a negotiated `extension`.
    pub fn server_with(limits: Limits, extension: E) -> Self {
        Connection::new(Role::Server, limits, 0, extension)
    }

    /// The client end with a negotiated `extension`; see [`Connection::client`] for the
    /// seed.
    pub fn client_with(limits: Limits, mask_seed: u64, extension: E) -> Self {
        Connection::new(Role::Client, limits, mask_seed, extension)
    }

    fn new(role: Role, limits: Limits, mask_seed: u64, extension: E) -> Self {
        Connection {
            limits: HeldLimits::new(limits),
            extension,
            clock: None,
            timer: Timer::Idle,
            mask_state: mask_seed,
            frame: None,
            message: None,
            control: None,
            partial_header: [0; MAX_HEADER_LEN],
            partial_header_len: 0,
            utf8: Utf8Validator::new(),
            owed_close: None,
            role,
            release_assembly: false,
            control_tail: 0,
            input_done: false,
            failed: false,
            close_sent: false,
            close_received: false,
        }
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits in force (a timeout past 584 years reads as never, or as
    /// [`Duration::MAX`] for the close timeout).
    pub fn limits(&self) -> Limits {
        self.limits.limits()
    }

    /// The negotiated extension.
    pub fn extension(&self) -> &E {
        &self.extension
    }

    /// Feeds received bytes; see the [module documentation](self) for the calling pattern.
    ///
    /// Returns the number of bytes of `input` used and the next event, if any. When the event
    /// is `None` all of `input` was used.
    #[inline(always)]
    pub fn read<'a>(
        &mut self,
        input: &'a mut [u8],
        assembly: &'a mut Vec<u8>,
    ) -> (usize, Option<Event<'a>>) {
        // The common case, a whole one-frame message at the front with nothing in progress,
        // is decided here, inlined into the caller (always: LLVM's size estimate would keep
        // it out of an engine's large read loop): the event then stays in registers, where
        // returned from the general path below it goes through memory, and loading it back
        // stalled on its piecewise stores, about a third of the engine's time taking a small
        // pipelined message.
        if let Some(ahead) = self.whole_message_ahead(input) {
            let end = ahead.header_len + ahead.payload_len;
            let payload = &mut input[ahead.header_len..end];
            if let Some(key) = ahead.mask {
                apply_mask(payload, key, 0);
            }
            let payload: &'a [u8] = payload;
            return (end, Some(self.single_frame_message(ahead.kind, payload)));
        }
        self.read_general(input, assembly)
    }

    /// A whole unfragmented data message at the front of `input`, when nothing is in
    /// progress and no check needs more than its header; `None` leaves it all (errors
    /// included) to the general path, which decides the same way with the state it keeps.
    /// Changes nothing.
    #[inline]
    fn whole_message_ahead(&self, input: &[u8]) -> Option<WholeMessage> {
        let idle = !self.release_assembly
            && self.control_tail == 0
            && !self.input_done
            && self.frame.is_none()
            && self.message.is_none()
            && self.partial_header_len == 0;
        if !idle {
            return None;
        }
        let (header, header_len) = decode_header(input, &self.decode_rules()).ok()??;
        let kind = match header.opcode {
            OpCode::TEXT => DataKind::Text,
            OpCode::BINARY => DataKind::Binary,
            _ => return None,
        };
        let whole = header.payload_len <= (input.len() - header_len) as u64;
        if !header.fin
            || !whole
            || header.payload_len > self.limits.max_message_size
            || self.extension.decodes(header.rsv)
        {
            return None;
        }
        Some(WholeMessage {
            kind,
            header_len,
            payload_len: header.payload_len as usize,
            mask: header.mask,
        })
    }

    /// The event of a data message that came whole in one frame: its payload, checked.
    #[inline]
    fn single_frame_message<'a>(&mut self, kind: DataKind, payload: &'a [u8]) -> Event<'a> {
        match kind {
            DataKind::Binary => Event::Message(Message::Binary(payload)),
            DataKind::Text => match utf8::validate(payload) {
                Ok(text) => Event::Message(Message::Text(text)),
                Err(_) => self.fail(ProtocolError::InvalidUtf8),
            },
        }
    }

    fn decode_rules(&self) -> DecodeRules {
        DecodeRules {
            role: self.role,
            allowed_rsv: self.extension.allowed_rsv(),
            max_frame_size: self.limits.max_frame_size,
        }
    }

    /// [`Connection::read`] in every state: frames in pieces, fragmented and transformed
    /// messages, control frames, errors. Never inlined, so that `read` itself stays small
    /// enough to be.
    #[inline(never)]
    fn read_general<'a>(
        &mut self,
        input: &'a mut [u8],
        assembly: &'a mut Vec<u8>,
    ) -> (usize, Option<Event<'a>>) {
        if self.release_assembly {
            assembly.clear();
            self.release_assembly = false;
        } else if self.control_tail > 0 {
            assembly.truncate(assembly.len().saturating_sub(usize::from(self.control_tail)));
        }
        self.control_tail = 0;
        if self.input_done {
            return (input.len(), None);
        }
        let mut pos = 0;
        loop {
            let mut frame = match self.frame {
                Some(mut frame) => {
                    frame.fresh = false;
                    frame
                }
                None => match self.next_header(&input[pos..]) {
                    Ok(Some((header, used))) => {
                        pos += used;
                        match self.begin_frame(&header) {
                            Ok(frame) => frame,
                            Err(error) => return (input.len(), Some(self.fail(error))),
                        }
                    }
                    Ok(None) => return (input.len(), None),
                    Err(error) => return (input.len(), Some(self.fail(error))),
                },
            };

            let available =
                (input.len() - pos).min(usize::try_from(frame.remaining).unwrap_or(usize::MAX));
            let (start, end) = (pos, pos + available);
            if let Some(key) = frame.mask {
                let phase = apply_mask(&mut input[start..end], key, usize::from(frame.mask_phase));
                frame.mask_phase = phase as u8;
            }
            frame.remaining -= available as u64;
            pos = end;
            let frame_done = frame.remaining == 0;
            self.frame = if frame_done { None } else { Some(frame) };

            if frame.opcode.is_control() {
                if frame.fresh && frame_done {
                    let input: &'a [u8] = input;
                    let event = self.on_control(frame.opcode, &input[start..end]);
                    self.release_control_scratch();
                    return (pos, Some(event));
                }
                // In pieces: gathered inside (decode_header caps control payloads at 125
                // bytes, so it always fits), then lent from the assembly buffer's tail, past
                // the message in pieces it may hold.
                let scratch = self.control.get_or_insert_with(Box::default);
                scratch.partial.extend(&input[start..end]);
                if !frame_done {
                    return (pos, None);
                }
                let payload = std::mem::take(&mut scratch.partial);
                let from = assembly.len();
                assembly.extend_from_slice(payload.as_bytes());
                self.control_tail = payload.as_bytes().len() as u8;
                let assembly: &'a Vec<u8> = assembly;
                let event = self.on_control(frame.opcode, &assembly[from..]);
                self.release_control_scratch();
                return (pos, Some(event));
            }

            let Some(message) = self.message else {
                // Unreachable: begin_frame opens a message for every data frame.
                return (input.len(), Some(self.fail(ProtocolError::UnexpectedContinuation)));
            };
            let single_frame_here = frame.fresh
                && frame_done
                && frame.fin
                && frame.opcode != OpCode::CONTINUATION
                && !message.transformed;
            if single_frame_here {
                self.message = None;
                let input: &'a [u8] = input;
                return (pos, Some(self.single_frame_message(message.kind, &input[start..end])));
            }

            let last = frame_done && frame.fin;
            let decoded_from = assembly.len();
            if message.transformed {
                let max_len = usize::try_from(self.limits.max_message_size).unwrap_or(usize::MAX);
                let piece = &input[start..end];
                if let Err(error) = self.extension.decode(piece, last, assembly, max_len) {
                    return (input.len(), Some(self.fail(error)));
                }
            } else {
                assembly.extend_from_slice(&input[start..end]);
            }
            if message.kind == DataKind::Text && self.utf8.feed(&assembly[decoded_from..]).is_err()
            {
                return (input.len(), Some(self.fail(ProtocolError::InvalidUtf8)));
            }
            if last {
                self.message = None;
                self.release_assembly = true;
                if message.kind == DataKind::Text && self.utf8.finish().is_err() {
                    return (input.len(), Some(self.fail(ProtocolError::InvalidUtf8)));
                }
                let assembly: &'a Vec<u8> = assembly;
                let event = match message.kind {
                    DataKind::Binary => Event::Message(Message::Binary(assembly)),
                    // Validated piece by piece above; this pass only recovers the `&str`
                    // without unsafe code, and only on the assembled path.
                    DataKind::Text => match utf8::validate(assembly) {
                        Ok(text) => Event::Message(Message::Text(text)),
                        Err(_) => self.fail(ProtocolError::InvalidUtf8),
                    },
                };
                return (pos, Some(event));
            }
            if pos == input.len() {
                return (pos, None);
            }
        }
    }

    /// Decodes the next header from the bytes kept from earlier reads and `input`, keeping
    /// what is still too short. Returns the header and how many bytes of `input` it took.
    fn next_header(&mut self, input: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let rules = self.decode_rules();
        let kept = usize::from(self.partial_header_len);
        if kept == 0 {
            let decoded = decode_header(input, &rules)?;
            if decoded.is_none() {
                self.keep_partial_header(0, input);
            }
            return Ok(decoded);
        }
        let take = input.len().min(MAX_HEADER_LEN - kept);
        self.keep_partial_header(kept, &input[..take]);
        let buffered = &self.partial_header[..kept + take];
        match decode_header(buffered, &rules)? {
            Some((header, len)) => {
                self.partial_header_len = 0;
                Ok(Some((header, len - kept)))
            }
            None => Ok(None),
        }
    }

    fn keep_partial_header(&mut self, at: usize, bytes: &[u8]) {
        // A header is at most MAX_HEADER_LEN bytes, so an undecodable prefix always fits.
        if let Some(slot) = self.partial_header.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
            self.partial_header_len = (at + bytes.len()) as u8;
        }
    }

    /// The checks that need the message state: continuation rules and the message cap.
    fn begin_frame(&mut self, header: &FrameHeader) -> Result<FrameInProgress, ProtocolError> {
        let kind = match header.opcode {
            OpCode::TEXT => Some(DataKind::Text),
            OpCode::BINARY => Some(DataKind::Binary),
            _ => None,
        };
        if let Some(kind) = kind {
            if self.message.is_some() {
                return Err(ProtocolError::ExpectedContinuation);
            }
            if header.payload_len > self.limits.max_message_size {
                return Err(ProtocolError::MessageTooLarge);
            }
            let transformed = self.extension.decodes(header.rsv);
            self.message =
                Some(MessageInProgress { kind, transformed, budget_used: header.payload_len });
        } else if header.rsv != 0 {
            // An extension's bits belong on a message's first frame only.
            return Err(ProtocolError::ReservedBits);
        } else if header.opcode == OpCode::CONTINUATION {
            let message = self.message.as_mut().ok_or(ProtocolError::UnexpectedContinuation)?;
            message.budget_used = message
                .budget_used
                .saturating_add(header.encoded_len() as u64)
                .saturating_add(header.payload_len);
            if message.budget_used > self.limits.max_message_size {
                return Err(ProtocolError::MessageTooLarge);
            }
        }
        Ok(FrameInProgress {
            remaining: header.payload_len,
            mask: header.mask,
            opcode: header.opcode,
            fin: header.fin,
            mask_phase: 0,
            fresh: true,
        })
    }

    fn on_control<'a>(&mut self, opcode: OpCode, payload: &'a [u8]) -> Event<'a> {
        match opcode {
            OpCode::PING => {
                if self.can_send() {
                    // At most 125 bytes (decode_header's cap), so it always fits.
                    let pong = ControlPayload::new(payload).unwrap_or_default();
                    self.control.get_or_insert_with(Box::default).pending_pong = Some(pong);
                }
                Event::Ping(payload)
            }
            OpCode::PONG => Event::Pong(payload),
            _ => match ReceivedClose::parse(payload) {
                Ok(frame) => {
                    self.close_received = true;
                    self.end_input();
                    self.start_closing_from_input();
                    if self.can_send() {
                        self.owed_close = Some(match frame.code() {
                            Some(code) => OwedClose::Code(code),
                            None => OwedClose::Empty,
                        });
                    }
                    Event::Close(frame)
                }
                Err(error) => self.fail(error),
            },
        }
    }

    fn end_input(&mut self) {
        self.input_done = true;
        self.frame = None;
        self.message = None;
        self.release_assembly = true;
        self.utf8.reset();
        if let Some(scratch) = self.control.as_mut() {
            scratch.partial = ControlPayload::EMPTY;
        }
        self.release_control_scratch();
    }

    /// Frees the control scratch once it holds nothing.
    fn release_control_scratch(&mut self) {
        if self.control.as_ref().is_some_and(|scratch| {
            scratch.pending_pong.is_none() && scratch.partial.as_bytes().is_empty()
        }) {
            self.control = None;
        }
    }

    /// The peer broke the protocol: input ends, the Close that reports it is owed. Inlined,
    /// so that the event is made where it is returned, in registers (see `read`), and the
    /// state change is not.
    #[inline]
    fn fail(&mut self, error: ProtocolError) -> Event<'static> {
        self.end_input_failed(error);
        Event::Error(error)
    }

    #[inline(never)]
    fn end_input_failed(&mut self, error: ProtocolError) {
        self.end_input();
        self.start_closing_from_input();
        self.failed = true;
        self.control = None;
        if self.can_send() {
            self.owed_close = Some(OwedClose::Code(error.close_code()));
        }
    }

    /// True while a message is partly read and `assembly` holds its first part; otherwise
    /// the assembly buffer is empty (or emptied on the next read) and may be pooled.
    pub fn is_assembling(&self) -> bool {
        self.message.is_some()
    }

    /// Whether data frames may still be sent: false once a Close was sent or queued.
    pub fn can_send(&self) -> bool {
        !self.close_sent && self.owed_close.is_none()
    }

    /// Appends `msg` as one frame to `out`, transformed by the extension if it chooses.
    pub fn send(&mut self, msg: Message<'_>, out: &mut Vec<u8>) -> Result<(), SendError> {
        if !self.extension.transforms_output() {
            return self.send_frame(msg.opcode(), true, msg.as_bytes(), out);
        }
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        // The payload is encoded behind room for the longest header, then moved up to the
        // header it turned out to need: one buffer, no allocation.
        let start = out.len();
        out.resize(start + MAX_HEADER_LEN, 0);
        let Some(rsv) = self.extension.encode(msg.as_bytes(), out) else {
            out.truncate(start);
            return self.send_frame(msg.opcode(), true, msg.as_bytes(), out);
        };
        let payload_len = out.len() - start - MAX_HEADER_LEN;
        let mask = self.next_mask();
        let header = FrameHeader {
            fin: true,
            rsv,
            opcode: msg.opcode(),
            mask,
            payload_len: payload_len as u64,
        };
        let mut encoded = [0; MAX_HEADER_LEN];
        let header_len = header.encode(&mut encoded);
        out.copy_within(start + MAX_HEADER_LEN.., start + header_len);
        out.truncate(start + header_len + payload_len);
        out[start..start + header_len].copy_from_slice(&encoded[..header_len]);
        if let Some(key) = mask {
            apply_mask(&mut out[start + header_len..], key, 0);
        }
        Ok(())
    }

    /// Server side: writes the header of a one-frame `msg` into `header` and returns its
    /// length; the caller sends `msg`'s payload right after it, as it is (a vectored write
    /// straight from the caller's buffer, with no copy). Clients must mask their payloads,
    /// and an extension may transform them, so a client, or a connection whose extension
    /// transforms output, gets `Ok(None)` and uses [`Connection::send`] instead.
    ///
    /// ```
    /// use surge_proto::connection::{Connection, Limits};
    /// use surge_proto::frame::MAX_HEADER_LEN;
    /// use surge_proto::message::Message;
    ///
    /// let mut conn = Connection::server(Limits::default());
    /// let payload = [7u8; 300];
    /// let mut header = [0; MAX_HEADER_LEN];
    /// let len = conn.send_header(&Message::Binary(&payload), &mut header).unwrap().unwrap();
    /// // The same bytes as `send` would have appended.
    /// let mut whole = Vec::new();
    /// conn.send(Message::Binary(&payload), &mut whole).unwrap();
    /// assert_eq!([&header[..len], &payload[..]].concat(), whole);
    /// ```
    pub fn send_header(
        &mut self,
        msg: &Message<'_>,
        header: &mut [u8; MAX_HEADER_LEN],
    ) -> Result<Option<usize>, SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if self.role == Role::Client || self.extension.transforms_output() {
            return Ok(None);
        }
        let frame = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: msg.opcode(),
            mask: None,
            payload_len: msg.len() as u64,
        };
        Ok(Some(frame.encode(header)))
    }

    /// Appends one frame of a message sent in fragments: the first with the message's
    /// opcode ([`OpCode::TEXT`] or [`OpCode::BINARY`]), the rest with
    /// [`OpCode::CONTINUATION`], the last with `fin`. Control frames go through
    /// [`Connection::ping`] and [`Connection::close`]. Fragments are sent as they are,
    /// never transformed by the extension.
    pub fn send_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        let mask = self.next_mask();
        encode_frame(out, opcode, fin, mask, payload);
        Ok(())
    }

    /// Appends a ping with up to 125 bytes of payload.
    pub fn ping(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong);
        }
        let mask = self.next_mask();
        encode_frame(out, OpCode::PING, true, mask, payload);
        Ok(())
    }

    /// Starts the close handshake: appends a Close with `code` and `reason` (at most 123
    /// bytes) and waits at most [`Limits::close_timeout`] from `now` for the peer's Close.
    pub fn close(
        &mut self,
        now: Instant,
        code: CloseCode,
        reason: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if !code.is_allowed_on_wire() {
            return Err(SendError::InvalidCloseCode(code));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(SendError::ControlTooLong);
        }
        self.write_close(&CloseFrame::new(code, reason), out);
        self.start_closing(now);
        Ok(())
    }

    /// The close handshake starts at `now`: it must be over by the close timeout from then.
    fn start_closing(&mut self, now: Instant) {
        if self.timer != Timer::Closing {
            self.timer = Timer::Closing;
            // No deadline at all when it lies past what an `Instant` can hold.
            self.clock = HeldLimits::timeout(self.limits.close_timeout_ns)
                .and_then(|timeout| now.checked_add(timeout));
        }
    }

    /// The peer's Close or a violation arrived in the input noted last: the close handshake
    /// started then. (Without any noted input there is no instant to start from, and no
    /// deadline.)
    fn start_closing_from_input(&mut self) {
        match self.clock {
            Some(input) if self.timer != Timer::Closing => self.start_closing(input),
            _ => {}
        }
    }

    fn write_close(&mut self, frame: &CloseFrame, out: &mut Vec<u8>) {
        let mask = self.next_mask();
        encode_frame(out, OpCode::CLOSE, true, mask, frame.to_payload().as_bytes());
        self.close_sent = true;
        if let Some(scratch) = self.control.as_mut() {
            scratch.pending_pong = None;
        }
        self.release_control_scratch();
    }

    /// Whether [`Connection::poll_transmit`] has frames to write.
    pub fn wants_transmit(&self) -> bool {
        self.owed_close.is_some()
            || self.timer == Timer::PingOwed
            || self.control.as_ref().is_some_and(|scratch| scratch.pending_pong.is_some())
    }

    /// Appends the frames the protocol owes the peer: the latest pong, an idle ping, then a
    /// queued Close.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        if let Some(pong) = self.control.as_mut().and_then(|scratch| scratch.pending_pong.take()) {
            let mask = self.next_mask();
            encode_frame(out, OpCode::PONG, true, mask, pong.as_bytes());
            self.release_control_scratch();
        }
        if self.timer == Timer::PingOwed {
            self.timer = Timer::Pinged;
            let mask = self.next_mask();
            encode_frame(out, OpCode::PING, true, mask, &[]);
        }
        if let Some(owed) = self.owed_close.take() {
            let frame = match owed {
                OwedClose::Empty => CloseFrame::empty(),
                OwedClose::Code(code) => CloseFrame::new(code, ""),
                OwedClose::Idle => CloseFrame::new(CloseCode::GOING_AWAY, "idle timeout"),
            };
            self.write_close(&frame, out);
        }
    }

    /// Input arrived at `now`: call once per batch of bytes read, before [`Connection::read`]
    /// takes them. Restarts the idle timers, and is the instant a close handshake the input
    /// starts (the peer's Close, a violation) is measured from.
    pub fn handle_input(&mut self, now: Instant) {
        if matches!(self.timer, Timer::Idle | Timer::PingOwed | Timer::Pinged) {
            self.clock = Some(now);
            // A ping not yet sent is no longer needed: the peer has spoken.
            self.timer = Timer::Idle;
        }
    }

    /// When [`Connection::handle_timeout`] must next be called, if ever: the idle ping, the
    /// idle close, or the close handshake's deadline; never once [`Connection::is_closed`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let clock = self.clock?;
        let idle = HeldLimits::timeout(self.limits.idle_timeout_ns);
        match self.timer {
            Timer::Idle => idle.and_then(|idle| clock.checked_add(idle / 2)),
            Timer::PingOwed | Timer::Pinged => idle.and_then(|idle| clock.checked_add(idle)),
            Timer::Closing => Some(clock),
            Timer::Expired => None,
        }
    }

    /// Advances time to `now`: owes the idle ping (see [`Connection::poll_transmit`]) or the
    /// idle Close when their time has come, and past the close deadline abandons the
    /// handshake, so that [`Connection::is_closed`] turns true.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(due) = self.poll_timeout() else { return };
        if now < due {
            return;
        }
        match self.timer {
            Timer::Idle if self.can_send() => self.timer = Timer::PingOwed,
            Timer::Idle | Timer::PingOwed | Timer::Pinged => {
                if self.can_send() {
                    self.owed_close = Some(OwedClose::Idle);
                }
                self.start_closing(now);
            }
            Timer::Closing => {
                self.timer = Timer::Expired;
                self.end_input();
            }
            Timer::Expired => {}
        }
    }

    /// Whether the WebSocket is finished: our Close went out and the peer's came in (or the
    /// peer broke the protocol, or the close handshake timed out). Flush, then close TCP.
    pub fn is_closed(&self) -> bool {
        self.timer == Timer::Expired || (self.close_sent && (self.close_received || self.failed))
    }

    /// Whether the peer's Close has arrived.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        match self.role {
            Role::Server => None,
            Role::Client => {
                // SplitMix64: one multiply-xorshift round per frame, seeded from a
                // random source by the caller.
                self.mask_state = self.mask_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.mask_state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                Some((z as u32).to_ne_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_stays_small() {
        // An engine holds one per open connection; idle memory per connection is a target.
        // 152: the idle and close timers (an engine kept them beside this before).
        assert!(std::mem::size_of::<Connection>() <= 152, "{}", std::mem::size_of::<Connection>());
    }

    #[test]
    fn an_event_is_a_few_words() {
        // Every message passes through one, returned by value from `read`.
        assert!(std::mem::size_of::<(usize, Option<Event<'_>>)>() <= 40);
    }

    #[test]
    fn a_close_in_pieces_is_lent_from_the_assembly_tail_and_cut_off_after() {
        let mut conn = Connection::server(Limits::default());
        let mut wire = Vec::new();
        encode_frame(&mut wire, OpCode::TEXT, false, Some([9, 8, 7, 6]), b"first ");
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"going now");
        encode_frame(&mut wire, OpCode::CLOSE, true, Some([1, 2, 3, 4]), &close);
        let split = wire.len() - 4;
        let (head, tail) = wire.split_at_mut(split);
        let mut assembly = Vec::new();
        let head_len = head.len();
        assert_eq!(conn.read(head, &mut assembly), (head_len, None));
        assert_eq!(assembly, b"first ");
        let (used, event) = conn.read(tail, &mut assembly);
        assert_eq!(used, 4);
        let Some(Event::Close(frame)) = event else { panic!("{event:?}") };
        assert_eq!((frame.code(), frame.reason()), (Some(CloseCode::NORMAL), "going now"));
        assert_eq!(conn.read(&mut [], &mut assembly), (0, None));
        assert!(assembly.is_empty(), "the Close ended the input: the buffer is released");
    }

    /// Events of `wire` read whole (a one-frame message takes `read`'s inlined path) or a
    /// byte at a time (always the general path), with what the connection owes after.
    fn events(wire: &[u8], limits: Limits, whole: bool) -> Vec<String> {
        let mut conn = Connection::server(limits);
        let mut input = wire.to_vec();
        let mut assembly = Vec::new();
        let mut seen = Vec::new();
        let step = if whole { input.len().max(1) } else { 1 };
        for chunk in input.chunks_mut(step) {
            let mut rest = chunk;
            loop {
                let (used, event) = conn.read(&mut *rest, &mut assembly);
                let Some(event) = event else { break };
                seen.push(format!("{event:?}"));
                rest = &mut rest[used..];
            }
        }
        let mut owed = Vec::new();
        conn.poll_transmit(&mut owed);
        seen.push(format!("owed {owed:?}, closed {}", conn.is_closed()));
        seen
    }

    #[test]
    fn a_whole_frame_is_decided_as_the_general_path_decides_it() {
        let key = Some([0x11, 0x22, 0x33, 0x44]);
        let frame = |opcode, fin, payload: &[u8]| {
            let mut wire = Vec::new();
            encode_frame(&mut wire, opcode, fin, key, payload);
            wire
        };
        let mut rsv = frame(OpCode::BINARY, true, b"rsv");
        rsv[0] |= 0x40;
        let mut unmasked = Vec::new();
        encode_frame(&mut unmasked, OpCode::TEXT, true, None, b"plain");
        let cases = [
            frame(OpCode::TEXT, true, b"hello"),
            frame(OpCode::TEXT, true, "h\u{e9}llo w\u{f6}rld, \u{1F600}".as_bytes()),
            frame(OpCode::TEXT, true, b"bad \xC3\x28 text"),
            frame(OpCode::BINARY, true, &[0xFF; 300]),
            frame(OpCode::BINARY, true, &[]),
            frame(OpCode::BINARY, true, &[7; 65]),
            frame(OpCode::TEXT, false, b"first"),
            frame(OpCode::CONTINUATION, true, b"stray"),
            frame(OpCode::PING, true, b"ping"),
            [frame(OpCode::TEXT, true, b"one"), frame(OpCode::BINARY, true, b"two")].concat(),
            rsv,
            unmasked,
        ];
        let small = Limits { max_message_size: 64, max_frame_size: 1 << 20, ..Limits::default() };
        for wire in &cases {
            for limits in [Limits::default(), small] {
                let whole = events(wire, limits, true);
                assert_eq!(whole, events(wire, limits, false), "{wire:02x?}");
            }
        }
    }

    #[test]
    fn control_scratch_is_freed_once_nothing_is_owed() {
        let mut conn = Connection::server(Limits::default());
        let mut ping = Vec::new();
        encode_frame(&mut ping, OpCode::PING, true, Some([1, 2, 3, 4]), b"are you there");
        let (split_a, split_b) = ping.split_at_mut(9);
        let mut assembly = Vec::new();
        assert_eq!(conn.read(split_a, &mut assembly), (9, None));
        assert!(conn.control.is_some(), "a split control frame is kept out of line");
        assert!(matches!(conn.read(split_b, &mut assembly).1, Some(Event::Ping(_))));
        assert!(conn.wants_transmit());
        conn.poll_transmit(&mut Vec::new());
        assert!(conn.control.is_none());
        assert!(!conn.wants_transmit());
    }
}
