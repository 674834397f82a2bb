//! One connection: its per-connection record, and [`Conn`], the view a handler gets of it.
//!
//! The record is kept small: buffers are borrowed from the loop's pool only while something is
//! in flight, so an idle open connection holds its socket, its protocol state and a few
//! counters, and no buffer at all.

use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use surge_proto::close::CloseCode;
use surge_proto::connection::Connection as WsConnection;
use surge_proto::error::SendError;
use surge_proto::frame::MAX_HEADER_LEN;
use surge_proto::handshake::ServerHandshake;
use surge_proto::message::Message;

use crate::buffer_pool::{BufferPool, INITIAL_CAPACITY};
use crate::config::BackpressurePolicy;
use crate::event_loop::LoopCtx;
use crate::handle::{ConnectionId, LoopIndex, ServerHandle};
use crate::handler::SendResult;
use crate::outbox::{Outbox, SharedFrame};

/// A reply at least this large to the last message of a read goes to the socket as it is sent,
/// straight from where it lies (the read buffer, for an echo), when nothing is queued ahead of
/// it: copying it into the queue would cost about what writing it does, and it would not fit a
/// pooled buffer anyway (uWebSockets' cork buffer makes the same cut). Everything else waits
/// for the end of the loop turn, so that replies to pipelined messages go out together.
const WRITE_THROUGH_MIN: usize = INITIAL_CAPACITY;

/// Where a connection is in its life.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "the WebSocket state is the steady state; boxing it would add a pointer chase per read"
)]
pub(crate) enum Protocol {
    /// Reading the opening handshake from `peer`.
    Handshake {
        /// The incremental request parser.
        parser: ServerHandshake,
        /// The client's address, for the handler's look at the request.
        peer: SocketAddr,
    },
    /// Upgraded. Open to the application while the record's state is `Some`; closing after.
    Ws(WsConnection),
    /// An HTTP refusal is queued; the socket closes once it is written.
    Refused,
}

/// Per-connection flags.
pub(crate) mod flag {
    /// Listed in the loop's dirty list for this turn's flush.
    pub(crate) const DIRTY: u8 = 1;
    /// A write was partial: WRITABLE interest is registered.
    pub(crate) const WRITE_BLOCKED: u8 = 1 << 1;
    /// A send was refused; `on_drain` is owed once output falls under the low watermark.
    pub(crate) const BACKPRESSURED: u8 = 1 << 2;
    /// Reading stopped at the backpressure limit; resumes under the low watermark.
    pub(crate) const READ_PAUSED: u8 = 1 << 3;
    /// An idle ping went out and nothing was read since.
    pub(crate) const PINGED: u8 = 1 << 4;
    /// Counted in the server's open-connection count.
    pub(crate) const COUNTED: u8 = 1 << 5;
    /// Our side of the socket is shut after an HTTP refusal (a lingering close).
    pub(crate) const WRITE_SHUT: u8 = 1 << 6;
}

/// Everything the engine keeps for one connection except the application's state.
#[derive(Debug)]
pub(crate) struct ConnCore {
    pub(crate) socket: TcpStream,
    /// Unsent output; `None` when there is none.
    pub(crate) out: Option<Box<Outbox>>,
    /// Input kept between reads; `None` when there is none.
    pub(crate) held: Option<Box<Held>>,
    /// The tick of the last read.
    pub(crate) last_active: u64,
    /// The tick of this connection's live timer entry; 0 when none.
    pub(crate) timer_at: u64,
    /// The handshake deadline while handshaking; the close deadline once closing; else 0.
    pub(crate) deadline: u64,
    pub(crate) flags: u8,
    pub(crate) proto: Protocol,
}

/// Input a connection keeps between reads, taken from the pool while it has any.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// Received bytes not yet processed: a partial handshake head, or input held back at the
    /// backpressure limit. Empty when there are none.
    pub(crate) stash: Vec<u8>,
    /// The first part of a message that arrived in pieces. No capacity when there is none.
    pub(crate) assembly: Vec<u8>,
}

/// A connection record: the engine's part and the application's.
#[derive(Debug)]
pub(crate) struct ConnEntry<S> {
    pub(crate) core: ConnCore,
    /// `Some` from the upgrade until `on_close`.
    pub(crate) state: Option<S>,
}

impl ConnCore {
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

    /// Unsent output in bytes.
    pub(crate) fn buffered(&self) -> usize {
        self.out.as_ref().map_or(0, |out| out.len())
    }

