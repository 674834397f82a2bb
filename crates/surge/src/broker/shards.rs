//! The broker over a Redis Cluster: sharded pub/sub per shard primary, so that no one Redis
//! carries every publish.
//!
//! A channel's hash slot decides its shard (`slots`). The publishing thread holds one
//! connection per primary and sends each batch as one pipeline of `SPUBLISH` per primary;
//! the subscribing thread keeps the slot map and the wanted topics and runs one thread per
//! primary, each with a subscribed connection (`SSUBSCRIBE`) for the topics whose slots that
//! primary owns.
//!
//! Each shard session has a heartbeat channel of its own whose slot that shard owns, sent
//! with `SPUBLISH` to that shard: silence then proves that this shard (or the node's path to
//! it) is gone, whichever shard it is. The control channel on classic `SUBSCRIBE` would not:
//! a cluster forwards a classic publish over its bus to every node, so a shard that still
//! answers its subscribers would hear heartbeats through the others' bus while its own
//! publishes fail, and one stopped node that takes the heartbeat would silence every shard.
//!
//! A `MOVED` answer, a lost or silent shard connection: the map is read again (from a shard
//! still connected, else the configured endpoint), that shard reconnects with backoff and
//! subscribes again. While any primary of the map is not connected and subscribed the node
//! is not ready; publishes for a disconnected shard are counted not delivered at once,
//! never queued; the other shards go on.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use redis::Value;

use super::{
    deliver, next_batch, read_map, Node, Wanted, BACKOFF_MAX, BACKOFF_MIN, BATCH, CONTROL_PREFIX,
    HEARTBEAT, SILENCE, TOPIC_PREFIX,
};
use crate::cluster::{self, BrokerCounters, InterestChange, Outgoing};
use crate::slots::{slot, SlotMap};

/// How often the subscribing thread looks at its shards when no change comes.
const WATCH: Duration = Duration::from_millis(20);

/// The channel of `topic`.
fn topic_channel(topic: &str) -> String {
    format!("{TOPIC_PREFIX}{topic}")
}

/// The node's heartbeat channel on the shard at `primary`: the first
/// `surge:ctl:<node>:{<n>}` whose slot `primary` owns (the hash tag `{n}` picks the slot).
fn control_channel(node: &Node, map: &SlotMap, primary: SocketAddr) -> Option<String> {
    (0..1u32 << 20).find_map(|n| {
        let channel = format!("{CONTROL_PREFIX}{:016x}:{{{n}}}", node.id);
        (map.owner(slot(channel.as_bytes())) == Some(primary)).then_some(channel)
    })
}

/// A connection to a shard that answers.
fn connect_shard(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let mut con = Node::open(client)?;
    redis::cmd("PING").query::<()>(&mut con)?;
    Ok(con)
}

/// The current map, asked of the `connected` shards, then of those at `reachable`, then of
/// the configured endpoint; `None` when no one answers with one.
fn fresh_map<'c>(
    node: &Node,
    connected: impl Iterator<Item = (SocketAddr, &'c mut redis::Connection)>,
    reachable: &[SocketAddr],
) -> Option<SlotMap> {
    // An empty map is a node that lost its view of the cluster: ask another.
    let served = |map: &SlotMap| !map.is_empty();
    for (at, con) in connected {
        if let Some(map) = read_map(con, at).filter(served) {
            return Some(map);
        }
    }
    let ask = |at: SocketAddr, client: &redis::Client| {
        read_map(&mut Node::open(client).ok()?, at).filter(served)
    };
    let others = reachable.iter().filter_map(|&at| ask(at, &node.client_for(at).ok()?));
    others.chain(std::iter::once_with(|| ask(node.endpoint()?, &node.client)).flatten()).next()
}

// ---- publishing ----------------------------------------------------------------------

/// The publishing connection to one primary.
struct Outlet {
    primary: SocketAddr,
    control: Option<String>,
    con: Option<redis::Connection>,
    /// A connection being made on a thread of its own: a stopped shard takes a whole answer
    /// timeout to fail, and the other shards' publishes and heartbeats must not wait.
    connecting: Option<Receiver<redis::RedisResult<redis::Connection>>>,
    retry_at: Instant,
    backoff: Duration,
}

impl Outlet {
    fn new(node: &Node, map: &SlotMap, primary: SocketAddr) -> Self {
        let control = control_channel(node, map, primary);
        let retry_at = Instant::now();
        Outlet { primary, control, con: None, connecting: None, retry_at, backoff: BACKOFF_MIN }
    }

