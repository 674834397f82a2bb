//! [`LoopCtx`]: the loop's state that the per-connection code borrows: the pools, the timer
//! wheel, this turn's clock, the lists of connections to flush and to read again, the
//! shutdown in progress. It names no connection type: everything here is below `conn`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::buffer_pool::BufferPool;
use crate::config::Config;
use crate::deflate::LoopCodecs;
use crate::handle::{ConnectionId, ServerHandle, ShutdownReport};
use crate::key::ConnKey;
use crate::outbox::Outboxes;
use crate::stats::{LoopStats, Tally};
use crate::timer::{TimerEntry, TimerWheel};

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
    pub(crate) shutdown: Option<Shutdown>,
    /// Where handshake answers are encoded before being written at once.
    pub(crate) reply: Vec<u8>,
    /// This loop's counts (only this loop writes them).
    pub(crate) stats: Arc<LoopStats>,
    /// This turn's per-message counts, published to `stats` at its end.
    pub(crate) tally: Tally,
    /// permessage-deflate's shared codecs and counters, made at the first agreement.
    pub(crate) deflate: Option<LoopCodecs>,
}

impl LoopCtx {
    /// The tick by which a connection whose stream is only being finished (a refusal, a
    /// closed WebSocket's last frames) must be gone.
    pub(crate) fn linger_deadline(&self) -> u64 {
        let at = self.tick_after(self.config.close_timeout());
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

    /// The wheel tick an instant of the protocol's maps to (rounded up).
    pub(crate) fn tick_at(&self, at: Instant) -> u64 {
        self.wheel.tick_at_or_after(at)
    }

    /// The wheel tick of `timeout` from this turn's `now`, rounded up: the engine's own
    /// timeouts (those before there is a WebSocket, and lingering) never fire early. The
    /// WebSocket's (idle ping, idle close, close handshake) are the protocol's; see
    /// `ConnCore::arm_timer`.
    pub(crate) fn tick_after(&self, timeout: Duration) -> u64 {
        self.tick_at(self.now + timeout)
    }

    /// The loop's shared deflate codecs (made on first use, with the configured threshold).
    pub(crate) fn deflate_codecs(&mut self, threshold: usize) -> &LoopCodecs {
        self.deflate.get_or_insert_with(|| {
            std::rc::Rc::new(std::cell::RefCell::new(surge_proto::deflate::SharedCodecs::new(
                threshold,
            )))
        })
    }

    /// The id by which other threads name connection `key`.
    pub(crate) fn id(&self, key: ConnKey) -> ConnectionId {
        ConnectionId { loop_index: self.index, key }
    }
}
