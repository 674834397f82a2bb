//! Server configuration: built once, validated once, then shared read-only by every loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use surge_proto::connection::Limits;
use surge_proto::handshake::HandshakeLimits;

use crate::deflate::DeflateConfig;
use crate::readiness::ReadyFlag;
use crate::tls::{TlsConfig, TlsContext, TlsError};

/// What [`Conn::send`](crate::Conn::send) does once a connection's unsent output has reached
/// the [backpressure limit](ConfigBuilder::backpressure_limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackpressurePolicy {
    /// Hand the message back ([`SendResult::Backpressure`](crate::SendResult)); the handler's
    /// [`on_drain`](crate::Handler::on_drain) runs once the output falls under the low
    /// watermark.
    #[default]
    HandBack,
    /// Close the connection with 1008 (policy violation): a peer that does not read is
    /// dropped rather than waited for.
    Close1008,
}

/// What happens to a connection whose messages come faster than its
/// [rate limit](ConfigBuilder::rate_limit) allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RatePolicy {
    /// Stop reading it until its allowance refills (TCP flow control holds the peer back).
    #[default]
    Pause,
    /// Close it with 1008 (policy violation).
    Close1008,
}

/// A per-connection allowance of messages and bytes received per second, each a token
/// bucket that holds one second's worth (so a burst of up to a second's allowance passes).
///
/// ```
/// use surge::config::{RateLimit, RatePolicy};
///
/// let limit = RateLimit { messages_per_second: Some(1000), bytes_per_second: Some(1 << 20), policy: RatePolicy::Pause };
/// assert!(limit.is_set());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// Messages per second; `None`: not limited.
    pub messages_per_second: Option<u32>,
    /// Message payload bytes per second; `None`: not limited.
    pub bytes_per_second: Option<u64>,
    /// What a connection past either allowance gets.
    pub policy: RatePolicy,
}

impl RateLimit {
    /// Whether either allowance is limited.
    pub fn is_set(&self) -> bool {
        self.messages_per_second.is_some() || self.bytes_per_second.is_some()
    }
}

/// Which cores the loops run on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Pinning {
    /// Leave placement to the operating system.
    #[default]
    Off,
    /// Loop `i` runs on every core the process may use, in order, `i` modulo their number.
    AllCores,
    /// Loop `i` runs on core `cores[i % cores.len()]`.
    Cores(Vec<usize>),
}

/// What waits for I/O in each loop ([`ConfigBuilder::backend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// io_uring where the system allows it (probed once at start), epoll otherwise, with
    /// one log line saying why.
    #[default]
    Auto,
    /// Readiness through epoll (kqueue elsewhere), via mio: a `read` and a `write` per
    /// connection and turn.
    Epoll,
    /// io_uring (Linux): multishot accept and receive into a provided buffer ring, sends
    /// submitted from the output queue, one `io_uring_enter` per loop turn. Starting fails
    /// where the system refuses it.
    IoUring,
}

/// Whether a cluster uses Redis' sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7), which
/// spreads channels over a Redis Cluster's shards instead of sending every message to
/// every shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharding {
    /// Sharded where the server has the commands (asked at each connection).
    #[default]
    Auto,
    /// Classic `SUBSCRIBE`/`PUBLISH`.
    Off,
    /// Sharded; a server without it fails each connection (the broker stays down).
    On,
}

/// How the nodes of a cluster share topics: a Redis server and how to use it. See
/// [`ConfigBuilder::cluster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    url: String,
    sharding: Sharding,
    queue: usize,
}

impl Cluster {
    /// The Redis URL, `redis://HOST:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether sharded pub/sub is used.
    pub fn sharding(&self) -> Sharding {
        self.sharding
    }

    /// Publishes that may wait for Redis; past it, a publish is counted as not delivered
    /// to the other nodes.
    pub fn queue(&self) -> usize {
        self.queue
    }
}

