//! The node's broker: two threads between the loops and Redis, so that no loop ever waits
//! for Redis.
//!
//! - The publishing thread takes publishes from the bounded queue (`cluster::Outgoing`),
//!   sends each batch as one pipeline of `PUBLISH` (or `SPUBLISH`) commands, one per topic,
//!   and counts the batch delivered or, when Redis does not answer in time, not delivered.
//!   When idle it publishes a heartbeat on the node's control channel.
//! - The subscribing thread holds the subscribed connection: it subscribes to a topic's
//!   channel while some loop of the node has subscribers to it, hands each publish from
//!   another node to the loops that have subscribers, and drops the node's own. It waits on
//!   Redis; the control channel wakes it (the heartbeat, or a change of subscriptions), and
//!   a silence of several heartbeats means Redis is gone.
//!
//! Either thread, on a failure, marks the broker down, reconnects with exponential backoff
//! and (the subscriber) subscribes to everything again. While the publishing thread is down
//! it counts what the queue holds as not delivered rather than sending it late.
//!
//! An endpoint that is a Redis Cluster node (`CLUSTER SLOTS` answers) with sharded pub/sub
//! in use is served per shard primary instead ([`shards`]).

mod shards;

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use redis::{ConnectionAddr, Value};

use crate::cluster::{self, BrokerCounters, InterestChange, Outgoing};
use crate::config::{Cluster, Sharding};
use crate::handle::{Command, Shared};
use crate::outbox::SharedFrame;
use crate::slots::SlotMap;
use crate::topics::{Interest, TopicList};

/// How often an idle publisher proves Redis alive to its own subscriber.
const HEARTBEAT: Duration = Duration::from_millis(200);
/// Silence on the subscribed connection after which Redis counts as gone.
const SILENCE: Duration = Duration::from_millis(1000);
/// Longest wait for a pipeline's answers, or for a connection.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);
/// Reconnection backoff: first wait, and the longest.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Commands a loop may have queued before a publish from another node is dropped for it
/// (counted in `BrokerStats::overflowed`): a stalled loop must not grow its queue without
/// bound.
const LOOP_BACKLOG: usize = 65_536;
/// Publishes sent in one pipeline at most.
const BATCH: usize = 256;
/// Channel names: the topic's, and the node's control channel.
const TOPIC_PREFIX: &str = "surge:t:";
const CONTROL_PREFIX: &str = "surge:ctl:";

/// The broker's threads.
#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) threads: Vec<JoinHandle<()>>,
}

/// What both threads know.
#[derive(Clone)]
struct Node {
    id: u64,
    client: redis::Client,
    sharding: Sharding,
    counters: Arc<BrokerCounters>,
    shared: Weak<Shared>,
}

impl Node {
    fn control_channel(&self) -> String {
        format!("{CONTROL_PREFIX}{:016x}", self.id)
    }

    /// The server is gone or shutting down.
    fn stopping(&self) -> bool {
        self.shared.upgrade().is_none_or(|s| s.shutting_down.load(Ordering::Acquire))
    }

    /// A connection to `client` with the answer timeout set.
    fn open(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
        let con = client.get_connection_with_timeout(ANSWER_TIMEOUT)?;
        con.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        con.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(con)
    }

    /// A connection to the configured endpoint, whether it uses sharded pub/sub, and the
    /// endpoint's slot map when it is a Redis Cluster node and sharded pub/sub is in use.
    fn connect(&self) -> redis::RedisResult<(redis::Connection, bool, Option<SlotMap>)> {
        let mut con = Self::open(&self.client)?;
        let sharded = match self.sharding {
            Sharding::Off => false,
            Sharding::On => true,
            Sharding::Auto => {
                // `COMMAND INFO` answers nil for a command the server does not have.
                let info: Value =
                    redis::cmd("COMMAND").arg("INFO").arg("SPUBLISH").query(&mut con)?;
                matches!(info, Value::Array(items) if items.first().is_some_and(|i| *i != Value::Nil))
            }
        };
        self.counters.sharded.store(sharded, Ordering::Relaxed);
        let map = match self.endpoint() {
            Some(at) if sharded => read_map(&mut con, at),
            _ => None,
        };
        if map.as_ref().is_some_and(SlotMap::is_empty) {
            // A cluster node that serves no slots yet (the cluster is being formed): not
            // a classic Redis either; try again later.
            return Err(redis::RedisError::from((
                redis::ErrorKind::ClusterDown,
                "the cluster serves no slots yet",
            )));
        }
        Ok((con, sharded, map))
    }

