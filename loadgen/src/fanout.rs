//! `fanout`: pub/sub load on a room server (`surge broadcast`, or any server that relays
//! every message on a path to every connection on that path, the sender included).
//!
//! Subscribers and publishers are spread over the URLs given (several URLs: several nodes,
//! so that delivery across nodes is measured) and over `--topics` rooms (room `t` of a URL
//! is its path, or its path with `/t` appended when there are several). Publishers send in
//! open loop at `--rate` messages per second in all; each message is stamped with its
//! publisher, its sequence number and the time it was *scheduled* (so latency is corrected
//! for coordinated omission, as for echo). Each subscriber's deliveries are checked: loss
//! (against what its room's publishers sent in the window), duplicates, and reordering per
//! publisher. The report gives delivery latency over all subscribers and per subscriber, the
//! spread from a message's first delivery to its last, and reach (received / expected).
//!
//! `--window W` makes it a saturation run: closed loop, a publisher sends its next message
//! only while fewer than W of its messages have yet to reach every subscriber of its room
//! (counted across the threads), so a server is offered all it can take and whatever it
//! queues stays bounded; latency is then from the actual send. `--lean` makes the
//! subscribers cheap for the load generator (`fanout_lean`), so that the server rather than
//! this tool is the limit. The report adds the deliveries that *arrived* in the window per
//! second (the throughput when sends and arrivals overlap the window's edges), and the
//! client threads' CPU time is taken over the window alone.
//!
//! All the clients live in this process and share one clock, so the stamps need no clock
//! agreement; the stamp takes 20 bytes, the smallest `--size`.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use surge_client::{ClientEndpoint, Opening};
use surge_proto::connection::{Event, Limits};
use surge_proto::handshake::ClientRequest;
use surge_proto::message::Message;

use crate::config::Mode;
use crate::error::Error;
use crate::fanout_lean::{scan, Order, Sequences, Unexpected};
use crate::health::Health;
use crate::machine::MachineInfo;
use crate::report::{
    unix_seconds, write_hgrm, ConfigRecord, ConnStats, CpuStats, Encoded, FanoutStats, OutputArgs,
    RunResult,
};
use crate::stats::{encode_histogram, new_histogram, Percentiles};
use crate::target::Target;
use crate::units::{parse_duration, parse_rate};
use crate::workload::{PayloadKind, SizeSpec};

/// Bytes of the stamp: publisher (u32), sequence (u64), scheduled time (u64 ns).
const STAMP: usize = 20;
/// Time after the window for the last deliveries to arrive.
const DRAIN: Duration = Duration::from_secs(1);
/// Longest a connection and its handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The token of the send timer (connections are numbered from 0).
const TIMER: Token = Token(usize::MAX);
/// `--window`: a publisher none of whose messages came back for this long (the server
/// dropped them) sends again, and the run counts a stall.
const STALL_NS: u64 = 2_000_000_000;
/// `--lean`: the read buffer (a frame left partial by one read is carried into the next).
const LEAN_READ: usize = 256 * 1024;

/// `surge-loadgen fanout URL... --subscribers N --publishers P --rate R [--topics T]`.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Room servers, `ws://HOST:PORT/PATH`; subscribers and publishers go round-robin.
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// Subscribing connections (they only receive).
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Publishing connections (members of their room too: what comes back is not counted).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Messages per second, all publishers together.
    #[arg(long, value_parser = parse_rate, default_value = "1000")]
    pub rate: f64,
    /// Rooms; subscriber i and publisher i join room i modulo this.
    #[arg(long, default_value_t = 1)]
    pub topics: usize,
    /// Message size in bytes (binary, at least 20: the stamp).
    #[arg(long, default_value_t = 20)]
    pub size: usize,
    /// Measured time.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// Time before measuring (published and delivered, not counted).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,
    /// Client threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Closed loop instead of `--rate`: each publisher keeps at most this many messages on
    /// their way (sent, not yet come back to it through its own room), so the server is
    /// offered all it can take with a bounded backlog: a saturation run.
    #[arg(long, value_name = "MESSAGES")]
    pub window: Option<u64>,
    /// Lean subscribers: large reads, frames scanned in place, order checked per publisher
    /// in an array (duplicates and reorderings counted together as `reordered`), no
    /// first-to-last spread; what a delivery costs the load generator is kept small so
    /// that the server, not this tool, is the limit.
    #[arg(long)]
    pub lean: bool,
    /// Result files.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// One client connection.