/// Which setting a [`ConfigError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// [`ConfigBuilder::threads`].
    Threads,
    /// [`ConfigBuilder::backlog`].
    Backlog,
    /// [`ConfigBuilder::handshake_timeout`].
    HandshakeTimeout,
    /// [`ConfigBuilder::idle_timeout`].
    IdleTimeout,
    /// [`ConfigBuilder::close_timeout`].
    CloseTimeout,
    /// [`ConfigBuilder::timer_tick`].
    TimerTick,
    /// [`ConfigBuilder::backpressure_limit`].
    BackpressureLimit,
    /// [`ConfigBuilder::max_message_size`].
    MaxMessageSize,
    /// [`ConfigBuilder::max_connections`].
    MaxConnections,
    /// [`ConfigBuilder::read_buffer_size`].
    ReadBufferSize,
    /// [`ConfigBuilder::assembly_budget`].
    AssemblyBudget,
    /// [`ConfigBuilder::max_connections_per_address`].
    MaxConnectionsPerAddress,
    /// [`ConfigBuilder::handshakes_per_second_per_address`].
    HandshakeRate,
    /// [`ConfigBuilder::rate_limit`].
    RateLimit,
    /// [`ConfigBuilder::io_uring_buffers`].
    IoUringBuffers,
    /// [`ConfigBuilder::cluster_queue`].
    ClusterQueue,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Setting::Threads => "threads",
            Setting::Backlog => "backlog",
            Setting::HandshakeTimeout => "handshake timeout",
            Setting::IdleTimeout => "idle timeout",
            Setting::CloseTimeout => "close timeout",
            Setting::TimerTick => "timer tick",
            Setting::BackpressureLimit => "backpressure limit",
            Setting::MaxMessageSize => "max message size",
            Setting::MaxConnections => "max connections",
            Setting::ReadBufferSize => "read buffer size",
            Setting::AssemblyBudget => "assembly budget",
            Setting::MaxConnectionsPerAddress => "max connections per address",
            Setting::HandshakeRate => "handshakes per second per address",
            Setting::RateLimit => "rate limit",
            Setting::IoUringBuffers => "io_uring buffers",
            Setting::ClusterQueue => "cluster queue",
        })
    }
}

/// A configuration that cannot run.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No address to listen on.
    #[error("no listen address")]
    NoListenAddress,
    /// A setting that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(Setting),
    /// More loops than a connection id can number.
    #[error("at most {max} threads", max = u16::MAX)]
    TooManyThreads,
    /// A timeout shorter than two timer ticks cannot be kept.
    #[error("{setting} must be at least {min:?} (two timer ticks)")]
    ShorterThanTwoTicks {
        /// The timeout.
        setting: Setting,
        /// The shortest accepted.
        min: Duration,
    },
    /// The low watermark must lie below the backpressure limit.
    #[error("the low watermark ({low} B) must be below the backpressure limit ({limit} B)")]
    LowWatermark {
        /// The low watermark asked for.
        low: usize,
        /// The backpressure limit.
        limit: usize,
    },
    /// The read buffer must hold at least a handshake head and a frame header.
    #[error("read buffer size must be at least {min} bytes", min = MIN_READ_BUFFER)]
    ReadBufferTooSmall,
    /// More header fields allowed than the loops keep storage for.
    #[error("at most {max} header fields can be allowed", max = MAX_HEADERS)]
    TooManyHeaders,
    /// Pinning asked for a core this process may not use (or core ids cannot be listed).
    #[error("core {0} is not available for pinning")]
    UnknownCore(usize),
    /// A certificate or key of the [TLS configuration](ConfigBuilder::tls) cannot be served.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// io_uring buffers: a count that is not a power of two up to 32768, or a size under
    /// 64 bytes (or over 1 GiB).
    #[error("{0}: the count must be a power of two up to 32768, the size 64 B to 1 GiB")]
    Invalid(Setting),
    /// The cluster's Redis URL cannot be used (expected `redis://HOST:PORT`).
    #[error("bad cluster URL (expected redis://HOST:PORT)")]
    ClusterUrl,
    /// permessage-deflate settings outside what DEFLATE allows (window 9..=15, memLevel
    /// 1..=9, level 0..=9).
    #[error("permessage-deflate: window bits must be 9..=15, memLevel 1..=9, level 0..=9")]
    InvalidDeflate,
}

