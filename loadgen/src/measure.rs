//! The measurement (the default command): the command line's options turned into a
//! [`RunConfig`], the run, its summary and its files.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use surge_proto::deflate::ClientOffer;

use crate::config::{ConfigError, Mode, Pacing, RunConfig};
use crate::error::Error;
use crate::failure::Failure;
use crate::find_rate::{self, SearchPlan};
use crate::machine;
use crate::platform;
use crate::report::{self, write_hgrm, OutputArgs, OutputFile};
use crate::run::{self, CoreSplit, RunOptions};
use crate::target::Target;
use crate::threshold::{self, Threshold};
use crate::tls::TlsOptions;
use crate::units::{parse_duration, parse_rate};
use crate::workload::{PayloadKind, SizeSpec};

/// Options of a measurement.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// ws://HOST:PORT/PATH, or tcp://HOST:PORT for a raw TCP echo server; none: embedded server.
    pub target: Option<String>,
    /// Connections to open.
    #[arg(short, long, default_value_t = 64)]
    pub connections: usize,
    /// Message size in bytes: 64, 1k, a list 16,64,1024 or a range 64..4096 (drawn uniformly).
    #[arg(short, long, default_value = "64")]
    pub size: SizeSpec,
    /// Messages outstanding per connection (in open loop: the most outstanding).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub in_flight: u32,
    /// Open loop: total messages per second over all connections (e.g. 50000 or 50k).
    #[arg(short, long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Measured time (10s, 500ms, 2m).
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before measuring, after all connections are up (not measured).
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Client threads (default: the cores left after an embedded server; else all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Embedded server threads (default: half the cores, rounded up).
    #[arg(long)]
    pub server_threads: Option<usize>,
    /// Pin threads to cores (embedded server first, then clients).
    #[arg(long)]
    pub pin: bool,
    /// Connections opened per second while ramping up, before the warm-up (0: as fast as
    /// possible). `--ramp` is the older name.
    #[arg(long, alias = "ramp", value_name = "N/s", default_value = "10k", value_parser = parse_rate)]
    pub connect_rate: f64,
    /// Close and reopen N connections per second while measuring (round robin; each closes
    /// once its echoes are in, with a Close in WebSocket mode), echo traffic going on; the
    /// reopens' handshake latency and failures are reported.
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    pub churn: Option<f64>,
    /// Longest wait for a connection (and its handshake).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// wss: PEM file of the CA that signed the server's certificate.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// wss: accept any server certificate (a self-signed test server).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// wss: a full TLS handshake for every connection (no session resumption).
    #[arg(long)]
    pub no_resume: bool,
    /// Raw TCP echo: send N bytes, read N bytes back, no WebSocket framing.
    #[arg(long)]
    pub raw: bool,
    /// Send text messages (printable ASCII).
    #[arg(long, conflicts_with = "binary")]
    pub text: bool,
    /// Send binary messages (the default).
    #[arg(long)]
    pub binary: bool,
    /// Send text messages cut from a stream of JSON records (prices, ids, names: what chat
    /// and feed traffic looks like), which compress about as such traffic does; consecutive
    /// messages are different records.
    #[arg(long, conflicts_with_all = ["text", "binary"])]
    pub json_text: bool,
    /// Offer permessage-deflate (RFC 7692), compress every message sent and inflate what
    /// comes back; the summary and the JSON report the compression ratio each way.
    /// `--deflate` offers `client_max_window_bits` (what browsers send); `--deflate=PARAMS`
    /// offers exactly PARAMS, written as in the header, e.g.
    /// `--deflate='server_no_context_takeover; client_max_window_bits=12'`.
    #[arg(long, value_name = "PARAMS", num_args = 0..=1, require_equals = true)]
    pub deflate: Option<Option<ClientOffer>>,
    /// Result files.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Pass/fail condition on the result, repeatable: p99.9<5ms, max<=20ms, errors==0,
    /// mismatches==0, unanswered==0, msgs/s>=50k. A breach exits 1 with one line naming it.
    #[arg(long, value_name = "COND")]
    pub threshold: Vec<Threshold>,
    /// Find the highest open-loop rate that holds COND (repeatable: all must hold), e.g.
    /// 'p99<1ms' or 'errors==0': one run per step (each --duration long after --warmup),
    /// starting at --rate (default 1000/s), doubling, then bisecting to 5 %.
    #[arg(long, value_name = "COND", conflicts_with_all = ["threshold", "hgrm", "hlog"])]
    pub find_rate: Vec<Threshold>,
    /// Many agents: this agent's name; tags its interval log (Tag=NAME, NAME.service) and its
    /// JSON, for `surge-loadgen merge`.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// Many agents: start the warm-up at this Unix time (seconds, e.g. $(($(date +%s) + 30))),
    /// the same on every agent; connections ramp up before it.
    #[arg(long, value_name = "UNIX_TIME", conflicts_with = "start_file")]
    pub start_at: Option<f64>,
    /// Many agents: wait for FILE to exist, then start at the Unix time written in it (a file
    /// on shared storage, or written by `ssh host 'echo T > FILE'`).
    #[arg(long, value_name = "FILE")]
    pub start_file: Option<PathBuf>,
    /// Scrape the target's Prometheus metrics (Surge's `/metrics`) when the warm-up starts
    /// and when the run ends, and report the server's own figures beside the measurement:
    /// messages in and out, sends at the backpressure limit, limit hits, loop turn time.
    /// Without a URL: `/metrics` on the target's own address.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub scrape_metrics: Option<String>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

impl RunArgs {
    /// Resolves the target and checks the options; returns the run configuration.
    pub fn config(&self) -> Result<(RunConfig, Target), Error> {
        if self.threads == Some(0) || self.server_threads == Some(0) {
            return Err(ConfigError::NoThreads.into());
        }
        let mut target = Target::parse(self.target.as_deref())?;
        let raw = self.raw || matches!(target, Target::Tcp { .. });
        if raw {
            target = target.into_raw();
        }
        let embedded = target == Target::Embedded;
        let split = CoreSplit::new(
            machine::available_cores(),
            self.server_threads,
            self.threads,
            self.pin,
            embedded,
        );
        let config = RunConfig {
            target: self.target.clone().unwrap_or_else(|| "embedded".into()),
            mode: if raw { Mode::Raw } else { Mode::Ws },
            connections: self.connections,
            size: self.size.clone(),
            payload: if self.json_text {
                PayloadKind::Json
            } else if self.text {
                PayloadKind::Text
            } else {
                PayloadKind::Binary
            },
            in_flight: self.in_flight as usize,
            pacing: self.rate.map_or(Pacing::Closed, |rate| Pacing::Open { rate }),
            duration: self.duration,
            warmup: self.warmup,
            threads: split.client_threads.min(self.connections.max(1)),
            server_threads: if embedded { Some(split.server_threads) } else { None },
            pin: self.pin,
            connect_rate: (self.connect_rate > 0.0).then_some(self.connect_rate),
            connect_timeout: self.connect_timeout,
            churn: self.churn,
            agent: self.agent.clone(),
            start_at: match self.start_at {
                Some(t) => Some(unix_time(t).ok_or(ConfigError::StartTime(t))?),
                None => None,
            },
            deflate: self.deflate.map(Option::unwrap_or_default),
            tls: TlsOptions {
                ca: self.ca.clone(),
                insecure: self.insecure,
                resume: !self.no_resume,
            },
        };
        config.validate()?;
        Ok((config, target))
    }
}

/// The SLO search (`--find-rate`): every step on stdout, then the answer.
fn find_rate_main(
    args: &RunArgs,
    config: &RunConfig,
    target: &Target,
    json: Option<OutputFile>,
) -> Result<Option<Failure>, Error> {
    let plan = SearchPlan {
        conditions: args.find_rate.clone(),
        start_rate: args.rate.unwrap_or(1000.0),
        precision: 0.05,
        max_steps: 30,
    };
    let conditions: Vec<String> = plan.conditions.iter().map(ToString::to_string).collect();
    println!(
        "find-rate: the highest rate holding {} over {:.1} s windows, from {:.0} msg/s",
        conditions.join(" and "),
        config.duration.as_secs_f64(),
        plan.start_rate
    );
    let search = find_rate::search(config, target, &plan, |step, n| {
        println!("{}", step.line(n));
        let _ = std::io::stdout().flush();
    })?;
    println!("{}", find_rate::answer_line(&search));
    if let Some(file) = json {
        file.write(serde_json::to_string_pretty(&search).expect("serializable") + "\n")?;
    }
    Ok(search.answer.is_none().then(|| Failure::NoRateHeld(conditions.join(" and "))))
}

fn unix_time(secs: f64) -> Option<SystemTime> {
    let since = Duration::try_from_secs_f64(secs).ok()?;
    UNIX_EPOCH.checked_add(since)
}

/// Waits for the start file to exist and hold a Unix time (the other agents read the same).
fn wait_for_start_file(path: &Path) -> Result<SystemTime, Error> {
    let mut announced = false;
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => {
                let secs: f64 = text
                    .trim()
                    .parse()
                    .map_err(|_| Error::StartFile { path: path.to_owned(), text: text.clone() })?;
                return unix_time(secs).ok_or(Error::StartFile { path: path.to_owned(), text });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::file(path, e)),
        }
        if platform::interrupted() {
            return Err(Error::Interrupted);
        }
        if !announced {
            eprintln!("waiting for the start file {}", path.display());
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the measurement the command line describes and prints its summary; returns what
/// failed (thresholds broken, no rate found), if anything.
pub fn main(args: &RunArgs) -> Result<Option<Failure>, Error> {
    let (mut config, target) = args.config()?;
    let outputs = args.output.create()?;
    platform::install_interrupt_handler().map_err(Error::os("SIGINT handler"))?;
    if let Some(path) = &args.start_file {
        config.start_at = Some(wait_for_start_file(path)?);
    }
    if !args.find_rate.is_empty() {
        return find_rate_main(args, &config, &target, outputs.json);
    }
    let opts = RunOptions {
        hlog: outputs.hlog,
        progress: !args.quiet,
        verbose: true,
        scrape: args.scrape_metrics.clone(),
    };
    let outcome = run::run(&config, &target, opts)?;
    print!("{}", report::summary(&outcome.result));
    let _ = std::io::stdout().flush();
    if let Some(file) = outputs.json {
        file.write(outcome.result.to_json())?;
    }
    if let Some(file) = outputs.hgrm {
        file.with(|out| write_hgrm(&outcome.latency, 1000.0, out))?;
    }
    if outcome.result.messages == 0 && !outcome.result.interrupted {
        return Err(Error::NothingEchoed {
            established: outcome.result.connections.established,
            requested: outcome.result.connections.requested,
        });
    }
    let (checks, breaches) =
        threshold::evaluate(&args.threshold, Some(&outcome.result), &outcome.latency);
    print!("{}", threshold::render(&checks));
    Ok(breaches.map(Failure::Thresholds))
}
