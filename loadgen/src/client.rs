//! One client thread: a mio loop over many connections.
//!
//! A thread opens its connections at its share of the ramp-up rate, reports when they are all
//! up (or failed), then waits for the coordinator's "go": from then on it keeps messages flowing
//! (closed or open loop, see [`crate::workload`]), checks every echo against what was sent, and
//! ships one [`Recorder`] per measured second. A message is measured when it was scheduled in
//! the window; after the window the thread drains the echoes still owed for up to
//! `DRAIN_WAIT`. Deadlines (the next open-loop slot, the next second, the next connection to
//! open) are kept by a `timerfd`, so open-loop sends are not rounded to epoll's millisecond
//! timeouts.
//!
//! Nothing in the per-message path allocates: payloads are cut from a template, the in-flight
//! queue of a connection is allocated when it opens, output buffers keep their capacity.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};
use surge_client::{ClientEndpoint, Opening};
use surge_proto::close::CloseCode;
use surge_proto::connection::{Event, Limits};
use surge_proto::deflate::{ClientOffer, DeflateStats};
use surge_proto::handshake::{ClientHandshakeError, ClientRequest};
use surge_proto::message::Message;

use crate::error::Error;
use crate::platform::{self, Timer};
use crate::stats::{new_histogram, CloseCodes, ErrorCounts, ErrorKind, Recorder};
use crate::tls::{Link, TlsPlan};
use crate::workload::{Flow, InFlight, OpenLoopClock, PayloadKind, Payloads, SizeSpec};

const TIMER: Token = Token(usize::MAX);
const READ_BUF: usize = 256 * 1024;
/// How often connections still connecting are checked against the connect timeout.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// How long the end of a run waits for servers to answer WebSocket Close frames.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How long after the measured window a thread still waits for the echoes of messages
/// scheduled in it (and sends those it still owes), so that the last ones are counted too.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// What one client thread is to do.
#[derive(Debug, Clone)]
pub struct ThreadPlan {
    /// Thread number (0-based).
    pub index: usize,
    /// Where to connect.
    pub target: SocketAddr,
    /// This thread's connections.
    pub connections: usize,
    /// Global index of this thread's first connection (spreads source addresses).
    pub first_conn: usize,
    /// Spread source addresses over 127.0.0.1..=127.0.0.N (0: let the kernel choose).
    pub source_ips: u32,
    /// This thread's share of the ramp-up rate, connections per second (infinite: at once).
    pub ramp_rate: f64,
    /// This thread's share of the open-loop rate, messages per second (None: closed loop).
    pub rate: Option<f64>,
    /// Messages outstanding per connection (the cap, in open loop).
    pub in_flight: usize,
    /// Message sizes.
    pub sizes: SizeSpec,
    /// Message type.
    pub kind: PayloadKind,
    /// Longest time to connect (and handshake).
    pub connect_timeout: Duration,
    /// Core to pin the thread to.
    pub core: Option<usize>,
    /// Seeds payload contents.
    pub seed: u64,
    /// WebSocket: the opening handshake's request (None: raw TCP echo).
    pub ws: Option<WsRequest>,
    /// wss: TLS under the WebSocket (None: plain TCP).
    pub tls: Option<TlsPlan>,
    /// This thread's share of the churn: connections closed and reopened per second during
    /// the measured window (None: none).
    pub churn_rate: Option<f64>,
    /// WebSocket: the permessage-deflate offer (None: none).
    pub deflate: Option<ClientOffer>,
}

/// What a WebSocket client asks for in its opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsRequest {
    /// The `Host` header (the target's authority).
    pub host: String,
    /// The request target (path and query).
    pub path: String,
}

/// State shared by the coordinator and the client threads.
#[derive(Debug)]
pub struct Shared {
    base: Instant,
    go_ns: AtomicU64,
    warmup: Duration,
    duration: Duration,
    stop: AtomicBool,
}

/// The phases of a run, once the coordinator said "go".
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Warm-up starts (messages start flowing).
    pub go: Instant,
    /// Measurement starts.
    pub measure: Instant,
    /// Measurement ends.
    pub end: Instant,
}

impl Phases {
    /// Whether a message scheduled at `at` is measured: its time lies in the window.
    #[inline]
    pub fn measures(&self, at: Instant) -> bool {
        at >= self.measure && at < self.end
    }
}

impl Shared {
    /// Shared state for a run with this warm-up and measured duration.
    pub fn new(warmup: Duration, duration: Duration) -> Self {
        Shared {
            base: Instant::now(),
            go_ns: AtomicU64::new(0),
            warmup,
            duration,
            stop: AtomicBool::new(false),
        }
    }

