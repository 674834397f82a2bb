//! Reaching the loops from any thread: connection ids, commands, the server handle.
//!
//! Each loop owns a command channel and a [`mio::Waker`]. A sender pushes its command, then
//! wakes the loop only if no wake is already pending (one flag per loop), so a burst of
//! commands costs one wake-up.

use std::cell::Cell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use surge_proto::close::{CloseCode, CloseFrame};
use surge_proto::message::Message;

use crate::admission::Admissions;
use crate::cluster::{BrokerLink, BrokerStats};
use crate::error::HandleError;
use crate::key::ConnKey;
use crate::metrics::Metrics;
use crate::outbox::SharedFrame;
use crate::tls::{TlsContext, TlsError};
use crate::topics::{LoopTopicCounters, TopicList, TopicStats};
use crate::transport::Stream;

/// Names one connection for its whole life: its loop, its slot, and the slot's generation.
///
/// A slot is reused by later connections with a new generation, so an id whose connection is
/// gone is refused by its loop and never reaches the next tenant of the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId {
    pub(crate) loop_index: u16,
    pub(crate) key: ConnKey,
}

impl ConnectionId {
    /// The loop the connection lives on.
    pub fn loop_index(&self) -> LoopIndex {
        LoopIndex(self.loop_index)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.loop_index, self.key)
    }
}

/// Which event loop: `0..threads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoopIndex(pub(crate) u16);

impl LoopIndex {
    /// The index as a number.
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for LoopIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A message that owns its payload, for sending from other threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedMessage {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl OwnedMessage {
    /// The message, borrowed.
    pub fn as_message(&self) -> Message<'_> {
        match self {
            OwnedMessage::Text(text) => Message::Text(text),
            OwnedMessage::Binary(bytes) => Message::Binary(bytes),
        }
    }
}

impl From<Message<'_>> for OwnedMessage {
    fn from(msg: Message<'_>) -> Self {
        match msg {
            Message::Text(text) => OwnedMessage::Text(text.to_owned()),
            Message::Binary(bytes) => OwnedMessage::Binary(bytes.to_vec()),
        }
    }
}

impl From<String> for OwnedMessage {
    fn from(text: String) -> Self {
        OwnedMessage::Text(text)
    }
}

impl From<&str> for OwnedMessage {
    fn from(text: &str) -> Self {
        OwnedMessage::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for OwnedMessage {
    fn from(bytes: Vec<u8>) -> Self {
        OwnedMessage::Binary(bytes)
    }
}

/// What a graceful shutdown achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections whose close handshake completed (our Close went out, the peer's came back)
    /// before the deadline.
    pub closed_cleanly: usize,
    /// Connections dropped without a completed close handshake: still open at the deadline,
    /// or lost (reset, end of stream) on the way.
    pub forced: usize,
}

impl std::ops::AddAssign for ShutdownReport {
    fn add_assign(&mut self, other: Self) {
        self.closed_cleanly += other.closed_cleanly;
        self.forced += other.forced;
    }
}

thread_local! {
    /// Set on loop threads, where waiting for the loops would wait for ourselves.
    pub(crate) static ON_LOOP_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Work for a loop, sent from any thread.
#[derive(Debug)]
pub(crate) enum Command {
    Send {
        id: ConnectionId,
        msg: OwnedMessage,
    },
    Broadcast(SharedFrame),
    Subscribe {
        id: ConnectionId,
        topic: Arc<str>,
    },
    Unsubscribe {
        id: ConnectionId,
        topic: Arc<str>,
    },
    /// A publish for this loop's subscribers of `topics`. From another node, `via` is the
    /// topic whose channel it came on: it reaches the subscribers of that topic who are in
    /// none of the topics listed before it (those get the copy of an earlier channel).
    Publish {
        topics: TopicList,
        frame: SharedFrame,
    },
    Remote {
        topics: TopicList,
        via: usize,
        frame: SharedFrame,
    },
    Close {
        id: ConnectionId,
        frame: CloseFrame,
    },
    /// A socket accepted by another loop (when `SO_REUSEPORT` is not used).
    Adopt(Stream, SocketAddr),
    Shutdown {
        deadline: Instant,
    },
}

/// One loop as seen from outside: its queue and its waker.
#[derive(Debug)]
pub(crate) struct LoopRemote {
    pub(crate) commands: Sender<Command>,
    pub(crate) waker: mio::Waker,
    /// Set by the first sender after the loop last looked; cleared by the loop.
    pub(crate) wake_pending: AtomicBool,
}

impl LoopRemote {
    /// Queues `command` and wakes the loop unless a wake is already on its way.
    pub(crate) fn submit(&self, command: Command) -> Result<(), HandleError> {
        self.commands.send(command).map_err(|_| HandleError::Stopped)?;
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            // The loop may have exited between the send and here; then no one is waiting.
            let _ = self.waker.wake();
        }
        Ok(())
    }

    /// The loop's side: call before draining the queue. Senders that queued after this
    /// wake the loop again. (A read-modify-write, so the drain that follows sees every
    /// command whose sender saw the flag still set.)
    pub(crate) fn rearm(&self) {
        self.wake_pending.swap(false, Ordering::AcqRel);
    }
}

/// State shared by every handle and loop.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) loops: Vec<LoopRemote>,
    /// Open WebSocket connections, across loops, under `max_connections`.
    pub(crate) admissions: Arc<Admissions>,
    /// The certificates every loop's new TLS connections are served, when there is TLS.
    pub(crate) tls: Option<Arc<TlsContext>>,
    pub(crate) shutting_down: AtomicBool,
    /// Each loop sends one report as it exits; the first shutdown takes them all.
    pub(crate) reports: Mutex<Option<Receiver<ShutdownReport>>>,
    /// Every loop's counts, for `/metrics`.
    pub(crate) metrics: Metrics,
    /// Each loop's publish counters, by loop index.
    pub(crate) topic_counters: Vec<LoopTopicCounters>,
    /// The node's link to the other nodes' broker, in a cluster.
    pub(crate) broker: Option<BrokerLink>,
}

