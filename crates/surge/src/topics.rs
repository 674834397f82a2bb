//! Topics of one loop: which of its connections are subscribed to what, which of them one
//! publish reaches (each once, however many of its topics it is in), what a subscriber over
//! its backpressure limit missed, and the loop's publish counters.
//!
//! Every loop keeps its own table and no other thread touches it: a subscription is a
//! change to the subscriber's own loop, and a publish reaches another loop's subscribers as
//! a command to that loop (or, across nodes, through the broker).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::key::ConnKey;
use crate::outbox::SharedFrame;

/// Who of a topic's subscribers a publish from a connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Audience {
    /// Every subscriber, the publishing connection too when it is one.
    #[default]
    Everyone,
    /// Every subscriber but the publishing connection.
    Others,
}

/// The topics one publish goes to, cheap to clone (to other loops and the broker).
#[derive(Debug, Clone)]
pub(crate) enum TopicList {
    One(Arc<str>),
    Many(Arc<[Arc<str>]>),
}

impl TopicList {
    /// The topics, in the order given.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        let (one, many) = match self {
            TopicList::One(name) => (Some(name), &[][..]),
            TopicList::Many(names) => (None, &names[..]),
        };
        one.into_iter().chain(many)
    }

    /// Whether these are `topics`, in that order.
    fn names(&self, topics: &[&str]) -> bool {
        self.iter().map(|name| &**name).eq(topics.iter().copied())
    }
}

/// Topic lists a loop keeps for its publishes, at most: past it they are all dropped (a
/// publisher naming ever new sets of topics costs an allocation each, as without them).
const LISTS_KEPT: usize = 1024;

/// A publish made during a handler call, for the loop's other subscribers once the call is
/// over (their records are not reachable while one connection's is lent to its handler).
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) topics: TopicList,
    pub(crate) frame: SharedFrame,
    /// The publishing connection: it was served at once, or is not in the audience.
    pub(crate) publisher: ConnKey,
    /// What serving the publisher did.
    pub(crate) served: Outcome,
}

#[derive(Debug)]
struct Topic {
    name: Arc<str>,
    members: Vec<ConnKey>,
}

/// One connection slot's part in the table.
#[derive(Debug, Default)]
struct Member {
    /// `(topic index, position in its member list)` for each topic subscribed to.
    of: Vec<(u32, u32)>,
    /// Publishes skipped at the backpressure limit and not yet reported.
    missed: u64,
    /// The last publish that reached this slot (for reaching it once).
    seen: u64,
}

/// A topic's local subscriber count went from 0 to 1 (`Joined`) or back (`Emptied`): the
/// broker subscribes to its channel only in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Interest {
    Joined(Arc<str>),
    Emptied(Arc<str>),
}

/// The subscriptions of one loop's connections.
#[derive(Debug, Default)]
pub(crate) struct TopicTable {
    ids: HashMap<Arc<str>, u32>,
    topics: Vec<Option<Topic>>,
    free: Vec<u32>,
    /// By connection slot.
    members: Vec<Member>,
    subscriptions: usize,
    /// Numbers the publishes, for reaching each subscriber once.
    publish_seq: u64,
    /// The lists of recent publishes to several topics, or to one without subscribers
    /// here, by a hash of their names: publishing to them again allocates nothing.
    lists: HashMap<u64, TopicList>,
    hashes: RandomState,
}

impl TopicTable {
    /// Subscribes connection `key` to `name`. Returns whether it was not subscribed yet, and
    /// the topic's interest change when it is the loop's first subscriber.
    pub(crate) fn subscribe(&mut self, key: ConnKey, name: &str) -> (bool, Option<Interest>) {
        let (id, interest) = match self.ids.get(name) {
            Some(&id) => (id, None),
            None => {
                let name: Arc<str> = Arc::from(name);
                let topic = Some(Topic { name: Arc::clone(&name), members: Vec::new() });
                let id = match self.free.pop() {
                    Some(id) => {
                        self.topics[id as usize] = topic;
                        id
                    }
                    None => {
                        self.topics.push(topic);
                        (self.topics.len() - 1) as u32
                    }
                };
                self.ids.insert(Arc::clone(&name), id);
                (id, Some(Interest::Joined(name)))
            }
        };
        let slot = key.slot as usize;
        if self.members.len() <= slot {
            self.members.resize_with(slot + 1, Member::default);
        }
        if self.members[slot].of.iter().any(|&(topic, _)| topic == id) {
            return (false, None);
        }
        let Some(topic) = self.topics[id as usize].as_mut() else { return (false, None) };
        self.members[slot].of.push((id, topic.members.len() as u32));
        topic.members.push(key);
        self.subscriptions += 1;
        (true, interest)
    }

