//! One connection: its record ([`ConnCore`]: the phase of its life and its I/O state), and
//! [`Conn`], the view a handler gets of it. What a send costs is here.
//!
//! The record is kept small: buffers are borrowed from the loop's pool only while something is
//! in flight, so an idle open connection holds its stream, its protocol state and a few
//! counters, and no buffer at all.

use std::io::{self, IoSlice};
use std::net::SocketAddr;

use surge_proto::close::CloseCode;
use surge_proto::connection::Connection;
use surge_proto::deflate::DeflateSession;
use surge_proto::error::SendError;
use surge_proto::frame::MAX_HEADER_LEN;
use surge_proto::handshake::ServerHandshake;
use surge_proto::message::Message;

use crate::admission::Admission;
use crate::buffer_pool::{BufferPool, Held, INITIAL_CAPACITY};
use crate::config::BackpressurePolicy;
use crate::context::LoopCtx;
use crate::handle::{ConnectionId, LoopIndex, ServerHandle};
use crate::key::ConnKey;
use crate::outbox::{Outbox, SharedFrame};
use crate::stats::{close_index, kind_index};
use crate::topics::{Audience, Outcome, Pending};
use crate::transport::{Stream, Transport};

/// The protocol state of an open connection: permessage-deflate when it was agreed, out of
/// line (a connection without it pays one pointer; one with it about 48 bytes at rest).
pub(crate) type WsConnection = Connection<Option<Box<DeflateSession>>>;

/// A reply at least this large to the last message of a read goes to the stream as it is
/// sent, straight from where it lies (the read buffer, for an echo), when nothing is queued
/// ahead of it: copying it into the queue would cost about what writing it does, and it would
/// not fit a pooled buffer anyway (uWebSockets' cork buffer makes the same cut). Everything
/// else waits for the end of the loop turn, so that replies to pipelined messages go out
/// together.
const WRITE_THROUGH_MIN: usize = INITIAL_CAPACITY;

/// Where a connection is in its life. `Handshake`, then `Open` or `Refused`; `Open`, then
/// `Closing`; the record goes when the WebSocket is closed and flushed, or at a deadline.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "the WebSocket state is the steady state; boxing it would add a pointer chase per read"
)]
pub(crate) enum Phase {
    /// Reading the opening handshake from `peer`.
    Handshake {
        /// The incremental request parser.
        parser: ServerHandshake,
        /// The client's address, for the handler's look at the request.
        peer: SocketAddr,
        /// The tick the handshake (or the next plain HTTP request) must be done by.
        deadline: u64,
        /// Input the connection must hold before the request is looked at again: a plain
        /// HTTP request whose body is still coming (0: look at every arrival).
        body_until: usize,
    },
    /// Upgraded, and the application holds it: the record's [`App`] is there.
    Open(WsConnection),
    /// The application has had `on_close`; the close handshake and the flush finish by
    /// `linger`. Boxed: a closing connection is short-lived, and an unboxed second WebSocket
    /// variant would cost every record a discriminant (8 bytes).
    Closing {
        ws: Box<WsConnection>,
        /// The tick the record must be gone by, even with output the peer never reads: the
        /// protocol's close deadline, or the close timeout from when the handshake was
        /// already complete.
        linger: u64,
    },
    /// An HTTP refusal is queued; the stream closes once it is written. `write_shut`: our
    /// side is shut and we wait for the client's end of stream (a lingering close).
    Refused {
        /// Our side of the stream is shut.
        write_shut: bool,
        /// The tick the connection must be gone by.
        deadline: u64,
    },
}

impl Phase {
    /// The WebSocket, open or closing.
    pub(crate) fn ws(&self) -> Option<&WsConnection> {
        match self {
            Phase::Open(ws) => Some(ws),
            Phase::Closing { ws, .. } => Some(ws),
            _ => None,
        }
    }

    /// The WebSocket, open or closing.
    pub(crate) fn ws_mut(&mut self) -> Option<&mut WsConnection> {
        match self {
            Phase::Open(ws) => Some(ws),
            Phase::Closing { ws, .. } => Some(ws),
            _ => None,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self, Phase::Open(_))
    }

