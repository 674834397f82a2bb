//! Two Surge nodes sharing a topic through a real `redis-server` on a loopback port of its
//! own (started and stopped here), with subscribers and publishers on both nodes, for
//! classic and for sharded pub/sub:
//!
//! 1. every message reaches every subscriber exactly once, in order per publisher;
//! 2. Redis is stopped mid-run (SIGSTOP), then killed and restarted: no node fails, local
//!    delivery goes on throughout, cross-node delivery resumes within a bound once Redis is
//!    back, and what a node counts as not delivered to the other is exactly what the
//!    other's subscribers missed.
//!
//! A program of its own (`harness = false`, not run by a plain `cargo test`): `tests/run.sh`
//! runs it with `cargo test -p surge --test cluster`. Without `redis-server` on the PATH
//! (or in `SURGE_REDIS_SERVER`) it says so and exits 77 (skipped).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use surge::surge_proto::handshake::ClientRequest;
use surge::{Config, Conn, Handler, Message, Request, Server, Sharding, Upgrade};
use surge_client::blocking::{Client, Received};
use surge_client::Keys;

const TOPIC: &str = "room";
const SUBSCRIBERS_PER_NODE: usize = 3;
const PUBLISHERS_PER_NODE: usize = 2;
/// Longest wait for anything that should happen.
const PATIENCE: Duration = Duration::from_secs(20);
/// The bound on cross-node delivery resuming after Redis restarts: the longest backoff (2 s)
/// plus a connection and the resubscription.
const RESUME_BOUND: Duration = Duration::from_secs(6);

/// `/sub` subscribes to the room; `/pub` publishes every message to it (not subscribed);
/// `/both` subscribes to the topics `x` and `y`; `/sub/T` and `/pub/T` are the same for the
/// topic `T`.
struct Room;

/// What a connection subscribes to, and where its messages go.
struct Roles {
    subscribes: Vec<String>,
    publishes_to: String,
}

impl Handler for Room {
    type State = Roles;

    fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<Roles> {
        let roles = |subscribes: &[&str], publishes_to: &str| {
            Upgrade::accept(Roles {
                subscribes: subscribes.iter().map(|t| t.to_string()).collect(),
                publishes_to: publishes_to.into(),
            })
        };
        match request.path().split_once('/').map(|(_, p)| p.split_once('/').unwrap_or((p, TOPIC))) {
            Some(("sub", topic)) => roles(&[topic], topic),
            Some(("pub", topic)) => roles(&[], topic),
            Some(("both", TOPIC)) => roles(&["x", "y"], TOPIC),
            _ => Upgrade::Reject(404),
        }
    }

    fn on_open(&mut self, conn: &mut Conn<'_>, roles: &mut Roles) {
        for topic in &roles.subscribes {
            conn.subscribe(topic);
        }
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, roles: &mut Roles, msg: Message<'_>) {
        conn.publish(&roles.publishes_to, msg);
    }
}

/// A `redis-server` of our own, classic or a Redis Cluster node (then with its cluster
/// configuration file in `dir`, kept across restarts so that it rejoins with its slots).
struct Redis {
    path: String,
    port: u16,
    cluster_dir: Option<PathBuf>,
    child: Option<Child>,
}

impl Redis {
    fn start(path: &str, port: u16, cluster_dir: Option<PathBuf>) -> Redis {
        let mut redis = Redis { path: path.into(), port, cluster_dir, child: None };
        redis.restart();
        redis
    }

