//! The per-message path: one read into the loop's buffer, the protocol's events, the
//! handler's calls. Everything a message costs between the socket and the handler is here
//! (and what a send costs is in `conn` and `outbox`).

use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use surge_proto::close::CloseCode;
use surge_proto::connection::Event;

use crate::buffer_pool::MAX_POOLED_CAPACITY;
use crate::conn::{flag, Conn, ConnCore, ConnEntry, Protocol};
use crate::event_loop::{LoopCtx, MAX_READS_PER_EVENT};
use crate::handle::ConnectionId;
use crate::handler::Handler;
use crate::upgrade::on_handshake_bytes;

/// How reading a socket ended.
pub(crate) enum ReadEnd {
    /// Drained, paused, or waiting for more.
    Done,
    /// The peer is gone (end of stream or error).
    Lost,
}

/// How far feeding input to a connection went.
pub(crate) enum Fed {
    /// All of it was used.
    All,
    /// Stopped at the backpressure limit; the input from this offset on is unused.
    Paused(usize),
    /// The WebSocket ended (Close or error); the rest is ignored.
    Ended,
}

/// Reads a readable socket: once, and again only while a read fills the buffer.
///
/// With edge-triggered readiness a short read normally means the socket is drained and a
/// new arrival raises a new event. That does not hold when the peer's FIN or RST came in
/// with the last data (the event says read-closed, and no further edge follows), nor when
/// reading resumes without a fresh edge (after a full buffer or a backpressure pause): then
/// `until_would_block` keeps reading until the kernel says so, which is what finds the end
/// of stream.
pub(crate) fn read_socket<H: Handler>(
    entry: &mut ConnEntry<H::State>,
    handler: &mut H,
    ctx: &mut LoopCtx,
    read_buf: &mut [u8],
    spare: &mut Vec<u8>,
    id: ConnectionId,
    until_would_block: bool,
) -> ReadEnd {
    let ConnEntry { core, state } = entry;
    // Input held back at the backpressure limit goes first.
    if matches!(core.proto, Protocol::Ws(_)) && state.is_some() {
        if let Some(mut stash) = core.take_stash() {
            match feed(core, state, handler, ctx, spare, id, &mut stash) {
                Fed::Paused(used) => {
                    stash.drain(..used);
                    core.put_stash(&mut ctx.pool, stash);
                    core.set(flag::READ_PAUSED);
                    return ReadEnd::Done;
                }
                Fed::All | Fed::Ended => {
                    ctx.pool.give(stash);
                    core.settle_held(&mut ctx.pool);
                }
            }
        }
    }
    for _ in 0..MAX_READS_PER_EVENT {
        let open = state.is_some() && matches!(core.proto, Protocol::Ws(_));
        if open && core.buffered() >= ctx.config.backpressure_limit() {
            // Stop reading: TCP flow control holds the peer back until we drain.
            core.set(flag::READ_PAUSED);
            return ReadEnd::Done;
        }
        let n = match core.socket.read(read_buf) {
            Ok(0) => return ReadEnd::Lost,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadEnd::Done,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                tracing::debug!(%id, %error, "read failed");
                return ReadEnd::Lost;
            }
        };
        core.last_active = ctx.tick;
        core.clear(flag::PINGED);
        let input = &mut read_buf[..n];
        if matches!(core.proto, Protocol::Handshake { .. }) {
            if !on_handshake_bytes(core, state, handler, ctx, spare, id, input) {
                return ReadEnd::Done;
            }
        } else if matches!(core.proto, Protocol::Ws(_)) && state.is_some() {
            if let Fed::Paused(used) = feed(core, state, handler, ctx, spare, id, input) {
                hold_back(core, ctx, &input[used..]);
                return ReadEnd::Done;
            }
        }
        // Otherwise closing: what the peer sends now is read and dropped (so that closing our
        // side does not reset the connection under data we never read).
        if n < read_buf.len() && !until_would_block {
            return ReadEnd::Done;
        }
    }
    ctx.again.push((id.slot, id.generation));
    ReadEnd::Done
}

