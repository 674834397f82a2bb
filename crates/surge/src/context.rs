//! [`LoopCtx`]: the loop's state that the per-connection code borrows: the pools, the timer
//! wheel, this turn's clock, the lists of connections to flush and to read again, the
//! shutdown in progress. It names no connection type: everything here is below `conn`.

use std::sync::Arc;
use std::time::Instant;

use crate::buffer_pool::BufferPool;
use crate::config::Config;
use crate::handle::{ConnectionId, ServerHandle, ShutdownReport};
use crate::key::ConnKey;
use crate::outbox::Outboxes;
use crate::timer::{TimerEntry, TimerWheel};

/// Timeouts of this loop in ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticks {
    pub(crate) handshake: u64,
    pub(crate) close: u64,
    /// Silence before the idle ping, and before the idle close; `None` when disabled.
    pub(crate) idle: Option<(u64, u64)>,
}

/// A graceful shutdown in progress.
#[derive(Debug)]
pub(crate) struct Shutdown {
    pub(crate) deadline: Instant,
    pub(crate) deadline_tick: u64,
    pub(crate) report: ShutdownReport,
}

/// The loop's state that connections and handlers reach through [`Conn`](crate::Conn).
#[derive(Debug)]
pub(crate) struct LoopCtx {
    pub(crate) index: u16,
    pub(crate) config: Arc<Config>,
    pub(crate) handle: ServerHandle,
    pub(crate) pool: BufferPool,
    pub(crate) outboxes: Outboxes,
    pub(crate) wheel: TimerWheel,
    /// Connections with output to flush at the end of this turn.
    pub(crate) dirty: Vec<ConnKey>,
    /// Connections to read again next turn (fairness, or resumed after backpressure).
    pub(crate) again: Vec<ConnKey>,
    /// Capacity of the assembly buffers connections of this loop hold.
    pub(crate) assembly_bytes: usize,
    /// This loop's share of the assembly budget.
    pub(crate) assembly_budget: usize,
    /// The clock, read once per turn.
    pub(crate) now: Instant,
    pub(crate) tick: u64,
    pub(crate) ticks: Ticks,
    pub(crate) shutdown: Option<Shutdown>,
    /// Where handshake answers are encoded before being written at once.
    pub(crate) reply: Vec<u8>,
}

impl LoopCtx {
    /// The tick by which a connection starting its close handshake now must be gone.
    pub(crate) fn close_deadline(&self) -> u64 {
        let at = self.tick + self.ticks.close;
        match &self.shutdown {
            Some(shutdown) => at.min(shutdown.deadline_tick),
            None => at,
        }
    }

    /// Makes sure the connection `key`, whose live timer entry is due at `timer_at` (0: none),
    /// has one due no later than `at`.
    pub(crate) fn arm(&mut self, timer_at: &mut u64, key: ConnKey, at: u64) {
        if *timer_at == 0 || at < *timer_at {
            *timer_at = self.wheel.insert(TimerEntry { at, key });
        }
    }

    /// The id by which other threads name connection `key`.
    pub(crate) fn id(&self, key: ConnKey) -> ConnectionId {
        ConnectionId { loop_index: self.index, key }
    }
}