    /// Starts the warm-up now (all connections are up); returns the phases.
    pub fn go(&self) -> Phases {
        let now = Instant::now();
        let ns = u64::try_from((now - self.base).as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        self.go_ns.store(ns, Ordering::Release);
        self.phases().expect("just set")
    }

    /// The phases, once started.
    pub fn phases(&self) -> Option<Phases> {
        match self.go_ns.load(Ordering::Acquire) {
            0 => None,
            ns => {
                let go = self.base + Duration::from_nanos(ns - 1);
                let measure = go + self.warmup;
                Some(Phases { go, measure, end: measure + self.duration })
            }
        }
    }

    /// Asks every thread to stop now (Ctrl-C, or nothing to measure).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// What a client thread tells the coordinator.
#[derive(Debug)]
pub enum Report {
    /// All of the thread's connections are up or failed.
    Ramped {
        /// Connections up.
        established: usize,
    },
    /// One measured interval (normally a second) of one thread.
    Interval {
        /// Interval number from the start of measurement.
        index: u32,
        /// Its length (the last one may be shorter).
        length: Duration,
        /// What was recorded in it.
        recorder: Box<Recorder>,
    },
    /// The thread finished.
    Done(Box<ThreadSummary>),
    /// The thread could not go on (a timer, a poll or an accounting call failed): the run
    /// fails with this error.
    Failed(Box<Error>),
}

/// A thread's totals, sent when it ends.
#[derive(Debug)]
pub struct ThreadSummary {
    /// Connect (raw) or connect + opening handshake (WebSocket) latencies, ns.
    pub handshake: Histogram<u64>,
    /// Open loop: how late the client sent messages it had room to send on time, ns.
    pub send_lag: Histogram<u64>,
    /// Failures by kind.
    pub errors: ErrorCounts,
    /// WebSocket Close codes received.
    pub close_codes: CloseCodes,
    /// Connections that came up.
    pub established: u64,
    /// Connections that came up and were lost before the end.
    pub lost: u64,
    /// Connections closed by the churn (each then reopened in its place).
    pub churned: u64,
    /// Churn: reopened connections that failed to come up.
    pub churn_failed: u64,
    /// Churn: connect + handshake latencies of the reopened connections, ns.
    pub churn_handshake: Histogram<u64>,
    /// Connections open when the run ended (before the closing handshakes).
    pub open_at_end: u64,
    /// Echoes that differed from what was sent.
    pub mismatches: u64,
    /// Messages scheduled in the measured window: due (open loop) or sent (closed loop).
    /// Each was answered (and recorded), is in `backlog` or in `unanswered`.
    pub scheduled: u64,
    /// Open loop: messages scheduled in the window but never sent.
    pub backlog: u64,
    /// Messages scheduled in the window and sent whose echo never arrived.
    pub unanswered: u64,
    /// CPU time the thread used (user + system), whole run.
    pub cpu: Duration,
    /// CPU time the thread used during measurement.
    pub cpu_measured: Duration,
    /// permessage-deflate over the thread's connections.
    pub deflate: DeflateTally,
}

/// What permessage-deflate did on a thread's connections, summed as each connection ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeflateTally {
    /// Connections that came up with it agreed.
    pub agreed: u64,
    /// Connections that came up without it although offered.
    pub declined: u64,
    /// The compressors' and decompressors' counts of the agreed connections.
    pub stats: DeflateStats,
    /// Payload bytes the agreed connections received, compressed or not.
    pub received_payload: u64,
}

impl DeflateTally {
    /// Adds what one connection did.
    fn add_stats(&mut self, s: DeflateStats, received_payload: u64) {
        let t = &mut self.stats;
        t.messages_compressed += s.messages_compressed;
        t.bytes_before += s.bytes_before;
        t.bytes_after += s.bytes_after;
        t.messages_inflated += s.messages_inflated;
        t.inflated_from += s.inflated_from;
        t.inflated_to += s.inflated_to;
        self.received_payload += received_payload;
    }

    /// Adds another thread's tally.
    pub fn add(&mut self, other: &DeflateTally) {
        self.agreed += other.agreed;
        self.declined += other.declined;
        self.add_stats(other.stats, other.received_payload);
    }
}

/// Starts a client thread.
pub fn spawn(
    plan: ThreadPlan,
    shared: Arc<Shared>,
    tx: Sender<Report>,
) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(format!("client-{}", plan.index))
        .spawn(move || {
            let failed = tx.clone();
            let pinned = match plan.core {
                Some(core) => platform::pin_current_thread(core).map_err(Error::os("pin to core")),
                None => Ok(()),
            };
            // Wake for open-loop slots on time: no 50 µs default timer slack.
            let result = pinned
                .and_then(|()| {
                    platform::set_timer_slack(Duration::from_nanos(1))
                        .map_err(Error::os("timer slack"))
                })
                .and_then(|()| Worker::new(plan, shared, tx))
                .and_then(|mut w| w.run());
            if let Err(e) = result {
                let _ = failed.send(Report::Failed(Box::new(e)));
            }
        })
        .map_err(|source| Error::Os { what: "client thread", source })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    /// WebSocket: the request went out, the 101 has not come back yet.
    Handshaking,
    Open,
    /// WebSocket: a Close went out or came in; waiting for the server to end TCP.
    Closing,
    Done,
}

