//! Where panics stop: at the connection they happened on, never the loop.
//!
//! Two rings. Every handler call goes through [`guarded`]: a panic in `on_open`,
//! `on_message`, `on_drain` or `on_refused` closes that connection with 1011, one in
//! `on_upgrade` answers 500, one in `on_close` is logged. Around those, the engine's own work
//! on one connection (its reads, its flushes, its timers) goes through [`contained`]: a panic
//! there is a bug in the engine, the connection's state can no longer be trusted, so the
//! caller drops that connection without a close handshake, and the loop and every other
//! connection on it go on. Both are counted (`surge_panics_total`). Until something panics,
//! a catch costs a landing pad and the closure's few words passed through the stack: within
//! the noise of the echo benchmarks, with and without it.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::handle::ConnectionId;

/// Runs a handler call, catching a panic. Returns `None` (and logs) when the call panicked;
/// the caller decides what that costs the connection.
pub(crate) fn guarded<R>(
    id: ConnectionId,
    callback: &'static str,
    f: impl FnOnce() -> R,
) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|panic| tracing::error!(%id, callback, panic = text(&*panic), "handler panicked"))
        .ok()
}

/// Runs the engine's work on one connection, catching a panic. Returns `None` (and logs)
/// when it panicked; the caller then drops that connection.
pub(crate) fn contained<R>(id: ConnectionId, f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|panic| {
            tracing::error!(%id, panic = text(&*panic), "engine panicked; connection dropped");
        })
        .ok()
}

/// A panic's message, when it has one.
fn text(panic: &(dyn Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.as_str()
    } else {
        "(not a string)"
    }
}