    /// Appends to the output with `encode` and lists the connection for this turn's flush.
    pub(crate) fn queue<R>(
        &mut self,
        ctx: &mut LoopCtx,
        id: ConnectionId,
        encode: impl FnOnce(&mut Vec<u8>) -> R,
    ) -> R {
        let out = self.out.get_or_insert_with(|| ctx.pool.take_outbox());
        let result = out.append(&mut ctx.pool, encode);
        self.mark_dirty(ctx, id);
        result
    }

    /// Writes a handshake answer at once from the loop's reply scratch, queueing only what
    /// the socket does not take. A burst of handshakes then leaves no output buffers behind:
    /// through the queue, each would take a pooled buffer, and the pool keeps what its budget
    /// allows, which after a burst of thousands is most of an idle server's memory.
    pub(crate) fn answer_now<R>(
        &mut self,
        ctx: &mut LoopCtx,
        id: ConnectionId,
        encode: impl FnOnce(&mut Vec<u8>) -> R,
    ) -> R {
        let mut reply = std::mem::take(&mut ctx.reply);
        reply.clear();
        let result = encode(&mut reply);
        self.write_now(ctx, id, &reply, &[]);
        ctx.reply = reply;
        result
    }

    /// Writes `head` then `body` with one call if nothing is queued ahead of them (or the
    /// bytes would go out of order), and queues whatever the socket does not take.
    fn write_now(&mut self, ctx: &mut LoopCtx, id: ConnectionId, head: &[u8], body: &[u8]) {
        let total = head.len() + body.len();
        let mut written = 0;
        while self.out.is_none() && !self.has(flag::WRITE_BLOCKED) && written < total {
            let result = match head.get(written..) {
                Some(rest) if !rest.is_empty() => {
                    self.socket.write_vectored(&[IoSlice::new(rest), IoSlice::new(body)])
                }
                _ => self.socket.write(&body[written - head.len()..]),
            };
            match result {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock, or an error the flush will meet and report.
                Err(_) => break,
            }
        }
        if written < total {
            self.queue(ctx, id, |out| {
                if written < head.len() {
                    out.extend_from_slice(&head[written..]);
                    out.extend_from_slice(body);
                } else {
                    out.extend_from_slice(&body[written - head.len()..]);
                }
            });
        }
    }

    pub(crate) fn mark_dirty(&mut self, ctx: &mut LoopCtx, id: ConnectionId) {
        if !self.has(flag::DIRTY) {
            self.set(flag::DIRTY);
            ctx.dirty.push((id.slot, id.generation));
        }
    }

    /// Whether a data message may be queued now; applies the policy when not.
    fn admit(&mut self, ctx: &mut LoopCtx, id: ConnectionId) -> Option<SendResult> {
        let Protocol::Ws(ws) = &self.proto else { return Some(SendResult::Closed) };
        if !ws.can_send() {
            return Some(SendResult::Closed);
        }
        if self.buffered() < ctx.config.backpressure_limit() {
            return None;
        }
        Some(match ctx.config.backpressure_policy() {
            BackpressurePolicy::HandBack => {
                self.set(flag::BACKPRESSURED);
                SendResult::Backpressure
            }
            BackpressurePolicy::Close1008 => {
                // Cannot fail: the connection could still send.
                let _ = self.start_close(ctx, id, CloseCode::POLICY_VIOLATION, "backpressure");
                SendResult::Closed
            }
        })
    }

    /// Queues one data message, honouring the backpressure limit: a message is taken while
    /// the unsent output is under the limit, even one that takes it past.
    pub(crate) fn send(
        &mut self,
        ctx: &mut LoopCtx,
        id: ConnectionId,
        msg: Message<'_>,
    ) -> SendResult {
        if let Some(refused) = self.admit(ctx, id) {
            return refused;
        }
        let Protocol::Ws(ws) = &mut self.proto else { return SendResult::Closed };
        // A pong or Close the protocol owes goes first, from the queue.
        if ctx.write_through && msg.len() >= WRITE_THROUGH_MIN && !ws.wants_transmit() {
            let mut header = [0; MAX_HEADER_LEN];
            if let Ok(Some(len)) = ws.send_header(&msg, &mut header) {
                self.write_now(ctx, id, &header[..len], msg.as_bytes());
                return SendResult::Sent;
            }
        }
        let out = self.out.get_or_insert_with(|| ctx.pool.take_outbox());
        match out.append(&mut ctx.pool, |buf| ws.send(msg, buf)) {
            Ok(()) => {
                self.mark_dirty(ctx, id);
                SendResult::Sent
            }
            Err(_) => SendResult::Closed,
        }
    }

