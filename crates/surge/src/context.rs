//! [`LoopCtx`]: the loop's state that the per-connection code borrows: the pools, the timer
//! wheel, this turn's clock, the lists of connections to flush and to read again, the
//! shutdown in progress. It names no connection type: everything here is below `conn`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::buffer_pool::BufferPool;
use crate::config::Config;
use crate::deflate::LoopCodecs;
use crate::handle::{Command, ConnectionId, ServerHandle, ShutdownReport};
use crate::key::ConnKey;
use crate::outbox::{FramePool, Outboxes, SharedFrame};
use crate::stats::{LoopStats, Tally};
use crate::timer::{TimerEntry, TimerWheel};
use crate::topics::{Interest, Pending, TopicList, TopicTable};

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
    /// Connections whose reading is paused past their rate limit, checked each turn.
    pub(crate) throttled: Vec<ConnKey>,
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
    /// Who of this loop's connections is subscribed to what.
    pub(crate) topics: TopicTable,
    /// Frames of this loop's publishes, reused.
    pub(crate) frames: FramePool,
    /// Publishes made during a handler call, for the loop's other subscribers after it.
    pub(crate) publishes: Vec<Pending>,
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

    /// Subscribes connection `key` to `topic`; returns whether it was not yet.
    pub(crate) fn subscribe(&mut self, key: ConnKey, topic: &str) -> bool {
        let (new, interest) = self.topics.subscribe(key, topic);
        self.topics_changed(interest);
        new
    }

    /// Unsubscribes connection `key` from `topic`; returns whether it was subscribed.
    pub(crate) fn unsubscribe(&mut self, key: ConnKey, topic: &str) -> bool {
        let (was, interest) = self.topics.unsubscribe(key, topic);
        self.topics_changed(interest);
        was
    }

    /// Takes connection `key` (closing) out of every topic.
    pub(crate) fn leave_topics(&mut self, key: ConnKey) {
        let broker = self.handle.shared.broker.as_ref();
        let index = self.index;
        self.topics.leave_all(key, |interest| {
            if let Some(broker) = broker {
                broker.interest(index, interest);
            }
        });
        self.topics_changed(None);
    }

    /// Tells the broker of a topic this loop now has (or no longer has) subscribers to, and
    /// the counters of the table's new size.
    fn topics_changed(&mut self, interest: Option<Interest>) {
        let shared = &self.handle.shared;
        if let (Some(broker), Some(interest)) = (&shared.broker, interest) {
            broker.interest(self.index, interest);
        }
        shared.topic_counters[usize::from(self.index)].sizes(&self.topics);
    }

    /// Sends a publish made on this loop to the other loops, and to the other nodes.
    pub(crate) fn fan_out(&self, topics: &TopicList, frame: &SharedFrame) {
        let shared = &self.handle.shared;
        for (index, remote) in shared.loops.iter().enumerate() {
            if index != usize::from(self.index) {
                let command = Command::Publish { topics: topics.clone(), frame: frame.clone() };
                // A loop that is gone has no subscribers left.
                let _ = remote.submit(command);
            }
        }
        if let Some(broker) = &shared.broker {
            broker.publish(topics, frame);
        }
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
