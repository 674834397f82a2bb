//! What a run reports: the JSON result, the terminal summary and the `.hgrm` percentile
//! distribution (the interval log is written as the run goes, by the `run` module).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::config::{Mode, RunConfig};
use crate::error::Error;
use crate::health::Health;
use crate::machine::MachineInfo;
use crate::scrape::ServerFigures;
use crate::stats::{Percentiles, SIGFIG};
use crate::workload::{PayloadKind, SizeSpec};

/// Version of the JSON layout.
pub const FORMAT: u32 = 1;

/// A run's configuration as the JSON file records it (seconds as numbers; the field names of
/// format 1, so that older files still load).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigRecord {
    /// The target as given ("embedded" when none).
    pub target: String,
    /// "raw" (TCP echo) or "ws".
    pub mode: Mode,
    /// Connections.
    pub connections: usize,
    /// Message sizes.
    pub size: SizeSpec,
    /// Message type.
    pub payload: PayloadKind,
    /// Messages outstanding per connection (the cap, in open loop).
    pub in_flight: usize,
    /// Open-loop total rate, messages per second (None: closed loop).
    pub rate: Option<f64>,
    /// Measured seconds.
    pub duration_s: f64,
    /// Warm-up seconds (not measured).
    pub warmup_s: f64,
    /// Client threads.
    pub threads: usize,
    /// Embedded server threads (None: external target).
    pub server_threads: Option<usize>,
    /// Whether threads were pinned to cores.
    pub pin: bool,
    /// Connections opened per second while ramping up (None: as fast as possible).
    pub ramp: Option<f64>,
    /// Connect (and handshake) timeout, seconds.
    pub connect_timeout_s: f64,
    /// Connections closed and reopened per second while measuring (None: no churn).
    #[serde(default)]
    pub churn: Option<f64>,
    /// Many agents: the agent's name.
    #[serde(default)]
    pub agent: Option<String>,
    /// Many agents: the agreed start of the warm-up, seconds since the Unix epoch.
    #[serde(default)]
    pub start_at_unix_s: Option<f64>,
    /// The permessage-deflate offer, as sent in `Sec-WebSocket-Extensions` (None: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deflate: Option<String>,
}

impl From<&RunConfig> for ConfigRecord {
    fn from(c: &RunConfig) -> Self {
        ConfigRecord {
            target: c.target.clone(),
            mode: c.mode,
            connections: c.connections,
            size: c.size.clone(),
            payload: c.payload,
            in_flight: c.in_flight,
            rate: c.pacing.rate(),
            duration_s: c.duration.as_secs_f64(),
            warmup_s: c.warmup.as_secs_f64(),
            threads: c.threads,
            server_threads: c.server_threads,
            pin: c.pin,
            ramp: c.connect_rate,
            connect_timeout_s: c.connect_timeout.as_secs_f64(),
            churn: c.churn,
            agent: c.agent.clone(),
            start_at_unix_s: c.start_at.map(unix_seconds),
            deflate: c.deflate.map(|offer| offer.to_string()),
        }
    }
}

/// Seconds since the Unix epoch (0 for times before it).
pub fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// An output file, created before the run so that a bad path fails at once rather than after
/// the whole measurement; written when the results are in.
#[derive(Debug)]
pub struct OutputFile {
    path: PathBuf,
    file: std::fs::File,
}

impl OutputFile {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, Error> {
        let file = std::fs::File::create(path).map_err(|e| Error::file(path, e))?;
        Ok(OutputFile { path: path.to_owned(), file })
    }

    /// Writes `contents` and closes the file.
    pub fn write(self, contents: impl AsRef<[u8]>) -> Result<(), Error> {
        self.with(|f| f.write_all(contents.as_ref()))
    }

    /// Writes through `f` (buffered) and closes the file.
    pub fn with(self, f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), Error> {
        let mut out = io::BufWriter::new(self.file);
        f(&mut out).and_then(|()| out.flush()).map_err(|e| Error::file(&self.path, e))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for writers that stream into it (the interval log).
    pub fn into_parts(self) -> (PathBuf, std::fs::File) {
        (self.path, self.file)
    }
}

/// The files a command writes its result into (`--json`, `--hgrm`, `--hlog`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Write the result (configuration, machine, percentiles, per-second samples) as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the latency percentile distribution (HdrHistogram .hgrm format, values in µs).
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Write per-second histograms (HdrHistogram interval log, values in ns).
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,
}