    /// Takes a finished connection attempt, or starts one if down and its backoff has
    /// passed.
    fn reconnect(&mut self, node: &Node) {
        if self.con.is_some() {
            return;
        }
        if let Some(attempt) = &self.connecting {
            match attempt.try_recv() {
                Err(TryRecvError::Empty) => {}
                Ok(Ok(con)) => {
                    self.connecting = None;
                    self.con = Some(con);
                    self.backoff = BACKOFF_MIN;
                }
                Ok(Err(error)) => {
                    tracing::debug!(%error, shard = %self.primary, "broker: cannot connect to publish");
                    self.connecting = None;
                    self.down();
                }
                Err(TryRecvError::Disconnected) => {
                    self.connecting = None;
                    self.down();
                }
            }
            return;
        }
        if Instant::now() < self.retry_at {
            return;
        }
        let client = match node.client_for(self.primary) {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, shard = %self.primary, "broker: no client for a shard");
                return self.down();
            }
        };
        let (done, attempt) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("surge-broker-connect".into())
            .spawn(move || done.send(connect_shard(&client)));
        match spawned {
            Ok(_) => self.connecting = Some(attempt),
            Err(error) => {
                tracing::warn!(%error, "broker: cannot start a connecting thread");
                self.down();
            }
        }
    }

    /// Drops the connection; the next try waits out one backoff step.
    fn down(&mut self) {
        self.con = None;
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

/// Keeps the outlets of `map`'s primaries, reusing those already there.
fn outlets_for(node: &Node, map: &SlotMap, outlets: &mut Vec<Outlet>) {
    let mut old = std::mem::take(outlets);
    for primary in map.primaries() {
        let outlet = match old.iter().position(|o| o.primary == primary) {
            Some(at) => {
                let mut kept = old.swap_remove(at);
                kept.control = control_channel(node, map, primary);
                kept
            }
            None => Outlet::new(node, map, primary),
        };
        outlets.push(outlet);
    }
}

/// The publishing thread over a cluster whose map is `map`; returns when the node stops.
pub(super) fn publish(node: &Node, mut map: SlotMap, outgoing: &Receiver<Outgoing>) {
    let counters = &node.counters;
    let mut outlets = Vec::new();
    outlets_for(node, &map, &mut outlets);
    let mut stale = false;
    let mut batch = Vec::with_capacity(BATCH);
    let mut failed = Vec::with_capacity(BATCH);
    let mut last_heartbeat = Instant::now();
    while !node.stopping() {
        if stale {
            let connected = outlets.iter_mut().filter_map(|o| Some((o.primary, o.con.as_mut()?)));
            if let Some(fresh) = fresh_map(node, connected, &[]) {
                if fresh != map {
                    map = fresh;
                    outlets_for(node, &map, &mut outlets);
                }
                stale = false;
            }
        }
        for outlet in &mut outlets {
            outlet.reconnect(node);
        }
        let all_up = outlets.iter().all(|o| o.con.is_some());
        counters.publisher_up.store(all_up, Ordering::Release);
        let Some(wake) = next_batch(outgoing, &mut batch) else { return };
        if node.stopping() {
            return;
        }
        let heartbeat = wake || last_heartbeat.elapsed() >= HEARTBEAT;
        if heartbeat {
            last_heartbeat = Instant::now();
        }
        // Each publish, on each of its topics' shards; a publish any part of which fails
        // is not delivered.
        failed.clear();
        failed.resize(batch.len(), false);
        let mut pipes: Vec<(redis::Pipeline, Vec<Option<usize>>)> =
            outlets.iter().map(|_| (redis::pipe(), Vec::new())).collect();
        for (index, (topics, frame)) in batch.iter().enumerate() {
            for (via, topic) in topics.iter().enumerate() {
                let channel = topic_channel(topic);
                let owner = map.owner(slot(channel.as_bytes()));
                let outlet = outlets.iter().position(|o| Some(o.primary) == owner);
                match outlet {
                    Some(at) if outlets[at].con.is_some() => {
                        let payload = cluster::encode(node.id, topics, via, frame);
                        pipes[at].0.cmd("SPUBLISH").arg(channel).arg(payload);
                        pipes[at].1.push(Some(index));
                    }
                    _ => failed[index] = true,
                }
            }
        }
        // Every shard's pipeline is written before any answer is awaited: a shard that
        // stopped costs its own answer timeout, not the others' heartbeats.
        let mut sent = Vec::with_capacity(outlets.len());
        for (outlet, (mut pipe, mut commands)) in outlets.iter_mut().zip(pipes) {
            let Some(con) = outlet.con.as_mut() else { continue };
            if heartbeat {
                if let Some(control) = &outlet.control {
                    pipe.cmd("SPUBLISH").arg(control).arg("wake");
                    commands.push(None);
                }
            }
            if commands.is_empty() {
                continue;
            }
            match con.send_packed_command(&pipe.get_packed_pipeline()) {
                Ok(()) => sent.push((outlet, commands)),
                Err(error) => lose(counters, outlet, &commands, &error, &mut failed),
            }
        }
        for (outlet, commands) in sent {
            let Some(con) = outlet.con.as_mut() else { continue };
            for (answered, command) in commands.iter().enumerate() {
                match con.recv_response() {
                    Ok(Value::ServerError(error)) => {
                        // `MOVED` (or the cluster down): this publish only; the map is stale.
                        tracing::debug!(?error, shard = %outlet.primary, "broker: publish refused");
                        if let Some(index) = command {
                            failed[*index] = true;
                        }
                        stale = true;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        lose(counters, outlet, &commands[answered..], &error, &mut failed);
                        stale = true;
                        break;
                    }
                }
            }
        }
        let lost = failed.iter().filter(|&&f| f).count();
        counters.published.fetch_add((batch.len() - lost) as u64, Ordering::Relaxed);
        counters.undelivered.fetch_add(lost as u64, Ordering::Relaxed);
        if lost > 0 {
            counters.publisher_up.store(false, Ordering::Release);
        }
    }
}

/// A shard connection failed with `commands` unanswered: their publishes are not delivered,
/// and the shard reconnects.
fn lose(
    counters: &BrokerCounters,
    outlet: &mut Outlet,
    commands: &[Option<usize>],
    error: &redis::RedisError,
    failed: &mut [bool],
) {
    tracing::warn!(%error, shard = %outlet.primary, "broker: publishing to a shard failed; reconnecting");
    for index in commands.iter().flatten() {
        failed[*index] = true;
    }
    outlet.down();
    counters.reconnects.fetch_add(1, Ordering::Relaxed);
}

// ---- subscribing ---------------------------------------------------------------------

/// What the subscribing thread shares with its shard threads.
struct Plan {
    /// The topics wanted and the slot map, changed together with `generation`.
    state: Mutex<(Wanted, SlotMap)>,
    /// Bumped at every change of `state`.
    generation: AtomicU64,
    /// A shard saw `MOVED` or lost its connection: read the map again.
    refresh: AtomicBool,
}

impl Plan {
    fn lock(&self) -> MutexGuard<'_, (Wanted, SlotMap)> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One shard thread's state, as its subscribing thread watches it.
#[derive(Default)]
struct Tap {
    up: AtomicBool,
    /// The plan's generation this shard's subscriptions match.
    synced: AtomicU64,
    /// Subscriptions sent and not yet confirmed.
    unconfirmed: AtomicU64,
    /// No longer a primary of the map: the thread ends.
    retired: AtomicBool,
}

impl Tap {
    fn ready(&self, generation: u64) -> bool {
        self.up.load(Ordering::Acquire)
            && self.synced.load(Ordering::Acquire) == generation
            && self.unconfirmed.load(Ordering::Acquire) == 0
    }
}

/// The subscribing thread over a cluster whose map is `map`; returns when the node stops.
pub(super) fn subscribe(node: &Node, map: SlotMap, interest: &Receiver<InterestChange>) {
    let counters = &node.counters;
    let plan = Plan {
        state: Mutex::new((Wanted::default(), map)),
        generation: AtomicU64::new(1),
        refresh: AtomicBool::new(false),
    };
    std::thread::scope(|scope| {
        let mut taps: HashMap<SocketAddr, Arc<Tap>> = HashMap::new();
        loop {
            let mut first = match interest.recv_timeout(WATCH) {
                Ok(change) => Some(change),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if node.stopping() {
                break;
            }
            // Read away from the lock: shard threads take it for every message.
            let fresh = plan.refresh.swap(false, Ordering::AcqRel).then(|| {
                // Shards that still answer first: a stopped one would keep us waiting.
                let up: Vec<SocketAddr> = taps
                    .iter()
                    .filter(|(_, tap)| tap.up.load(Ordering::Acquire))
                    .map(|(&primary, _)| primary)
                    .collect();
                fresh_map(node, std::iter::empty(), &up)
            });
            let mut state = plan.lock();
            if first.is_some() {
                // Not subscribed until the shards catch up; marked before the changes leave
                // the count, which readiness reads first.
                counters.subscriber_up.store(false, Ordering::Release);
                for change in first.take().into_iter().chain(interest.try_iter()) {
                    state.0.apply(change);
                    counters.interest_queued.fetch_sub(1, Ordering::AcqRel);
                }
                plan.generation.fetch_add(1, Ordering::AcqRel);
            }
            match fresh {
                Some(Some(fresh)) if fresh != state.1 => {
                    state.1 = fresh;
                    plan.generation.fetch_add(1, Ordering::AcqRel);
                }
                Some(None) => plan.refresh.store(true, Ordering::Release),
                _ => {}
            }
            let primaries = state.1.primaries();
            counters.channels.store(state.0.loops.len() as u64, Ordering::Relaxed);
            drop(state);
            taps.retain(|primary, tap| {
                let keep = primaries.contains(primary);
                if !keep {
                    tap.retired.store(true, Ordering::Release);
                }
                keep
            });
            for &primary in &primaries {
                taps.entry(primary).or_insert_with(|| {
                    let tap = Arc::new(Tap::default());
                    let (plan, watched) = (&plan, Arc::clone(&tap));
                    let spawned = std::thread::Builder::new()
                        .name("surge-broker-shard".into())
                        .spawn_scoped(scope, move || serve_shard(node, plan, primary, &watched));
                    if let Err(error) = spawned {
                        tracing::warn!(%error, "broker: cannot start a shard thread");
                    }
                    tap
                });
            }
            let generation = plan.generation.load(Ordering::Acquire);
            let up = primaries.iter().all(|p| taps.get(p).is_some_and(|t| t.ready(generation)));
            counters.subscriber_up.store(up, Ordering::Release);
        }
        counters.subscriber_up.store(false, Ordering::Release);
        for tap in taps.values() {
            tap.retired.store(true, Ordering::Release);
        }
    });
}

/// One shard's subscribed connection, again after each failure, until retired.
fn serve_shard(node: &Node, plan: &Plan, primary: SocketAddr, tap: &Tap) {
    let mut backoff = BACKOFF_MIN;
    while !node.stopping() && !tap.retired.load(Ordering::Acquire) {
        let mut session = ShardSession { node, plan, primary, tap, subscribed: HashSet::new() };
        let result = session.run(&mut backoff);
        tap.up.store(false, Ordering::Release);
        if let Err(error) = result {
            if node.stopping() {
                return;
            }
            tracing::warn!(%error, shard = %primary, "broker: shard subscription lost; reconnecting");
            node.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            plan.refresh.store(true, Ordering::Release);
            node.back_off(&mut backoff, || {});
        }
    }
}

/// One subscribed connection to one shard.
struct ShardSession<'a> {
    node: &'a Node,
    plan: &'a Plan,
    primary: SocketAddr,
    tap: &'a Tap,
    /// Channels subscribed on this connection.
    subscribed: HashSet<String>,
}

impl ShardSession<'_> {
    /// Connects, subscribes and serves until the connection fails (an error) or the shard
    /// is retired, its heartbeat channel moves elsewhere, or the node stops (`Ok`).
    fn run(&mut self, backoff: &mut Duration) -> redis::RedisResult<()> {
        let mut con = connect_shard(&self.node.client_for(self.primary)?)?;
        self.tap.unconfirmed.store(0, Ordering::Release);
        let control = {
            let state = self.plan.lock();
            control_channel(self.node, &state.1, self.primary)
        };
        if let Some(control) = &control {
            self.send(&mut con, "SSUBSCRIBE", control)?;
        }
        con.set_read_timeout(Some(SILENCE))?;
        self.tap.up.store(true, Ordering::Release);
        let mut confirmed_once = false;
        // A new connection has nothing subscribed, whatever the last one had.
        let mut synced = 0;
        self.tap.synced.store(synced, Ordering::Release);
        loop {
            if self.node.stopping() || self.tap.retired.load(Ordering::Acquire) {
                return Ok(());
            }
            let generation = self.plan.generation.load(Ordering::Acquire);
            if generation != synced {
                let (wanted, moved) = {
                    let state = self.plan.lock();
                    let owned = |channel: &String| {
                        state.1.owner(slot(channel.as_bytes())) == Some(self.primary)
                    };
                    let wanted: HashSet<String> =
                        state.0.loops.keys().map(|t| topic_channel(t)).filter(owned).collect();
                    (wanted, control_channel(self.node, &state.1, self.primary) != control)
                };
                if moved {
                    return Ok(());
                }
                let gone: Vec<String> = self.subscribed.difference(&wanted).cloned().collect();
                for channel in &gone {
                    self.send(&mut con, "SUNSUBSCRIBE", channel)?;
                    self.subscribed.remove(channel);
                }
                for channel in wanted {
                    if !self.subscribed.contains(&channel) {
                        self.send(&mut con, "SSUBSCRIBE", &channel)?;
                        self.subscribed.insert(channel);
                    }
                }
                synced = generation;
                self.tap.synced.store(synced, Ordering::Release);
            }
            // An error answer to a subscription (`MOVED`: the map is stale) ends the session.
            let Value::Array(items) = con.recv_response()?.extract_error()? else { continue };
            let kind = match items.first() {
                Some(Value::BulkString(kind)) => kind.as_slice(),
                _ => continue,
            };
            match kind {
                b"smessage" => {
                    if let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                        (items.get(1), items.get(2))
                    {
                        if channel.starts_with(TOPIC_PREFIX.as_bytes()) {
                            deliver(self.node, &self.plan.lock().0, payload);
                        }
                    }
                }
                b"sunsubscribe" if self.dropped_by_shard(items.get(1), control.as_deref()) => {
                    // The shard gave the channel's slot away (resharding, failover): the
                    // map is stale, and the channel must be subscribed where it went.
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Moved,
                        "shard unsubscribed a channel whose slot it gave away",
                    )));
                }
                b"ssubscribe" | b"sunsubscribe" => {
                    let _ = self.tap.unconfirmed.fetch_update(
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        |n| n.checked_sub(1),
                    );
                    if !confirmed_once {
                        // Subscribed for real: the next failure starts from the shortest wait.
                        confirmed_once = true;
                        *backoff = BACKOFF_MIN;
                    }
                }
                _ => {}
            }
        }
    }

    /// An `sunsubscribe` for a channel this session still holds: not asked for (asking
    /// removes it first), so the shard dropped it.
    fn dropped_by_shard(&self, channel: Option<&Value>, control: Option<&str>) -> bool {
        let Some(Value::BulkString(channel)) = channel else { return false };
        let Ok(channel) = std::str::from_utf8(channel) else { return false };
        self.subscribed.contains(channel) || control == Some(channel)
    }

    /// Sends one (un)subscription; a shard takes several channels in one command only when
    /// they share a slot, so it is one channel each.
    fn send(
        &self,
        con: &mut redis::Connection,
        command: &str,
        channel: &str,
    ) -> redis::RedisResult<()> {
        self.tap.unconfirmed.fetch_add(1, Ordering::AcqRel);
        con.send_packed_command(&redis::cmd(command).arg(channel).get_packed_command())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_primary_gets_a_heartbeat_channel_in_its_own_slots() {
        let node = Node {
            id: 0x1234,
            client: redis::Client::open("redis://127.0.0.1:1").unwrap(),
            sharding: crate::config::Sharding::On,
            counters: Arc::default(),
            shared: std::sync::Weak::new(),
        };
        let primary = |port: i64| {
            Value::Array(vec![Value::BulkString(b"127.0.0.1".to_vec()), Value::Int(port)])
        };
        let answer = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(5460), primary(7000)]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), primary(7001)]),
            Value::Array(vec![Value::Int(10923), Value::Int(16383), primary(7002)]),
        ]);
        let map = SlotMap::from_cluster_slots(&answer, "127.0.0.1:7000".parse().unwrap()).unwrap();
        let mut channels = HashSet::new();
        for primary in map.primaries() {
            let channel = control_channel(&node, &map, primary).expect("a channel");
            assert_eq!(map.owner(slot(channel.as_bytes())), Some(primary));
            assert!(channel.starts_with("surge:ctl:0000000000001234:{"));
            channels.insert(channel);
        }
        assert_eq!(channels.len(), 3);
    }
}