    /// Unsubscribes connection `key` from `name`. Returns whether it was subscribed, and the
    /// topic's interest change when it was the loop's last subscriber.
    pub(crate) fn unsubscribe(&mut self, key: ConnKey, name: &str) -> (bool, Option<Interest>) {
        let Some(&id) = self.ids.get(name) else { return (false, None) };
        let Some(member) = self.members.get_mut(key.slot as usize) else { return (false, None) };
        let Some(at) = member.of.iter().position(|&(topic, _)| topic == id) else {
            return (false, None);
        };
        let (_, position) = member.of.swap_remove(at);
        (true, self.remove_member(id, position))
    }

    /// Takes connection `key` out of every topic (it is closing); `on_interest` hears of each
    /// topic it was the loop's last subscriber of.
    pub(crate) fn leave_all(&mut self, key: ConnKey, mut on_interest: impl FnMut(Interest)) {
        let Some(member) = self.members.get_mut(key.slot as usize) else { return };
        member.missed = 0;
        let mut of = std::mem::take(&mut member.of);
        for &(id, position) in &of {
            if let Some(interest) = self.remove_member(id, position) {
                on_interest(interest);
            }
        }
        of.clear();
        // Keep the list's capacity for the slot's next tenant.
        if let Some(member) = self.members.get_mut(key.slot as usize) {
            member.of = of;
        }
    }

    /// Drops the member at `position` of topic `id`, moving the last member into its place.
    fn remove_member(&mut self, id: u32, position: u32) -> Option<Interest> {
        let topic = self.topics[id as usize].as_mut()?;
        topic.members.swap_remove(position as usize);
        self.subscriptions -= 1;
        if let Some(&moved) = topic.members.get(position as usize) {
            let of = &mut self.members[moved.slot as usize].of;
            if let Some(entry) = of.iter_mut().find(|(topic, _)| *topic == id) {
                entry.1 = position;
            }
        }
        if !topic.members.is_empty() {
            return None;
        }
        let topic = self.topics[id as usize].take()?;
        self.ids.remove(&topic.name);
        self.free.push(id);
        Some(Interest::Emptied(topic.name))
    }

    /// The table's own name of topic `name`, if the loop has subscribers to it.
    pub(crate) fn name(&self, name: &str) -> Option<&Arc<str>> {
        let (name, _) = self.ids.get_key_value(name)?;
        Some(name)
    }

    /// Names `topics` for a publish: the table's own name of one topic with subscribers
    /// here, else a list it keeps from an earlier publish to the same topics, else a new
    /// one (kept for the next).
    pub(crate) fn list(&mut self, topics: &[&str]) -> TopicList {
        if let [one] = topics {
            if let Some(name) = self.name(one) {
                return TopicList::One(Arc::clone(name));
            }
        }
        let hash = self.hashes.hash_one(topics);
        if let Some(list) = self.lists.get(&hash).filter(|list| list.names(topics)) {
            return list.clone();
        }
        let named = |topic: &str| self.name(topic).cloned().unwrap_or_else(|| Arc::from(topic));
        let list = match topics {
            [one] => TopicList::One(named(one)),
            many => TopicList::Many(many.iter().map(|topic| named(topic)).collect()),
        };
        if self.lists.len() >= LISTS_KEPT {
            self.lists.clear();
        }
        self.lists.insert(hash, list.clone());
        list
    }

    /// Whether connection `key` is subscribed to one of `topics`.
    pub(crate) fn is_subscribed(&self, key: ConnKey, topics: &TopicList) -> bool {
        let Some(member) = self.members.get(key.slot as usize) else { return false };
        topics.iter().any(|name| {
            self.ids.get(&**name).is_some_and(|id| member.of.iter().any(|(t, _)| t == id))
        })
    }

