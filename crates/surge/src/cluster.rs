//! The loops' side of a node's link to the other nodes: the bounded queue of publishes for
//! the broker, the topics the node has subscribers to, the broker's counters, and the
//! message format on the broker's channels. The broker's threads (`broker`) are on the
//! other end.
//!
//! A loop never waits for the broker: a publish is offered to the queue and, when the queue
//! is full (the broker slow or down), counted as not delivered to the other nodes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};
use surge_proto::message::Message;

use crate::outbox::SharedFrame;
use crate::topics::{Interest, TopicList};

/// What the broker's publishing thread is given.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A publish for the other nodes.
    Publish { topics: TopicList, frame: SharedFrame },
    /// Subscriptions changed: wake the subscribing thread (it waits on Redis).
    Wake,
}

/// A topic a loop now has (or no longer has) subscribers to.
#[derive(Debug)]
pub(crate) struct InterestChange {
    pub(crate) loop_index: u16,
    pub(crate) interest: Interest,
}

/// The broker's state and counters, shared by the loops and the broker's threads.
#[derive(Debug, Default)]
pub(crate) struct BrokerCounters {
    pub(crate) publisher_up: AtomicBool,
    pub(crate) subscriber_up: AtomicBool,
    pub(crate) sharded: AtomicBool,
    pub(crate) published: AtomicU64,
    pub(crate) undelivered: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) own: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) overflowed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    /// Interest changes sent by loops and not yet taken by the subscribing thread.
    pub(crate) interest_queued: AtomicU64,
    /// (Un)subscriptions sent to Redis and not yet confirmed.
    pub(crate) unconfirmed: AtomicU64,
    pub(crate) channels: AtomicU64,
}

/// A node's broker, as seen from its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Both connections to Redis (publishing and subscribed) are up; over a Redis Cluster,
    /// both connections to every shard primary.
    pub up: bool,
    /// Sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`) is in use.
    pub sharded: bool,
    /// Publishes Redis took for the other nodes.
    pub published: u64,
    /// Publishes not delivered to the other nodes: the queue was full, Redis was down, or it
    /// did not answer in time (such a publish may still have reached some nodes, if Redis
    /// comes back: delivery across nodes is at most once).
    pub undelivered: u64,
    /// Publishes from other nodes received.
    pub received: u64,
    /// This node's own publishes that came back from Redis (dropped: they were delivered
    /// locally already).
    pub own: u64,
    /// Messages on the broker's channels that were not Surge publishes (dropped).
    pub rejected: u64,
    /// Publishes from other nodes dropped for a loop whose command queue was full (a loop
    /// stalled by a slow handler).
    pub overflowed: u64,
    /// Reconnections to Redis after a failure.
    pub reconnects: u64,
    /// Publishes waiting in the queue for Redis (the broker's lag).
    pub queued: u64,
    /// Subscription changes not yet confirmed by Redis.
    pub pending_subscriptions: u64,
    /// Channels subscribed (topics with subscribers on this node).
    pub channels: u64,
}

/// What the loops hold of the broker.
#[derive(Debug)]
pub(crate) struct BrokerLink {
    pub(crate) outgoing: Sender<Outgoing>,
    pub(crate) interest: Sender<InterestChange>,
    pub(crate) counters: Arc<BrokerCounters>,
}

impl BrokerLink {
    /// Offers a publish to the broker; counts it not delivered when the queue is full.
    pub(crate) fn publish(&self, topics: &TopicList, frame: &SharedFrame) {
        let publish = Outgoing::Publish { topics: topics.clone(), frame: frame.clone() };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.outgoing.try_send(publish)
        {
            self.counters.undelivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Tells the broker that loop `loop_index` now has, or no longer has, subscribers.
    pub(crate) fn interest(&self, loop_index: u16, interest: Interest) {
        self.counters.interest_queued.fetch_add(1, Ordering::AcqRel);
        if self.interest.send(InterestChange { loop_index, interest }).is_err() {
            self.counters.interest_queued.fetch_sub(1, Ordering::AcqRel);
        }
        // A full queue is busy publishing, which wakes the subscriber anyway.
        let _ = self.outgoing.try_send(Outgoing::Wake);
    }

    /// Connected, with every subscription in place.
    pub(crate) fn ready(&self) -> bool {
        let c = &self.counters;
        // The queue first: a broker that takes a change marks itself not subscribed before
        // it takes it off the count, so a zero here is followed by a fresh `subscriber_up`.
        c.interest_queued.load(Ordering::Acquire) == 0
            && c.publisher_up.load(Ordering::Acquire)
            && c.subscriber_up.load(Ordering::Acquire)
            && c.unconfirmed.load(Ordering::Acquire) == 0
    }

    pub(crate) fn stats(&self) -> BrokerStats {
        let c = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        BrokerStats {
            up: c.publisher_up.load(Ordering::Relaxed) && c.subscriber_up.load(Ordering::Relaxed),
            sharded: c.sharded.load(Ordering::Relaxed),
            published: load(&c.published),
            undelivered: load(&c.undelivered),
            received: load(&c.received),
            own: load(&c.own),
            rejected: load(&c.rejected),
            overflowed: load(&c.overflowed),
            reconnects: load(&c.reconnects),
            queued: self.outgoing.len() as u64,
            pending_subscriptions: load(&c.interest_queued) + load(&c.unconfirmed),
            channels: load(&c.channels),
        }
    }
}

/// The first bytes of every Surge message on a broker channel, and the format's version.
const MAGIC: [u8; 2] = [b'S', 1];

/// A publish as carried on one topic's channel: the publishing node, every topic of the
/// publish and which of them this channel is (so that a node reaches a subscriber of
/// several once), and the message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Wire<'a> {
    pub(crate) node: u64,
    pub(crate) topics: Vec<&'a str>,
    pub(crate) via: usize,
    pub(crate) msg: Message<'a>,
}

/// Why a message on a broker channel was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("not a Surge publish (magic or version)")]
    Foreign,
    #[error("truncated")]
    Truncated,
    #[error("topic index out of range")]
    BadVia,
    #[error("text that is not UTF-8")]
    NotUtf8,
}