/// The smallest read buffer accepted.
const MIN_READ_BUFFER: usize = 4096;

/// Header fields a handshake may carry at most (the parser's storage lives on the stack).
pub(crate) const MAX_HEADERS: usize = 128;

/// A validated server configuration. Build one with [`Config::builder`].
///
/// ```
/// use std::time::Duration;
/// use surge::Config;
///
/// let config = Config::builder()
///     .listen("127.0.0.1:0".parse().unwrap())
///     .threads(2)
///     .idle_timeout(Some(Duration::from_secs(30)))
///     .build()
///     .unwrap();
/// assert_eq!(config.threads(), 2);
/// assert_eq!(config.backpressure_limit(), 1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    listen: Vec<SocketAddr>,
    threads: usize,
    pinning: Vec<usize>,
    backlog: i32,
    nodelay: bool,
    reuse_port: bool,
    limits: Limits,
    handshake_limits: HandshakeLimits,
    handshake_timeout: Duration,
    idle_timeout: Option<Duration>,
    backpressure_limit: usize,
    low_watermark: usize,
    backpressure_policy: BackpressurePolicy,
    max_connections: usize,
    allowed_origins: Option<Vec<String>>,
    read_buffer_size: usize,
    timer_tick: Duration,
    pool_budget: usize,
    assembly_budget: usize,
    tls: Option<Arc<TlsContext>>,
    max_connections_per_address: Option<usize>,
    handshakes_per_second_per_address: Option<u32>,
    rate_limit: Option<RateLimit>,
    http_body_limit: usize,
    readiness: Vec<(&'static str, ReadyFlag)>,
    backend: Backend,
    io_uring_buffers: (u16, usize),
    cluster: Option<Cluster>,
    deflate: Option<DeflateConfig>,
}