    /// Appends to `out` every subscriber of `topics`, each once, leaving `except` out.
    /// With `via`, only the subscribers of `topics[via]` who are in none of the topics
    /// before it (a copy that came on one topic's channel of a publish to several).
    pub(crate) fn reach(
        &mut self,
        topics: &TopicList,
        except: Option<ConnKey>,
        via: Option<usize>,
        out: &mut Vec<ConnKey>,
    ) {
        self.publish_seq += 1;
        let seq = self.publish_seq;
        if let Some(except) = except {
            if let Some(member) = self.members.get_mut(except.slot as usize) {
                member.seen = seq;
            }
        }
        let end = via.map_or(usize::MAX, |via| via + 1);
        for (index, name) in topics.iter().enumerate().take(end) {
            let Some(&id) = self.ids.get(&**name) else { continue };
            let Some(topic) = &self.topics[id as usize] else { continue };
            let earlier = via.is_some_and(|via| index < via);
            for &key in &topic.members {
                let member = &mut self.members[key.slot as usize];
                if member.seen != seq {
                    member.seen = seq;
                    if !earlier {
                        out.push(key);
                    }
                }
            }
        }
    }

    /// Connection `key` missed a publish at its backpressure limit.
    pub(crate) fn missed(&mut self, key: ConnKey) {
        if let Some(member) = self.members.get_mut(key.slot as usize) {
            member.missed += 1;
        }
    }

    /// What connection `key` missed since the last time this was asked.
    pub(crate) fn take_missed(&mut self, key: ConnKey) -> u64 {
        self.members
            .get_mut(key.slot as usize)
            .map_or(0, |member| std::mem::take(&mut member.missed))
    }

    /// Slots the table keeps (for connections and topics), the larger.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.members.len().max(self.topics.len())
    }

    /// Topics with subscribers on this loop.
    pub(crate) fn topics(&self) -> usize {
        self.ids.len()
    }

    /// Subscriptions on this loop, all topics together.
    pub(crate) fn subscriptions(&self) -> usize {
        self.subscriptions
    }
}

/// Publish counters, summed over the loops by
/// [`ServerHandle::topic_stats`](crate::ServerHandle::topic_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// Publishes handled: each loop counts each publish that reached it.
    pub publishes: u64,
    /// Frames queued to subscribers.
    pub deliveries: u64,
    /// Deliveries skipped because the subscriber was over its backpressure limit (under
    /// [`BackpressurePolicy::HandBack`](crate::BackpressurePolicy)); each is reported to
    /// the handler's [`on_missed`](crate::Handler::on_missed).
    pub skipped: u64,
    /// Subscribers closed with 1008 at their backpressure limit (under
    /// [`BackpressurePolicy::Close1008`](crate::BackpressurePolicy)).
    pub closed: u64,
    /// Topics with local subscribers (a topic counts once per loop that has some).
    pub topics: u64,
    /// Subscriptions, all topics and loops together.
    pub subscriptions: u64,
}

impl std::ops::AddAssign for TopicStats {
    fn add_assign(&mut self, other: Self) {
        self.publishes += other.publishes;
        self.deliveries += other.deliveries;
        self.skipped += other.skipped;
        self.closed += other.closed;
        self.topics += other.topics;
        self.subscriptions += other.subscriptions;
    }
}

/// One loop's counters, written by that loop only (a plain load and store, no locked
/// instruction) and read by anyone. Aligned apart so that loops do not share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct LoopTopicCounters {
    publishes: AtomicU64,
    deliveries: AtomicU64,
    skipped: AtomicU64,
    closed: AtomicU64,
    topics: AtomicU64,
    subscriptions: AtomicU64,
}

/// What one publish did on one loop.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Outcome {
    pub(crate) deliveries: u64,
    pub(crate) skipped: u64,
    pub(crate) closed: u64,
}

impl std::ops::AddAssign for Outcome {
    fn add_assign(&mut self, other: Self) {
        self.deliveries += other.deliveries;
        self.skipped += other.skipped;
        self.closed += other.closed;
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    if by > 0 {
        counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
    }
}

impl LoopTopicCounters {
    /// Counts one publish (the loop's thread only).
    pub(crate) fn count(&self, outcome: Outcome) {
        bump(&self.publishes, 1);
        bump(&self.deliveries, outcome.deliveries);
        bump(&self.skipped, outcome.skipped);
        bump(&self.closed, outcome.closed);
    }