    /// The configured endpoint's address (its first, if the name resolves to several).
    fn endpoint(&self) -> Option<SocketAddr> {
        match &self.client.get_connection_info().addr {
            ConnectionAddr::Tcp(host, port) => {
                (host.as_str(), *port).to_socket_addrs().ok()?.next()
            }
            _ => None,
        }
    }

    /// A client for the cluster node at `addr`, with the configured endpoint's settings
    /// (user, password, database).
    fn client_for(&self, addr: SocketAddr) -> redis::RedisResult<redis::Client> {
        let mut info = self.client.get_connection_info().clone();
        info.addr = ConnectionAddr::Tcp(addr.ip().to_string(), addr.port());
        redis::Client::open(info)
    }

    /// Waits out one backoff step (in short naps, to notice a shutdown), doubling it.
    fn back_off(&self, backoff: &mut Duration, mut meanwhile: impl FnMut()) {
        let until = Instant::now() + *backoff;
        while Instant::now() < until && !self.stopping() {
            meanwhile();
            std::thread::sleep(Duration::from_millis(10));
        }
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
    }
}

/// The slot map `con` reports (empty where no slot is served yet), or `None` where it is not
/// a Redis Cluster node (`CLUSTER SLOTS` refused) or the answer is not understood.
fn read_map(con: &mut redis::Connection, at: SocketAddr) -> Option<SlotMap> {
    let answer: Value = redis::cmd("CLUSTER").arg("SLOTS").query(con).ok()?;
    match SlotMap::from_cluster_slots(&answer, at) {
        Ok(map) => Some(map),
        Err(error) => {
            tracing::warn!(%error, "broker: slot map refused");
            None
        }
    }
}