/// The files of [`OutputArgs`], created.
#[derive(Debug)]
pub struct OutputFiles {
    /// `--json`.
    pub json: Option<OutputFile>,
    /// `--hgrm`.
    pub hgrm: Option<OutputFile>,
    /// `--hlog`.
    pub hlog: Option<OutputFile>,
}

impl OutputArgs {
    /// Creates every file asked for, before anything is measured.
    pub fn create(&self) -> Result<OutputFiles, Error> {
        let create = |p: &Option<PathBuf>| p.as_deref().map(OutputFile::create).transpose();
        Ok(OutputFiles {
            json: create(&self.json)?,
            hgrm: create(&self.hgrm)?,
            hlog: create(&self.hlog)?,
        })
    }
}

/// One measured interval (normally a second).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Start, seconds from the start of measurement.
    pub t_s: f64,
    /// Length, seconds.
    pub length_s: f64,
    /// Messages echoed.
    pub messages: u64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 90th percentile latency, µs.
    pub p90_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub p99_9_us: f64,
    /// Largest latency, µs.
    pub max_us: f64,
}

/// Connection counts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ConnStats {
    /// Asked for.
    pub requested: u64,
    /// Came up.
    pub established: u64,
    /// Came up and were lost before the end (closed by the server, reset, protocol error).
    pub lost: u64,
    /// Closed by the churn (and reopened in their place, as new connections).
    #[serde(default)]
    pub churned: u64,
    /// Open when the run ended. Every connection that came up was lost, churned or is here:
    /// `established == lost + churned + open_at_end`.
    #[serde(default)]
    pub open_at_end: u64,
}

/// What the churn did (`--churn`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ChurnStats {
    /// Asked for: connections closed and reopened per second.
    pub rate: f64,
    /// Connections the churn closed.
    pub closed: u64,
    /// Reopened connections that failed to come up (their errors are in `errors`).
    pub failed: u64,
    /// Connect + opening handshake latency of the reopened connections, µs.
    pub handshake_us: Percentiles,
}

/// CPU used by the tool itself.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuStats {
    /// Client threads' CPU time (user + system), seconds, whole run.
    pub client_s: f64,
    /// The whole process's CPU time, seconds (includes an embedded server).
    pub process_s: f64,
    /// Wall-clock seconds from the threads' start to their end.
    pub wall_s: f64,
    /// Client threads' CPU time during measurement, seconds.
    pub client_measured_s: f64,
    /// Client CPU nanoseconds per measured message (measurement time only).
    pub client_ns_per_msg: f64,
}

impl ConnStats {
    /// Adds another agent's counts.
    pub fn add(&mut self, other: &ConnStats) {
        self.requested += other.requested;
        self.established += other.established;
        self.lost += other.lost;
        self.churned += other.churned;
        self.open_at_end += other.open_at_end;
    }
}

impl CpuStats {
    /// Adds another agent's CPU time (wall time: the longer); the per-message figure is left
    /// for the caller to recompute.
    pub fn add(&mut self, other: &CpuStats) {
        self.client_s += other.client_s;
        self.process_s += other.process_s;
        self.wall_s = self.wall_s.max(other.wall_s);
        self.client_measured_s += other.client_measured_s;
    }
}

/// What permessage-deflate did, whole run (warm-up and drain included), from the connections'
/// own counts: payload bytes (what the application sent or got) against the bytes of the
/// frames' payloads on the wire, each way.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct DeflateRecord {
    /// Connections the server agreed to compress.
    pub agreed: u64,
    /// Connections that came up without it (the server declined).
    pub declined: u64,
    /// Messages sent compressed.
    pub sent_compressed: u64,
    /// Payload bytes sent.
    pub sent_payload: u64,
    /// Their bytes on the wire (compressed).
    pub sent_wire: u64,
    /// `sent_payload / sent_wire`.
    pub sent_ratio: f64,
    /// Messages received compressed (the server may send short ones as they are).
    pub received_compressed: u64,
    /// Payload bytes received, compressed messages and others.
    pub received_payload: u64,
    /// Their bytes on the wire.
    pub received_wire: u64,
    /// `received_payload / received_wire`.
    pub received_ratio: f64,
}