struct Client {
    stream: mio::net::TcpStream,
    ws: ClientEndpoint,
    input: Vec<u8>,
    out: Vec<u8>,
    topic: usize,
    role: Role,
}

enum Role {
    Subscriber(Box<Tally>),
    /// Publisher `id` and its next sequence number.
    Publisher {
        id: u32,
        next: u64,
        pace: Pace,
    },
}

/// When a publisher sends.
enum Pace {
    /// Open loop: its first slot and its slot interval (ns).
    Rate { first_ns: u64, every_ns: f64 },
    /// Closed loop: at most `size` messages on their way; `done` is one past the last that
    /// reached every subscriber of its room, `since` when it last sent or saw one done (ns).
    Window { size: u64, done: u64, since: u64, room: u32 },
}

/// `--window`: per publisher, a ring of `window` counters of the subscribers a message
/// reached, shared by the threads. A message is done when its count is its room's
/// subscribers; only then may its publisher send another, so whatever a server buffers
/// (in the kernel or in its own queues) stays within `window` messages per publisher.
struct Reached {
    counts: Vec<AtomicU32>,
    window: u64,
}

impl Reached {
    fn new(publishers: usize, window: u64) -> Self {
        Reached {
            counts: (0..publishers as u64 * window).map(|_| AtomicU32::new(0)).collect(),
            window,
        }
    }

    fn slot(&self, publisher: u32, seq: u64) -> Option<&AtomicU32> {
        self.counts.get((u64::from(publisher) * self.window + seq % self.window) as usize)
    }

    /// A subscriber got `seq` from `publisher` (its first delivery of it).
    fn add(&self, publisher: u32, seq: u64) {
        if let Some(slot) = self.slot(publisher, seq) {
            slot.fetch_add(1, Relaxed);
        }
    }

    /// Whether `seq` reached `room` subscribers; if so its slot is free for `seq + window`.
    fn take_done(&self, publisher: u32, seq: u64, room: u32) -> bool {
        let slot = self.slot(publisher, seq).expect("the publisher's own slot");
        let done = slot.load(Relaxed) >= room;
        if done {
            slot.store(0, Relaxed);
        }
        done
    }

    /// Gives up on `seqs` (lost): their slots are free again.
    fn forget(&self, publisher: u32, seqs: std::ops::Range<u64>) {
        for seq in seqs {
            self.slot(publisher, seq).expect("the publisher's own slot").store(0, Relaxed);
        }
    }
}

/// What one subscriber received.
struct Tally {
    latency: Histogram<u64>,
    order: OrderCheck,
    received: u64,
    duplicates: u64,
    reordered: u64,
    /// Deliveries that arrived in the window, whenever they were sent.
    arrived: u64,
}

enum OrderCheck {
    /// Last sequence seen per publisher, and the sequences skipped over (still expected).
    Exact { last: HashMap<u32, u64>, gaps: HashSet<(u32, u64)> },
    /// `--lean`: the next sequence per publisher only.
    Lean(Sequences),
}

/// The window and clock all threads share.
#[derive(Clone, Copy)]
struct Window {
    epoch: Instant,
    start_ns: u64,
    end_ns: u64,
}

impl Window {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn holds(&self, ns: u64) -> bool {
        (self.start_ns..self.end_ns).contains(&ns)
    }
}

/// One thread's results.
#[derive(Default)]
struct Part {
    subscribers: Vec<Tally>,
    /// Per publisher: (id, topic, messages sent in the window).
    published: Vec<(u32, usize, u64)>,
    /// Per message in the window: first and last delivery (ns).
    spread: HashMap<(u32, u64), (u64, u64)>,
    /// Per measured second: the latency histogram.
    seconds: Vec<Histogram<u64>>,
    send_lag: Option<Histogram<u64>>,
    handshake: Option<Histogram<u64>>,
    /// The thread's CPU time in the window.
    cpu: Duration,
    /// `--window`: publishers that gave up waiting for their messages to be done.
    stalls: u64,
    /// `--window`: what reached how many subscribers.
    reached: Option<Arc<Reached>>,
}