struct Conn {
    stream: Link,
    state: State,
    started: Instant,
    out: Vec<u8>,
    out_pos: usize,
    flow: Flow,
    /// Raw mode: bytes of the oldest in-flight message received so far.
    matched: usize,
    /// Raw mode: those bytes differed from what was sent.
    bad: bool,
    /// Chosen by the churn: sends nothing new, closes once its echoes are in, then is
    /// reopened in its place.
    retiring: bool,
    /// Opened by the churn (its handshake is counted as one under churn).
    reopened: bool,
    /// WebSocket: the protocol state and its reassembly buffer (empty until a message is
    /// split over reads).
    ws: Option<Box<ClientEndpoint>>,
    /// WebSocket with permessage-deflate agreed: payload bytes received (the compressed
    /// ones are in the endpoint's own counts).
    received_payload: u64,
}

impl Conn {
    /// Whether open-loop slots that fall to this connection wait on it: it is open, or the
    /// churn is replacing it (closing it, or opening its successor, which inherits them).
    fn takes_slots(&self) -> bool {
        match self.state {
            State::Open => true,
            State::Done => self.retiring,
            State::Connecting | State::Handshaking | State::Closing => {
                self.retiring || self.reopened
            }
        }
    }
}

struct Worker {
    plan: ThreadPlan,
    shared: Arc<Shared>,
    tx: Sender<Report>,
    poll: Poll,
    timer: Timer,
    conns: Vec<Conn>,
    payloads: Payloads,
    read_buf: Vec<u8>,
    /// Connections tried so far.
    attempts: usize,
    /// When the next connection opens.
    next_open: Instant,
    ramp_period: Duration,
    ramp_reported: bool,
    connecting: usize,
    phases: Option<Phases>,
    clock: Option<OpenLoopClock>,
    /// Current interval: its number, start and recorder.
    interval: u32,
    interval_start: Instant,
    recorder: Box<Recorder>,
    handshake: Histogram<u64>,
    send_lag: Histogram<u64>,
    errors: ErrorCounts,
    close_codes: CloseCodes,
    established: u64,
    lost: u64,
    mismatches: u64,
    /// An open failed for a reason that will not go away (no descriptors, no addresses).
    open_blocked: bool,
    /// Thread CPU time when measurement began.
    cpu_at_measure: Option<Duration>,
    /// Thread CPU time used during measurement.
    cpu_measured: Duration,
    /// Messages scheduled in the measured window (see [`ThreadSummary::scheduled`]).
    scheduled: u64,
    /// Open-loop slots in the window that fell to connections no longer open.
    orphaned: u64,
    /// The churn's period (zero: no churn), when it next closes a connection, and where its
    /// round-robin over the connections stands.
    churn_period: Duration,
    next_churn: Instant,
    churn_cursor: usize,
    /// Connections the churn closed that wait to be reopened.
    to_reopen: Vec<usize>,
    churned: u64,
    churn_failed: u64,
    churn_handshake: Histogram<u64>,
    deflate: DeflateTally,
}

impl Worker {
    fn new(plan: ThreadPlan, shared: Arc<Shared>, tx: Sender<Report>) -> Result<Self, Error> {
        let poll = Poll::new().map_err(Error::os("client poll"))?;
        let timer = Timer::new().map_err(Error::os("timerfd"))?;
        poll.registry()
            .register(&mut SourceFd(&timer.raw()), TIMER, Interest::READABLE)
            .map_err(Error::os("timerfd register"))?;
        let ramp_period = if plan.ramp_rate.is_finite() && plan.ramp_rate > 0.0 {
            Duration::from_secs_f64(1.0 / plan.ramp_rate)
        } else {
            Duration::ZERO
        };
        let churn_period = match plan.churn_rate {
            Some(r) if r > 0.0 && r.is_finite() => Duration::from_secs_f64(1.0 / r),
            _ => Duration::ZERO,
        };
        let now = Instant::now();
        Ok(Worker {
            payloads: Payloads::new(plan.sizes.clone(), plan.kind, plan.seed),
            conns: Vec::with_capacity(plan.connections),
            plan,
            shared,
            tx,
            poll,
            timer,
            read_buf: vec![0; READ_BUF],
            attempts: 0,
            next_open: now,
            ramp_period,
            ramp_reported: false,
            connecting: 0,
            phases: None,
            clock: None,
            interval: 0,
            interval_start: now,
            recorder: Box::default(),
            handshake: new_histogram(),
            send_lag: new_histogram(),
            errors: ErrorCounts::default(),
            close_codes: CloseCodes::default(),
            established: 0,
            lost: 0,
            mismatches: 0,
            open_blocked: false,
            cpu_at_measure: None,
            cpu_measured: Duration::ZERO,
            scheduled: 0,
            orphaned: 0,
            churn_period,
            next_churn: now,
            churn_cursor: 0,
            to_reopen: Vec::new(),
            churned: 0,
            churn_failed: 0,
            churn_handshake: new_histogram(),
            deflate: DeflateTally::default(),
        })
    }