    /// Records the table's size (the loop's thread only).
    pub(crate) fn sizes(&self, table: &TopicTable) {
        self.topics.store(table.topics() as u64, Ordering::Relaxed);
        self.subscriptions.store(table.subscriptions() as u64, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> TopicStats {
        TopicStats {
            publishes: self.publishes.load(Ordering::Relaxed),
            deliveries: self.deliveries.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
            topics: self.topics.load(Ordering::Relaxed),
            subscriptions: self.subscriptions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(slot: u32) -> ConnKey {
        ConnKey { slot, generation: 0 }
    }

    fn reached(table: &mut TopicTable, topics: &[&str], except: Option<ConnKey>) -> Vec<u32> {
        let mut out = Vec::new();
        let topics = table.list(topics);
        table.reach(&topics, except, None, &mut out);
        let mut slots: Vec<u32> = out.iter().map(|k| k.slot).collect();
        slots.sort_unstable();
        slots
    }

    #[test]
    fn a_publish_to_the_same_topics_again_reuses_their_list() {
        let mut table = TopicTable::default();
        table.subscribe(key(0), "a");
        let same = |one: &TopicList, two: &TopicList| match (one, two) {
            (TopicList::One(x), TopicList::One(y)) => Arc::ptr_eq(x, y),
            (TopicList::Many(x), TopicList::Many(y)) => Arc::ptr_eq(x, y),
            _ => false,
        };
        for topics in [&["a", "b"][..], &["nobody"], &["b", "a"]] {
            let first = table.list(topics);
            assert!(first.names(topics));
            assert!(same(&first, &table.list(topics)), "{topics:?} allocated again");
        }
        assert!(!same(&table.list(&["a", "b"]), &table.list(&["b", "a"])), "order is kept");
        for n in 0..=LISTS_KEPT {
            table.list(&["x", &n.to_string()]);
        }
        assert!(table.lists.len() <= LISTS_KEPT, "kept lists are bounded");
    }

    #[test]
    fn a_publish_to_several_topics_reaches_each_subscriber_once() {
        let mut table = TopicTable::default();
        assert_eq!(table.subscribe(key(1), "a"), (true, Some(Interest::Joined("a".into()))));
        assert_eq!(table.subscribe(key(1), "b"), (true, Some(Interest::Joined("b".into()))));
        assert_eq!(table.subscribe(key(1), "a"), (false, None));
        assert_eq!(table.subscribe(key(2), "b"), (true, None));
        assert_eq!(reached(&mut table, &["a", "b", "c"], None), [1, 2]);
        assert_eq!(reached(&mut table, &["a", "b"], Some(key(1))), [2]);
        assert_eq!(reached(&mut table, &["c"], None), [] as [u32; 0]);
        assert_eq!(table.subscriptions(), 3);
        // From another node, on b's channel: those in a got it on a's.
        let mut out = Vec::new();
        let topics = table.list(&["a", "b"]);
        table.reach(&topics, None, Some(1), &mut out);
        assert_eq!(out, [key(2)]);
    }

    #[test]
    fn leaving_moves_the_last_member_and_empties_topics() {
        let mut table = TopicTable::default();
        for slot in 0..5 {
            table.subscribe(key(slot), "t");
        }
        assert_eq!(table.unsubscribe(key(1), "t"), (true, None));
        assert_eq!(table.unsubscribe(key(1), "t"), (false, None));
        assert_eq!(reached(&mut table, &["t"], None), [0, 2, 3, 4]);
        let mut emptied = Vec::new();
        for slot in [4, 0, 3, 2] {
            table.leave_all(key(slot), |interest| emptied.push(interest));
        }
        assert_eq!(emptied, [Interest::Emptied("t".into())]);
        assert_eq!((table.topics(), table.subscriptions()), (0, 0));
        assert_eq!(table.subscribe(key(9), "u"), (true, Some(Interest::Joined("u".into()))));
    }

    #[test]
    fn misses_are_counted_until_taken_and_forgotten_on_leaving() {
        let mut table = TopicTable::default();
        table.subscribe(key(3), "t");
        table.missed(key(3));
        table.missed(key(3));
        assert_eq!(table.take_missed(key(3)), 2);
        assert_eq!(table.take_missed(key(3)), 0);
        table.missed(key(3));
        table.leave_all(key(3), |_| {});
        assert_eq!(table.take_missed(key(3)), 0);
    }
}