impl Config {
    /// A builder with the defaults: no listen address yet, one loop per available core, no
    /// pinning, backlog 1024, `TCP_NODELAY` on, `SO_REUSEPORT` where the system has it,
    /// 16 MiB messages and frames, handshake 10 s, idle 120 s (ping at half), close 5 s,
    /// 1 MiB backpressure limit with a 256 KiB low watermark, [`BackpressurePolicy::HandBack`],
    /// 100 000 connections, 64 KiB read buffer, 100 ms timer tick, 1 GiB for partly received
    /// messages, 64 KiB HTTP request bodies, no readiness condition beyond accepting,
    /// [`Backend::Auto`] with 8 io_uring receive buffers of 64 KiB per loop.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                listen: Vec::new(),
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
                pinning: Vec::new(),
                backlog: 1024,
                nodelay: true,
                reuse_port: true,
                limits: Limits::default(),
                handshake_limits: HandshakeLimits::default(),
                handshake_timeout: Duration::from_secs(10),
                idle_timeout: Some(Duration::from_secs(120)),
                backpressure_limit: 1 << 20,
                low_watermark: 256 << 10,
                backpressure_policy: BackpressurePolicy::HandBack,
                max_connections: 100_000,
                allowed_origins: None,
                read_buffer_size: 64 << 10,
                timer_tick: Duration::from_millis(100),
                pool_budget: 16 << 20,
                assembly_budget: 1 << 30,
                tls: None,
                max_connections_per_address: None,
                handshakes_per_second_per_address: None,
                rate_limit: None,
                http_body_limit: 64 << 10,
                readiness: Vec::new(),
                backend: Backend::Auto,
                io_uring_buffers: (8, 64 << 10),
                cluster: None,
                deflate: None,
            },
            pinning: Pinning::Off,
            low_watermark_set: false,
            tls: None,
        }
    }

    /// Addresses to listen on.
    pub fn listen(&self) -> &[SocketAddr] {
        &self.listen
    }
    /// Number of event loops (threads).
    pub fn threads(&self) -> usize {
        self.threads
    }
    /// The core of each loop, by loop index modulo the list; empty when not pinned.
    pub fn pinning(&self) -> &[usize] {
        &self.pinning
    }
    /// Listen backlog.
    pub fn backlog(&self) -> i32 {
        self.backlog
    }
    /// Whether accepted sockets get `TCP_NODELAY`.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }
    /// Whether each loop gets its own `SO_REUSEPORT` listener (else one loop accepts and
    /// hands sockets round-robin to the others).
    pub fn reuse_port(&self) -> bool {
        self.reuse_port
    }
    /// Frame, message and close-handshake limits of each connection.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    /// Limits of the opening handshake.
    pub fn handshake_limits(&self) -> &HandshakeLimits {
        &self.handshake_limits
    }
    /// Time a client has to complete its opening handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }
    /// Time a connection may stay silent: a ping goes out at half of it, and a connection
    /// still silent at its end is closed with 1001 (going away). `None`: never.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
    /// Time to wait for the peer's Close after sending ours.
    pub fn close_timeout(&self) -> Duration {
        self.limits.close_timeout
    }
    /// Unsent bytes at which sends are refused (or the connection closed, per policy).
    pub fn backpressure_limit(&self) -> usize {
        self.backpressure_limit
    }
    /// Unsent bytes under which a backpressured connection is drained again.
    pub fn low_watermark(&self) -> usize {
        self.low_watermark
    }
    /// What happens at the backpressure limit.
    pub fn backpressure_policy(&self) -> BackpressurePolicy {
        self.backpressure_policy
    }
    /// Open WebSocket connections across all loops; past it, handshakes get 503.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
    /// Origins allowed to connect, if restricted (see [`ConfigBuilder::allowed_origins`]).
    pub fn allowed_origins(&self) -> Option<&[String]> {
        self.allowed_origins.as_deref()
    }
    /// Size of each loop's read buffer.
    pub fn read_buffer_size(&self) -> usize {
        self.read_buffer_size
    }

    /// The backend asked for (see [`Server::backend`](crate::Server::backend) for the one
    /// a running server chose).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The io_uring backend's provided receive buffers per loop: how many, and their size.
    pub fn io_uring_buffers(&self) -> (u16, usize) {
        self.io_uring_buffers
    }
    /// Resolution of the timers.
    pub fn timer_tick(&self) -> Duration {
        self.timer_tick
    }
    /// Idle buffer capacity each loop keeps pooled.
    pub fn pool_budget(&self) -> usize {
        self.pool_budget
    }
    /// The certificates served over TLS, when the server speaks wss.
    pub fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_deref().map(TlsContext::files)
    }

    /// Open connections one client address may hold; `None`: only the server's cap.
    pub fn max_connections_per_address(&self) -> Option<usize> {
        self.max_connections_per_address
    }

    /// Handshakes per second one client address may make; `None`: not limited.
    pub fn handshakes_per_second_per_address(&self) -> Option<u32> {
        self.handshakes_per_second_per_address
    }

    /// Each connection's allowance of messages and bytes per second; `None`: not limited.
    pub fn rate_limit(&self) -> Option<&RateLimit> {
        self.rate_limit.as_ref()
    }

    /// The live TLS state every loop's new connections start from.
    pub(crate) fn tls_context(&self) -> Option<&Arc<TlsContext>> {
        self.tls.as_ref()
    }

    /// Memory all connections together may hold in messages that arrived in part.
    pub fn assembly_budget(&self) -> usize {
        self.assembly_budget
    }
    /// Largest body a plain HTTP request may carry; past it the answer is 413.
    pub fn http_body_limit(&self) -> usize {
        self.http_body_limit
    }
    /// The conditions `GET /readyz` requires besides accepting, by name.
    pub fn readiness(&self) -> &[(&'static str, ReadyFlag)] {
        &self.readiness
    }

    /// The cluster this node is part of, if any.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// permessage-deflate, when on.
    pub fn deflate(&self) -> Option<&DeflateConfig> {
        self.deflate.as_ref()
    }

    /// Whether `origin` (the request's `Origin` header, if any) may connect.
    pub(crate) fn origin_allowed(&self, origin: Option<&[u8]>) -> bool {
        match (&self.allowed_origins, origin) {
            (None, _) => true,
            // Browsers always send Origin; a client without one is not a browser page and
            // cannot carry a victim's cookies across sites.
            (Some(_), None) => true,
            (Some(list), Some(origin)) => {
                list.iter().any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
            }
        }
    }
}