    /// Serves the connections until the run ends; fails only when the thread cannot keep
    /// time or poll.
    fn run(&mut self) -> Result<(), Error> {
        let mut events = Events::with_capacity(1024);
        let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
        loop {
            let now = Instant::now();
            let stopping = self.shared.stopping();
            if !stopping && self.phases.is_none() {
                if let Some(p) = self.shared.phases() {
                    self.start(p, now);
                }
            }
            // Before anything below may end the loop: the slots that fell due while this thread
            // slept are the schedule's whatever happens next. A thread that wakes after the
            // window's end (a busy machine) must still count and send them, late, and time them
            // from when they were due; ending first lost them, uncounted.
            self.send_due(now);
            if stopping {
                // Interrupted: the window ends here, without waiting for what is in flight.
                if let Some(p) = self.phases.as_mut() {
                    p.end = p.end.min(now).max(p.measure);
                }
                self.ship_interval(now);
                break;
            }
            if let Some(p) = self.phases {
                if self.cpu_at_measure.is_none() && now >= p.measure {
                    self.cpu_at_measure = Some(thread_cpu_time()?);
                }
                // Whole seconds inside the window; the last (maybe short) one is shipped when
                // the drain after the window is over, with the echoes that came in the drain.
                loop {
                    let boundary = self.interval_start + Duration::from_secs(1);
                    if now < p.measure || now < boundary || boundary >= p.end {
                        break;
                    }
                    self.ship_interval(boundary);
                }
                if now >= p.end && (now >= p.end + DRAIN_WAIT || self.settled()) {
                    self.ship_interval(p.end);
                    break;
                }
            }
            self.open_more(now);
            self.churn(now);
            if now >= next_housekeeping {
                self.expire_connects(now);
                next_housekeeping = now + HOUSEKEEPING;
            }
            self.report_ramp();
            let deadline = self.next_deadline(next_housekeeping, now);
            self.timer.arm(deadline, now).map_err(Error::os("timerfd arm"))?;
            match self.poll.poll(&mut events, Some(HOUSEKEEPING)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Os { what: "client poll", source: e }),
            }
            for ev in events.iter() {
                match ev.token() {
                    TIMER => self.timer.clear().map_err(Error::os("timerfd read"))?,
                    Token(i) => self.on_event(i, ev.is_readable(), ev.is_writable()),
                }
            }
        }
        self.finish()
    }

    fn next_deadline(&self, housekeeping: Instant, now: Instant) -> Instant {
        let mut at = housekeeping;
        if self.attempts < self.plan.connections && !self.open_blocked {
            at = at.min(self.next_open);
        }
        match self.phases {
            Some(p) if now < p.end => {
                at = at.min(p.end);
                if !self.churn_period.is_zero() {
                    at = at.min(self.next_churn.max(p.measure));
                }
                if let Some(c) = &self.clock {
                    at = at.min(c.next_due());
                }
                at = at.min(self.interval_start + Duration::from_secs(1));
            }
            // Draining: nothing is scheduled any more.
            Some(p) => at = at.min(p.end + DRAIN_WAIT),
            None => {}
        }
        at
    }

    /// After the window: nothing this thread sent or owes is outstanding.
    fn settled(&self) -> bool {
        self.conns
            .iter()
            .all(|c| c.state != State::Open || (c.flow.in_flight() == 0 && c.flow.backlog() == 0))
    }

    /// The coordinator said go: start the schedule and fill the pipelines.
    fn start(&mut self, p: Phases, now: Instant) {
        self.phases = Some(p);
        self.interval_start = p.measure;
        self.next_churn = p.measure;
        self.clock = self.plan.rate.map(|r| OpenLoopClock::new(p.go, r, self.plan.connections));
        if self.clock.is_none() {
            for i in 0..self.conns.len() {
                self.fill(i, now);
            }
        }
    }

    /// Ships the current interval (ending at `end`) if measurement has begun.
    fn ship_interval(&mut self, end: Instant) {
        let Some(p) = self.phases else { return };
        if end <= p.measure || end <= self.interval_start {
            return;
        }
        let recorder = std::mem::take(&mut self.recorder);
        let _ = self.tx.send(Report::Interval {
            index: self.interval,
            length: end - self.interval_start,
            recorder,
        });
        self.interval += 1;
        self.interval_start = end;
    }

    fn report_ramp(&mut self) {
        let all_opened = self.attempts == self.plan.connections || self.open_blocked;
        if !self.ramp_reported && all_opened && self.connecting == 0 {
            self.ramp_reported = true;
            let established = self.conns.iter().filter(|c| c.state == State::Open).count();
            let _ = self.tx.send(Report::Ramped { established });
        }
    }

    fn open_more(&mut self, now: Instant) {
        // Bound a burst so that events keep being served when the ramp is unlimited.
        let mut burst = 512;
        while !self.open_blocked
            && self.attempts < self.plan.connections
            && now >= self.next_open
            && burst > 0
        {
            burst -= 1;
            self.attempts += 1;
            self.next_open += self.ramp_period;
            if self.ramp_period.is_zero() {
                self.next_open = now;
            }
            if let Err(e) = self.open_one(now) {
                let kind = ErrorKind::of_connect(&e);
                // Out of descriptors or addresses: every later open fails the same way.
                self.errors.add(kind);
                if matches!(kind, ErrorKind::DescriptorLimit | ErrorKind::AddressExhausted) {
                    for _ in self.attempts..self.plan.connections {
                        self.errors.add(kind);
                    }
                    self.open_blocked = true;
                }
            }
        }
    }

    fn open_one(&mut self, now: Instant) -> io::Result<()> {
        let stream = self.connect(self.plan.first_conn + self.attempts)?;
        let conn = self.register(stream, Token(self.conns.len()), now)?;
        self.conns.push(conn);
        Ok(())
    }

    /// Starts a non-blocking connect for connection number `global` (over all threads).
    fn connect(&self, global: usize) -> io::Result<TcpStream> {
        let target = self.plan.target;
        let sock = Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP))?;
        sock.set_nonblocking(true)?;
        sock.set_tcp_nodelay(true)?;
        if self.plan.source_ips > 0 {
            let ip = Ipv4Addr::from(
                u32::from(Ipv4Addr::new(127, 0, 0, 1)) + global as u32 % self.plan.source_ips,
            );
            platform::set_bind_address_no_port(&sock)?;
            sock.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())?;
        }
        match sock.connect(&target.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(sock.into()))
    }

    /// Registers a connecting `stream` under `token`, as a new connection.
    fn register(&mut self, mut stream: TcpStream, token: Token, now: Instant) -> io::Result<Conn> {
        self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let stream = Link::new(stream, self.plan.tls.as_ref())?;
        self.connecting += 1;
        Ok(Conn {
            stream,
            state: State::Connecting,
            started: now,
            out: Vec::new(),
            out_pos: 0,
            flow: Flow::new(self.plan.in_flight),
            matched: 0,
            bad: false,
            retiring: false,
            reopened: false,
            ws: None,
            received_payload: 0,
        })
    }

    /// Churn: closes the next connection every period of the measured window (once its
    /// echoes are in), and reopens those whose close completed.
    fn churn(&mut self, now: Instant) {
        for i in std::mem::take(&mut self.to_reopen) {
            self.reopen(i, now);
        }
        let Some(p) = self.phases else { return };
        if self.churn_period.is_zero() || now < p.measure {
            return;
        }
        while self.next_churn <= now && self.next_churn < p.end {
            self.next_churn += self.churn_period;
            let n = self.conns.len();
            let pick = (0..n)
                .map(|k| (self.churn_cursor + k) % n)
                .find(|&i| self.conns[i].state == State::Open && !self.conns[i].retiring);
            let Some(i) = pick else { continue };
            self.churn_cursor = (i + 1) % n;
            self.conns[i].retiring = true;
            self.retire_if_drained(i, now);
        }
    }

    /// A retiring connection with nothing in flight is closed: WebSocket with a Close (1000),
    /// raw TCP at once; it is reopened when the close completes.
    fn retire_if_drained(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        if !c.retiring || c.state != State::Open || c.flow.in_flight() > 0 {
            return;
        }
        self.churned += 1;
        // From now on `started` times the close, for `expire_connects`.
        c.started = now;
        match c.ws.as_mut() {
            Some(ws) => {
                let _ = ws.connection().close(now, CloseCode::NORMAL, "", &mut c.out);
                c.state = State::Closing;
                self.flush(i);
            }
            None => {
                c.state = State::Closing;
                self.fail(i, ErrorKind::Io);
            }
        }
    }

    /// Opens a connection in slot `i`, in place of the one the churn closed; it inherits the
    /// open-loop slots that fell due meanwhile.
    fn reopen(&mut self, i: usize, now: Instant) {
        let opened = self
            .connect(self.plan.first_conn + i)
            .and_then(|stream| self.register(stream, Token(i), now));
        match opened {
            Ok(mut conn) => {
                std::mem::swap(&mut conn.flow, &mut self.conns[i].flow);
                conn.reopened = true;
                self.conns[i] = conn;
            }
            Err(e) => {
                self.errors.add(ErrorKind::of_connect(&e));
                self.churn_failed += 1;
                // No successor: later slots of this connection are lost to it.
                self.conns[i].retiring = false;
            }
        }
    }

    /// Fails connections that took longer than the connect timeout to come up, and ends the
    /// churn's closes that the server took as long to complete (the slot is reopened).
    fn expire_connects(&mut self, now: Instant) {
        if self.connecting == 0 && self.churn_period.is_zero() {
            return;
        }
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            let waiting = matches!(c.state, State::Connecting | State::Handshaking)
                || (c.state == State::Closing && c.retiring);
            if waiting && now - c.started > self.plan.connect_timeout {
                self.fail(i, ErrorKind::ConnectTimeout);
            }
        }
    }

    /// Ends connection `i`, counting a failure of `kind` unless it was already closing.
    fn fail(&mut self, i: usize, kind: ErrorKind) {
        let c = &mut self.conns[i];
        match c.state {
            State::Done => return,
            State::Connecting | State::Handshaking => {
                self.connecting -= 1;
                self.churn_failed += u64::from(c.reopened);
            }
            State::Open => self.lost += 1,
            // The churn's close completed: the slot gets a new connection.
            State::Closing if c.retiring && self.phases.is_some_and(|p| Instant::now() < p.end) => {
                self.to_reopen.push(i)
            }
            State::Closing => {}
        }
        if c.state != State::Closing {
            self.errors.add(kind);
        }
        c.state = State::Done;
        retire_endpoint(c, &mut self.deflate);
        let _ = self.poll.registry().deregister(&mut c.stream.tcp);
        let _ = c.stream.tcp.shutdown(std::net::Shutdown::Both);
    }

    fn on_event(&mut self, i: usize, readable: bool, writable: bool) {
        let Some(c) = self.conns.get(i) else { return };
        match c.state {
            State::Done => {}
            State::Connecting => self.on_connected(i, readable),
            State::Handshaking | State::Open | State::Closing => {
                if writable {
                    self.flush(i);
                }
                if readable {
                    self.read(i);
                }
            }
        }
    }

    /// TCP connect finished (or failed): open, or start the WebSocket handshake.
    fn on_connected(&mut self, i: usize, readable: bool) {
        let c = &mut self.conns[i];
        match c.stream.tcp.take_error() {
            Ok(Some(e)) | Err(e) => return self.fail(i, ErrorKind::of_connect(&e)),
            Ok(None) => {}
        }
        match c.stream.tcp.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.fail(i, ErrorKind::of_connect(&e)),
        }
        let Some(req) = &self.plan.ws else {
            self.opened(i, Instant::now());
            return;
        };
        // Fresh key and masking seed per connection, from the operating system.
        let Ok(keys) = platform::random_keys() else {
            return self.fail(i, ErrorKind::ConnectOther);
        };
        let request = ClientRequest::new(&req.host, &req.path);
        match ClientEndpoint::start_with(
            &request,
            keys,
            Limits::default(),
            self.plan.deflate,
            &mut c.out,
        ) {
            Ok(endpoint) => {
                c.ws = Some(Box::new(endpoint));
                c.state = State::Handshaking;
                self.flush(i);
                if readable {
                    self.read(i);
                }
            }
            Err(_) => self.fail(i, ErrorKind::HandshakeInvalid),
        }
    }

    /// Connection `i` is up (connected, and upgraded for WebSocket).
    fn opened(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        c.state = State::Open;
        self.connecting -= 1;
        self.established += 1;
        self.handshake.saturating_record(ns(now - c.started));
        if c.reopened {
            self.churn_handshake.saturating_record(ns(now - c.started));
        }
        if let (Some(ws), Some(_)) = (&c.ws, self.plan.deflate) {
            match ws.deflate() {
                Some(_) => self.deflate.agreed += 1,
                None => self.deflate.declined += 1,
            }
        }
        // In open loop too: a reopened connection sends the slots that fell due meanwhile.
        if self.phases.is_some() {
            self.fill(i, now);
        }
    }

    /// Open loop: marks due slots and sends what the in-flight cap allows. The schedule stops
    /// at the end of the window.
    fn send_due(&mut self, now: Instant) {
        let Some(p) = self.phases else { return };
        let horizon = now.min(p.end - Duration::from_nanos(1));
        while let Some((i, due)) = self.clock.as_mut().and_then(|c| c.pop_due(horizon)) {
            let measured = p.measures(due);
            self.scheduled += u64::from(measured);
            match self.conns.get_mut(i).filter(|c| c.takes_slots()) {
                Some(c) => {
                    // Due with room to send: any delay is the client's own (waking up late).
                    if measured && c.flow.backlog() == 0 && c.flow.has_room() {
                        self.send_lag.saturating_record(ns(now.saturating_duration_since(due)));
                    }
                    c.flow.mark_due();
                    self.fill(i, now);
                }
                None => self.orphaned += u64::from(measured),
            }
        }
    }

    /// Queues every message connection `i` may send now, then flushes. Nothing goes before
    /// the coordinator's "go" (connections still opening must not compete with traffic), and
    /// in closed loop nothing new after the window.
    fn fill(&mut self, i: usize, now: Instant) {
        let Some(p) = self.phases else { return };
        let open = self.clock.as_ref().map(|c| (c, i));
        if open.is_none() && now >= p.end {
            return;
        }
        let c = &mut self.conns[i];
        if c.state != State::Open || c.retiring {
            return;
        }
        let mut queued = false;
        while let Some(scheduled) = c.flow.sendable(now, open) {
            let (offset, len) = self.payloads.draw();
            let bytes = self.payloads.bytes(offset, len);
            match &mut c.ws {
                None => c.out.extend_from_slice(bytes),
                Some(ws) => {
                    let msg = if self.payloads.is_text() {
                        Message::Text(std::str::from_utf8(bytes).expect("text payloads are ASCII"))
                    } else {
                        Message::Binary(bytes)
                    };
                    if ws.connection().send(msg, &mut c.out).is_err() {
                        break;
                    }
                }
            }
            c.flow.push(InFlight { scheduled, sent: now, offset, len });
            if open.is_none() {
                self.scheduled += u64::from(p.measures(scheduled));
            }
            queued = true;
        }
        if queued {
            self.flush(i);
        }
    }

    fn flush(&mut self, i: usize) {
        let c = &mut self.conns[i];
        while c.out_pos < c.out.len() {
            match c.stream.write(&c.out[c.out_pos..]) {
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(i, ErrorKind::Io),
            }
        }
        c.out.clear();
        c.out_pos = 0;
        // TLS records the socket did not take with the last write.
        if c.stream.flush().is_err() {
            self.fail(i, ErrorKind::Io);
        }
    }

    fn read(&mut self, i: usize) {
        loop {
            let c = &mut self.conns[i];
            if matches!(c.state, State::Done | State::Connecting) {
                return;
            }
            let n = match c.stream.read(&mut self.read_buf) {
                Ok(0) => return self.fail(i, ErrorKind::ClosedByServer),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.fail(i, ErrorKind::Io),
            };
            let now = Instant::now();
            let alive = match (c.state, c.ws.is_some()) {
                (State::Handshaking, _) => self.consume_handshake(i, n, now),
                (_, true) => self.consume_ws(i, n, now),
                (_, false) => self.consume_raw(i, n, now),
            };
            if !alive {
                return;
            }
            // A short read drained the socket; new data raises a new edge (saves an EAGAIN
            // read per message). Not when closing: the server's FIN may have come with its
            // Close and raises no edge of its own, so read on to the end of the stream.
            if n < READ_BUF && self.conns[i].state != State::Closing {
                break;
            }
        }
        let c = &mut self.conns[i];
        // Frames the protocol owes (a pong, a Close reply) go out while output is not blocked.
        if let Some(ws) = c.ws.as_mut().filter(|ws| ws.protocol().wants_transmit()) {
            if c.out_pos == c.out.len() {
                ws.connection().poll_transmit(&mut c.out);
            }
        }
        let now = Instant::now();
        self.fill(i, now);
        self.flush(i);
        self.retire_if_drained(i, now);
    }

    /// Feeds `n` received bytes to connection `i`'s handshake; false if the connection ended.
    fn consume_handshake(&mut self, i: usize, n: usize, now: Instant) -> bool {
        let c = &mut self.conns[i];
        let Some(ws) = c.ws.as_mut() else { return false };
        let early = match ws.receive_handshake(&self.read_buf[..n]) {
            Ok(Opening::Pending) => return true,
            Ok(Opening::Open { early }) => early,
            Err(e) => {
                let kind = match e {
                    ClientHandshakeError::UnexpectedStatus(_) => ErrorKind::HandshakeRejected,
                    _ => ErrorKind::HandshakeInvalid,
                };
                self.fail(i, kind);
                return false;
            }
        };
        // Bytes after the head are the server's first frames; they came in this read.
        let rest = early.len();
        self.read_buf[..rest].copy_from_slice(&early);
        self.opened(i, now);
        rest == 0 || self.consume_ws(i, rest, now)
    }

    /// Feeds `n` received bytes to connection `i`'s WebSocket, checking and recording every
    /// echo; false if the connection ended.
    fn consume_ws(&mut self, i: usize, n: usize, now: Instant) -> bool {
        let phases = self.phases;
        let text = self.payloads.is_text();
        let c = &mut self.conns[i];
        let Some(ws) = c.ws.as_mut() else { return false };
        let mut pos = 0;
        let mut violation = false;
        loop {
            let (used, event, _) = ws.read(&mut self.read_buf[pos..n]);
            pos += used;
            let Some(event) = event else { break };
            match event {
                Event::Message(m) if c.state == State::Open => match c.flow.pop() {
                    Some(sent) => {
                        c.received_payload += m.as_bytes().len() as u64;
                        let same_kind = matches!(m, Message::Text(_)) == text;
                        if !same_kind || m.as_bytes() != self.payloads.bytes(sent.offset, sent.len)
                        {
                            self.mismatches += 1;
                        }
                        if phases.is_some_and(|p| p.measures(sent.scheduled)) {
                            self.recorder.record(sent.scheduled, sent.sent, now, sent.len as usize);
                        }
                    }
                    None => self.errors.add(ErrorKind::Unsolicited),
                },
                Event::Message(_) | Event::Ping(_) | Event::Pong(_) => {}
                Event::Close(frame) => {
                    self.close_codes.add(frame.code().map_or(1005, CloseCode::as_u16));
                    if c.state == State::Open {
                        self.lost += 1;
                        self.errors.add(ErrorKind::ClosedByServer);
                    }
                    c.state = State::Closing;
                }
                Event::Error(_) => {
                    violation = true;
                    break;
                }
            }
        }
        if violation {
            // Best effort: send the Close the protocol queued, then drop the connection.
            ws.connection().poll_transmit(&mut c.out);
            let _ = c.stream.write(&c.out[c.out_pos..]);
            self.fail(i, ErrorKind::Protocol);
            return false;
        }
        true
    }

    /// Matches `n` received bytes against connection `i`'s in-flight messages, recording each
    /// one completed; false (and the connection dropped) when bytes arrived that nobody sent.
    fn consume_raw(&mut self, i: usize, n: usize, now: Instant) -> bool {
        let phases = self.phases;
        let c = &mut self.conns[i];
        let mut data = &self.read_buf[..n];
        while !data.is_empty() {
            let Some(front) = c.flow.front().copied() else {
                self.fail(i, ErrorKind::Unsolicited);
                return false;
            };
            let expected = &self.payloads.bytes(front.offset, front.len)[c.matched..];
            let take = expected.len().min(data.len());
            if data[..take] != expected[..take] {
                c.bad = true;
            }
            c.matched += take;
            data = &data[take..];
            if c.matched == front.len as usize {
                c.flow.pop();
                c.matched = 0;
                if std::mem::take(&mut c.bad) {
                    self.mismatches += 1;
                }
                if phases.is_some_and(|p| p.measures(front.scheduled)) {
                    self.recorder.record(front.scheduled, front.sent, now, front.len as usize);
                }
            }
        }
        true
    }

    /// Ends the run: WebSocket connections get a Close (1000) and up to `CLOSE_WAIT` for the
    /// server to answer and end TCP; then every socket is reset (no TIME_WAIT left here).
    fn finish(&mut self) -> Result<(), Error> {
        if let Some(at) = self.cpu_at_measure {
            self.cpu_measured = thread_cpu_time()?.saturating_sub(at);
        }
        // What the window scheduled and never saw answered, on every connection, lost ones too.
        let mut backlog = self.orphaned;
        let mut unanswered = 0;
        if let Some(p) = self.phases {
            for (i, c) in self.conns.iter().enumerate() {
                unanswered += c.flow.in_flight_where(|at| p.measures(at));
                if let Some(clock) = &self.clock {
                    backlog += c.flow.backlog_where(clock, i, |at| p.measures(at));
                }
            }
        }
        let now = Instant::now();
        let open_at_end = self.conns.iter().filter(|c| c.state == State::Open).count() as u64;
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            if c.state != State::Open {
                continue;
            }
            if let Some(ws) = c.ws.as_mut() {
                let _ = ws.connection().close(now, CloseCode::NORMAL, "", &mut c.out);
                c.state = State::Closing;
                self.flush(i);
            }
        }
        self.drain_closes(now + CLOSE_WAIT)?;
        for c in &mut self.conns {
            if c.state != State::Done {
                let _ = socket2::SockRef::from(&c.stream.tcp).set_linger(Some(Duration::ZERO));
            }
            retire_endpoint(c, &mut self.deflate);
            let _ = self.poll.registry().deregister(&mut c.stream.tcp);
        }
        self.conns.clear();
        let summary = ThreadSummary {
            handshake: std::mem::replace(&mut self.handshake, new_histogram()),
            send_lag: std::mem::replace(&mut self.send_lag, new_histogram()),
            errors: self.errors,
            close_codes: std::mem::take(&mut self.close_codes),
            established: self.established,
            lost: self.lost,
            churned: self.churned,
            churn_failed: self.churn_failed,
            churn_handshake: std::mem::replace(&mut self.churn_handshake, new_histogram()),
            open_at_end,
            mismatches: self.mismatches,
            scheduled: self.scheduled,
            backlog,
            unanswered,
            cpu: thread_cpu_time()?,
            cpu_measured: self.cpu_measured,
            deflate: self.deflate,
        };
        let _ = self.tx.send(Report::Done(Box::new(summary)));
        Ok(())
    }

    /// Serves closing connections until the server ended them all or `deadline` passed.
    fn drain_closes(&mut self, deadline: Instant) -> Result<(), Error> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if now >= deadline || !self.conns.iter().any(|c| c.state == State::Closing) {
                return Ok(());
            }
            let wait = (deadline - now).min(HOUSEKEEPING);
            if self.poll.poll(&mut events, Some(wait)).is_err() {
                return Ok(());
            }
            for ev in events.iter() {
                match ev.token() {
                    TIMER => self.timer.clear().map_err(Error::os("timerfd read"))?,
                    Token(i) => self.on_event(i, ev.is_readable(), ev.is_writable()),
                }
            }
        }
    }
}

/// Drops a connection's WebSocket endpoint, adding what its permessage-deflate did to `tally`.
fn retire_endpoint(c: &mut Conn, tally: &mut DeflateTally) {
    if let Some(ws) = c.ws.take() {
        if ws.deflate().is_some() {
            tally.add_stats(ws.deflate_stats(), std::mem::take(&mut c.received_payload));
        }
    }
    c.received_payload = 0;
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

fn thread_cpu_time() -> Result<Duration, Error> {
    platform::thread_cpu_time().map_err(Error::os("thread CPU time"))
}