    /// Queues a broadcast frame by reference, like [`send`](Self::send).
    pub(crate) fn send_shared(
        &mut self,
        ctx: &mut LoopCtx,
        id: ConnectionId,
        frame: &SharedFrame,
    ) -> SendResult {
        if let Some(refused) = self.admit(ctx, id) {
            return refused;
        }
        let out = self.out.get_or_insert_with(|| ctx.pool.take_outbox());
        out.push_shared(frame.clone());
        self.mark_dirty(ctx, id);
        SendResult::Sent
    }

    /// Queues our Close and starts the close deadline.
    pub(crate) fn start_close(
        &mut self,
        ctx: &mut LoopCtx,
        id: ConnectionId,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        let now = ctx.now;
        let Protocol::Ws(ws) = &mut self.proto else { return Err(SendError::Closed) };
        let out = self.out.get_or_insert_with(|| ctx.pool.take_outbox());
        out.append(&mut ctx.pool, |buf| ws.close(now, code, reason, buf))?;
        self.mark_dirty(ctx, id);
        self.arm_close_deadline(ctx, id);
        Ok(())
    }

    /// The connection must be gone by the close timeout from now (or sooner).
    pub(crate) fn arm_close_deadline(&mut self, ctx: &mut LoopCtx, id: ConnectionId) {
        let at = ctx.close_deadline();
        if self.deadline == 0 || at < self.deadline {
            self.deadline = at;
        }
        ctx.arm(self, id, self.deadline);
    }
}

/// A handler's view of one connection during a callback.
///
/// Sends are queued and written at the end of the loop turn, one write per connection for all
/// of them.
pub struct Conn<'a> {
    pub(crate) core: &'a mut ConnCore,
    pub(crate) ctx: &'a mut LoopCtx,
    pub(crate) id: ConnectionId,
}

impl std::fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("buffered", &self.core.buffered())
            .finish()
    }
}

impl Conn<'_> {
    /// This connection's id, valid from any thread through the [`ServerHandle`].
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The loop this connection lives on.
    pub fn loop_index(&self) -> LoopIndex {
        self.id.loop_index()
    }

    /// The client's address (asked of the socket: the record does not keep it).
    pub fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.core.socket.peer_addr()
    }

    /// Queues a message. See [`SendResult`] for refusals; nothing is ever dropped silently.
    pub fn send(&mut self, msg: Message<'_>) -> SendResult {
        self.core.send(self.ctx, self.id, msg)
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
        let Protocol::Ws(ws) = &mut self.core.proto else { return Err(SendError::Closed) };
        let out = self.core.out.get_or_insert_with(|| self.ctx.pool.take_outbox());
        out.append(&mut self.ctx.pool, |buf| ws.ping(payload, buf))?;
        self.core.mark_dirty(self.ctx, self.id);
        Ok(())
    }

    /// Starts the close handshake: queues a Close with `code` and `reason` (at most 123
    /// bytes). [`Handler::on_close`](crate::Handler::on_close) follows when the peer answers,
    /// or at the close timeout.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.core.start_close(self.ctx, self.id, code, reason)
    }

    /// Bytes queued and not yet written to the socket.
    pub fn buffered_amount(&self) -> usize {
        self.core.buffered()
    }

    /// A handle to the whole server (to broadcast, or reach other connections).
    pub fn handle(&self) -> &ServerHandle {
        &self.ctx.handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record of an idle connection: the protocol state, the socket, a few counters, and
    /// no buffer.
    #[test]
    fn the_connection_record_stays_small() {
        let engine = size_of::<ConnCore>() - size_of::<Protocol>();
        println!(
            "ConnCore {} B = engine {engine} B + Protocol {} B (surge_proto Connection {} B); \
             ConnEntry<()> {} B",
            size_of::<ConnCore>(),
            size_of::<Protocol>(),
            size_of::<WsConnection>(),
            size_of::<ConnEntry<()>>(),
        );
        // mio keeps a selector id in each socket in debug builds: 12 more bytes there.
        let limit = if cfg!(debug_assertions) { 216 } else { 200 };
        assert!(size_of::<ConnEntry<()>>() <= limit, "the record grew past {limit} B");
    }
}