/// Builds a [`Config`]; see [`Config::builder`] for the defaults.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
    pinning: Pinning,
    low_watermark_set: bool,
    tls: Option<TlsConfig>,
}

impl ConfigBuilder {
    /// Adds an address to listen on (IPv4 or IPv6; port 0 picks a free port, reported by
    /// [`Server::local_addrs`](crate::Server::local_addrs)). May be called several times.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen.push(addr);
        self
    }
    /// Number of event loops, one thread each.
    pub fn threads(mut self, threads: usize) -> Self {
        self.config.threads = threads;
        self
    }
    /// Pins loops to cores.
    pub fn pinning(mut self, pinning: Pinning) -> Self {
        self.pinning = pinning;
        self
    }
    /// Listen backlog.
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.config.backlog = backlog;
        self
    }
    /// `TCP_NODELAY` on accepted sockets (default on).
    pub fn nodelay(mut self, on: bool) -> Self {
        self.config.nodelay = on;
        self
    }
    /// One `SO_REUSEPORT` listener per loop (default on; falls back to one accepting loop
    /// where the system lacks it).
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.config.reuse_port = on;
        self
    }
    /// Largest message, and largest frame (past either: close 1009).
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.config.limits.max_message_size = bytes;
        self.config.limits.max_frame_size = bytes;
        self
    }
    /// Frame and message limits (the close timeout inside is
    /// [`close_timeout`](Self::close_timeout)'s).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }
    /// Opening handshake limits.
    pub fn handshake_limits(mut self, limits: HandshakeLimits) -> Self {
        self.config.handshake_limits = limits;
        self
    }
    /// Time a client has to complete its opening handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }
    /// Silence allowed before a ping (at half) and a close with 1001 (at the end); `None`
    /// disables both.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }
    /// Time to wait for the peer's Close after sending ours.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.limits.close_timeout = timeout;
        self
    }
    /// Unsent bytes at which sends are refused; the low watermark follows at a quarter
    /// unless set.
    pub fn backpressure_limit(mut self, bytes: usize) -> Self {
        self.config.backpressure_limit = bytes;
        self
    }
    /// Unsent bytes under which a backpressured connection is drained again.
    pub fn low_watermark(mut self, bytes: usize) -> Self {
        self.config.low_watermark = bytes;
        self.low_watermark_set = true;
        self
    }
    /// What happens at the backpressure limit.
    pub fn backpressure_policy(mut self, policy: BackpressurePolicy) -> Self {
        self.config.backpressure_policy = policy;
        self
    }
    /// Open WebSocket connections across all loops; past it, handshakes get 503.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = max;
        self
    }
    /// Refuses (403) handshakes whose `Origin` is not one of `origins` (compared
    /// ASCII-case-insensitively, e.g. `"https://example.com"`). Requests without `Origin`
    /// do not come from browser pages and are let through. This stops cross-site WebSocket
    /// hijacking; by default every origin is allowed.
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }
    /// Size of each loop's read buffer (default 64 KiB). With TLS the loop reads ciphertext
    /// into it and decrypts it there, so its buffer is at least 34 KiB then.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.config.read_buffer_size = bytes;
        self
    }
    /// What waits for I/O (default [`Backend::Auto`]: io_uring where the system allows it).
    ///
    /// ```
    /// use surge::{config::Backend, Config};
    ///
    /// let config = Config::builder()
    ///     .listen("127.0.0.1:0".parse().unwrap())
    ///     .backend(Backend::Epoll)
    ///     .build()?;
    /// assert_eq!(config.backend(), Backend::Epoll);
    /// # Ok::<(), surge::ConfigError>(())
    /// ```
    pub fn backend(mut self, backend: Backend) -> Self {
        self.config.backend = backend;
        self
    }
    /// The io_uring backend's provided receive buffers per loop (default 8 of 64 KiB):
    /// `count` a power of two from 1 to 32768, `size` at least 64 bytes. A receive fills
    /// part of one (Linux 6.12 on: the next receive goes on in the same buffer; before, it
    /// takes a whole one), and the buffer goes back to the kernel in the same turn, once the
    /// protocol has consumed it; when a turn's receives want more than there is, the rest
    /// wait in the kernel for the next turn (nothing is lost, and such waits are counted:
    /// [`Server::io_uring_stats`](crate::Server::io_uring_stats)). The memory is allocated
    /// and touched at start: `count * size` per loop. Incremental receives walk through the
    /// whole ring, so a ring that fits the core's cache (the default's 512 KiB) costs less
    /// per byte than a larger one (measured: 64 x 64 KiB took about 8% more server CPU per
    /// 16 KiB echo); before Linux 6.12 a turn receives for at most `count` connections.
    pub fn io_uring_buffers(mut self, count: u16, size: usize) -> Self {
        self.config.io_uring_buffers = (count, size);
        self
    }
    /// Resolution of the handshake, idle and close timers (default 100 ms).
    pub fn timer_tick(mut self, tick: Duration) -> Self {
        self.config.timer_tick = tick;
        self
    }
    /// Idle buffer capacity each loop keeps pooled (default 16 MiB).
    pub fn pool_budget(mut self, bytes: usize) -> Self {
        self.config.pool_budget = bytes;
        self
    }
    /// Memory all connections together may hold in messages that arrived in part (default
    /// 1 GiB, shared evenly by the loops). A connection whose message takes its loop past
    /// its share is closed with 1013 (try again later) and its partial message dropped: a
    /// crowd of peers each sending half of a large message cannot exhaust memory.
    pub fn assembly_budget(mut self, bytes: usize) -> Self {
        self.config.assembly_budget = bytes;
        self
    }

    /// Serves wss: every listener speaks TLS with these certificates (read and checked by
    /// [`build`](Self::build)). Off by default.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Caps the open connections of one client address: past it, its handshakes get 503
    /// before any WebSocket state exists. Off by default.
    pub fn max_connections_per_address(mut self, max: usize) -> Self {
        self.config.max_connections_per_address = Some(max);
        self
    }

    /// Caps the handshakes per second of one client address (a token bucket holding one
    /// second's worth): past it, they get 429. Off by default.
    pub fn handshakes_per_second_per_address(mut self, rate: u32) -> Self {
        self.config.handshakes_per_second_per_address = Some(rate);
        self
    }

    /// Limits how fast each connection may send messages and bytes, with what happens past
    /// it ([`RatePolicy`]). Off by default.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.config.rate_limit = limit.is_set().then_some(limit);
        self
    }

    /// Largest body a plain HTTP request (not an upgrade) may carry, by its
    /// `Content-Length`; a larger one is answered 413 and the connection closed (0: none may).
    pub fn http_body_limit(mut self, bytes: usize) -> Self {
        self.config.http_body_limit = bytes;
        self
    }

    /// Adds a condition to `GET /readyz`: it answers 503 while `flag` is unset (a
    /// dependency of the application's: a database, a warm cache). A [`cluster`](Self::cluster)'s
    /// broker is a condition already, named `broker`.
    pub fn ready_when(mut self, name: &'static str, flag: ReadyFlag) -> Self {
        self.config.readiness.push((name, flag));
        self
    }

    /// Makes this node part of a cluster whose nodes share topics through the Redis server
    /// at `url` (`redis://HOST:PORT`): a publish reaches the subscribers on every node.
    ///
    /// A node subscribes to a topic's channel only while it has subscribers to the topic. A
    /// publish is delivered on its own node at once and sent to Redis tagged with the node,
    /// which drops its own copy when it comes back. One publisher's messages to a topic keep
    /// their order on every node. Delivery across nodes is **at most once**: while Redis is
    /// down or slow, local delivery goes on and publishes for the other nodes are counted as
    /// not delivered ([`BrokerStats::undelivered`](crate::BrokerStats)), never queued
    /// beyond [`cluster_queue`](Self::cluster_queue); the node reconnects with backoff,
    /// subscribes again, and is not [`ready`](crate::ServerHandle::ready) until then.
    ///
    /// ```
    /// let config = surge::Config::builder()
    ///     .listen("127.0.0.1:0".parse().unwrap())
    ///     .cluster("redis://127.0.0.1:6379")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.cluster().unwrap().url(), "redis://127.0.0.1:6379");
    /// ```
    pub fn cluster(mut self, url: impl Into<String>) -> Self {
        let cluster = self.config.cluster.get_or_insert(Cluster {
            url: String::new(),
            sharding: Sharding::Auto,
            queue: 65_536,
        });
        cluster.url = url.into();
        self
    }
    /// Sharded pub/sub or classic (default [`Sharding::Auto`]); only with
    /// [`cluster`](Self::cluster).
    pub fn cluster_sharding(mut self, sharding: Sharding) -> Self {
        if let Some(cluster) = &mut self.config.cluster {
            cluster.sharding = sharding;
        }
        self
    }
    /// Publishes that may wait for Redis (default 65 536); only with
    /// [`cluster`](Self::cluster).
    pub fn cluster_queue(mut self, publishes: usize) -> Self {
        if let Some(cluster) = &mut self.config.cluster {
            cluster.queue = publishes;
        }
        self
    }
    /// Turns permessage-deflate on (RFC 7692; off by default): offers are accepted as
    /// `config` allows. [`DeflateConfig::default`] costs nothing per connection at rest;
    /// see [`deflate`](crate::deflate) for what each memory policy costs.
    pub fn deflate(mut self, config: DeflateConfig) -> Self {
        self.config.deflate = Some(config);
        self
    }

    /// Checks the settings together.
    pub fn build(self) -> Result<Config, ConfigError> {
        let ConfigBuilder { mut config, pinning, low_watermark_set, tls } = self;
        if config.listen.is_empty() {
            return Err(ConfigError::NoListenAddress);
        }
        let positive = [
            (config.threads == 0, Setting::Threads),
            (config.backlog <= 0, Setting::Backlog),
            (config.timer_tick.is_zero(), Setting::TimerTick),
            (config.backpressure_limit == 0, Setting::BackpressureLimit),
            (config.limits.max_message_size == 0, Setting::MaxMessageSize),
            (config.max_connections == 0, Setting::MaxConnections),
            (config.assembly_budget == 0, Setting::AssemblyBudget),
            (config.max_connections_per_address == Some(0), Setting::MaxConnectionsPerAddress),
            (config.handshakes_per_second_per_address == Some(0), Setting::HandshakeRate),
            (
                config.rate_limit.is_some_and(|r| {
                    r.messages_per_second == Some(0) || r.bytes_per_second == Some(0)
                }),
                Setting::RateLimit,
            ),
            (config.cluster.as_ref().is_some_and(|c| c.queue == 0), Setting::ClusterQueue),
        ];
        if let Some((_, setting)) = positive.iter().find(|(zero, _)| *zero) {
            return Err(ConfigError::Zero(*setting));
        }
        if config.threads > usize::from(u16::MAX) {
            return Err(ConfigError::TooManyThreads);
        }
        let two_ticks = config.timer_tick * 2;
        let timeouts = [
            (Some(config.handshake_timeout), Setting::HandshakeTimeout),
            (config.idle_timeout, Setting::IdleTimeout),
            (Some(config.limits.close_timeout), Setting::CloseTimeout),
        ];
        for (timeout, setting) in timeouts {
            if timeout.is_some_and(|t| t < two_ticks) {
                return Err(ConfigError::ShorterThanTwoTicks { setting, min: two_ticks });
            }
        }
        // The protocol keeps the idle timers; the engine maps their instants to its wheel.
        config.limits.idle_timeout = config.idle_timeout;
        if !low_watermark_set {
            config.low_watermark = config.backpressure_limit / 4;
        }
        if config.low_watermark >= config.backpressure_limit {
            return Err(ConfigError::LowWatermark {
                low: config.low_watermark,
                limit: config.backpressure_limit,
            });
        }
        let (buffers, buffer_size) = config.io_uring_buffers;
        if !buffers.is_power_of_two() || buffers > 1 << 15 || !(64..=1 << 30).contains(&buffer_size)
        {
            return Err(ConfigError::Invalid(Setting::IoUringBuffers));
        }
        if config.read_buffer_size < MIN_READ_BUFFER {
            return Err(ConfigError::ReadBufferTooSmall);
        }
        if let Some(cluster) = &config.cluster {
            let info = redis::IntoConnectionInfo::into_connection_info(cluster.url.as_str());
            if !cluster.url.starts_with("redis://") || info.is_err() {
                return Err(ConfigError::ClusterUrl);
            }
        }
        if config.handshake_limits.max_headers > MAX_HEADERS {
            return Err(ConfigError::TooManyHeaders);
        }
        if config.deflate.is_some_and(|deflate| !deflate.is_valid()) {
            return Err(ConfigError::InvalidDeflate);
        }
        config.pinning = match pinning {
            Pinning::Off => Vec::new(),
            Pinning::AllCores => available_cores().ok_or(ConfigError::UnknownCore(0))?,
            Pinning::Cores(cores) => {
                let available = available_cores().unwrap_or_default();
                if let Some(missing) = cores.iter().find(|c| !available.contains(c)) {
                    return Err(ConfigError::UnknownCore(*missing));
                }
                cores
            }
        };
        config.tls = tls.map(TlsContext::new).transpose()?.map(Arc::new);
        Ok(config)
    }
}

