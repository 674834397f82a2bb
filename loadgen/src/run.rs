//! One run: resolve the target, check the limits, start the client threads, collect their
//! intervals, and build the result.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use surge_client::blocking::{self, ConnectError};
use surge_proto::close::CloseCode;
use surge_proto::handshake::ClientRequest;

use crate::client::{self, DeflateTally, Report, Shared, ThreadPlan, WsRequest};
use crate::config::{Mode, RunConfig};
use crate::embedded::{self, EmbeddedServer};
use crate::error::Error;
use crate::health::Health;
use crate::machine::{self, MachineInfo};
use crate::platform;
use crate::report::{
    unix_seconds, ChurnStats, ConfigRecord, ConnStats, CpuStats, DeflateRecord, Encoded,
    OutputFile, RunResult, Sample,
};
use crate::scrape::{MetricsUrl, Scrape, ServerFigures};
use crate::stats::{
    encode_histogram, new_histogram, CloseCodes, ErrorCounts, HistogramError, Percentiles, Recorder,
};
use crate::target::Target;
use crate::tls::TlsPlan;

/// Connections per source address before spreading over 127.0.0.x (under one ephemeral range).
const CONNS_PER_SOURCE: usize = 16_000;

/// Options of a run that do not change what is measured.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Write the interval log into this file (created before the run).
    pub hlog: Option<OutputFile>,
    /// Show a progress bar (if stderr is a terminal and the run is long enough).
    pub progress: bool,
    /// Print the core split and the like on stderr.
    pub verbose: bool,
    /// Scrape the target's `/metrics` at the start of the warm-up and at the end: `Some("")`
    /// for the target's own address, else an `http://` URL.
    pub scrape: Option<String>,
}

/// A finished run: the result and the full histograms.
#[derive(Debug)]
pub struct RunOutcome {
    /// What the JSON records.
    pub result: RunResult,
    /// CO-corrected latency, ns.
    pub latency: Histogram<u64>,
    /// Service time, ns.
    pub service: Histogram<u64>,
}

/// How cores are split between an embedded server and the clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreSplit {
    /// Server threads.
    pub server_threads: usize,
    /// Client threads.
    pub client_threads: usize,
    /// Server cores (empty: not pinned).
    pub server_cores: Vec<usize>,
    /// Client cores (empty: not pinned).
    pub client_cores: Vec<usize>,
}

impl CoreSplit {
    /// Splits `cores` between server and clients: half each (the server gets the odd one), each
    /// side overridable; pinned sides get consecutive cores, server first.
    pub fn new(
        cores: usize,
        server: Option<usize>,
        client: Option<usize>,
        pin: bool,
        embedded: bool,
    ) -> Self {
        let cores = cores.max(1);
        let server_threads = if embedded { server.unwrap_or(cores.div_ceil(2)).max(1) } else { 0 };
        let client_threads =
            client.unwrap_or_else(|| cores.saturating_sub(server_threads).max(1)).max(1);
        let (server_cores, client_cores) = if pin {
            let s: Vec<usize> = (0..server_threads).map(|i| i % cores).collect();
            let c = (0..client_threads).map(|i| (server_threads + i) % cores).collect();
            (s, c)
        } else {
            (Vec::new(), Vec::new())
        };
        CoreSplit { server_threads, client_threads, server_cores, client_cores }
    }

    /// One line describing the split.
    pub fn describe(&self, server: &str) -> String {
        let side = |n: usize, cores: &[usize]| {
            let t = if n == 1 { "thread" } else { "threads" };
            if cores.is_empty() {
                format!("{n} {t} (not pinned)")
            } else {
                let list: Vec<String> = cores.iter().map(|c| c.to_string()).collect();
                format!(
                    "{n} {t} on core{} {}",
                    if cores.len() == 1 { "" } else { "s" },
                    list.join(",")
                )
            }
        };
        if self.server_threads == 0 {
            format!("clients: {}", side(self.client_threads, &self.client_cores))
        } else {
            format!(
                "{server}: {}; clients: {}",
                side(self.server_threads, &self.server_cores),
                side(self.client_threads, &self.client_cores)
            )
        }
    }
}