/// A number for this node, different from every other node's with near certainty.
pub(crate) fn node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    hasher.write_u128(since.map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Starts the broker of the node whose loops share `shared`, with the receiving ends of
/// the link's queues.
pub(crate) fn start(
    cluster: &Cluster,
    id: u64,
    counters: Arc<BrokerCounters>,
    outgoing: Receiver<Outgoing>,
    interest: Receiver<InterestChange>,
    shared: Weak<Shared>,
) -> std::io::Result<Broker> {
    let client = redis::Client::open(cluster.url())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let node = Node { id, client, sharding: cluster.sharding(), counters, shared };
    let publisher = {
        let node = node.clone();
        std::thread::Builder::new()
            .name("surge-broker-pub".into())
            .spawn(move || publish_loop(&node, &outgoing))?
    };
    let subscriber = std::thread::Builder::new()
        .name("surge-broker-sub".into())
        .spawn(move || subscribe_loop(&node, &interest))?;
    Ok(Broker { threads: vec![publisher, subscriber] })
}

// ---- publishing ----------------------------------------------------------------------

fn publish_loop(node: &Node, outgoing: &Receiver<Outgoing>) {
    let control = node.control_channel();
    let counters = &node.counters;
    let mut backoff = BACKOFF_MIN;
    let mut batch = Vec::with_capacity(BATCH);
    while !node.stopping() {
        let (mut con, sharded) = match node.connect() {
            Ok((_, _, Some(map))) => return shards::publish(node, map, outgoing),
            Ok((con, sharded, None)) => (con, sharded),
            Err(error) => {
                tracing::debug!(%error, "broker: cannot connect to publish");
                counters.publisher_up.store(false, Ordering::Release);
                // Down: what waits would arrive late; count it not delivered.
                node.back_off(&mut backoff, || drop_queued(outgoing, counters));
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        counters.publisher_up.store(true, Ordering::Release);
        let publish = if sharded { "SPUBLISH" } else { "PUBLISH" };
        let mut last_heartbeat = Instant::now();
        loop {
            let Some(wake) = next_batch(outgoing, &mut batch) else { return };
            if node.stopping() {
                return;
            }
            let mut pipe = redis::pipe();
            for (topics, frame) in &batch {
                for (via, topic) in topics.iter().enumerate() {
                    let payload = cluster::encode(node.id, topics, via, frame);
                    pipe.cmd(publish).arg(format!("{TOPIC_PREFIX}{topic}")).arg(payload);
                }
            }
            // The heartbeat goes out even under load: the subscriber may hear nothing else.
            if wake || last_heartbeat.elapsed() >= HEARTBEAT {
                pipe.cmd("PUBLISH").arg(&control).arg("wake");
                last_heartbeat = Instant::now();
            }
            match pipe.query::<Vec<Value>>(&mut con) {
                Ok(_) => {
                    counters.published.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::warn!(%error, lost = batch.len(), "broker: publishing failed; reconnecting");
                    counters.undelivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    counters.publisher_up.store(false, Ordering::Release);
                    counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// Publishes to send next (at most [`BATCH`], waiting up to a heartbeat for the first), and
/// whether a heartbeat is asked for; `None` once the loops are gone.
fn next_batch(
    outgoing: &Receiver<Outgoing>,
    batch: &mut Vec<(TopicList, SharedFrame)>,
) -> Option<bool> {
    batch.clear();
    let mut wake = false;
    match outgoing.recv_timeout(HEARTBEAT) {
        Ok(first) => {
            for item in std::iter::once(first).chain(outgoing.try_iter().take(BATCH - 1)) {
                match item {
                    Outgoing::Publish { topics, frame } => batch.push((topics, frame)),
                    Outgoing::Wake => wake = true,
                }
            }
        }
        Err(RecvTimeoutError::Timeout) => wake = true,
        Err(RecvTimeoutError::Disconnected) => return None,
    }
    Some(wake)
}

/// Counts everything queued as not delivered.
fn drop_queued(outgoing: &Receiver<Outgoing>, counters: &BrokerCounters) {
    let dropped =
        outgoing.try_iter().filter(|item| matches!(item, Outgoing::Publish { .. })).count();
    counters.undelivered.fetch_add(dropped as u64, Ordering::Relaxed);
}

// ---- subscribing ---------------------------------------------------------------------

/// Topics the node has subscribers to, and on which loops.
#[derive(Default)]
struct Wanted {
    loops: HashMap<Arc<str>, Vec<u16>>,
}

impl Wanted {
    /// Applies one change; returns the topic when its channel must be (un)subscribed.
    fn apply(&mut self, change: InterestChange) -> Option<(bool, Arc<str>)> {
        match change.interest {
            Interest::Joined(topic) => {
                let loops = self.loops.entry(Arc::clone(&topic)).or_default();
                let first = loops.is_empty();
                if !loops.contains(&change.loop_index) {
                    loops.push(change.loop_index);
                }
                first.then_some((true, topic))
            }
            Interest::Emptied(topic) => {
                let loops = self.loops.get_mut(&topic)?;
                loops.retain(|&l| l != change.loop_index);
                if loops.is_empty() {
                    self.loops.remove(&topic);
                    return Some((false, topic));
                }
                None
            }
        }
    }
}

fn subscribe_loop(node: &Node, interest: &Receiver<InterestChange>) {
    let counters = &node.counters;
    let control = node.control_channel();
    let mut wanted = Wanted::default();
    let mut backoff = BACKOFF_MIN;
    while !node.stopping() {
        let take_changes = |wanted: &mut Wanted| {
            for change in interest.try_iter() {
                wanted.apply(change);
                counters.interest_queued.fetch_sub(1, Ordering::AcqRel);
            }
        };
        let mut session = match node.connect() {
            Ok((_, _, Some(map))) => return shards::subscribe(node, map, interest),
            Ok((con, sharded, None)) => Session { con, sharded, node },
            Err(error) => {
                tracing::debug!(%error, "broker: cannot connect to subscribe");
                counters.subscriber_up.store(false, Ordering::Release);
                node.back_off(&mut backoff, || take_changes(&mut wanted));
                continue;
            }
        };
        counters.unconfirmed.store(0, Ordering::Release);
        take_changes(&mut wanted);
        let channels: Vec<String> =
            wanted.loops.keys().map(|topic| format!("{TOPIC_PREFIX}{topic}")).collect();
        let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
        let sharded = session.sharded;
        let result = session
            .send(false, true, &[&control])
            .and_then(|()| session.send(sharded, true, &channels))
            .and_then(|()| session.set_silence());
        if let Err(error) = result {
            tracing::debug!(%error, "broker: cannot subscribe");
            counters.subscriber_up.store(false, Ordering::Release);
            node.back_off(&mut backoff, || take_changes(&mut wanted));
            continue;
        }
        backoff = BACKOFF_MIN;
        counters.channels.store(channels.len() as u64, Ordering::Relaxed);
        counters.subscriber_up.store(true, Ordering::Release);
        if let Err(error) = session.serve(&mut wanted, interest) {
            if !node.stopping() {
                tracing::warn!(%error, "broker: subscribed connection lost; reconnecting");
                counters.reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
        counters.subscriber_up.store(false, Ordering::Release);
    }
}

/// One subscribed connection.
struct Session<'n> {
    con: redis::Connection,
    sharded: bool,
    node: &'n Node,
}

impl Session<'_> {
    /// Sends one (un)subscribe command for `channels` (none: nothing), sharded or not; each
    /// channel's confirmation is awaited in [`serve`](Self::serve).
    fn send(
        &mut self,
        sharded: bool,
        subscribe: bool,
        channels: &[&str],
    ) -> redis::RedisResult<()> {
        if channels.is_empty() {
            return Ok(());
        }
        let name = match (sharded, subscribe) {
            (false, true) => "SUBSCRIBE",
            (false, false) => "UNSUBSCRIBE",
            (true, true) => "SSUBSCRIBE",
            (true, false) => "SUNSUBSCRIBE",
        };
        let mut command = redis::cmd(name);
        for channel in channels {
            command.arg(*channel);
        }
        self.node.counters.unconfirmed.fetch_add(channels.len() as u64, Ordering::AcqRel);
        self.con.send_packed_command(&command.get_packed_command())
    }

    fn set_silence(&mut self) -> redis::RedisResult<()> {
        self.con.set_read_timeout(Some(SILENCE))
    }

    /// Reads pushes until the connection fails or Redis answers an error (a refused
    /// subscription would otherwise stay unconfirmed, the node never ready, and nothing
    /// retried): publishes go to the loops, confirmations are counted, and subscription
    /// changes are sent as they come.
    fn serve(
        &mut self,
        wanted: &mut Wanted,
        interest: &Receiver<InterestChange>,
    ) -> redis::RedisResult<()> {
        let counters = Arc::clone(&self.node.counters);
        loop {
            for change in interest.try_iter() {
                counters.interest_queued.fetch_sub(1, Ordering::AcqRel);
                if let Some((subscribe, topic)) = wanted.apply(change) {
                    let channel = format!("{TOPIC_PREFIX}{topic}");
                    self.send(self.sharded, subscribe, &[&channel])?;
                    counters.channels.store(wanted.loops.len() as u64, Ordering::Relaxed);
                }
            }
            if self.node.stopping() {
                return Ok(());
            }
            let Value::Array(items) = self.con.recv_response()?.extract_error()? else { continue };
            let kind = match items.first() {
                Some(Value::BulkString(kind)) => kind.as_slice(),
                _ => continue,
            };
            match kind {
                b"message" | b"smessage" => {
                    if let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                        (items.get(1), items.get(2))
                    {
                        if channel.starts_with(TOPIC_PREFIX.as_bytes()) {
                            deliver(self.node, wanted, payload);
                        }
                    }
                }
                b"subscribe" | b"ssubscribe" | b"unsubscribe" | b"sunsubscribe" => {
                    let _ = counters.unconfirmed.fetch_update(
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        |n| n.checked_sub(1),
                    );
                }
                _ => {}
            }
        }
    }
}

/// A publish from a channel: to the loops with subscribers of the channel's topic, unless it
/// is this node's own.
fn deliver(node: &Node, wanted: &Wanted, payload: &[u8]) {
    let counters = &node.counters;
    let wire = match cluster::decode(payload) {
        Ok(wire) => wire,
        Err(error) => {
            tracing::debug!(%error, "broker: message refused");
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    if wire.node == node.id {
        counters.own.fetch_add(1, Ordering::Relaxed);
        return;
    }
    counters.received.fetch_add(1, Ordering::Relaxed);
    let Some(loops) = wanted.loops.get(wire.topics[wire.via]) else { return };
    let Some(shared) = node.shared.upgrade() else { return };
    let topics = match &wire.topics[..] {
        [one] => TopicList::One(Arc::from(*one)),
        many => TopicList::Many(many.iter().map(|&t| Arc::from(t)).collect()),
    };
    let frame = SharedFrame::encode(wire.msg);
    for &index in loops {
        let Some(remote) = shared.loops.get(usize::from(index)) else { continue };
        if remote.commands.len() >= LOOP_BACKLOG {
            counters.overflowed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let command =
            Command::Remote { topics: topics.clone(), via: wire.via, frame: frame.clone() };
        let _ = remote.submit(command);
    }
}
