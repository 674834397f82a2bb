//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::Error;
use crate::run::{RunConfig, Target};
use crate::workload::{PayloadKind, SizeSpec};

/// Load generator for WebSocket (and raw TCP echo) servers: many connections, open and closed
/// loop, coordinated-omission-corrected HdrHistograms, comparisons across releases.
///
/// With no target, starts Surge's echo server in-process, splits the cores between it and the
/// clients, and measures it.
#[derive(Debug, Parser)]
#[command(name = "surge-loadgen", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Compare, sweep, serve or run Autobahn's client cases instead of measuring.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The measurement (default).
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compare result files (from --json) side by side, the first as the baseline.
    Compare(CompareArgs),
    /// Measure the embedded server over server threads, client threads and pinning.
    Sweep(SweepArgs),
    /// Run the raw TCP echo server ("the floor") until interrupted.
    Floor(FloorArgs),
    /// Be graded by Autobahn|Testsuite's fuzzingserver (`wstest -m fuzzingserver`): run its
    /// cases as an echo client, then have it write its report.
    AutobahnClient(AutobahnArgs),
}

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
    /// Connections opened per second during ramp-up (0: as fast as possible).
    #[arg(long, default_value = "10k", value_parser = parse_rate)]
    pub ramp: f64,
    /// Longest wait for a connection (and its handshake).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Raw TCP echo: send N bytes, read N bytes back, no WebSocket framing.
    #[arg(long)]
    pub raw: bool,
    /// Send text messages (printable ASCII).
    #[arg(long, conflicts_with = "binary")]
    pub text: bool,
    /// Send binary messages (the default).
    #[arg(long)]
    pub binary: bool,
    /// Write the result (configuration, machine, percentiles, per-second samples) as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the latency percentile distribution (HdrHistogram .hgrm format, values in µs).
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Write per-second histograms (HdrHistogram interval log, values in ns).
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

impl RunArgs {
    /// Resolves the target and checks the options; returns the run configuration.
    pub fn config(&self) -> Result<(RunConfig, Target), Error> {
        let mut target = Target::parse(self.target.as_deref())?;
        let raw = self.raw || matches!(target, Target::Tcp { .. });
        if raw {
            target = target.into_raw();
        }
        if self.connections == 0 {
            return Err(Error::Usage("--connections must be at least 1".into()));
        }
        if self.rate.is_some_and(|r| r <= 0.0) {
            return Err(Error::Usage("--rate must be positive".into()));
        }
        if self.duration.is_zero() {
            return Err(Error::Usage("--duration must be positive".into()));
        }
        if self.size.min() == 0 && raw {
            return Err(Error::Usage("raw mode needs messages of at least 1 byte".into()));
        }
        if self.threads == Some(0) || self.server_threads == Some(0) {
            return Err(Error::Usage("thread counts must be at least 1".into()));
        }
        let embedded = target == Target::Embedded;
        let cores = crate::machine::available_cores();
        let split = crate::run::CoreSplit::new(
            cores,
            self.server_threads,
            self.threads,
            self.pin,
            embedded,
        );
        let config = RunConfig {
            target: self.target.clone().unwrap_or_else(|| "embedded".into()),
            mode: if raw { "raw".into() } else { "ws".into() },
            connections: self.connections,
            size: self.size.clone(),
            payload: if self.text { PayloadKind::Text } else { PayloadKind::Binary },
            in_flight: self.in_flight as usize,
            rate: self.rate,
            duration_s: self.duration.as_secs_f64(),
            warmup_s: self.warmup.as_secs_f64(),
            threads: split.client_threads.min(self.connections),
            server_threads: embedded.then_some(split.server_threads),
            pin: self.pin,
            ramp: (self.ramp > 0.0).then_some(self.ramp),
            connect_timeout_s: self.connect_timeout.as_secs_f64(),
        };
        Ok((config, target))
    }
}