    /// `Open` becomes `Closing`: the application has let the connection go, and it must be
    /// gone by the protocol's close deadline, or else by `fallback`.
    pub(crate) fn leave_open(&mut self, ctx: &LoopCtx, fallback: u64) {
        if let Phase::Open(_) = self {
            let placeholder = Phase::Refused { write_shut: false, deadline: 0 };
            if let Phase::Open(ws) = std::mem::replace(self, placeholder) {
                let linger = ws.poll_timeout().map_or(fallback, |at| ctx.tick_at(at));
                *self = Phase::Closing { ws: Box::new(ws), linger };
            }
        }
    }
}

/// Per-connection I/O flags.
pub(crate) mod flag {
    /// Listed in the loop's dirty list for this turn's flush.
    pub(crate) const DIRTY: u8 = 1;
    /// A write was partial: WRITABLE interest is registered.
    pub(crate) const WRITE_BLOCKED: u8 = 1 << 1;
    /// A send was refused; `on_drain` is owed once output falls under the low watermark.
    pub(crate) const BACKPRESSURED: u8 = 1 << 2;
    /// Reading stopped at the backpressure limit; resumes under the low watermark.
    pub(crate) const READ_PAUSED: u8 = 1 << 3;
    /// A plain HTTP request was answered and the connection kept for the next one.
    pub(crate) const KEPT_ALIVE: u8 = 1 << 4;
    /// Reading stopped past the rate limit; listed in the loop's `throttled`.
    pub(crate) const THROTTLED: u8 = 1 << 5;
}

/// Everything the engine keeps for one connection except the application's part.
#[derive(Debug)]
pub(crate) struct ConnCore {
    pub(crate) io: ConnIo,
    pub(crate) phase: Phase,
}

/// A connection's stream, its buffers, its timers: apart from [`Phase`] so that output can be
/// queued while the protocol state encodes it.
#[derive(Debug)]
pub(crate) struct ConnIo {
    pub(crate) stream: Stream,
    /// Unsent output; `None` when there is none.
    pub(crate) out: Option<Box<Outbox>>,
    /// Input kept between reads; `None` when there is none.
    pub(crate) held: Option<Box<Held>>,
    /// The tick of this connection's live timer entry; 0 when none.
    pub(crate) timer_at: u64,
    pub(crate) flags: u8,
}

/// The application's part of an open connection: its state, and its place under the
/// connection cap (given back when this is dropped).
#[derive(Debug)]
pub(crate) struct App<S> {
    pub(crate) state: S,
    pub(crate) admission: Admission,
}

/// A connection record: the engine's part and the application's.
#[derive(Debug)]
pub(crate) struct ConnEntry<S> {
    pub(crate) core: ConnCore,
    /// There exactly while the phase is [`Phase::Open`].
    pub(crate) app: Option<App<S>>,
}

impl ConnIo {
    pub(crate) fn new(stream: Stream) -> Self {
        ConnIo { stream, out: None, held: None, timer_at: 0, flags: 0 }
    }

    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub(crate) fn set(&mut self, flag: u8) {
        self.flags |= flag;
    }

    pub(crate) fn clear(&mut self, flag: u8) {
        self.flags &= !flag;
    }

    /// Takes the unprocessed input, if any.
    pub(crate) fn take_stash(&mut self) -> Option<Vec<u8>> {
        let held = self.held.as_mut()?;
        (!held.stash.is_empty()).then(|| std::mem::take(&mut held.stash))
    }

    /// Keeps unprocessed input (a buffer from the pool) until the next read.
    pub(crate) fn put_stash(&mut self, pool: &mut BufferPool, stash: Vec<u8>) {
        self.held.get_or_insert_with(|| pool.take_held()).stash = stash;
    }

    /// Takes the buffer of a message in pieces, if any.
    pub(crate) fn take_assembly(&mut self) -> Option<Vec<u8>> {
        let held = self.held.as_mut()?;
        (held.assembly.capacity() > 0).then(|| std::mem::take(&mut held.assembly))
    }

