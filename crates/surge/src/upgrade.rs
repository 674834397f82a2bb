//! The opening handshake at the server: parse, check, ask the handler, answer 101 or an
//! HTTP error.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use surge_proto::connection::Connection as WsConnection;
use surge_proto::handshake::{write_rejection, EMPTY_HEADER};

use crate::config::MAX_HEADERS;
use crate::conn::{flag, Conn, ConnCore, Protocol};
use crate::event_loop::LoopCtx;
use crate::handle::ConnectionId;
use crate::handler::{Handler, Upgrade};
use crate::inbound::{feed, give_back, handler_panicked, hold, hold_back, panic_message, Fed};
use crate::request::Request;

/// Handles new handshake bytes. Returns whether to go on reading.
pub(crate) fn on_handshake_bytes<H: Handler>(
    core: &mut ConnCore,
    state: &mut Option<H::State>,
    handler: &mut H,
    ctx: &mut LoopCtx,
    spare: &mut Vec<u8>,
    id: ConnectionId,
    input: &mut [u8],
) -> bool {
    if !matches!(core.proto, Protocol::Handshake { .. }) {
        return true;
    }
    // A head that came in one read is parsed where it lies; one in pieces is gathered.
    let mut stash = core.take_stash();
    let Protocol::Handshake { parser, peer } = &mut core.proto else { return true };
    let peer = *peer;
    if let Some(stash) = stash.as_mut() {
        stash.extend_from_slice(input);
    }
    let buf: &mut [u8] = match stash.as_mut() {
        Some(stash) => stash,
        None => input,
    };
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let request = match parser.parse(buf, &mut headers) {
        Ok(None) => {
            match stash {
                Some(stash) => core.put_stash(&mut ctx.pool, stash),
                None => hold(core, ctx, input),
            }
            return true;
        }
        Err(error) => {
            tracing::debug!(%id, %error, "bad handshake");
            refuse(core, ctx, id, error.status());
            give_back(ctx, stash);
            return true;
        }
        Ok(Some(request)) => request,
    };
    let head_len = request.head_len();
    let (protocol, app_state) = match decide(handler, ctx, Request::new(request, peer)) {
        Ok(accepted) => accepted,
        Err(status) => {
            refuse(core, ctx, id, status);
            give_back(ctx, stash);
            return true;
        }
    };
    if let Err(error) = core.answer_now(ctx, id, |out| request.accept(protocol, &[], out)) {
        tracing::error!(%id, %error, "the handler chose a subprotocol the client did not offer");
        ctx.handle.shared.open.fetch_sub(1, Ordering::AcqRel);
        refuse(core, ctx, id, 500);
        give_back(ctx, stash);
        return true;
    }
    core.proto = Protocol::Ws(WsConnection::server(*ctx.config.limits()));
    core.set(flag::COUNTED);
    core.deadline = 0;
    if let Some((ping, _)) = ctx.ticks.idle {
        ctx.arm(core, id, ctx.tick + ping);
    }
    let st = state.insert(app_state);
    let mut conn = Conn { core: &mut *core, ctx: &mut *ctx, id };
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| handler.on_open(&mut conn, st))) {
        handler_panicked(core, ctx, id, "on_open", &*panic);
    }
    // Frames the client sent right behind its request.
    let rest = &mut buf[head_len..];
    let go_on = match feed(core, state, handler, ctx, spare, id, rest) {
        Fed::Paused(used) => {
            hold_back(core, ctx, &rest[used..]);
            false
        }
        Fed::All | Fed::Ended => true,
    };
    give_back(ctx, stash);
    core.settle_held(&mut ctx.pool);
    go_on
}

/// The server's checks, then the handler's: the subprotocol and state, or a status.
fn decide<H: Handler>(
    handler: &mut H,
    ctx: &mut LoopCtx,
    request: Request<'_>,
) -> Result<(Option<&'static str>, H::State), u16> {
    if ctx.shutdown.is_some() || ctx.handle.shared.shutting_down.load(Ordering::Acquire) {
        return Err(503);
    }
    if !ctx.config.origin_allowed(request.origin()) {
        return Err(403);
    }
    let open = &ctx.handle.shared.open;
    if open.fetch_add(1, Ordering::AcqRel) >= ctx.config.max_connections() {
        open.fetch_sub(1, Ordering::AcqRel);
        return Err(503);
    }
    let decision = match catch_unwind(AssertUnwindSafe(|| handler.on_upgrade(&request))) {
        Ok(Upgrade::Accept { protocol, state }) => Ok((protocol, state)),
        Ok(Upgrade::Reject(status)) => Err(status),
        Err(panic) => {
            tracing::error!(panic = panic_message(&*panic), "on_upgrade panicked; answering 500");
            Err(500)
        }
    };
    if decision.is_err() {
        open.fetch_sub(1, Ordering::AcqRel);
    }
    decision
}

/// Answers the handshake with an HTTP error and closes after writing it.
pub(crate) fn refuse(core: &mut ConnCore, ctx: &mut LoopCtx, id: ConnectionId, status: u16) {
    core.answer_now(ctx, id, |out| {
        if write_rejection(status, &[], out).is_err() {
            // Not a 4xx or 5xx (a handler's mistake): nothing was written.
            let _ = write_rejection(500, &[], out);
        }
    });
    // The flush shuts our side down once the answer is out (a lingering close).
    core.mark_dirty(ctx, id);
    core.proto = Protocol::Refused;
    give_back(ctx, core.take_stash());
    core.settle_held(&mut ctx.pool);
    core.deadline = ctx.close_deadline();
    let deadline = core.deadline;
    ctx.arm(core, id, deadline);
}