impl DeflateRecord {
    /// Adds another agent's counts and recomputes the ratios.
    pub fn add(&mut self, other: &DeflateRecord) {
        self.agreed += other.agreed;
        self.declined += other.declined;
        self.sent_compressed += other.sent_compressed;
        self.sent_payload += other.sent_payload;
        self.sent_wire += other.sent_wire;
        self.received_compressed += other.received_compressed;
        self.received_payload += other.received_payload;
        self.received_wire += other.received_wire;
        self.set_ratios();
    }

    /// Sets the ratios from the counts (0 where nothing went that way).
    pub fn set_ratios(&mut self) {
        let ratio = |payload: u64, wire: u64| match wire {
            0 => 0.0,
            wire => payload as f64 / wire as f64,
        };
        self.sent_ratio = ratio(self.sent_payload, self.sent_wire);
        self.received_ratio = ratio(self.received_payload, self.received_wire);
    }
}

/// Full histograms, base64 of HdrHistogram's compressed V2 encoding, values in ns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Encoded {
    /// CO-corrected latency.
    pub latency: String,
    /// Service time.
    pub service: String,
    /// Handshake (or TCP connect) latency.
    pub handshake: String,
}

/// Everything a run records; this is the `--json` file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    /// Always "surge-loadgen".
    pub tool: String,
    /// Layout version ([`FORMAT`]).
    pub format: u32,
    /// When the run started, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// When the measured window began, seconds since the Unix epoch by this machine's clock
    /// (what `merge` aligns agents on; absent in files from before it).
    #[serde(default)]
    pub measure_start_unix_s: Option<f64>,
    /// How it was run.
    pub config: ConfigRecord,
    /// Where it ran.
    pub machine: MachineInfo,
    /// The embedded server and core split, if any.
    pub embedded: Option<String>,
    /// Ended early by Ctrl-C.
    pub interrupted: bool,
    /// Seconds measured.
    pub measured_s: f64,
    /// Messages echoed in the measured time.
    pub messages: u64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Payload megabytes (10^6) per second, each way.
    pub mb_per_sec: f64,
    /// Latency from the scheduled send (CO-corrected), µs.
    pub latency_us: Percentiles,
    /// Service time from the actual send, µs.
    pub service_us: Percentiles,
    /// Connect + opening handshake latency (raw mode: connect), µs.
    pub handshake_us: Percentiles,
    /// Open loop: how late the client itself sent messages it had room to send on time, µs
    /// (its own share of the corrected latency; empty in closed loop).
    pub send_lag_us: Percentiles,
    /// Whether the load generator itself was the limit.
    #[serde(default)]
    pub health: Health,
    /// One entry per measured interval.
    pub per_second: Vec<Sample>,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Close codes received, by code.
    pub close_codes: BTreeMap<String, u64>,
    /// Connection counts.
    pub connections: ConnStats,
    /// The churn, when there was one.
    #[serde(default)]
    pub churn: Option<ChurnStats>,
    /// Echoes that differed from what was sent.
    pub mismatches: u64,
    /// Messages scheduled in the measured window: due (open loop) or sent (closed loop). Each
    /// is in `messages`, `backlog` or `unanswered`.
    #[serde(default)]
    pub scheduled: u64,
    /// Open loop: messages scheduled in the window but never sent.
    pub backlog: u64,
    /// Messages scheduled in the window and sent whose echo never arrived.
    pub unanswered: u64,
    /// permessage-deflate, when it was offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deflate: Option<DeflateRecord>,
    /// The tool's own CPU use.
    pub cpu: CpuStats,
    /// The full histograms.
    pub histograms: Encoded,
    /// The server's own figures from its `/metrics` (`--scrape-metrics`), if scraped.
    #[serde(default)]
    pub server: Option<ServerFigures>,
    /// A `fanout` run's reach, loss, order and spread (absent for echo runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<FanoutStats>,
}