    /// Keeps the buffer of a message in pieces until the next read.
    pub(crate) fn put_assembly(&mut self, pool: &mut BufferPool, assembly: Vec<u8>) {
        self.held.get_or_insert_with(|| pool.take_held()).assembly = assembly;
    }

    /// Returns the holder to the pool once it holds nothing.
    pub(crate) fn settle_held(&mut self, pool: &mut BufferPool) {
        let empty =
            self.held.as_ref().is_some_and(|h| h.stash.is_empty() && h.assembly.capacity() == 0);
        if empty {
            if let Some(held) = self.held.take() {
                pool.give_held(held);
            }
        }
    }

    /// Keeps input that cannot be processed yet, in a pooled buffer.
    pub(crate) fn hold(&mut self, pool: &mut BufferPool, input: &[u8]) {
        let mut stash = pool.take();
        stash.extend_from_slice(input);
        self.put_stash(pool, stash);
    }

    /// Keeps more input behind what is already kept (input that came while paused).
    pub(crate) fn hold_more(&mut self, pool: &mut BufferPool, input: &[u8]) {
        let mut stash = self.take_stash().unwrap_or_else(|| pool.take());
        stash.extend_from_slice(input);
        self.put_stash(pool, stash);
        self.set(flag::READ_PAUSED);
    }

    /// Keeps the input past the backpressure limit and stops reading until the output drains.
    pub(crate) fn hold_back(&mut self, pool: &mut BufferPool, input: &[u8]) {
        self.hold(pool, input);
        self.set(flag::READ_PAUSED);
    }

    /// Unsent output in bytes.
    pub(crate) fn buffered(&self) -> usize {
        self.out.as_ref().map_or(0, |out| out.len())
    }

    /// Appends to the output with `encode` and lists the connection for this turn's flush.
    pub(crate) fn queue<R>(
        &mut self,
        ctx: &mut LoopCtx,
        key: ConnKey,
        encode: impl FnOnce(&mut Vec<u8>) -> R,
    ) -> R {
        let out = self.out.get_or_insert_with(|| ctx.outboxes.take());
        let result = out.append(&mut ctx.pool, encode);
        self.mark_dirty(ctx, key);
        result
    }

    /// Writes a handshake answer at once from the loop's reply scratch, queueing only what
    /// the stream does not take. A burst of handshakes then leaves no output buffers behind:
    /// through the queue, each would take a pooled buffer, and the pool keeps what its budget
    /// allows, which after a burst of thousands is most of an idle server's memory.
    pub(crate) fn answer_now<R>(
        &mut self,
        ctx: &mut LoopCtx,
        key: ConnKey,
        encode: impl FnOnce(&mut Vec<u8>) -> R,
    ) -> R {
        let mut reply = std::mem::take(&mut ctx.reply);
        reply.clear();
        let result = encode(&mut reply);
        self.write_now(ctx, key, &reply, &[]);
        ctx.reply = reply;
        result
    }

    /// Writes `head` then `body` through the transport with one call if nothing is queued
    /// ahead of them (or the bytes would go out of order), and queues whatever it does not
    /// take.
    pub(crate) fn write_now(&mut self, ctx: &mut LoopCtx, key: ConnKey, head: &[u8], body: &[u8]) {
        let total = head.len() + body.len();
        let mut written = 0;
        while self.out.is_none() && !self.has(flag::WRITE_BLOCKED) && written < total {
            let result = match head.get(written..) {
                Some(rest) if !rest.is_empty() => {
                    let bufs = [IoSlice::new(rest), IoSlice::new(body)];
                    self.stream.write_vectored(&bufs, &mut ctx.pool)
                }
                _ => {
                    let bufs = [IoSlice::new(&body[written - head.len()..])];
                    self.stream.write_vectored(&bufs, &mut ctx.pool)
                }
            };
            match result {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock, or an error the flush will meet and report.
                Err(_) => break,
            }
        }
        // The rest, or (TLS) no bytes but records the transport still holds: either way the
        // flush at the end of the turn takes it from here.
        if written < total || self.stream.wants_write() {
            self.queue(ctx, key, |out| {
                if written < head.len() {
                    out.extend_from_slice(&head[written..]);
                    out.extend_from_slice(body);
                } else {
                    out.extend_from_slice(&body[written - head.len()..]);
                }
            });
        }
    }