/// Runs the fan-out measurement.
pub fn main(args: &FanoutArgs) -> Result<(), Error> {
    let outputs = args.output.create()?;
    let targets: Vec<Target> =
        args.urls.iter().map(|u| Target::parse(Some(u))).collect::<Result<_, _>>()?;
    if args.size < STAMP
        || args.topics == 0
        || args.threads == 0
        || args.publishers == 0
        || args.window == Some(0)
    {
        return Err(Error::Os {
            what: "fanout: --size must be at least 20, --topics, --threads, --publishers and --window at least 1",
            source: io::ErrorKind::InvalidInput.into(),
        });
    }
    let started = SystemTime::now();
    let epoch = Instant::now();
    // Connections first (handshakes are not timed against the window), then the window.
    let setup = Duration::from_millis(500)
        + Duration::from_micros(200) * (args.subscribers + args.publishers) as u32;
    let start_ns = (setup + args.warmup).as_nanos() as u64;
    let window = Window { epoch, start_ns, end_ns: start_ns + args.duration.as_nanos() as u64 };
    let barrier = Arc::new(Barrier::new(args.threads));
    let reached = args.window.map(|w| Arc::new(Reached::new(args.publishers, w)));
    let parts: Vec<Result<Part, Error>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..args.threads)
            .map(|t| {
                let (targets, barrier, reached) = (&targets, Arc::clone(&barrier), reached.clone());
                scope.spawn(move || client_thread(args, targets, t, window, &barrier, reached))
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("client thread")).collect()
    });
    let parts: Vec<Part> = parts.into_iter().collect::<Result<_, _>>()?;
    let result = build(args, &parts, window, started)?;
    print!("{}", summary(&result));
    if let Some(file) = outputs.json {
        file.write(result.to_json())?;
    }
    let latency = merged(parts.iter().flat_map(|p| p.subscribers.iter().map(|s| &s.latency)));
    if let Some(file) = outputs.hgrm {
        file.with(|out| write_hgrm(&latency, 1000.0, out))?;
    }
    if let Some(file) = outputs.hlog {
        let seconds = parts.iter().map(|p| p.seconds.len()).max().unwrap_or(0);
        let (path, file) = file.into_parts();
        let mut out = std::io::BufWriter::new(file);
        let mut serializer = V2DeflateSerializer::new();
        let wall = started + Duration::from_nanos(window.start_ns);
        let mut log = IntervalLogWriterBuilder::new()
            .with_start_time(wall)
            .with_base_time(wall)
            .with_max_value_divisor(1e6)
            .begin_log_with(&mut out, &mut serializer)
            .map_err(|e| Error::file(&path, e))?;
        for second in 0..seconds {
            let h = merged(parts.iter().filter_map(|p| p.seconds.get(second)));
            let at = Duration::from_secs(second as u64);
            log.write_histogram(&h, at, Duration::from_secs(1), None)
                .map_err(crate::stats::HistogramError::from)?;
        }
    }
    Ok(())
}

fn merged<'a>(histograms: impl Iterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut total = new_histogram();
    for h in histograms {
        total.add(h).expect("same bounds");
    }
    total
}

/// Opens one WebSocket connection, blocking, then hands it over non-blocking.
fn open(
    target: &Target,
    path: &str,
    seed: u64,
) -> Result<(mio::net::TcpStream, ClientEndpoint, Vec<u8>), Error> {
    let Target::Ws { addr, host, .. } = target else {
        return Err(Error::Os {
            what: "fanout: give ws:// URLs",
            source: io::ErrorKind::InvalidInput.into(),
        });
    };
    let connect = |source| Error::Connect { target: host.clone(), source };
    let mut stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).map_err(connect)?;
    stream.set_nodelay(true).map_err(connect)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT)).map_err(connect)?;
    let keys = surge_client::Keys {
        nonce: (u128::from(seed) * 0x9E37_79B9_7F4A_7C15).to_le_bytes(),
        mask_seed: seed,
    };
    let mut request = Vec::new();
    let refused = |e: surge_proto::handshake::ClientHandshakeError| Error::Handshake {
        target: host.clone(),
        failure: surge_client::blocking::ConnectError::Handshake(e),
    };
    let mut ws = ClientEndpoint::start(
        &ClientRequest::new(host, path),
        keys,
        Limits::default(),
        &mut request,
    )
    .map_err(refused)?;
    stream.write_all(&request).map_err(connect)?;
    let mut buf = [0; 4096];
    let early = loop {
        let n = stream.read(&mut buf).map_err(connect)?;
        if n == 0 {
            return Err(connect(io::ErrorKind::UnexpectedEof.into()));
        }
        if let Opening::Open { early } = ws.receive_handshake(&buf[..n]).map_err(refused)? {
            break early;
        }
    };
    stream.set_nonblocking(true).map_err(connect)?;
    Ok((mio::net::TcpStream::from_std(stream), ws, early))
}