/// Cores this process may run on.
fn available_cores() -> Option<Vec<usize>> {
    let ids = core_affinity::get_core_ids()?;
    Some(ids.into_iter().map(|core| core.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ConfigBuilder {
        Config::builder().listen("127.0.0.1:0".parse().unwrap())
    }

    #[test]
    fn defaults_are_as_documented() {
        let config = base().build().unwrap();
        assert_eq!(config.handshake_timeout(), Duration::from_secs(10));
        assert_eq!(config.idle_timeout(), Some(Duration::from_secs(120)));
        assert_eq!(config.close_timeout(), Duration::from_secs(5));
        assert_eq!(config.low_watermark(), 256 << 10);
        assert!(config.nodelay());
        assert!(config.pinning().is_empty());
        assert!(config.threads() >= 1);
    }

    #[test]
    fn bad_settings_are_refused_once_at_build() {
        assert_eq!(Config::builder().build().unwrap_err(), ConfigError::NoListenAddress);
        assert_eq!(base().threads(0).build().unwrap_err(), ConfigError::Zero(Setting::Threads));
        assert_eq!(base().threads(70_000).build().unwrap_err(), ConfigError::TooManyThreads);
        assert_eq!(
            base().idle_timeout(Some(Duration::from_millis(150))).build().unwrap_err(),
            ConfigError::ShorterThanTwoTicks {
                setting: Setting::IdleTimeout,
                min: Duration::from_millis(200)
            }
        );
        assert!(matches!(
            base().backpressure_limit(10).low_watermark(10).build(),
            Err(ConfigError::LowWatermark { low: 10, limit: 10 })
        ));
        assert_eq!(
            base().read_buffer_size(10).build().unwrap_err(),
            ConfigError::ReadBufferTooSmall
        );
        assert_eq!(
            base().pinning(Pinning::Cores(vec![usize::MAX])).build().unwrap_err(),
            ConfigError::UnknownCore(usize::MAX)
        );
        assert_eq!(base().cluster("http://x").build().unwrap_err(), ConfigError::ClusterUrl);
        assert_eq!(
            base().cluster("redis://h:1").cluster_queue(0).build().unwrap_err(),
            ConfigError::Zero(Setting::ClusterQueue)
        );
        let err = base().close_timeout(Duration::from_millis(10)).build().unwrap_err();
        assert_eq!(err.to_string(), "close timeout must be at least 200ms (two timer ticks)");
    }

    #[test]
    fn origins_compare_without_case_and_missing_origin_passes() {
        let config = base().allowed_origins(["https://example.com"]).build().unwrap();
        assert!(config.origin_allowed(Some(b"https://EXAMPLE.com")));
        assert!(!config.origin_allowed(Some(b"https://evil.example")));
        assert!(!config.origin_allowed(Some(b"https://example.com\xff")));
        assert!(config.origin_allowed(None));
        assert!(base().build().unwrap().origin_allowed(Some(b"https://evil.example")));
    }
}