    fn restart(&mut self) {
        let mut command = Command::new(&self.path);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null());
        if let Some(dir) = &self.cluster_dir {
            let config = format!("nodes-{}.conf", self.port);
            command.arg("--dir").arg(dir).args(["--cluster-enabled", "yes"]);
            command.args(["--cluster-config-file", &config]);
        }
        self.child = Some(command.spawn().expect("redis-server starts"));
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// `redis-cli -p PORT ARGS...`, its answer.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until every node of the cluster at `ports` says `cluster_state:ok`.
fn wait_cluster_ok(ports: &[u16]) {
    wait_for("cluster_state:ok", PATIENCE, || {
        ports.iter().all(|&p| redis_cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    });
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-primary Redis Cluster on loopback ports of its own, in a temporary directory.
struct RedisCluster {
    shards: Vec<Redis>,
    dir: PathBuf,
}

impl RedisCluster {
    fn start(path: &str) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!("surge-redis-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let shards: Vec<Redis> =
            (0..3).map(|_| Redis::start(path, free_port(), Some(dir.clone()))).collect();
        RedisCluster { shards, dir }
    }

    /// Joins the shards into one cluster (`redis-cli --cluster create`) and waits until it
    /// serves every slot.
    fn create(self) -> RedisCluster {
        let cluster = self;
        let addrs: Vec<String> =
            cluster.shards.iter().map(|r| format!("127.0.0.1:{}", r.port)).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .arg("--cluster-yes")
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create");
        wait_cluster_ok(&cluster.shards.iter().map(|r| r.port).collect::<Vec<_>>());
        cluster
    }

    /// The shard that owns `topic`'s channel: the one that takes an `SPUBLISH` to it rather
    /// than answering `MOVED`.
    fn owner(&self, topic: &str) -> usize {
        let channel = format!("surge:t:{topic}");
        let owners: Vec<usize> = (0..self.shards.len())
            .filter(|&s| {
                !redis_cli(self.shards[s].port, &["SPUBLISH", &channel, "probe"]).contains("MOVED")
            })
            .collect();
        assert_eq!(owners.len(), 1, "{channel}: one owner");
        owners[0]
    }

    /// One topic per shard: `topics[s]` lands on shard `s`.
    fn topic_per_shard(&self) -> Vec<String> {
        let mut topics = vec![None; self.shards.len()];
        for n in 0.. {
            let topic = format!("room{n}");
            let owner = self.owner(&topic);
            topics[owner].get_or_insert(topic);
            if topics.iter().all(Option::is_some) {
                break;
            }
        }
        topics.into_iter().flatten().collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for shard in &mut self.shards {
            shard.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn node(url: &str, sharding: Sharding) -> Server {
    let config = Config::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .threads(2)
        .cluster(url)
        .cluster_sharding(sharding)
        .build()
        .unwrap();
    Server::start(config, |_| Room).expect("a node starts")
}

fn connect(addr: SocketAddr, path: &str, seed: u64) -> Client {
    let host = addr.to_string();
    let keys = Keys { nonce: (u128::from(seed) * 0x9E37_79B9).to_le_bytes(), mask_seed: seed };
    Client::connect(addr, &ClientRequest::new(&host, path), keys, PATIENCE).expect("connect")
}

/// What one subscriber received: `(publisher, sequence)` in arrival order.
type Log = Arc<Mutex<Vec<(u32, u64)>>>;

struct Subscriber {
    node: usize,
    topic: String,
    log: Log,
    thread: JoinHandle<()>,
}

fn subscribe(
    addr: SocketAddr,
    node: usize,
    topic: &str,
    seed: u64,
    stop: &Arc<AtomicBool>,
) -> Subscriber {
    let mut client = connect(addr, &format!("/sub/{topic}"), seed);
    let log = Log::default();
    let (into, stop) = (Arc::clone(&log), Arc::clone(stop));
    let thread = std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            match client.recv_within(Duration::from_millis(50)) {
                Ok(Some(Received::Text(text))) => {
                    let (publisher, seq) = text.split_once(':').expect("publisher:seq");
                    into.lock().unwrap().push((publisher.parse().unwrap(), seq.parse().unwrap()));
                }
                Ok(None) => {}
                other => panic!("subscriber got {other:?}"),
            }
        }
    });
    Subscriber { node, topic: topic.into(), log, thread }
}

/// A publisher: sends `ID:SEQ` to its topic every `gap` while not paused, until stopped.
struct Publisher {
    node: usize,
    id: u32,
    topic: String,
    sent: Arc<AtomicU64>,
    paused: Arc<AtomicBool>,
    /// Set by the publisher while it is paused (nothing in flight from it).
    idle: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

fn publish(
    addr: SocketAddr,
    (node, id): (usize, u32),
    topic: &str,
    stop: &Arc<AtomicBool>,
    limit: u64,
) -> Publisher {
    let mut client = connect(addr, &format!("/pub/{topic}"), 1000 + u64::from(id));
    let sent = Arc::new(AtomicU64::new(0));
    let paused = Arc::new(AtomicBool::new(false));
    let idle = Arc::new(AtomicBool::new(false));
    let (count, pause, idle_flag, stop) =
        (Arc::clone(&sent), Arc::clone(&paused), Arc::clone(&idle), Arc::clone(stop));
    let thread = std::thread::spawn(move || {
        let mut seq = 0;
        while !stop.load(Ordering::Acquire) && seq < limit {
            if pause.load(Ordering::Acquire) {
                idle_flag.store(true, Ordering::Release);
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            idle_flag.store(false, Ordering::Release);
            client.send(Message::Text(&format!("{id}:{seq}"))).expect("publish");
            seq += 1;
            count.store(seq, Ordering::Release);
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    Publisher { node, id, topic: topic.into(), sent, paused, idle, thread }
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// Every node connected, each with its subscribers' `channels` in place.
fn all_ready(nodes: &[Server], channels: u64) -> bool {
    nodes.iter().all(|n| {
        let handle = n.handle();
        handle.ready() && handle.broker_stats().is_some_and(|b| b.channels == channels)
    })
}

/// Who takes part in a run: per node and per topic.
struct Shape<'t> {
    topics: &'t [String],
    subscribers: usize,
    publishers: usize,
}

/// The classic shape: one topic, three subscribers and two publishers per node.
fn one_room() -> Vec<String> {
    vec![TOPIC.to_string()]
}

struct Run {
    nodes: Vec<Server>,
    channels: u64,
    subscribers: Vec<Subscriber>,
    publishers: Vec<Publisher>,
    stop: Arc<AtomicBool>,
}

/// What a finished run leaves: the nodes, each subscriber's `(node, topic, log)` and each
/// publisher's `(node, id, topic, sent)`.
type Finished =
    (Vec<Server>, Vec<(usize, String, Vec<(u32, u64)>)>, Vec<(usize, u32, String, u64)>);

fn start_run(url: &str, sharding: Sharding, shape: &Shape<'_>, limit: u64) -> Run {
    let nodes = vec![node(url, sharding), node(url, sharding)];
    let stop = Arc::new(AtomicBool::new(false));
    let mut subscribers = Vec::new();
    for (n, server) in nodes.iter().enumerate() {
        for (t, topic) in shape.topics.iter().enumerate() {
            for s in 0..shape.subscribers {
                let seed = (n * 1000 + t * 100 + s) as u64 + 1;
                subscribers.push(subscribe(server.local_addrs()[0], n, topic, seed, &stop));
            }
        }
    }
    let channels = shape.topics.len() as u64;
    wait_for("both nodes ready", PATIENCE, || all_ready(&nodes, channels));
    let mut publishers = Vec::new();
    for (n, server) in nodes.iter().enumerate() {
        for topic in shape.topics {
            for _ in 0..shape.publishers {
                let id = publishers.len() as u32;
                publishers.push(publish(server.local_addrs()[0], (n, id), topic, &stop, limit));
            }
        }
    }
    if let Some(stats) = nodes[0].handle().broker_stats() {
        let expect = sharding != Sharding::Off;
        assert_eq!(stats.sharded, expect, "sharded pub/sub in use as asked ({sharding:?})");
    }
    Run { nodes, channels, subscribers, publishers, stop }
}

impl Run {
    fn finish(self) -> Finished {
        self.stop.store(true, Ordering::Release);
        let publishers: Vec<_> = self
            .publishers
            .into_iter()
            .map(|p| {
                p.thread.join().unwrap();
                (p.node, p.id, p.topic, p.sent.load(Ordering::Acquire))
            })
            .collect();
        let logs = self
            .subscribers
            .into_iter()
            .map(|s| {
                s.thread.join().unwrap();
                (s.node, s.topic, std::mem::take(&mut *s.log.lock().unwrap()))
            })
            .collect();
        (self.nodes, logs, publishers)
    }

    fn pause_publishers(&self) {
        for publisher in &self.publishers {
            publisher.paused.store(true, Ordering::Release);
        }
        wait_for("publishers paused", PATIENCE, || {
            self.publishers.iter().all(|p| p.idle.load(Ordering::Acquire))
        });
    }

    fn resume_publishers(&self) {
        for publisher in &self.publishers {
            publisher.paused.store(false, Ordering::Release);
        }
    }

    /// Waits until every subscriber has the last message so far of every publisher to its
    /// topic: all of a local publisher's, a remote one's up to the last.
    fn wait_for_the_last(&self) {
        wait_for("the last messages", PATIENCE, || {
            self.subscribers.iter().all(|s| {
                let log = s.log.lock().unwrap();
                let to_it = self.publishers.iter().filter(|p| p.topic == s.topic);
                to_it.into_iter().all(|p| match p.sent.load(Ordering::Acquire) {
                    0 => true,
                    sent => log.iter().any(|&(id, seq)| id == p.id && seq == sent - 1),
                })
            })
        });
    }

    fn ready(&self) -> bool {
        all_ready(&self.nodes, self.channels)
    }

    fn received(&self) -> usize {
        self.subscribers.iter().map(|s| s.log.lock().unwrap().len()).sum()
    }

    /// Deliveries on `node`'s subscribers to `topics` from publishers on `node` (`local`)
    /// or on the other nodes.
    fn delivered(&self, node: usize, local: bool, topics: &[String]) -> usize {
        let from: Vec<u32> = self
            .publishers
            .iter()
            .filter(|p| (p.node == node) == local && topics.contains(&p.topic))
            .map(|p| p.id)
            .collect();
        self.subscribers
            .iter()
            .filter(|s| s.node == node)
            .map(|s| s.log.lock().unwrap().iter().filter(|(p, _)| from.contains(p)).count())
            .sum()
    }
}

/// The sequences from `publisher` in `log`, checked to be strictly increasing (in order,
/// no duplicate).
fn sequence_of(log: &[(u32, u64)], publisher: u32) -> Vec<u64> {
    let seqs: Vec<u64> = log.iter().filter(|(p, _)| *p == publisher).map(|(_, s)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "publisher {publisher}: out of order or twice");
    seqs
}

fn every_message_reaches_every_subscriber_once_in_order(
    url: &str,
    sharding: Sharding,
    shape: &Shape<'_>,
) {
    const MESSAGES: u64 = 300;
    let run = start_run(url, sharding, shape, MESSAGES);
    let per_topic = 2 * shape.publishers * MESSAGES as usize;
    let expected = run.subscribers.len() * per_topic;
    wait_for("every delivery", PATIENCE, || run.received() >= expected);
    std::thread::sleep(Duration::from_millis(200));
    let (nodes, logs, publishers) = run.finish();
    for (node, topic, log) in &logs {
        for (_, id, to, sent) in &publishers {
            assert_eq!(*sent, MESSAGES);
            let seqs = sequence_of(log, *id);
            let expected = if to == topic { (0..MESSAGES).collect() } else { Vec::new() };
            assert_eq!(seqs, expected, "node {node}, topic {topic}, publisher {id} to {to}");
        }
    }
    let own = (shape.topics.len() * shape.publishers) as u64 * MESSAGES;
    for node in &nodes {
        let stats = node.handle().broker_stats().unwrap();
        assert_eq!(stats.undelivered, 0);
        assert_eq!(stats.own, own, "own copies dropped");
    }
    for node in nodes {
        node.shutdown(Duration::from_secs(2));
    }
    println!(
        "cluster ({sharding:?}, {} topics): {expected} deliveries, each once and in order",
        shape.topics.len()
    );
}

/// A run through which `victim` (the Redis, or the shard that owns the topics `through`
/// it) is stopped (SIGSTOP), then killed and restarted; `healed` waits until it serves
/// again. Only what passed through the victim may be lost, and exactly what was counted.
fn redis_failure_costs_only_what_is_counted(
    url: &str,
    sharding: Sharding,
    shape: &Shape<'_>,
    (victim, through): (&mut Redis, &[String]),
    healed: impl Fn(),
) {
    let run = start_run(url, sharding, shape, u64::MAX);
    let spared: Vec<String> =
        shape.topics.iter().filter(|t| !through.contains(t)).cloned().collect();
    std::thread::sleep(Duration::from_millis(500));
    // Redis stopped at an arbitrary instant may hold a publish it has answered but not yet
    // written to the other node's subscribed connection: lost, and no publisher can know.
    // At most once allows that, so the outage starts with nothing in flight, and what the
    // publishers send into it is what the nodes must count.
    run.pause_publishers();
    run.wait_for_the_last();
    victim.signal("-STOP");
    run.resume_publishers();
    let before = |local, topics| [run.delivered(0, local, topics), run.delivered(1, local, topics)];
    let (local_before, spared_before) = (before(true, shape.topics), before(false, &spared));
    std::thread::sleep(Duration::from_millis(2500));
    for node in 0..2 {
        let local = run.delivered(node, true, shape.topics);
        assert!(local > local_before[node] + 100, "node {node}: local delivery stalled");
        if !spared.is_empty() {
            let remote = run.delivered(node, false, &spared);
            assert!(remote > spared_before[node] + 100, "node {node}: other shards stalled");
        }
    }
    assert!(run.nodes.iter().all(|n| !n.handle().ready()), "a node claims to be ready");
    victim.kill();
    run.pause_publishers();
    // What the nodes took before the pause has reached the broker queue or been counted.
    std::thread::sleep(Duration::from_millis(200));
    let restarted = Instant::now();
    victim.restart();
    healed();
    wait_for("both nodes ready again", PATIENCE, || run.ready());
    let resumed = restarted.elapsed();
    run.resume_publishers();
    std::thread::sleep(Duration::from_millis(1000));
    run.pause_publishers();
    let sent_total: u64 = run.publishers.iter().map(|p| p.sent.load(Ordering::Acquire)).sum();
    run.wait_for_the_last();
    let stats: Vec<_> = run.nodes.iter().map(|n| n.handle().broker_stats().unwrap()).collect();
    let undelivered: Vec<u64> = stats.iter().map(|s| s.undelivered).collect();
    let (nodes, logs, publishers) = run.finish();
    for (node, topic, log) in &logs {
        let mut missed_from = [0; 2];
        for (from, id, to, sent) in &publishers {
            let seqs = sequence_of(log, *id);
            if to != topic {
                assert!(seqs.is_empty(), "node {node}: topic {topic} got {to}'s publishes");
            } else if from == node {
                assert_eq!(seqs.len() as u64, *sent, "node {node}: a local message was lost");
            } else {
                missed_from[*from] += sent - seqs.len() as u64;
            }
        }
        let other = 1 - node;
        let counted = if through.contains(topic) { undelivered[other] } else { 0 };
        assert_eq!(
            missed_from[other], counted,
            "subscriber to {topic} on node {node}: missed from node {other} vs what it counted"
        );
    }
    assert!(undelivered.iter().all(|&u| u > 0), "the outage cost nothing?");
    assert!(stats.iter().all(|s| s.reconnects > 0), "no reconnection counted");
    assert!(resumed < RESUME_BOUND, "cross-node delivery resumed only after {resumed:?}");
    for node in nodes {
        node.shutdown(Duration::from_secs(2));
    }
    println!(
        "cluster ({sharding:?}, {} topics) outage: {sent_total} published, undelivered \
         {undelivered:?} (exactly what the other node's subscribers to {through:?} missed), \
         ready again {resumed:?} after the restart",
        shape.topics.len()
    );
}

/// A publish to two topics from one node reaches a subscriber of both on the other once.
fn a_publish_to_two_topics_reaches_a_remote_subscriber_of_both_once(redis: &Redis) {
    let nodes = [node(&redis.url(), Sharding::Auto), node(&redis.url(), Sharding::Auto)];
    let mut both = connect(nodes[1].local_addrs()[0], "/both", 77);
    wait_for("the subscriptions", PATIENCE, || {
        nodes.iter().all(|n| n.handle().ready())
            && nodes[1].handle().broker_stats().is_some_and(|b| b.channels == 2)
    });
    for n in 0..10 {
        nodes[0].handle().publish_to(&["x", "y"], Message::Text(&format!("0:{n}"))).unwrap();
    }
    let mut got = Vec::new();
    while let Some(Received::Text(text)) = both.recv_within(Duration::from_millis(500)).unwrap() {
        got.push(text);
    }
    let expected: Vec<String> = (0..10).map(|n| format!("0:{n}")).collect();
    assert_eq!(got, expected, "each once, in order");
    for node in nodes {
        node.shutdown(Duration::from_secs(2));
    }
    println!("cluster: a publish to two topics reached a remote subscriber of both once");
}

/// One Redis: classic and sharded pub/sub on one endpoint.
fn against_one_redis(path: &str) {
    let mut redis = Redis::start(path, free_port(), None);
    // Auto picks sharded pub/sub where the server has SPUBLISH (Redis 7 does).
    let auto = node(&redis.url(), Sharding::Auto);
    wait_for("the auto node ready", PATIENCE, || auto.handle().ready());
    let version = Command::new(path).arg("--version").output().expect("redis-server --version");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let major: u32 = version
        .split("v=")
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
        .expect("a version");
    assert_eq!(auto.handle().broker_stats().unwrap().sharded, major >= 7, "auto on {version}");
    auto.shutdown(Duration::from_secs(2));
    a_publish_to_two_topics_reaches_a_remote_subscriber_of_both_once(&redis);
    let topics = one_room();
    let shape = Shape {
        topics: &topics,
        subscribers: SUBSCRIBERS_PER_NODE,
        publishers: PUBLISHERS_PER_NODE,
    };
    let url = redis.url();
    for sharding in [Sharding::Off, Sharding::On] {
        every_message_reaches_every_subscriber_once_in_order(&url, sharding, &shape);
        redis_failure_costs_only_what_is_counted(
            &url,
            sharding,
            &shape,
            (&mut redis, &topics),
            || {},
        );
    }
}

/// A run through which the slot of `topics[0]` moves from shard 0 to shard 1 (`CLUSTER
/// SETSLOT ... NODE`, as a resharding ends): the nodes follow it (`MOVED` on publish, the
/// shard's `sunsubscribe` on the subscribed side), and once they are ready again every
/// message reaches every subscriber, in order.
fn a_moved_slot_is_followed(cluster: &RedisCluster, url: &str, shape: &Shape<'_>) {
    let moved = &shape.topics[0];
    assert_eq!(cluster.owner(moved), 0, "{moved} starts on shard 0");
    let run = start_run(url, Sharding::Auto, shape, u64::MAX);
    std::thread::sleep(Duration::from_millis(300));
    let ports: Vec<u16> = cluster.shards.iter().map(|r| r.port).collect();
    let slot = redis_cli(ports[0], &["CLUSTER", "KEYSLOT", &format!("surge:t:{moved}")]);
    let target = redis_cli(ports[1], &["CLUSTER", "MYID"]);
    // The new owner first, then the old one, then the rest.
    for port in [ports[1], ports[0], ports[2]] {
        let answer = redis_cli(port, &["CLUSTER", "SETSLOT", slot.trim(), "NODE", target.trim()]);
        assert!(answer.contains("OK"), "CLUSTER SETSLOT on {port}: {answer}");
    }
    assert_eq!(cluster.owner(moved), 1, "{moved} moved to shard 1");
    // Publishing meets `MOVED` meanwhile: lost and counted (at most once).
    std::thread::sleep(Duration::from_millis(1500));
    run.pause_publishers();
    wait_for("both nodes ready after the move", PATIENCE, || run.ready());
    let from: Vec<(u32, u64)> =
        run.publishers.iter().map(|p| (p.id, p.sent.load(Ordering::Acquire))).collect();
    run.resume_publishers();
    std::thread::sleep(Duration::from_millis(1000));
    run.pause_publishers();
    run.wait_for_the_last();
    let stats: Vec<_> = run.nodes.iter().map(|n| n.handle().broker_stats().unwrap()).collect();
    let (nodes, logs, publishers) = run.finish();
    for (node, topic, log) in &logs {
        for ((_, id, to, sent), &(_, first)) in publishers.iter().zip(&from) {
            if to == topic {
                let after: Vec<u64> =
                    sequence_of(log, *id).into_iter().filter(|&seq| seq >= first).collect();
                assert_eq!(after, (first..*sent).collect::<Vec<_>>(), "node {node}, {topic}");
            }
        }
    }
    assert!(stats.iter().all(|s| s.reconnects > 0), "the move went unnoticed");
    for node in nodes {
        node.shutdown(Duration::from_secs(2));
    }
    println!(
        "cluster ({} topics): {moved}'s slot moved to another shard; every message after the \
         nodes were ready again delivered once, in order (undelivered meanwhile {:?})",
        shape.topics.len(),
        stats.iter().map(|s| s.undelivered).collect::<Vec<_>>()
    );
}

/// A 3-primary Redis Cluster: one topic per shard, each shard's topics routed to it; one
/// shard stopped, killed and restarted costs only its topics' cross-node deliveries; a slot
/// moved to another shard is followed.
fn against_a_redis_cluster(path: &str) {
    let forming = RedisCluster::start(path);
    // A node started before the cluster is formed waits for it (not taking a cluster node
    // for a classic Redis): with a subscriber on every shard it is ready only once each
    // shard serves its topic.
    let early = node(&forming.shards[0].url(), Sharding::Auto);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!early.handle().ready(), "ready before the cluster is formed");
    let mut cluster = forming.create();
    let topics = cluster.topic_per_shard();
    let _subscribers: Vec<Client> = topics
        .iter()
        .enumerate()
        .map(|(n, topic)| connect(early.local_addrs()[0], &format!("/sub/{topic}"), 500 + n as u64))
        .collect();
    wait_for("the early node ready", PATIENCE, || all_ready(std::slice::from_ref(&early), 3));
    assert!(early.handle().broker_stats().unwrap().sharded, "the early node shards");
    early.shutdown(Duration::from_secs(2));
    println!("cluster: a node started before the Redis Cluster was formed got ready once it was");
    let url = cluster.shards[0].url();
    let shape = Shape { topics: &topics, subscribers: 1, publishers: 1 };
    every_message_reaches_every_subscriber_once_in_order(&url, Sharding::Auto, &shape);
    let ports: Vec<u16> = cluster.shards.iter().map(|r| r.port).collect();
    // Not the endpoint the nodes were given: they reach it through the slot map.
    let through = [topics[1].clone()];
    redis_failure_costs_only_what_is_counted(
        &url,
        Sharding::Auto,
        &shape,
        (&mut cluster.shards[1], &through),
        || wait_cluster_ok(&ports),
    );
    a_moved_slot_is_followed(&cluster, &url, &shape);
}

fn main() -> ExitCode {
    let path = std::env::var("SURGE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let found = Command::new(&path).arg("--version").stdout(Stdio::null()).status();
    if !found.is_ok_and(|s| s.success()) {
        eprintln!("cluster: no redis-server ({path}); skipped (apt-get install redis-server)");
        return ExitCode::from(77);
    }
    let cli = Command::new("redis-cli").arg("--version").stdout(Stdio::null()).status();
    if !cli.is_ok_and(|s| s.success()) {
        eprintln!("cluster: no redis-cli; skipped (apt-get install redis-tools)");
        return ExitCode::from(77);
    }
    against_one_redis(&path);
    against_a_redis_cluster(&path);
    println!("cluster: passed");
    ExitCode::SUCCESS
}
