//! The opening handshake at the server: the server's own checks before the handler is asked,
//! and the HTTP refusal. (The turn parses the request and asks the handler; see `turn`.)

use std::sync::atomic::Ordering;

use surge_proto::handshake::write_rejection;

use crate::admission::{Admission, Refusal};
use crate::conn::{ConnCore, Phase};
use crate::context::LoopCtx;
use crate::key::ConnKey;
use crate::rate::Allowance;
use crate::request::Request;
use crate::stats::Limit;

/// The server's checks on a valid request, before the handler's: not shutting down, an
/// allowed origin, a place under the connection cap. Returns the place, or the status to
/// refuse with.
pub(crate) fn admit(ctx: &LoopCtx, request: &Request<'_>) -> Result<Admission, u16> {
    if ctx.shutdown.is_some() || ctx.handle.shared.shutting_down.load(Ordering::Acquire) {
        return Err(503);
    }
    if !ctx.config.origin_allowed(request.origin()) {
        return Err(403);
    }
    let admissions = &ctx.handle.shared.admissions;
    let allowance = ctx.config.rate_limit().map(|limit| Allowance::new(limit, ctx.now));
    admissions.admit(request.peer_addr().ip(), ctx.now, allowance).map_err(|refusal| {
        if refusal == Refusal::ServerFull {
            ctx.stats.limit(Limit::Connections);
        }
        refusal.status()
    })
}

/// Answers the handshake with an HTTP error and closes after writing it.
pub(crate) fn refuse(core: &mut ConnCore, ctx: &mut LoopCtx, key: ConnKey, status: u16) {
    core.io.answer_now(ctx, key, |out| {
        if write_rejection(status, &[], out).is_err() {
            // Not a 4xx or 5xx (a handler's mistake): nothing was written.
            let _ = write_rejection(500, &[], out);
        }
    });
    close_after_answer(core, ctx, key);
}

/// Closes once the answer written or queued is out: the flush shuts our side down, then
/// the client's end of stream (or the linger deadline) ends the record (a lingering close).
pub(crate) fn close_after_answer(core: &mut ConnCore, ctx: &mut LoopCtx, key: ConnKey) {
    let io = &mut core.io;
    io.mark_dirty(ctx, key);
    if let Some(stash) = io.take_stash() {
        ctx.pool.give(stash);
    }
    io.settle_held(&mut ctx.pool);
    core.phase = Phase::Refused { write_shut: false, deadline: ctx.linger_deadline() };
    core.arm_timer(ctx, key);
}