fn room(target: &Target, topic: usize, topics: usize) -> String {
    let Target::Ws { path, .. } = target else { return "/".into() };
    if topics == 1 {
        path.clone()
    } else {
        format!("{}/{topic}", path.trim_end_matches('/'))
    }
}

fn client_thread(
    args: &FanoutArgs,
    targets: &[Target],
    thread: usize,
    window: Window,
    barrier: &Barrier,
    reached: Option<Arc<Reached>>,
) -> Result<Part, Error> {
    let mut poll = Poll::new().map_err(Error::os("poll"))?;
    let mut clients = Vec::new();
    let mut handshake = new_histogram();
    let total = args.subscribers + args.publishers;
    let every_ns = 1e9 * args.publishers as f64 / args.rate;
    let send_from = window.start_ns.saturating_sub(args.warmup.as_nanos() as u64);
    // Publishers come first (i < publishers), so they are the first clients of a thread.
    let mut publishers = 0;
    for i in (thread..total).step_by(args.threads) {
        let (index, publisher) =
            if i < args.publishers { (i, true) } else { (i - args.publishers, false) };
        let topic = index % args.topics;
        let target = &targets[i % targets.len()];
        let began = Instant::now();
        let (mut stream, ws, input) =
            open(target, &room(target, topic, args.topics), i as u64 + 1)?;
        handshake.saturating_record(began.elapsed().as_nanos() as u64);
        poll.registry()
            .register(&mut stream, Token(clients.len()), Interest::READABLE)
            .map_err(Error::os("register"))?;
        let role = if publisher {
            let pace = match args.window {
                Some(size) => {
                    let room = (index % args.topics..args.subscribers).step_by(args.topics).len();
                    Pace::Window { size, done: 0, since: send_from, room: room as u32 }
                }
                // Publisher slots interleave: publisher p sends at p/rate, then every P/rate.
                None => Pace::Rate {
                    first_ns: send_from + (1e9 * index as f64 / args.rate) as u64,
                    every_ns,
                },
            };
            Role::Publisher { id: index as u32, next: 0, pace }
        } else {
            let order = if args.lean {
                OrderCheck::Lean(Sequences::new(args.publishers))
            } else {
                OrderCheck::Exact { last: HashMap::new(), gaps: HashSet::new() }
            };
            Role::Subscriber(Box::new(Tally {
                latency: new_histogram(),
                order,
                received: 0,
                duplicates: 0,
                reordered: 0,
                arrived: 0,
            }))
        };
        publishers += usize::from(publisher);
        clients.push(Client { stream, ws, input, out: Vec::new(), topic, role });
    }
    // Sends are due at nanosecond instants: a timerfd, not epoll's millisecond timeout.
    let mut timer = crate::platform::Timer::new().map_err(Error::os("timerfd"))?;
    poll.registry()
        .register(&mut SourceFd(&timer.raw()), TIMER, Interest::READABLE)
        .map_err(Error::os("timerfd register"))?;
    let _ = crate::platform::set_timer_slack(Duration::from_nanos(1));
    barrier.wait();
    let mut part = Part {
        send_lag: Some(new_histogram()),
        handshake: Some(handshake),
        reached,
        ..Part::default()
    };
    let seconds = args.duration.as_secs().max(1) as usize;
    part.seconds = (0..seconds).map(|_| new_histogram()).collect();
    let mut events = Events::with_capacity(1024);
    let mut payload = vec![0u8; args.size];
    let mut chunk =
        vec![0u8; if args.lean { LEAN_READ.max(4 * (args.size + 14)) } else { 64 * 1024 }];
    let stop_ns = window.end_ns + DRAIN.as_nanos() as u64;
    let mut published: HashMap<u32, (usize, u64)> = HashMap::new();
    // The thread's CPU time over the window alone (set-up, warm-up and drain left out).
    let (mut cpu_from, mut cpu_to) = (None, None);
    loop {
        let now = window.now_ns();
        if now >= stop_ns {
            break;
        }
        if cpu_from.is_none() && now >= window.start_ns {
            cpu_from = crate::platform::thread_cpu_time().ok();
        }
        if cpu_to.is_none() && now >= window.end_ns {
            cpu_to = crate::platform::thread_cpu_time().ok();
        }
        let mut next_due = stop_ns;
        // `--window`: once every message of the window reached every subscriber, the drain
        // has nothing left to wait for.
        let mut drained = args.window.is_some() && now >= window.end_ns;
        for client in &mut clients[..publishers] {
            let Client { ws, out, topic, role: Role::Publisher { id, next, pace }, .. } = client
            else {
                unreachable!("publishers come first")
            };
            let mut send = |next: &mut u64, stamp: u64| {
                payload[..4].copy_from_slice(&id.to_le_bytes());
                payload[4..12].copy_from_slice(&next.to_le_bytes());
                payload[12..20].copy_from_slice(&stamp.to_le_bytes());
                let _ = ws.connection().send(Message::Binary(&payload), out);
                if window.holds(stamp) {
                    published.entry(*id).or_insert((*topic, 0)).1 += 1;
                }
                *next += 1;
            };
            match pace {
                Pace::Rate { first_ns, every_ns } => loop {
                    let due = *first_ns + (*next as f64 * *every_ns) as u64;
                    if due >= window.end_ns {
                        break;
                    }
                    if due > now {
                        next_due = next_due.min(due);
                        break;
                    }
                    if window.holds(due) {
                        if let Some(lag) = &mut part.send_lag {
                            lag.saturating_record(now - due);
                        }
                    }
                    send(next, due);
                },
                Pace::Window { size, done, since, room } => {
                    let reached = part.reached.as_deref().expect("a window's counters");
                    while *done < *next && reached.take_done(*id, *done, *room) {
                        *done += 1;
                        *since = now;
                    }
                    drained &= *done == *next;
                    if now < send_from {
                        next_due = next_due.min(send_from);
                    } else if now >= window.end_ns {
                        // Sending is over; the drain waits for the rest to arrive.
                    } else if *next - *done >= *size && now - *since >= STALL_NS {
                        part.stalls += 1;
                        reached.forget(*id, *done..*next);
                        *done = *next;
                    }
                    if (send_from..window.end_ns).contains(&now) {
                        while *next - *done < *size {
                            send(next, now);
                            *since = now;
                        }
                        next_due = next_due.min(*since + STALL_NS);
                    }
                }
            }
            flush(client);
        }
        if drained {
            break;
        }
        // Also woken at the window's edges, where the CPU time is read.
        let edge = [window.start_ns, window.end_ns].into_iter().find(|&edge| edge > now);
        let at = window.epoch + Duration::from_nanos(edge.map_or(next_due, |e| next_due.min(e)));
        timer.arm(at, Instant::now()).map_err(Error::os("timerfd arm"))?;
        poll.poll(&mut events, Some(Duration::from_millis(100))).map_err(Error::os("poll"))?;
        for event in &events {
            if event.token() == TIMER {
                timer.clear().map_err(Error::os("timerfd read"))?;
                continue;
            }
            let client = &mut clients[event.token().0];
            if args.lean {
                receive_lean(client, &mut chunk, window, &mut part)?;
            } else {
                receive(client, &mut chunk, window, &mut part)?;
            }
        }
    }
    let now_cpu = crate::platform::thread_cpu_time().unwrap_or_default();
    part.cpu = cpu_to.unwrap_or(now_cpu).saturating_sub(cpu_from.unwrap_or(now_cpu));
    part.published = published.into_iter().map(|(id, (topic, n))| (id, topic, n)).collect();
    part.subscribers = clients
        .into_iter()
        .filter_map(|c| match c.role {
            Role::Subscriber(tally) => Some(*tally),
            Role::Publisher { .. } => None,
        })
        .collect();
    Ok(part)
}