/// Feeds input to an open connection, delivering each event; stops at the backpressure
/// limit, or when the WebSocket ends.
pub(crate) fn feed<H: Handler>(
    core: &mut ConnCore,
    state: &mut Option<H::State>,
    handler: &mut H,
    ctx: &mut LoopCtx,
    spare: &mut Vec<u8>,
    id: ConnectionId,
    input: &mut [u8],
) -> Fed {
    let limit = ctx.config.backpressure_limit();
    // A connection that is not assembling borrows the loop's spare buffer.
    let (mut assembly, spared) = match core.take_assembly() {
        Some(assembly) => (assembly, false),
        None => (std::mem::take(spare), true),
    };
    let held_before = if spared { 0 } else { assembly.capacity() };
    let mut used = 0;
    let input_len = input.len();
    let mut fed = loop {
        if core.buffered() >= limit && used < input.len() {
            break Fed::Paused(used);
        }
        let Protocol::Ws(ws) = &mut core.proto else { break Fed::Ended };
        let (n, event) = ws.read(&mut input[used..], &mut assembly);
        used += n;
        let Some(event) = event else { break Fed::All };
        match event {
            Event::Message(msg) => {
                let Some(st) = state.as_mut() else { break Fed::Ended };
                ctx.write_through = used == input_len;
                let mut conn = Conn { core: &mut *core, ctx: &mut *ctx, id };
                let result =
                    catch_unwind(AssertUnwindSafe(|| handler.on_message(&mut conn, st, msg)));
                ctx.write_through = false;
                if let Err(panic) = result {
                    handler_panicked(core, ctx, id, "on_message", &*panic);
                }
            }
            // The pong goes out in wire order, ahead of replies to later messages (while
            // output flows; when it is blocked only the latest pong is kept).
            Event::Ping(_) => transmit(core, ctx, id),
            Event::Pong(_) => {}
            Event::Close(frame) => {
                let code = frame.code().unwrap_or(CloseCode::NO_STATUS);
                close_app(handler, core, state, ctx, id, code, frame.reason());
                break Fed::Ended;
            }
            Event::Error(error) => {
                tracing::debug!(%id, %error, "protocol violation");
                close_app(handler, core, state, ctx, id, error.close_code(), "");
                break Fed::Ended;
            }
        }
    };
    // Keep the assembly buffer only while a message is in pieces.
    let assembling = matches!(&core.proto, Protocol::Ws(ws) if ws.is_assembling());
    let held_after = if assembling { assembly.capacity() } else { 0 };
    ctx.assembly_bytes = ctx.assembly_bytes + held_after - held_before;
    match (assembling, spared) {
        (true, true) => {
            core.put_assembly(&mut ctx.pool, assembly);
            *spare = ctx.pool.take();
        }
        (true, false) => core.put_assembly(&mut ctx.pool, assembly),
        (false, true) => {
            assembly.clear();
            if assembly.capacity() <= MAX_POOLED_CAPACITY {
                *spare = assembly;
            }
        }
        (false, false) => {
            ctx.pool.give(assembly);
            core.settle_held(&mut ctx.pool);
        }
    }
    if held_after > 0 && ctx.assembly_bytes > ctx.assembly_budget && state.is_some() {
        tracing::warn!(%id, "partly received messages past the budget; closing with 1013");
        // Fails only when our Close is already out.
        let _ = core.start_close(ctx, id, CloseCode::TRY_AGAIN_LATER, "busy");
        close_app(handler, core, state, ctx, id, CloseCode::TRY_AGAIN_LATER, "busy");
        // Input is no longer read into the message: drop what it holds.
        if let Some(assembly) = core.take_assembly() {
            ctx.assembly_bytes -= assembly.capacity();
            ctx.pool.give(assembly);
            core.settle_held(&mut ctx.pool);
        }
        fed = Fed::Ended;
    }
    transmit(core, ctx, id);
    fed
}

/// Queues the control frames the protocol owes the peer (pong, Close reply), unless output
/// is blocked: then only the latest pong is kept, and it goes once the socket drains.
pub(crate) fn transmit(core: &mut ConnCore, ctx: &mut LoopCtx, id: ConnectionId) {
    if core.has(flag::WRITE_BLOCKED) {
        return;
    }
    let Protocol::Ws(ws) = &mut core.proto else { return };
    if ws.wants_transmit() {
        let out = core.out.get_or_insert_with(|| ctx.pool.take_outbox());
        out.append(&mut ctx.pool, |buf| ws.poll_transmit(buf));
        core.mark_dirty(ctx, id);
    } else if ws.is_closed() {
        // Listed so that the flush closes the socket.
        core.mark_dirty(ctx, id);
    }
}

/// Keeps input that cannot be processed yet, in a pooled buffer.
pub(crate) fn hold(core: &mut ConnCore, ctx: &mut LoopCtx, input: &[u8]) {
    let mut stash = ctx.pool.take();
    stash.extend_from_slice(input);
    core.put_stash(&mut ctx.pool, stash);
}

/// Keeps the input past the backpressure limit and stops reading until the output drains.
pub(crate) fn hold_back(core: &mut ConnCore, ctx: &mut LoopCtx, input: &[u8]) {
    hold(core, ctx, input);
    core.set(flag::READ_PAUSED);
}

pub(crate) fn give_back(ctx: &mut LoopCtx, buf: Option<Vec<u8>>) {
    if let Some(buf) = buf {
        ctx.pool.give(buf);
    }
}

/// The application's side of the connection is over: `on_close`, then the close deadline.
pub(crate) fn close_app<H: Handler>(
    handler: &mut H,
    core: &mut ConnCore,
    state: &mut Option<H::State>,
    ctx: &mut LoopCtx,
    id: ConnectionId,
    code: CloseCode,
    reason: &str,
) {
    notify_close(handler, core, state, ctx, id, code, reason);
    core.clear(flag::BACKPRESSURED);
    core.arm_close_deadline(ctx, id);
    core.mark_dirty(ctx, id);
}

/// Calls `on_close` once, if the application still holds the connection.
pub(crate) fn notify_close<H: Handler>(
    handler: &mut H,
    core: &mut ConnCore,
    state: &mut Option<H::State>,
    ctx: &mut LoopCtx,
    id: ConnectionId,
    code: CloseCode,
    reason: &str,
) {
    let Some(state) = state.take() else { return };
    if core.has(flag::COUNTED) {
        core.clear(flag::COUNTED);
        ctx.handle.shared.open.fetch_sub(1, Ordering::AcqRel);
    }
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| handler.on_close(id, state, code, reason)))
    {
        tracing::error!(%id, panic = panic_message(&*panic), "on_close panicked");
    }
}

/// A handler call panicked: log it and close this connection with 1011.
pub(crate) fn handler_panicked(
    core: &mut ConnCore,
    ctx: &mut LoopCtx,
    id: ConnectionId,
    callback: &str,
    panic: &(dyn std::any::Any + Send),
) {
    tracing::error!(%id, callback, panic = panic_message(panic), "handler panicked; closing with 1011");
    // Fails only when our Close is already out, which is what we want anyway.
    let _ = core.start_close(ctx, id, CloseCode::INTERNAL_ERROR, "");
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "(not a string)"
    }
}