impl Shared {
    /// The state of loops that have just been made (`remotes`), with no broker yet.
    pub(crate) fn new(
        remotes: Vec<LoopRemote>,
        admissions: Arc<Admissions>,
        reports: Receiver<ShutdownReport>,
        broker: Option<BrokerLink>,
        tls: Option<Arc<TlsContext>>,
    ) -> Self {
        Shared {
            tls,
            topic_counters: remotes.iter().map(|_| LoopTopicCounters::default()).collect(),
            metrics: Metrics::new(remotes.len(), Arc::clone(&admissions)),
            loops: remotes,
            admissions,
            shutting_down: AtomicBool::new(false),
            reports: Mutex::new(Some(reports)),
            broker,
        }
    }
}

/// A cheap, cloneable handle to a running server, usable from any thread.
///
/// ```no_run
/// # use surge::{echo::EchoHandler, Config, Server};
/// # use std::time::Duration;
/// let config = Config::builder().listen("127.0.0.1:0".parse().unwrap()).build().unwrap();
/// let server = Server::start(config, |_| EchoHandler)?;
/// let handle = server.handle().clone();
/// std::thread::spawn(move || handle.broadcast("tick".into()));
/// let report = server.handle().shutdown(Duration::from_secs(5));
/// println!("{} closed cleanly, {} forced", report.closed_cleanly, report.forced);
/// # Ok::<(), surge::ServerError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ServerHandle {
    fn remote(&self, id: ConnectionId) -> Result<&LoopRemote, HandleError> {
        self.shared.loops.get(usize::from(id.loop_index)).ok_or(HandleError::NoSuchLoop)
    }

    /// Sends `msg` to one connection.
    ///
    /// Delivery is asynchronous: the connection's loop encodes the message and queues it.
    /// An id whose connection has closed is refused there (the message is dropped and counted
    /// in the loop's debug log); it never reaches a later connection in the same slot. Past
    /// the connection's backpressure limit the loop applies the
    /// [policy](crate::BackpressurePolicy): the handler's
    /// [`on_refused`](crate::Handler::on_refused) gets the message back, or the connection is
    /// closed with 1008.
    pub fn send(&self, id: ConnectionId, msg: OwnedMessage) -> Result<(), HandleError> {
        self.remote(id)?.submit(Command::Send { id, msg })
    }

    /// Sends `msg` to every open connection of every loop. The frame is encoded once and
    /// shared; each connection queues a reference to it.
    pub fn broadcast(&self, msg: OwnedMessage) -> Result<(), HandleError> {
        self.broadcast_message(msg.as_message())
    }

    /// [`broadcast`](Self::broadcast) from a borrowed message.
    pub fn broadcast_message(&self, msg: Message<'_>) -> Result<(), HandleError> {
        let frame = SharedFrame::encode(msg);
        let mut delivered = false;
        for remote in &self.shared.loops {
            delivered |= remote.submit(Command::Broadcast(frame.clone())).is_ok();
        }
        if delivered {
            Ok(())
        } else {
            Err(HandleError::Stopped)
        }
    }

    /// Subscribes connection `id` to `topic`, on its loop (see
    /// [`Conn::subscribe`](crate::Conn::subscribe)). A later publish from this thread
    /// reaches it; an id whose connection is gone is ignored there.
    pub fn subscribe(&self, id: ConnectionId, topic: &str) -> Result<(), HandleError> {
        self.remote(id)?.submit(Command::Subscribe { id, topic: Arc::from(topic) })
    }

    /// Unsubscribes connection `id` from `topic`, on its loop.
    pub fn unsubscribe(&self, id: ConnectionId, topic: &str) -> Result<(), HandleError> {
        self.remote(id)?.submit(Command::Unsubscribe { id, topic: Arc::from(topic) })
    }

    /// Publishes `msg` to every subscriber of `topic` on every loop (and, in a cluster, on
    /// every node). The frame is encoded once and shared.
    ///
    /// Order: the subscribers receive this thread's publishes to a topic in the order they
    /// were made, and a [`send`](Self::send) from this thread after a publish arrives after
    /// it (both go through the loop's one queue). Across nodes delivery is at most once: see
    /// [`Config::cluster`](crate::ConfigBuilder::cluster).
    ///
    /// ```no_run
    /// # use surge::{echo::EchoHandler, Config, Message, Server};
    /// # let config = Config::builder().listen("127.0.0.1:0".parse().unwrap()).build().unwrap();
    /// let server = Server::start(config, |_| EchoHandler)?;
    /// server.handle().publish("prices", Message::Text("EURUSD 1.0842"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish(&self, topic: &str, msg: Message<'_>) -> Result<(), HandleError> {
        self.publish_list(TopicList::One(Arc::from(topic)), msg)
    }

    /// Publishes `msg` to the subscribers of `topics`, each once however many of them it is
    /// subscribed to.
    pub fn publish_to(&self, topics: &[&str], msg: Message<'_>) -> Result<(), HandleError> {
        let list = TopicList::Many(topics.iter().map(|&topic| Arc::from(topic)).collect());
        self.publish_list(list, msg)
    }

    fn publish_list(&self, topics: TopicList, msg: Message<'_>) -> Result<(), HandleError> {
        let frame = SharedFrame::encode(msg);
        let mut delivered = false;
        for remote in &self.shared.loops {
            let command = Command::Publish { topics: topics.clone(), frame: frame.clone() };
            delivered |= remote.submit(command).is_ok();
        }
        if let Some(broker) = &self.shared.broker {
            broker.publish(&topics, &frame);
        }
        if delivered {
            Ok(())
        } else {
            Err(HandleError::Stopped)
        }
    }

    /// Publish counters of every loop together (for metrics).
    pub fn topic_stats(&self) -> TopicStats {
        let mut total = TopicStats::default();
        for counters in &self.shared.topic_counters {
            total += counters.read();
        }
        total
    }

    /// The broker's state and counters, in a cluster (for metrics); `None` otherwise.
    pub fn broker_stats(&self) -> Option<BrokerStats> {
        self.shared.broker.as_ref().map(BrokerLink::stats)
    }

    /// Whether this node serves everything it should: not shutting down and, in a cluster,
    /// connected to the broker with every subscription in place. A node whose broker is down
    /// still delivers its own publishes locally but not other nodes': a readiness check
    /// (`/readyz`) should take it out of rotation.
    pub fn ready(&self) -> bool {
        !self.shared.shutting_down.load(Ordering::Acquire)
            && self.shared.broker.as_ref().is_none_or(BrokerLink::ready)
    }

    /// Starts the close handshake of one connection with `code` and `reason` (cut to 123
    /// bytes at a character boundary).
    pub fn close(
        &self,
        id: ConnectionId,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), HandleError> {
        if !code.is_allowed_on_wire() {
            return Err(HandleError::InvalidCloseCode(code));
        }
        self.remote(id)?.submit(Command::Close { id, frame: CloseFrame::new(code, reason) })
    }

    /// Reads the configured certificate and key files again and serves them to new TLS
    /// handshakes from now on; connections already open keep theirs. When any file is
    /// missing or bad, nothing changes and the error names the file.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        self.shared.tls.as_ref().ok_or(TlsError::NotServed)?.reload()
    }

    /// What the limits on one client have refused so far (per-address caps, rates).
    pub fn limit_stats(&self) -> crate::LimitStats {
        self.shared.admissions.counters.snapshot()
    }

    /// Open WebSocket connections across all loops.
    pub fn connections(&self) -> usize {
        self.shared.admissions.open()
    }

    /// The server's metrics in the Prometheus text format, as `GET /metrics` answers them
    /// (every loop's counts, read now).
    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        let topics = self.shared.topic_counters.iter().map(LoopTopicCounters::read).collect();
        self.shared.metrics.encode(topics, self.broker_stats(), &mut text);
        text
    }

    /// Shuts the server down gracefully and waits for it: listeners close, handshakes in
    /// progress get 503, every open connection gets Close 1001 (going away), queued output
    /// is drained, and peers have until `grace` from now to answer with their Close; then
    /// the rest are dropped. Returns how many connections closed cleanly.
    ///
    /// Only the first call waits and reports; later calls (and calls after the loops have
    /// gone) return an empty report at once. Called from a handler, on a loop's own thread,
    /// it starts the shutdown and returns an empty report without waiting (the loop cannot
    /// shut down while it waits); the next call from another thread still gets the report.
    pub fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let deadline = Instant::now() + grace;
        self.shared.shutting_down.store(true, Ordering::Release);
        if ON_LOOP_THREAD.with(Cell::get) {
            for remote in &self.shared.loops {
                let _ = remote.submit(Command::Shutdown { deadline });
            }
            return ShutdownReport::default();
        }
        let reports = self.shared.reports.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(reports) = reports else { return ShutdownReport::default() };
        for remote in &self.shared.loops {
            // A loop that is already gone has sent its report.
            let _ = remote.submit(Command::Shutdown { deadline });
        }
        let mut total = ShutdownReport::default();
        // Loops keep the deadline themselves; the margin covers a loop held up by a slow
        // handler call. A loop that never reports is logged, not waited for.
        let give_up = deadline + Duration::from_secs(5);
        for _ in 0..self.shared.loops.len() {
            match reports.recv_deadline(give_up) {
                Ok(report) => total += report,
                Err(_) => {
                    tracing::error!("a loop did not report its shutdown in time");
                    break;
                }
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_loop_slot_and_generation() {
        let id = ConnectionId { loop_index: 2, key: ConnKey { slot: 7, generation: 1 } };
        assert_eq!(id.to_string(), "2:7.1");
        assert_eq!(id.loop_index().get(), 2);
    }

    #[test]
    fn owned_messages_convert() {
        assert_eq!(OwnedMessage::from("hi").as_message(), Message::Text("hi"));
        assert_eq!(OwnedMessage::from(vec![1u8]).as_message(), Message::Binary(&[1]));
        assert_eq!(OwnedMessage::from(Message::Text("a")), OwnedMessage::Text("a".into()));
    }

    #[test]
    fn concurrent_submits_wake_once_and_lose_nothing() {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let remote =
            Arc::new(LoopRemote { commands: tx, waker, wake_pending: AtomicBool::new(false) });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let remote = Arc::clone(&remote);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        remote.submit(Command::Shutdown { deadline: Instant::now() }).unwrap();
                    }
                })
            })
            .collect();
        // The loop's side: clear the flag, then drain; repeat while woken.
        let mut seen = 0;
        let mut poll = poll;
        let mut events = mio::Events::with_capacity(8);
        while seen < 4000 {
            poll.poll(&mut events, Some(Duration::from_secs(5))).unwrap();
            assert!(!events.is_empty(), "a command was queued without a wake");
            remote.rearm();
            seen += rx.try_iter().count();
        }
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(seen, 4000);
    }
}