/// What the fan-out measured beyond latency and rate (the `fanout` part of the JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FanoutStats {
    /// Subscribers, publishers, rooms.
    pub subscribers: usize,
    /// Publishers.
    pub publishers: usize,
    /// Rooms.
    pub topics: usize,
    /// Messages published in the window.
    pub published: u64,
    /// Deliveries expected: each published message times its room's subscribers.
    pub expected: u64,
    /// Distinct deliveries received.
    pub received: u64,
    /// `received / expected`.
    pub reach: f64,
    /// Expected and never received.
    pub lost: u64,
    /// Received more than once.
    pub duplicates: u64,
    /// Received after a later message of the same publisher.
    pub reordered: u64,
    /// From a message's first delivery to its last, µs.
    pub spread_us: Percentiles,
    /// Per subscriber: the lowest, median and highest of the subscribers' p50 latency, µs.
    pub subscriber_p50_us: [f64; 3],
    /// The same of the subscribers' p99 latency, µs.
    pub subscriber_p99_us: [f64; 3],
    /// Deliveries that arrived in the window, whenever sent, per second: the throughput of a
    /// saturation run (`--window`), where sends and arrivals overlap the window's edges.
    #[serde(default)]
    pub arrived_per_sec: f64,
    /// `--window`: the most messages each publisher had on their way (closed loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    /// `--window`: times a publisher gave up waiting for its own messages (the server
    /// dropped them).
    #[serde(default)]
    pub stalls: u64,
    /// `--lean` subscribers: duplicates are counted in `reordered`, `spread_us` is empty.
    #[serde(default)]
    pub lean: bool,
}

impl RunResult {
    /// The JSON text of the result.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serializable") + "\n"
    }

    /// Writes the JSON file.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        OutputFile::create(path)?.write(self.to_json())
    }

    /// Reads a JSON file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        serde_json::from_str(&text).map_err(|source| Error::Json { path: path.into(), source })
    }

    /// A short label for tables and plots: the file stem or the commit.
    pub fn label(&self) -> String {
        let commit: String = self.machine.git_commit.chars().take(8).collect();
        format!("{} {}", self.machine.tool_version, commit)
    }
}

fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn us(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The terminal summary.
pub fn summary(r: &RunResult) -> String {
    let c = &r.config;
    let mut s = String::new();
    let commit: String = r.machine.git_commit.chars().take(12).collect();
    let _ = writeln!(s, "surge-loadgen {} ({commit}) -> {}", r.machine.tool_version, c.target);
    if let Some(e) = &r.embedded {
        let _ = writeln!(s, "  embedded {e}");
    }
    let pacing = match c.rate {
        Some(rate) => {
            format!("open loop at {} msg/s, cap {} in flight", thousands(rate), c.in_flight)
        }
        None => format!("closed loop, {} in flight", c.in_flight),
    };
    let kind = if c.mode == Mode::Raw {
        "raw TCP".to_owned()
    } else {
        format!("{:?}", c.payload).to_lowercase()
    };
    let _ = writeln!(
        s,
        "  {} connections, {} B {kind}, {pacing}, {} client thread{}{}, {:.1} s measured after \
         {:.1} s warm-up{}",
        c.connections,
        c.size,
        c.threads,
        if c.threads == 1 { "" } else { "s" },
        if c.pin { " pinned" } else { "" },
        r.measured_s,
        c.warmup_s,
        if r.interrupted { " (interrupted)" } else { "" }
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "  throughput    {} msg/s   {:.2} MB/s each way   ({} messages)",
        thousands(r.msgs_per_sec),
        r.mb_per_sec,
        thousands(r.messages as f64)
    );
    let _ = writeln!(
        s,
        "  {:<14}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        "µs", "mean", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    let row = |s: &mut String, name: &str, p: &Percentiles| {
        let _ = writeln!(
            s,
            "  {:<14}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
            name,
            us(p.mean),
            us(p.p50),
            us(p.p90),
            us(p.p99),
            us(p.p99_9),
            us(p.p99_99),
            us(p.max)
        );
    };
    row(&mut s, "latency", &r.latency_us);
    if c.rate.is_some() {
        row(&mut s, "service time", &r.service_us);
        row(&mut s, "client lag", &r.send_lag_us);
    }
    row(&mut s, if c.mode == Mode::Raw { "connect" } else { "handshake" }, &r.handshake_us);
    let _ = writeln!(s);
    let conns = &r.connections;
    if conns.churned > 0 {
        let _ = writeln!(
            s,
            "  connections   {} up ({} asked for, the rest reopened by the churn), {} lost",
            conns.established, conns.requested, conns.lost
        );
    } else {
        let _ = writeln!(
            s,
            "  connections   {} of {} up, {} lost",
            conns.established, conns.requested, conns.lost
        );
    }
    if let Some(ch) = &r.churn {
        let _ = writeln!(
            s,
            "  churn         {} closed and reopened at {}/s ({} reopens failed); open at the end \
             {}; reopen handshake p50 {} µs, p99 {} µs",
            ch.closed,
            thousands(ch.rate),
            ch.failed,
            r.connections.open_at_end,
            us(ch.handshake_us.p50),
            us(ch.handshake_us.p99)
        );
    }
    let errors: Vec<String> = r.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        s,
        "  errors        {}",
        if errors.is_empty() { "none".to_owned() } else { errors.join(", ") }
    );
    let _ = writeln!(s, "  mismatches    {}", r.mismatches);
    if let (Some(d), Some(offer)) = (&r.deflate, &c.deflate) {
        let _ = writeln!(
            s,
            "  deflate       {offer}: agreed on {} connections, declined on {}",
            d.agreed, d.declined
        );
        let _ = writeln!(
            s,
            "  compression   sent {:.2}x ({} B payload, {} B on the wire), received {:.2}x \
             ({} B payload, {} B on the wire; {} of the messages compressed)",
            d.sent_ratio,
            thousands(d.sent_payload as f64),
            thousands(d.sent_wire as f64),
            d.received_ratio,
            thousands(d.received_payload as f64),
            thousands(d.received_wire as f64),
            thousands(d.received_compressed as f64),
        );
    }
    if c.mode != Mode::Raw {
        let codes: Vec<String> = r.close_codes.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        let _ = writeln!(
            s,
            "  close codes   {}",
            if codes.is_empty() { "none".to_owned() } else { codes.join(", ") }
        );
    }
    // Open loop: every message the schedule put in the window is accounted for.
    if c.rate.is_some() {
        let _ = writeln!(
            s,
            "  scheduled     {} in the window: {} answered, {} never sent, {} unanswered",
            thousands(r.scheduled as f64),
            thousands(r.messages as f64),
            thousands(r.backlog as f64),
            thousands(r.unanswered as f64)
        );
    } else if r.unanswered > 0 {
        let _ = writeln!(
            s,
            "  unanswered    {} (not in the histograms)",
            thousands(r.unanswered as f64)
        );
    }
    if let Some(server) = &r.server {
        let p99 = server
            .turn_p99_us
            .map_or("past the last bucket".to_owned(), |us| format!("<= {us:.0} µs"));
        let _ = writeln!(
            s,
            "  server        its /metrics over {:.1} s (warm-up and close included): {} messages \
             in, {} out ({} msg/s in); {} sends at the backpressure limit, {} limit hits; {} \
             loop turns, mean {:.1} µs, p99 {p99}",
            server.seconds,
            thousands(server.messages_received as f64),
            thousands(server.messages_sent as f64),
            thousands(if server.seconds > 0.0 {
                server.messages_received as f64 / server.seconds
            } else {
                0.0
            }),
            server.backpressure,
            server.limit_hits,
            thousands(server.turns as f64),
            server.turn_mean_us,
        );
    }
    s.push_str(&r.health.line());
    let busy =
        if r.measured_s > 0.0 { 100.0 * r.cpu.client_measured_s / r.measured_s } else { 0.0 };
    let _ = writeln!(
        s,
        "  client CPU    {:.0} ns/msg, {busy:.0}% of one core while measuring ({:.2} s in all); \
         process {:.2} s",
        r.cpu.client_ns_per_msg, r.cpu.client_s, r.cpu.process_s
    );
    if let Some(n) = r.errors.get("descriptor_limit") {
        let _ = writeln!(
            s,
            "  {n} connections were not opened: the process ran out of descriptors (ulimit -Hn)"
        );
    }
    s
}

/// Sub-buckets per bucket of a histogram with `sigfig` significant digits (as Java reports it).
fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(sigfig));
    largest.next_power_of_two()
}