    pub(crate) fn mark_dirty(&mut self, ctx: &mut LoopCtx, key: ConnKey) {
        if !self.has(flag::DIRTY) {
            self.set(flag::DIRTY);
            ctx.dirty.push(key);
        }
    }
}

impl ConnCore {
    /// Whether a data message may be queued now; applies the policy when not.
    fn admit(&mut self, ctx: &mut LoopCtx, key: ConnKey) -> Option<SendResult> {
        let Phase::Open(ws) = &self.phase else { return Some(SendResult::Closed) };
        if !ws.can_send() {
            return Some(SendResult::Closed);
        }
        if self.io.buffered() < ctx.config.backpressure_limit() {
            return None;
        }
        Some(match ctx.config.backpressure_policy() {
            BackpressurePolicy::HandBack => {
                ctx.stats.backpressure.add(0, 1);
                self.io.set(flag::BACKPRESSURED);
                SendResult::Backpressure
            }
            BackpressurePolicy::Close1008 => {
                ctx.stats.backpressure.add(1, 1);
                // Cannot fail: the connection could still send.
                let _ = self.start_close(ctx, key, CloseCode::POLICY_VIOLATION, "backpressure");
                SendResult::Closed
            }
        })
    }

    /// Queues one data message, honouring the backpressure limit: a message is taken while
    /// the unsent output is under the limit, even one that takes it past. `last_of_read`:
    /// the message answers the last message of the input read, so a large one may go to the
    /// stream at once (nothing that arrived with it waits for an answer).
    pub(crate) fn send(
        &mut self,
        ctx: &mut LoopCtx,
        key: ConnKey,
        msg: Message<'_>,
        last_of_read: bool,
    ) -> SendResult {
        if let Some(refused) = self.admit(ctx, key) {
            return refused;
        }
        let Phase::Open(ws) = &mut self.phase else { return SendResult::Closed };
        // A pong or Close the protocol owes goes first, from the queue.
        if last_of_read && msg.len() >= WRITE_THROUGH_MIN && !ws.wants_transmit() {
            let mut header = [0; MAX_HEADER_LEN];
            if let Ok(Some(len)) = ws.send_header(&msg, &mut header) {
                self.io.write_now(ctx, key, &header[..len], msg.as_bytes());
                ctx.tally.message_out(kind_index(&msg), msg.len());
                return SendResult::Sent;
            }
        }
        match self.io.queue(ctx, key, |buf| ws.send(msg, buf)) {
            Ok(()) => {
                ctx.tally.message_out(kind_index(&msg), msg.len());
                SendResult::Sent
            }
            Err(_) => SendResult::Closed,
        }
    }

    /// Queues a broadcast frame by reference, like [`send`](Self::send).
    pub(crate) fn send_shared(
        &mut self,
        ctx: &mut LoopCtx,
        key: ConnKey,
        frame: &SharedFrame,
    ) -> SendResult {
        if let Some(refused) = self.admit(ctx, key) {
            return refused;
        }
        let out = self.io.out.get_or_insert_with(|| ctx.outboxes.take());
        out.push_shared(&mut ctx.pool, frame);
        self.io.mark_dirty(ctx, key);
        ctx.tally.message_out(usize::from(!frame.is_text()), frame.payload_len());
        SendResult::Sent
    }

    /// Queues a published frame with `send` (as it is, or compressed), applying the policy
    /// for publishes at the backpressure limit: skip it and count it missed (reported to the
    /// handler when the output drains), or close with 1008.
    pub(crate) fn deliver_published(
        &mut self,
        ctx: &mut LoopCtx,
        key: ConnKey,
        send: impl FnOnce(&mut ConnCore, &mut LoopCtx) -> SendResult,
    ) -> Outcome {
        let could_send = matches!(&self.phase, Phase::Open(ws) if ws.can_send());
        let mut outcome = Outcome::default();
        match send(self, ctx) {
            SendResult::Sent => outcome.deliveries = 1,
            SendResult::Backpressure => {
                ctx.topics.missed(key);
                outcome.skipped = 1;
            }
            // Closed just now by the 1008 policy, or closing already (then it is leaving
            // its topics and misses nothing it would have been sent).
            SendResult::Closed => outcome.closed = u64::from(could_send),
        }
        outcome
    }