/// Writes what the client has queued, as far as the socket takes it.
fn flush(client: &mut Client) {
    while !client.out.is_empty() {
        match client.stream.write(&client.out) {
            Ok(n) => {
                client.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// One read: the bytes it gave, or `None` when the socket is drained; a closed connection
/// is an error (a room server does not end a run).
fn read_some(stream: &mut mio::net::TcpStream, buf: &mut [u8]) -> Result<Option<usize>, Error> {
    loop {
        return match stream.read(buf) {
            Ok(0) => Err(Error::Os {
                what: "fanout: the server closed a connection",
                source: io::ErrorKind::UnexpectedEof.into(),
            }),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(Error::Os { what: "fanout: read", source: e }),
        };
    }
}

/// Reads and tallies what arrived for one client.
fn receive(
    client: &mut Client,
    chunk: &mut [u8],
    window: Window,
    part: &mut Part,
) -> Result<(), Error> {
    while let Some(n) = read_some(&mut client.stream, chunk)? {
        client.input.extend_from_slice(&chunk[..n]);
    }
    let now = window.now_ns();
    let mut used = 0;
    let mut input = std::mem::take(&mut client.input);
    loop {
        let (n, event, _) = client.ws.read(&mut input[used..]);
        used += n;
        match event {
            None => break,
            Some(Event::Message(Message::Binary(bytes))) if bytes.len() >= STAMP => {
                delivered(&mut client.role, bytes, now, window, part);
            }
            Some(Event::Close(_)) | Some(Event::Error(_)) => {
                return Err(Error::Os {
                    what: "fanout: the server ended a connection",
                    source: io::ErrorKind::ConnectionAborted.into(),
                });
            }
            Some(_) => {}
        }
    }
    input.drain(..used);
    client.input = input;
    client.ws.connection().poll_transmit(&mut client.out);
    flush(client);
    Ok(())
}

/// `--lean`: reads as much as the socket holds and scans the frames in place.
fn receive_lean(
    client: &mut Client,
    chunk: &mut [u8],
    window: Window,
    part: &mut Part,
) -> Result<(), Error> {
    loop {
        let carried = client.input.len();
        chunk[..carried].copy_from_slice(&client.input);
        let Some(n) = read_some(&mut client.stream, &mut chunk[carried..])? else {
            return Ok(());
        };
        let end = carried + n;
        let now = window.now_ns();
        let role = &mut client.role;
        let used = scan(&chunk[..end], |bytes| {
            if bytes.len() >= STAMP {
                delivered(role, bytes, now, window, part);
            }
        })
        .map_err(|Unexpected(_)| Error::Os {
            what: "fanout --lean: a frame other than an unfragmented binary message \
                   (a ping, close, text, fragment or extension bit)",
            source: io::ErrorKind::InvalidData.into(),
        })?;
        client.input.clear();
        client.input.extend_from_slice(&chunk[used..end]);
        // Edge-triggered readiness: a read that did not fill the buffer drained the socket.
        if end < chunk.len() {
            return Ok(());
        }
    }
}

/// One stamped message arrived at `now` (what comes back to a publisher is not counted).
fn delivered(role: &mut Role, bytes: &[u8], now: u64, window: Window, part: &mut Part) {
    if let Role::Subscriber(tally) = role {
        let publisher = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(bytes[4..12].try_into().expect("8 bytes"));
        let due = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        tally.take(publisher, seq, due, now, window, part);
    }
}

impl Tally {
    fn take(
        &mut self,
        publisher: u32,
        seq: u64,
        due: u64,
        now: u64,
        window: Window,
        part: &mut Part,
    ) {
        self.arrived += u64::from(window.holds(now));
        let (last, gaps) = match &mut self.order {
            OrderCheck::Lean(sequences) => {
                match sequences.take(publisher, seq) {
                    Order::InOrder => {}
                    Order::Behind => {
                        self.reordered += 1;
                        return;
                    }
                    Order::Foreign => return,
                }
                self.count((publisher, seq), due, now, window, part);
                return;
            }
            OrderCheck::Exact { last, gaps } => (last, gaps),
        };
        match last.get(&publisher).copied() {
            Some(previous) if seq == previous => {
                self.duplicates += 1;
                return;
            }
            Some(previous) if seq < previous => {
                if !gaps.remove(&(publisher, seq)) {
                    self.duplicates += 1;
                    return;
                }
                self.reordered += 1;
            }
            previous => {
                // Remember skipped sequences (a bounded number) to tell reordering from
                // duplicates later.
                let from = previous.map_or(seq, |l| l + 1);
                for skipped in from..seq.min(from + 4096) {
                    gaps.insert((publisher, skipped));
                }
                last.insert(publisher, seq);
            }
        }
        if self.count((publisher, seq), due, now, window, part) {
            let entry = part.spread.entry((publisher, seq)).or_insert((now, now));
            entry.0 = entry.0.min(now);
            entry.1 = entry.1.max(now);
        }
    }

    /// Counts the first delivery of `seq`, sent (or due) at `due`; whether it was in the
    /// window.
    fn count(
        &mut self,
        (publisher, seq): (u32, u64),
        due: u64,
        now: u64,
        window: Window,
        part: &mut Part,
    ) -> bool {
        if let Some(reached) = &part.reached {
            reached.add(publisher, seq);
        }
        if !window.holds(due) {
            return false;
        }
        self.received += 1;
        let latency = now.saturating_sub(due).max(1);
        self.latency.saturating_record(latency);
        let second = ((due - window.start_ns) / 1_000_000_000) as usize;
        if let Some(h) = part.seconds.get_mut(second) {
            h.saturating_record(latency);
        }
        true
    }
}

fn build(
    args: &FanoutArgs,
    parts: &[Part],
    window: Window,
    started: SystemTime,
) -> Result<RunResult, Error> {
    let secs = args.duration.as_secs_f64();
    let subscribers: Vec<&Tally> = parts.iter().flat_map(|p| &p.subscribers).collect();
    let mut per_topic = vec![0u64; args.topics];
    for i in 0..args.subscribers {
        per_topic[i % args.topics] += 1;
    }
    let published: u64 = parts.iter().flat_map(|p| &p.published).map(|(_, _, n)| n).sum();
    let expected: u64 =
        parts.iter().flat_map(|p| &p.published).map(|&(_, topic, n)| n * per_topic[topic]).sum();
    let received: u64 = subscribers.iter().map(|s| s.received).sum();
    let latency = merged(subscribers.iter().map(|s| &s.latency));
    let send_lag = merged(parts.iter().filter_map(|p| p.send_lag.as_ref()));
    let handshake = merged(parts.iter().filter_map(|p| p.handshake.as_ref()));
    let mut spreads: HashMap<(u32, u64), (u64, u64)> = HashMap::new();
    for part in parts {
        for (&key, &(first, last)) in &part.spread {
            let entry = spreads.entry(key).or_insert((first, last));
            entry.0 = entry.0.min(first);
            entry.1 = entry.1.max(last);
        }
    }
    let mut spread = new_histogram();
    for (first, last) in spreads.values() {
        spread.saturating_record((last - first).max(1));
    }
    let spread_of = |q: f64| {
        let mut values: Vec<f64> =
            subscribers.iter().map(|s| s.latency.value_at_quantile(q) as f64 / 1000.0).collect();
        values.sort_by(f64::total_cmp);
        match values.len() {
            0 => [0.0; 3],
            n => [values[0], values[n / 2], values[n - 1]],
        }
    };
    let fanout = FanoutStats {
        subscribers: args.subscribers,
        publishers: args.publishers,
        topics: args.topics,
        published,
        expected,
        received,
        reach: if expected > 0 { received as f64 / expected as f64 } else { 0.0 },
        lost: expected.saturating_sub(received),
        duplicates: subscribers.iter().map(|s| s.duplicates).sum(),
        reordered: subscribers.iter().map(|s| s.reordered).sum(),
        spread_us: Percentiles::of(&spread),
        subscriber_p50_us: spread_of(0.5),
        subscriber_p99_us: spread_of(0.99),
        arrived_per_sec: subscribers.iter().map(|s| s.arrived).sum::<u64>() as f64 / secs,
        window: args.window,
        stalls: parts.iter().map(|p| p.stalls).sum(),
        lean: args.lean,
    };
    let busiest = parts.iter().map(|p| p.cpu).max().unwrap_or_default();
    let client_cpu: Duration = parts.iter().map(|p| p.cpu).sum();
    let connections = (args.subscribers + args.publishers) as u64;
    Ok(RunResult {
        tool: "surge-loadgen".to_owned(),
        format: crate::report::FORMAT,
        started_unix_s: unix_seconds(started),
        measure_start_unix_s: Some(unix_seconds(started + Duration::from_nanos(window.start_ns))),
        config: ConfigRecord {
            target: args.urls.join(" "),
            mode: Mode::Ws,
            connections: connections as usize,
            size: SizeSpec::Fixed(args.size),
            payload: PayloadKind::Binary,
            in_flight: args.window.unwrap_or(0) as usize,
            rate: if args.window.is_some() { None } else { Some(args.rate) },
            duration_s: secs,
            warmup_s: args.warmup.as_secs_f64(),
            threads: args.threads,
            server_threads: None,
            pin: false,
            ramp: None,
            connect_timeout_s: CONNECT_TIMEOUT.as_secs_f64(),
            churn: None,
            agent: None,
            start_at_unix_s: None,
            deflate: None,
        },
        machine: MachineInfo::current(),
        embedded: None,
        interrupted: false,
        measured_s: secs,
        messages: received,
        msgs_per_sec: received as f64 / secs,
        mb_per_sec: received as f64 * args.size as f64 / secs / 1e6,
        latency_us: Percentiles::of(&latency),
        service_us: Percentiles::of(&new_histogram()),
        handshake_us: Percentiles::of(&handshake),
        send_lag_us: Percentiles::of(&send_lag),
        health: Health::judge(busiest.as_secs_f64(), secs, &Percentiles::of(&send_lag)),
        per_second: Vec::new(),
        errors: Default::default(),
        close_codes: Default::default(),
        connections: ConnStats {
            requested: connections,
            established: connections,
            lost: 0,
            churned: 0,
            open_at_end: connections,
        },
        churn: None,
        mismatches: fanout.duplicates + fanout.reordered,
        scheduled: expected,
        backlog: 0,
        unanswered: fanout.lost,
        deflate: None,
        cpu: CpuStats {
            client_s: client_cpu.as_secs_f64(),
            process_s: crate::platform::process_cpu_time().unwrap_or_default().as_secs_f64(),
            wall_s: secs,
            client_measured_s: client_cpu.as_secs_f64(),
            client_ns_per_msg: if received > 0 {
                client_cpu.as_secs_f64() * 1e9 / received as f64
            } else {
                0.0
            },
        },
        histograms: Encoded {
            latency: encode_histogram(&latency)?,
            service: encode_histogram(&new_histogram())?,
            handshake: encode_histogram(&handshake)?,
        },
        server: None,
        fanout: Some(fanout),
    })
}

/// The terminal report.
pub fn summary(r: &RunResult) -> String {
    let Some(f) = &r.fanout else { return crate::report::summary(r) };
    let l = &r.latency_us;
    let pace = match f.window {
        Some(w) => format!("closed loop, {w} on their way per publisher ({} stalls)", f.stalls),
        None => format!("open loop at {:.0} msg/s", r.config.rate.unwrap_or(0.0)),
    };
    format!(
        "surge-loadgen fanout -> {}\n  {} subscribers{}, {} publishers, {} room(s), {} B, {}, {:.1} s\n  \
         deliveries: {:.0}/s ({} of {} expected, reach {:.4}; arrived in the window {:.0}/s); lost {}, duplicates {}, reordered {}\n  \
         delivery latency (from the {}), µs: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}\n  \
         per subscriber, µs: p50 {:.1} / {:.1} / {:.1}, p99 {:.1} / {:.1} / {:.1} (lowest / median / highest)\n  \
         first-to-last spread, µs: p50 {:.1}  p99 {:.1}  max {:.1}\n  {}\n",
        r.config.target,
        f.subscribers,
        if f.lean { " (lean)" } else { "" },
        f.publishers,
        f.topics,
        match &r.config.size { SizeSpec::Fixed(n) => *n, other => other.max() },
        pace,
        r.measured_s,
        r.msgs_per_sec,
        f.received,
        f.expected,
        f.reach,
        f.arrived_per_sec,
        f.lost,
        f.duplicates,
        f.reordered,
        if f.window.is_some() { "send" } else { "scheduled send" },
        l.p50, l.p90, l.p99, l.p99_9, l.max,
        f.subscriber_p50_us[0], f.subscriber_p50_us[1], f.subscriber_p50_us[2],
        f.subscriber_p99_us[0], f.subscriber_p99_us[1], f.subscriber_p99_us[2],
        f.spread_us.p50, f.spread_us.p99, f.spread_us.max,
        r.health.line(),
    )
}