/// Options of `compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Result files from --json; the first is the baseline.
    #[arg(required = true, num_args = 2..)]
    pub files: Vec<PathBuf>,
    /// Also write a self-contained HTML report with a percentile-spectrum plot.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Options of `sweep`.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Server thread counts to try (default: 1 up to the cores).
    #[arg(long, value_delimiter = ',')]
    pub server_threads: Vec<usize>,
    /// Client thread counts to try (default: 1 up to the cores).
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Pinning settings to try (default: off,on).
    #[arg(long, value_delimiter = ',', value_parser = parse_on_off)]
    pub pin: Vec<bool>,
    /// Connections.
    #[arg(short, long, default_value_t = 64)]
    pub connections: usize,
    /// Message size.
    #[arg(short, long, default_value = "64")]
    pub size: SizeSpec,
    /// Messages outstanding per connection.
    #[arg(long, default_value_t = 1)]
    pub in_flight: u32,
    /// Measured time per point.
    #[arg(short, long, default_value = "3s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up per point.
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Sweep the raw TCP echo floor instead of Surge.
    #[arg(long)]
    pub raw: bool,
    /// Write every point's result as a JSON array.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report plotting msgs/s and p99 per point.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Options of `floor`.
#[derive(Debug, Clone, Args)]
pub struct FloorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9002")]
    pub listen: std::net::SocketAddr,
    /// Threads.
    #[arg(short, long, default_value_t = 1)]
    pub threads: usize,
    /// Pin thread i to core i.
    #[arg(long)]
    pub pin: bool,
}

/// Options of `autobahn-client`.
#[derive(Debug, Clone, Args)]
pub struct AutobahnArgs {
    /// The fuzzingserver: ws://HOST:PORT (the spec's "url").
    pub url: String,
    /// The agent name the report files the results under.
    #[arg(long, default_value = "surge-loadgen")]
    pub agent: String,
    /// Longest time one case (one connection) may take; past it the case is abandoned.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub case_timeout: Duration,
    /// Run only case number N (1-based, as the server counts; repeatable). Default: all.
    #[arg(long, value_name = "N")]
    pub case: Vec<u32>,
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `1.5s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?} (try 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("bad duration unit {u:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("bad duration {s:?}: {e}"))
}

/// Parses `50000`, `50k`, `1.5m` (per second).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (num, mult) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 1e3),
        Some(b'm') => (&lower[..lower.len() - 1], 1e6),
        _ => (lower.as_str(), 1.0),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad rate {s:?} (try 50000 or 50k)"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("bad rate {s:?}"));
    }
    Ok(n * mult)
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{s:?}: use on or off")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("50k").unwrap(), 50_000.0);
        assert_eq!(parse_rate("1.5M").unwrap(), 1_500_000.0);
        assert_eq!(parse_rate("700").unwrap(), 700.0);
        assert!(parse_rate("-1").is_err());
    }

    #[test]
    fn flags_people_script_against() {
        let cli = Cli::try_parse_from([
            "surge-loadgen",
            "tcp://127.0.0.1:9",
            "--connections",
            "100",
            "--size",
            "16,64",
            "--in-flight",
            "4",
            "--rate",
            "10k",
            "--duration",
            "3s",
            "--warmup",
            "0s",
            "--threads",
            "2",
            "--pin",
            "--json",
            "a.json",
            "--hgrm",
            "a.hgrm",
            "--hlog",
            "a.hlog",
            "--text",
        ])
        .unwrap();
        let (c, _) = cli.run.config().unwrap();
        assert_eq!(c.mode, "raw");
        assert_eq!(c.connections, 100);
        assert_eq!(c.in_flight, 4);
        assert_eq!(c.rate, Some(10_000.0));
        assert_eq!(c.threads, 2);
        assert_eq!(c.payload, PayloadKind::Text);
        assert!(Cli::try_parse_from(["surge-loadgen", "--text", "--binary"]).is_err());
        let cli = Cli::try_parse_from(["surge-loadgen", "compare", "a.json", "b.json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Compare(_))));
        let cli = Cli::try_parse_from([
            "surge-loadgen",
            "autobahn-client",
            "ws://127.0.0.1:9001",
            "--agent",
            "surge",
            "--case",
            "3",
            "--case",
            "5",
        ])
        .unwrap();
        match cli.command {
            Some(Command::AutobahnClient(a)) => {
                assert_eq!((a.agent.as_str(), a.case), ("surge", vec![3, 5]));
                assert_eq!(a.case_timeout, Duration::from_secs(60));
            }
            other => panic!("{other:?}"),
        }
    }
}
