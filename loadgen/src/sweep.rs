//! `surge-loadgen sweep`: the embedded server measured over server thread counts, client thread
//! counts and pinning, to find the best setting for this machine.

use std::fmt::Write as _;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::{Mode, RunConfig};
use crate::error::Error;
use crate::machine;
use crate::platform;
use crate::plot;
use crate::report::{OutputFile, RunResult};
use crate::run::{self, RunOptions};
use crate::target::Target;
use crate::units::parse_duration;
use crate::workload::SizeSpec;

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

fn parse_on_off(s: &str) -> Result<bool, OnOffError> {
    match s {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(OnOffError(s.to_owned())),
    }
}

/// A `--pin` setting that is neither on nor off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: use on or off")]
pub struct OnOffError(String);

/// One measured setting.
#[derive(Debug, Clone)]
pub struct Point {
    /// Server threads.
    pub server_threads: usize,
    /// Client threads.
    pub client_threads: usize,
    /// Pinned.
    pub pin: bool,
    /// The run's result.
    pub result: RunResult,
}

impl Point {
    /// A short label: `s2 c1 pin`.
    pub fn label(&self) -> String {
        format!(
            "s{} c{}{}",
            self.server_threads,
            self.client_threads,
            if self.pin { " pin" } else { "" }
        )
    }
}

/// The settings a sweep covers, in order.
pub fn settings(args: &SweepArgs, cores: usize) -> Vec<(usize, usize, bool)> {
    let or_default = |v: &[usize]| if v.is_empty() { (1..=cores).collect() } else { v.to_vec() };
    let pins = if args.pin.is_empty() { vec![false, true] } else { args.pin.clone() };
    let mut out = Vec::new();
    for s in or_default(&args.server_threads) {
        for c in or_default(&args.threads) {
            for &p in &pins {
                out.push((s, c, p));
            }
        }
    }
    out
}

/// The point with the highest throughput.
pub fn best(points: &[Point]) -> Option<&Point> {
    points.iter().max_by(|a, b| a.result.msgs_per_sec.total_cmp(&b.result.msgs_per_sec))
}

/// The sweep as a terminal table, naming the best point.
pub fn render_text(points: &[Point]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>8}{:>8}{:>6}{:>14}{:>12}{:>12}{:>10}",
        "server", "client", "pin", "msgs/s", "p50 µs", "p99 µs", "errors"
    );
    for p in points {
        let r = &p.result;
        let _ = writeln!(
            s,
            "{:>8}{:>8}{:>6}{:>14.0}{:>12.1}{:>12.1}{:>10}",
            p.server_threads,
            p.client_threads,
            if p.pin { "on" } else { "off" },
            r.msgs_per_sec,
            r.latency_us.p50,
            r.latency_us.p99,
            r.errors.values().sum::<u64>() + r.mismatches
        );
    }
    if let Some(b) = best(points) {
        let _ = writeln!(
            s,
            "\nbest: {} server thread(s), {} client thread(s), pinning {}: {:.0} msgs/s, p99 {:.1} µs",
            b.server_threads,
            b.client_threads,
            if b.pin { "on" } else { "off" },
            b.result.msgs_per_sec,
            b.result.latency_us.p99
        );
    }
    s
}

/// The sweep as a self-contained HTML page: msgs/s and p99 per point.
pub fn render_html(points: &[Point]) -> String {
    let labels: Vec<String> = points.iter().map(Point::label).collect();
    let tput: Vec<f64> = points.iter().map(|p| p.result.msgs_per_sec).collect();
    let p99: Vec<f64> = points.iter().map(|p| p.result.latency_us.p99).collect();
    let mut body = String::new();
    if let Some(b) = best(points) {
        let _ = write!(
            body,
            "<p>Best: <b>{}</b> ({:.0} msgs/s, p99 {:.1} µs). s = server threads, c = client threads.</p>",
            plot::escape(&b.label()),
            b.result.msgs_per_sec,
            b.result.latency_us.p99
        );
    }
    body.push_str("<pre>");
    body.push_str(&plot::escape(&render_text(points)));
    body.push_str("</pre>");
    body.push_str(&plot::bar_chart("Throughput", "msgs/s", &labels, &tput));
    body.push_str(&plot::bar_chart("p99 latency (highest bar is worst)", "µs", &labels, &p99));
    plot::page("surge-loadgen sweep", &body)
}

/// Runs `sweep`.
pub fn main(args: &SweepArgs) -> Result<(), Error> {
    let cores = machine::available_cores();
    let json = args.json.as_deref().map(OutputFile::create).transpose()?;
    let html = args.html.as_deref().map(OutputFile::create).transpose()?;
    platform::install_interrupt_handler().map_err(Error::os("SIGINT handler"))?;
    let mut points = Vec::new();
    let all = settings(args, cores);
    for (i, (s, c, pin)) in all.iter().copied().enumerate() {
        if platform::interrupted() {
            break;
        }
        let config = RunConfig {
            connections: args.connections,
            size: args.size.clone(),
            in_flight: args.in_flight.max(1) as usize,
            duration: args.duration,
            warmup: args.warmup,
            threads: c.min(args.connections.max(1)),
            server_threads: Some(s),
            pin,
            connect_rate: None,
            ..RunConfig::new("embedded", if args.raw { Mode::Raw } else { Mode::Ws })
        };
        config.validate()?;
        eprint!(
            "[{}/{}] server {s}, client {c}, pin {}: ",
            i + 1,
            all.len(),
            if pin { "on" } else { "off" }
        );
        let outcome = run::run(&config, &Target::Embedded, RunOptions::default())?;
        let r = outcome.result;
        eprintln!("{:.0} msgs/s, p99 {:.1} µs", r.msgs_per_sec, r.latency_us.p99);
        points.push(Point { server_threads: s, client_threads: c, pin, result: r });
    }
    print!("{}", render_text(&points));
    if let Some(file) = json {
        let results: Vec<&RunResult> = points.iter().map(|p| &p.result).collect();
        file.write(serde_json::to_string_pretty(&results).expect("serializable") + "\n")?;
    }
    if let Some(file) = html {
        file.write(render_html(&points))?;
    }
    Ok(())
}