/// `MAGIC, node (u64 LE), opcode (1 text, 2 binary), topic count (u16 LE), via (u16 LE),
/// each topic as length (u16 LE) and bytes, then the payload`.
pub(crate) fn encode(node: u64, topics: &TopicList, via: usize, frame: &SharedFrame) -> Vec<u8> {
    let msg = frame.message();
    let names: usize = topics.iter().map(|t| 2 + t.len()).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + 13 + names + msg.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&node.to_le_bytes());
    out.push(if matches!(msg, Message::Text(_)) { 1 } else { 2 });
    let count = topics.iter().count();
    out.extend_from_slice(&(count as u16).to_le_bytes());
    out.extend_from_slice(&(via as u16).to_le_bytes());
    for topic in topics.iter() {
        let name = &topic.as_bytes()[..topic.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
    }
    out.extend_from_slice(msg.as_bytes());
    out
}

/// Reads what [`encode`] wrote; anything else is refused, never trusted.
pub(crate) fn decode(bytes: &[u8]) -> Result<Wire<'_>, WireError> {
    let rest = bytes.strip_prefix(&MAGIC[..]).ok_or(WireError::Foreign)?;
    let (node, rest) = take(rest, 8)?;
    let node = u64::from_le_bytes(node.try_into().map_err(|_| WireError::Truncated)?);
    let (&[opcode], rest) = take(rest, 1)? else { return Err(WireError::Truncated) };
    let (count, rest) = take_u16(rest)?;
    let (via, mut rest) = take_u16(rest)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, after) = take_u16(rest)?;
        let (name, after) = take(after, len)?;
        topics.push(std::str::from_utf8(name).map_err(|_| WireError::NotUtf8)?);
        rest = after;
    }
    if via >= topics.len() {
        return Err(WireError::BadVia);
    }
    let msg = match opcode {
        1 => Message::Text(std::str::from_utf8(rest).map_err(|_| WireError::NotUtf8)?),
        2 => Message::Binary(rest),
        _ => return Err(WireError::Foreign),
    };
    Ok(Wire { node, topics, via, msg })
}

fn take(bytes: &[u8], n: usize) -> Result<(&[u8], &[u8]), WireError> {
    if bytes.len() < n {
        return Err(WireError::Truncated);
    }
    Ok(bytes.split_at(n))
}

fn take_u16(bytes: &[u8]) -> Result<(usize, &[u8]), WireError> {
    let (n, rest) = take(bytes, 2)?;
    Ok((usize::from(u16::from_le_bytes([n[0], n[1]])), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_round_trip_and_anything_else_is_refused() {
        let topics = TopicList::Many(vec![Arc::from("a"), Arc::from("bé")].into());
        for msg in [Message::Text("héllo"), Message::Binary(&[0, 255]), Message::Text("")] {
            let bytes = encode(7, &topics, 1, &SharedFrame::encode(msg));
            let wire = decode(&bytes).unwrap();
            assert_eq!(wire, Wire { node: 7, topics: vec!["a", "bé"], via: 1, msg });
            for cut in 0..bytes.len() - msg.len() {
                assert!(decode(&bytes[..cut]).is_err(), "a message cut at {cut} was taken");
            }
        }
        assert_eq!(decode(b"hello"), Err(WireError::Foreign));
        let mut bad =
            encode(1, &TopicList::One("t".into()), 0, &SharedFrame::encode(Message::Text("x")));
        *bad.last_mut().unwrap() = 0xFF;
        assert_eq!(decode(&bad), Err(WireError::NotUtf8));
    }
}