/// Runs one measurement.
pub fn run(config: &RunConfig, target: &Target, opts: RunOptions) -> Result<RunOutcome, Error> {
    config.validate()?;
    let raw = config.mode == Mode::Raw;
    let embedded = *target == Target::Embedded;
    let split = CoreSplit::new(
        machine::available_cores(),
        config.server_threads,
        Some(config.threads),
        config.pin,
        embedded,
    );
    // The embedded server holds a descriptor per connection too.
    let limit = platform::raise_fd_limit().map_err(Error::os("descriptor limit"))?;
    let per_conn = if embedded { 2 } else { 1 };
    if let Err(Error::FdLimit { needed, limit, max_connections }) =
        machine::check_fd_budget(config.connections as u64 * per_conn, limit)
    {
        return Err(Error::FdLimit { needed, limit, max_connections: max_connections / per_conn });
    }

    let (addr, server): (SocketAddr, Option<EmbeddedServer>) = match target {
        Target::Embedded => {
            let (addr, server) = if raw {
                embedded::start_embedded_floor(split.server_threads, &split.server_cores)?
            } else {
                embedded::start_embedded_echo(
                    split.server_threads,
                    &split.server_cores,
                    config.deflate.is_some(),
                )?
            };
            (addr, Some(server))
        }
        Target::Tcp { addr } | Target::Ws { addr, .. } => (*addr, None),
    };
    let ws = match target {
        Target::Ws { host, path, .. } => Some(WsRequest { host: host.clone(), path: path.clone() }),
        Target::Embedded if !raw => Some(WsRequest { host: addr.to_string(), path: "/".into() }),
        _ => None,
    };
    let embedded_desc = server.as_ref().map(|s| split.describe(s.describe()));
    if opts.verbose {
        match &embedded_desc {
            Some(d) => eprintln!("embedded {d}"),
            None => eprintln!("{}", split.describe("")),
        }
    }
    let tls = match target {
        Target::Ws { secure: true, host, .. } => Some(TlsPlan::new(&config.tls, host)?),
        _ => None,
    };
    let connect_timeout = config.connect_timeout;
    // A wss target is probed by TCP only: the run's own handshakes report TLS failures.
    let probed = if tls.is_some() { None } else { ws.as_ref() };
    probe(addr, probed, &config.target, connect_timeout)?;
    let scrape = match opts.scrape.as_deref() {
        None => None,
        Some("") => Some(MetricsUrl::beside(
            addr,
            &ws.as_ref().map_or(addr.to_string(), |w| w.host.clone()),
        )),
        Some(url) => Some(MetricsUrl::parse(url)?),
    };
    // Fails early, before any load, when the metrics are not there.
    if let Some(url) = &scrape {
        url.fetch(connect_timeout)?;
    }

    let started_unix_s = unix_seconds(SystemTime::now());
    let shared = Arc::new(Shared::new(config.warmup, config.duration));
    let (tx, rx) = mpsc::channel();
    let threads = split.client_threads.min(config.connections.max(1));
    let source_ips = match addr {
        SocketAddr::V4(a) if a.ip().is_loopback() && config.connections > CONNS_PER_SOURCE => {
            config.connections.div_ceil(CONNS_PER_SOURCE) as u32
        }
        _ => 0,
    };
    let mut handles = Vec::with_capacity(threads);
    let mut first = 0;
    let seed = getrandom::u64().unwrap_or(0x5eed);
    for t in 0..threads {
        let n = config.connections / threads + usize::from(t < config.connections % threads);
        let share = n as f64 / config.connections.max(1) as f64;
        let plan = ThreadPlan {
            index: t,
            target: addr,
            connections: n,
            first_conn: first,
            source_ips,
            ramp_rate: config.connect_rate.map_or(f64::INFINITY, |r| r * share),
            rate: config.pacing.rate().map(|r| r * share),
            in_flight: config.in_flight,
            sizes: config.size.clone(),
            kind: config.payload,
            connect_timeout,
            core: split.client_cores.get(t).copied(),
            seed: seed.wrapping_add(t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ws: ws.clone(),
            tls: tls.clone(),
            churn_rate: config.churn.map(|r| r * share),
            deflate: config.deflate,
        };
        first += n;
        handles.push(client::spawn(plan, Arc::clone(&shared), tx.clone())?);
    }
    drop(tx);

    let collected =
        collect(rx, &shared, threads, config, opts.progress, opts.hlog, scrape.as_ref());
    if collected.is_err() {
        shared.stop();
    }
    for h in handles {
        let _ = h.join();
    }
    let mut collected = collected?;
    let server_figures = match (&scrape, collected.scrape_before.take()) {
        (Some(url), Some(before)) => {
            Some(ServerFigures::between(url, &before, &url.fetch(connect_timeout)?))
        }
        _ => None,
    };
    drop(server);
    let process_cpu = platform::process_cpu_time().map_err(Error::os("process CPU time"))?;
    let mut outcome = build(config, collected, started_unix_s, embedded_desc, process_cpu)?;
    outcome.result.server = server_figures;
    Ok(outcome)
}

/// Checks once, blocking, that the target accepts a connection (and, for WebSocket, the
/// opening handshake): one clear error otherwise.
fn probe(
    addr: SocketAddr,
    ws: Option<&WsRequest>,
    target: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let connect_failed = |source| Error::Connect { target: target.to_owned(), source };
    let Some(req) = ws else {
        return TcpStream::connect_timeout(&addr, timeout).map(drop).map_err(connect_failed);
    };
    let keys = platform::random_keys().map_err(Error::Random)?;
    let request = ClientRequest::new(&req.host, &req.path);
    let mut client = match blocking::Client::connect(addr, &request, keys, timeout) {
        Ok(client) => client,
        Err(ConnectError::Connect(source)) => return Err(connect_failed(source)),
        Err(failure) => return Err(Error::Handshake { target: target.to_owned(), failure }),
    };
    // Leave politely: a Close, then the server ends TCP.
    let _ = client.close(CloseCode::NORMAL, "");
    Ok(())
}

/// What the coordinator gathered from the threads.
struct Collected {
    total: Recorder,
    samples: Vec<Sample>,
    measured: Duration,
    handshake: Histogram<u64>,
    churn_handshake: Histogram<u64>,
    churn_failed: u64,
    send_lag: Histogram<u64>,
    errors: ErrorCounts,
    close_codes: CloseCodes,
    conns: ConnStats,
    mismatches: u64,
    scheduled: u64,
    backlog: u64,
    unanswered: u64,
    client_cpu: Duration,
    client_cpu_measured: Duration,
    /// The busiest client thread's CPU time while measuring.
    busiest_cpu_measured: Duration,
    interrupted: bool,
    wall: Duration,
    /// Where measurement began, from the start of the interval log.
    hlog_offset: Duration,
    /// Where measurement began, by the wall clock.
    measure_start: Option<SystemTime>,
    deflate: DeflateTally,
    /// The target's metrics as the warm-up began.
    scrape_before: Option<Scrape>,
}

/// The interval log's tags: untagged latency and `service` for one agent on its own;
/// `NAME` and `NAME.service` for agent NAME, so that logs of many agents stay apart.
struct IntervalTags {
    latency: Option<String>,
    service: String,
}

impl IntervalTags {
    fn new(agent: Option<&str>) -> Self {
        match agent {
            None => IntervalTags { latency: None, service: "service".to_owned() },
            Some(a) => {
                IntervalTags { latency: Some(a.to_owned()), service: format!("{a}.service") }
            }
        }
    }
}

struct Pending {
    recorder: Recorder,
    length: Duration,
    reports: usize,
}

fn collect(
    rx: mpsc::Receiver<Report>,
    shared: &Shared,
    threads: usize,
    config: &RunConfig,
    progress: bool,
    hlog: Option<OutputFile>,
    scrape: Option<&MetricsUrl>,
) -> Result<Collected, Error> {
    let (hlog_path, mut hlog_file) = match hlog.map(OutputFile::into_parts) {
        Some((path, file)) => (path, Some(std::io::BufWriter::new(file))),
        None => Default::default(),
    };
    let hlog_err = |e: std::io::Error| Error::file(&hlog_path, e);
    let mut serializer = V2DeflateSerializer::new();
    let start_wall = SystemTime::now();
    let begin = Instant::now();
    let mut hlog = match hlog_file.as_mut() {
        Some(f) => {
            use std::io::Write as _;
            writeln!(f, "#[Histogram log format version 1.3]").map_err(hlog_err)?;
            writeln!(
                f,
                "#[surge-loadgen {} {}: {}]",
                machine::TOOL_VERSION,
                machine::GIT_COMMIT,
                config.target
            )
            .map_err(hlog_err)?;
            match &config.agent {
                None => writeln!(
                    f,
                    "#[Untagged: latency from scheduled send, ns; Tag=service: service time, ns]"
                ),
                Some(agent) => writeln!(
                    f,
                    "#[Agent: {agent}; Tag={agent}: latency from scheduled send, ns; \
                     Tag={agent}.service: service time, ns]"
                ),
            }
            .map_err(hlog_err)?;
            let w = IntervalLogWriterBuilder::new()
                .with_start_time(start_wall)
                .with_base_time(start_wall)
                .with_max_value_divisor(1e6)
                .begin_log_with(f, &mut serializer)
                .map_err(hlog_err)?;
            Some(w)
        }
        None => None,
    };

    let show_bar =
        progress && std::io::stderr().is_terminal() && config.duration >= Duration::from_secs(2);
    let bar = if show_bar {
        let bar = ProgressBar::new(config.duration.as_millis() as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
                .expect("valid template"),
        );
        bar.set_message("connecting");
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };

    let tags = IntervalTags::new(config.agent.as_deref());
    let mut ramped = 0;
    // Many agents: all connections are up, waiting for the agreed start.
    let mut go_at: Option<Instant> = None;
    let mut established = 0;
    let mut pending: BTreeMap<u32, Pending> = BTreeMap::new();
    let mut next_index = 0u32;
    let mut c = Collected {
        total: Recorder::default(),
        samples: Vec::new(),
        measured: Duration::ZERO,
        handshake: new_histogram(),
        churn_handshake: new_histogram(),
        churn_failed: 0,
        send_lag: new_histogram(),
        errors: ErrorCounts::default(),
        close_codes: CloseCodes::default(),
        conns: ConnStats { requested: config.connections as u64, ..ConnStats::default() },
        mismatches: 0,
        scheduled: 0,
        backlog: 0,
        unanswered: 0,
        client_cpu: Duration::ZERO,
        client_cpu_measured: Duration::ZERO,
        busiest_cpu_measured: Duration::ZERO,
        interrupted: false,
        wall: Duration::ZERO,
        hlog_offset: Duration::ZERO,
        measure_start: None,
        deflate: DeflateTally::default(),
        scrape_before: None,
    };
    let mut done = 0;
    let mut finalize = |p: Pending, index: u32, c: &mut Collected| -> Result<(), Error> {
        let secs = p.length.as_secs_f64();
        let lat = &p.recorder.latency;
        c.samples.push(Sample {
            t_s: c.measured.as_secs_f64(),
            length_s: secs,
            messages: p.recorder.messages,
            msgs_per_sec: if secs > 0.0 { p.recorder.messages as f64 / secs } else { 0.0 },
            p50_us: lat.value_at_quantile(0.5) as f64 / 1000.0,
            p90_us: lat.value_at_quantile(0.9) as f64 / 1000.0,
            p99_us: lat.value_at_quantile(0.99) as f64 / 1000.0,
            p99_9_us: lat.value_at_quantile(0.999) as f64 / 1000.0,
            max_us: lat.max() as f64 / 1000.0,
        });
        if let Some(w) = hlog.as_mut() {
            let start = c.hlog_offset + c.measured;
            w.write_histogram(lat, start, p.length, tags.latency.as_deref().and_then(Tag::new))
                .map_err(HistogramError::from)?;
            w.write_histogram(&p.recorder.service, start, p.length, Tag::new(&tags.service))
                .map_err(HistogramError::from)?;
        }
        c.measured += p.length;
        c.total.merge(&p.recorder);
        if let Some(bar) = &bar {
            bar.set_position(c.measured.as_millis() as u64);
            let last = c.samples.last().expect("just pushed");
            bar.set_message(format!(
                "{:.0} msg/s  p99 {:.0} µs  (second {})",
                last.msgs_per_sec,
                last.p99_us,
                index + 1
            ));
        }
        Ok(())
    };
    while done < threads {
        if platform::interrupted() && !c.interrupted {
            c.interrupted = true;
            shared.stop();
        }
        if go_at.is_some_and(|at| Instant::now() >= at) {
            go_at = None;
            // The clients are up and idle: the server's figures start here.
            if let Some(url) = scrape {
                c.scrape_before = Some(url.fetch(config.connect_timeout)?);
            }
            let phases = shared.go();
            // Interval timestamps in the hlog count from the start of the log.
            c.hlog_offset = phases.measure.saturating_duration_since(begin);
            c.measure_start = Some(start_wall + c.hlog_offset);
        }
        let poll = go_at.map_or(Duration::from_millis(100), |at| {
            at.saturating_duration_since(Instant::now()).min(Duration::from_millis(100))
        });
        let msg = match rx.recv_timeout(poll) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            Report::Ramped { established: n } => {
                ramped += 1;
                established += n;
                if ramped == threads {
                    if established == 0 {
                        shared.stop();
                    } else {
                        let now = Instant::now();
                        let wait = config.start_at.map_or(Duration::ZERO, |at| {
                            at.duration_since(SystemTime::now()).unwrap_or_default()
                        });
                        go_at = Some(now + wait);
                        if let Some(bar) = &bar {
                            bar.set_message(format!("{established} connections up, warming up"));
                        }
                    }
                }
            }
            Report::Interval { index, length, recorder } => {
                let p = pending.entry(index).or_insert_with(|| Pending {
                    recorder: Recorder::default(),
                    length: Duration::ZERO,
                    reports: 0,
                });
                p.recorder.merge(&recorder);
                p.length = p.length.max(length);
                p.reports += 1;
                while pending.get(&next_index).is_some_and(|p| p.reports == threads) {
                    let p = pending.remove(&next_index).expect("present");
                    finalize(p, next_index, &mut c)?;
                    next_index += 1;
                }
            }
            Report::Failed(e) => return Err(*e),
            Report::Done(s) => {
                done += 1;
                let _ = c.handshake.add(&s.handshake);
                let _ = c.send_lag.add(&s.send_lag);
                c.errors.merge(&s.errors);
                c.close_codes.merge(&s.close_codes);
                c.conns.established += s.established;
                c.conns.lost += s.lost;
                c.conns.churned += s.churned;
                c.conns.open_at_end += s.open_at_end;
                c.churn_failed += s.churn_failed;
                let _ = c.churn_handshake.add(&s.churn_handshake);
                c.mismatches += s.mismatches;
                c.scheduled += s.scheduled;
                c.backlog += s.backlog;
                c.unanswered += s.unanswered;
                c.client_cpu += s.cpu;
                c.client_cpu_measured += s.cpu_measured;
                c.busiest_cpu_measured = c.busiest_cpu_measured.max(s.cpu_measured);
                c.deflate.add(&s.deflate);
            }
        }
    }
    // Partial intervals (a stop mid-second) from whichever threads sent them.
    for (index, p) in std::mem::take(&mut pending) {
        finalize(p, index, &mut c)?;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    drop(hlog);
    if let Some(mut f) = hlog_file {
        use std::io::Write as _;
        f.flush().map_err(hlog_err)?;
    }
    c.wall = begin.elapsed();
    Ok(c)
}

fn build(
    config: &RunConfig,
    c: Collected,
    started_unix_s: f64,
    embedded: Option<String>,
    process_cpu: Duration,
) -> Result<RunOutcome, Error> {
    let secs = c.measured.as_secs_f64();
    let messages = c.total.messages;
    let per_sec = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
    let client_cpu_s = c.client_cpu.as_secs_f64();
    let result = RunResult {
        tool: "surge-loadgen".to_owned(),
        format: crate::report::FORMAT,
        started_unix_s,
        measure_start_unix_s: c.measure_start.map(unix_seconds),
        config: ConfigRecord::from(config),
        machine: MachineInfo::current(),
        embedded,
        interrupted: c.interrupted,
        measured_s: secs,
        messages,
        msgs_per_sec: per_sec(messages as f64),
        mb_per_sec: per_sec(c.total.bytes as f64) / 1e6,
        latency_us: Percentiles::of(&c.total.latency),
        service_us: Percentiles::of(&c.total.service),
        handshake_us: Percentiles::of(&c.handshake),
        send_lag_us: Percentiles::of(&c.send_lag),
        health: Health::judge(
            c.busiest_cpu_measured.as_secs_f64(),
            secs,
            &Percentiles::of(&c.send_lag),
        ),
        per_second: c.samples,
        errors: c.errors.nonzero().map(|(k, n)| (k.name().to_owned(), n)).collect(),
        close_codes: c.close_codes.iter().map(|(code, n)| (code.to_string(), n)).collect(),
        connections: c.conns,
        churn: config.churn.map(|rate| ChurnStats {
            rate,
            closed: c.conns.churned,
            failed: c.churn_failed,
            handshake_us: Percentiles::of(&c.churn_handshake),
        }),
        mismatches: c.mismatches,
        scheduled: c.scheduled,
        backlog: c.backlog,
        unanswered: c.unanswered,
        deflate: config.deflate.map(|_| deflate_record(&c.deflate)),
        cpu: CpuStats {
            client_s: client_cpu_s,
            process_s: process_cpu.as_secs_f64(),
            wall_s: c.wall.as_secs_f64(),
            client_measured_s: c.client_cpu_measured.as_secs_f64(),
            client_ns_per_msg: if messages > 0 {
                c.client_cpu_measured.as_secs_f64() * 1e9 / messages as f64
            } else {
                0.0
            },
        },
        histograms: Encoded {
            latency: encode_histogram(&c.total.latency)?,
            service: encode_histogram(&c.total.service)?,
            handshake: encode_histogram(&c.handshake)?,
        },
        server: None,
        fanout: None,
    };
    Ok(RunOutcome { result, latency: c.total.latency, service: c.total.service })
}

/// The JSON's deflate figures from the connections' counts: what the server sent compressed
/// came in as `inflated_from` bytes for `inflated_to`; the rest came as it is.
fn deflate_record(t: &DeflateTally) -> DeflateRecord {
    let s = &t.stats;
    let mut record = DeflateRecord {
        agreed: t.agreed,
        declined: t.declined,
        sent_compressed: s.messages_compressed,
        sent_payload: s.bytes_before,
        sent_wire: s.bytes_after,
        received_compressed: s.messages_inflated,
        received_payload: t.received_payload,
        received_wire: s.inflated_from + t.received_payload.saturating_sub(s.inflated_to),
        ..DeflateRecord::default()
    };
    record.set_ratios();
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_split() {
        let s = CoreSplit::new(2, None, None, true, true);
        assert_eq!((s.server_threads, s.client_threads), (1, 1));
        assert_eq!((s.server_cores.as_slice(), s.client_cores.as_slice()), (&[0][..], &[1][..]));
        assert_eq!(s.describe("srv"), "srv: 1 thread on core 0; clients: 1 thread on core 1");
        let s = CoreSplit::new(8, None, None, false, true);
        assert_eq!((s.server_threads, s.client_threads), (4, 4));
        assert!(s.client_cores.is_empty());
        let s = CoreSplit::new(4, None, Some(3), false, false);
        assert_eq!((s.server_threads, s.client_threads), (0, 3));
    }
}