    /// Queues our Close and starts the close deadline.
    pub(crate) fn start_close(
        &mut self,
        ctx: &mut LoopCtx,
        key: ConnKey,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        let now = ctx.now;
        let Some(ws) = self.phase.ws_mut() else { return Err(SendError::Closed) };
        self.io.queue(ctx, key, |buf| ws.close(now, code, reason, buf))?;
        ctx.stats.closes_sent.add(close_index(code), 1);
        self.arm_timer(ctx, key);
        Ok(())
    }

    /// Makes sure the wheel wakes this connection by the instant its next deadline is due:
    /// the handshake's, the refusal's or the closing record's (the engine's: bounds on the
    /// stream), or the open WebSocket's idle ping, idle close or close handshake (the
    /// protocol's, mapped to the wheel). An entry that fires
    /// early (the idle timers move on with every read) re-arms from there.
    pub(crate) fn arm_timer(&mut self, ctx: &mut LoopCtx, key: ConnKey) {
        let at = match &self.phase {
            Phase::Handshake { deadline, .. } | Phase::Refused { deadline, .. } => Some(*deadline),
            Phase::Closing { linger, .. } => Some(*linger),
            Phase::Open(ws) => ws.poll_timeout().map(|at| ctx.tick_at(at)),
        };
        if let Some(at) = at {
            ctx.arm(&mut self.io.timer_at, key, at);
        }
    }

    /// Queues the control frames the protocol owes the peer (pong, Close reply), unless
    /// output is blocked: then only the latest pong is kept, and it goes once the stream
    /// drains.
    pub(crate) fn transmit(&mut self, ctx: &mut LoopCtx, key: ConnKey) {
        if self.io.has(flag::WRITE_BLOCKED) {
            return;
        }
        let Some(ws) = self.phase.ws_mut() else { return };
        if ws.wants_transmit() {
            self.io.queue(ctx, key, |buf| ws.poll_transmit(buf));
        } else if ws.is_closed() {
            // Listed so that the flush closes the stream.
            self.io.mark_dirty(ctx, key);
        }
    }
}

/// The outcome of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a send may be refused: Backpressure hands the message back"]
pub enum SendResult {
    /// Queued; it goes out at the end of this loop turn (or as the socket drains).
    Sent,
    /// Not queued: the connection's unsent output has reached the backpressure limit. The
    /// message is the caller's again; [`Handler::on_drain`](crate::Handler::on_drain) runs
    /// when sending makes sense.
    Backpressure,
    /// Not queued: the connection is closing (a Close was sent or is queued), or was just
    /// closed with 1008 under [`BackpressurePolicy::Close1008`](crate::BackpressurePolicy).
    Closed,
}

/// A handler's view of one connection during a callback.
///
/// Sends are queued and written at the end of the loop turn, one write per connection for all
/// of them.
pub struct Conn<'a> {
    pub(crate) core: &'a mut ConnCore,
    pub(crate) ctx: &'a mut LoopCtx,
    pub(crate) key: ConnKey,
    /// The call answers the last message of the input read (see [`ConnCore::send`]).
    pub(crate) last_of_read: bool,
}

impl std::fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id())
            .field("buffered", &self.core.io.buffered())
            .finish()
    }
}