/// The rows of HdrHistogram's percentile distribution with 5 ticks per half distance, computed
/// exactly as Java's `PercentileIterator` does (percent arithmetic, `>=` on the level), so that
/// files match the ones `HistogramLogProcessor` prints: (value, percentile level, total count).
pub fn percentile_rows(h: &Histogram<u64>) -> Vec<(u64, f64, u64)> {
    const TICKS_PER_HALF_DISTANCE: f64 = 5.0;
    let total = h.len();
    let mut rows = Vec::new();
    if total == 0 {
        return rows;
    }
    let mut level = 0.0f64;
    let mut running = 0u64;
    for v in h.iter_recorded() {
        running += v.count_at_value();
        let value = v.value_iterated_to();
        if running >= total {
            // The last recorded value: the pending level, then one more step to 100 %.
            rows.push((value, level, running));
            rows.push((value, 100.0, running));
            break;
        }
        while 100.0 * running as f64 / total as f64 >= level {
            rows.push((value, level, running));
            let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as i32;
            let ticks = TICKS_PER_HALF_DISTANCE * 2f64.powi(halvings + 1);
            level += 100.0 / ticks;
        }
    }
    rows
}

/// Writes `h` (values in ns) in HdrHistogram's percentile-distribution (`.hgrm`) format, values
/// divided by `unit_ratio` (1000: microseconds), as Java's `outputPercentileDistribution` prints
/// it with 5 ticks per half distance.
pub fn write_hgrm<W: Write + ?Sized>(
    h: &Histogram<u64>,
    unit_ratio: f64,
    out: &mut W,
) -> io::Result<()> {
    let p = usize::from(SIGFIG);
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    for (value, level, total) in percentile_rows(h) {
        let value = java_fixed(value as f64 / unit_ratio, p);
        let q = level / 100.0;
        let pct = java_fixed(q, 12);
        if level != 100.0 {
            let inv = java_fixed(1.0 / (1.0 - q), 2);
            writeln!(out, "{value:>12} {pct:>2} {total:>10} {inv:>14}")?;
        } else {
            writeln!(out, "{value:>12} {pct:>2} {total:>10}")?;
        }
    }
    let (mean, sd, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / unit_ratio, h.stdev() / unit_ratio, h.max() as f64 / unit_ratio)
    };
    let f = |x: f64| java_fixed(x, p);
    writeln!(out, "#[Mean    = {:>12}, StdDeviation   = {:>12}]", f(mean), f(sd))?;
    writeln!(out, "#[Max     = {:>12}, Total count    = {:>12}]", f(max), h.len())?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    )
}

/// `x` with `decimals` decimals as Java's `Formatter` writes it: the shortest decimal that reads
/// back as `x`, rounded half up (Rust rounds the exact binary value, ties to even), so that our
/// files match Java's digit for digit.
fn java_fixed(x: f64, decimals: usize) -> String {
    let shortest = format!("{}", x.abs());
    let (int, frac) = shortest.split_once('.').unwrap_or((&shortest, ""));
    let frac: Vec<u8> = frac.bytes().chain(std::iter::repeat(b'0')).take(decimals + 1).collect();
    let mut digits: Vec<u8> = int.bytes().chain(frac[..decimals].iter().copied()).collect();
    if frac[decimals] >= b'5' {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let split = digits.len() - decimals;
    let mut s = String::with_capacity(digits.len() + 2);
    if x < 0.0 && digits.iter().any(|&d| d != b'0') {
        s.push('-');
    }
    s.push_str(std::str::from_utf8(&digits[..split]).expect("ASCII digits"));
    if decimals > 0 {
        s.push('.');
        s.push_str(std::str::from_utf8(&digits[split..]).expect("ASCII digits"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format() {
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(us(12.34), "12.3");
        assert_eq!(us(1234.5), "1234");
        assert_eq!(sub_bucket_count(3), 2048);
        assert_eq!(sub_bucket_count(2), 256);
        assert_eq!(java_fixed(0.9997802734375, 12), "0.999780273438");
        assert_eq!(java_fixed(99.97802734375 / 100.0, 12), "0.999780273438");
        assert_eq!(java_fixed(1.125, 2), "1.13");
        assert_eq!(java_fixed(9.9996, 3), "10.000");
        assert_eq!(java_fixed(-0.0001, 3), "0.000");
        assert_eq!(java_fixed(-2.5, 0), "-3");
        assert_eq!(java_fixed(12.0, 3), "12.000");
    }
}