impl Conn<'_> {
    /// This connection's id, valid from any thread through the [`ServerHandle`].
    pub fn id(&self) -> ConnectionId {
        self.ctx.id(self.key)
    }

    /// The loop this connection lives on.
    pub fn loop_index(&self) -> LoopIndex {
        LoopIndex(self.ctx.index)
    }

    /// The client's address (asked of the transport: the record does not keep it).
    pub fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.core.io.stream.peer_addr()
    }

    /// Queues a message. See [`SendResult`] for refusals; nothing is ever dropped silently.
    pub fn send(&mut self, msg: Message<'_>) -> SendResult {
        self.core.send(self.ctx, self.key, msg, self.last_of_read)
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> SendResult {
        self.send(Message::Text(text))
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, bytes: &[u8]) -> SendResult {
        self.send(Message::Binary(bytes))
    }

    /// Queues a ping (at most 125 bytes of payload). Pings are small and not subject to the
    /// backpressure limit.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        let Phase::Open(ws) = &mut self.core.phase else { return Err(SendError::Closed) };
        self.core.io.queue(self.ctx, self.key, |buf| ws.ping(payload, buf))
    }

    /// Starts the close handshake: queues a Close with `code` and `reason` (at most 123
    /// bytes). [`Handler::on_close`](crate::Handler::on_close) follows when the peer answers,
    /// or at the close timeout.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.core.start_close(self.ctx, self.key, code, reason)
    }

    /// Bytes queued and not yet written to the socket.
    pub fn buffered_amount(&self) -> usize {
        self.core.io.buffered()
    }

    /// A handle to the whole server (to broadcast, or reach other connections).
    pub fn handle(&self) -> &ServerHandle {
        &self.ctx.handle
    }

    /// Subscribes this connection to `topic` (any string; topics need not be declared).
    /// Returns whether it was not subscribed yet. A connection leaves all its topics when
    /// it closes.
    pub fn subscribe(&mut self, topic: &str) -> bool {
        self.ctx.subscribe(self.key, topic)
    }

    /// Unsubscribes this connection from `topic`; returns whether it was subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.ctx.unsubscribe(self.key, topic)
    }

    /// Publishes `msg` to every subscriber of `topic`, this connection too when it is one:
    /// [`publish_to`](Self::publish_to) with one topic and [`Audience::Everyone`].
    pub fn publish(&mut self, topic: &str, msg: Message<'_>) {
        self.publish_to(&[topic], msg, Audience::Everyone);
    }

    /// Publishes `msg` to the subscribers of `topics`: each gets it once, however many of
    /// the topics it is subscribed to. The frame is encoded once and shared.
    ///
    /// Order: every subscriber receives one publisher's messages to a topic in publish
    /// order, and this connection's own copy (under [`Audience::Everyone`]) is queued at
    /// once, so a [`send`](Self::send) after a publish arrives after it. The loop's other
    /// subscribers get it as soon as this handler call returns, before any other handler
    /// call; other loops and, in a cluster, other nodes get it through their queues.
    ///
    /// A subscriber over its backpressure limit misses it (counted, and reported to
    /// [`Handler::on_missed`](crate::Handler::on_missed)) or is closed with 1008, as
    /// [configured](crate::BackpressurePolicy).
    pub fn publish_to(&mut self, topics: &[&str], msg: Message<'_>, audience: Audience) {
        let ctx = &mut *self.ctx;
        let topics = ctx.topics.list(topics);
        let frame = ctx.frames.encode(msg);
        let served = if audience == Audience::Everyone
            && ctx.topics.is_subscribed(self.key, &topics)
        {
            let key = self.key;
            self.core.deliver_published(ctx, key, |core, ctx| core.send_shared(ctx, key, &frame))
        } else {
            Outcome::default()
        };
        ctx.fan_out(&topics, &frame);
        ctx.publishes.push(Pending { topics, frame, publisher: self.key, served });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record of an idle connection: the protocol state, the stream, a few counters, and
    /// no buffer.
    #[test]
    fn the_connection_record_stays_small() {
        println!(
            "ConnCore {} B = ConnIo {} B + Phase {} B (surge_proto Connection {} B); \
             ConnEntry<()> {} B",
            size_of::<ConnCore>(),
            size_of::<ConnIo>(),
            size_of::<Phase>(),
            size_of::<WsConnection>(),
            size_of::<ConnEntry<()>>(),
        );
        // mio keeps a selector id in each socket in debug builds: 12 more bytes there. The
        // per-client limits (address caps, rates) cost one pointer in the admission.
        let limit = if cfg!(debug_assertions) { 216 } else { 208 };
        assert!(size_of::<ConnEntry<()>>() <= limit, "the record grew past {limit} B");
    }
}
