//! `surge-loadgen sweep`: the embedded server measured over server thread counts, client thread
//! counts and pinning, to find the best setting for this machine.

use std::fmt::Write as _;

use crate::cli::SweepArgs;
use crate::error::Error;
use crate::machine;
use crate::plot;
use crate::report::RunResult;
use crate::run::{self, RunConfig, RunOptions, Target};
use crate::workload::PayloadKind;

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
    run::install_interrupt_handler();
    let mut points = Vec::new();
    let all = settings(args, cores);
    for (i, (s, c, pin)) in all.iter().copied().enumerate() {
        if run::interrupted() {
            break;
        }
        let config = RunConfig {
            target: "embedded".into(),
            mode: if args.raw { "raw".into() } else { "ws".into() },
            connections: args.connections,
            size: args.size.clone(),
            payload: PayloadKind::Binary,
            in_flight: args.in_flight.max(1) as usize,
            rate: None,
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            threads: c.min(args.connections.max(1)),
            server_threads: Some(s),
            pin,
            ramp: None,
            connect_timeout_s: 5.0,
        };
        eprint!(
            "[{}/{}] server {s}, client {c}, pin {}: ",
            i + 1,
            all.len(),
            if pin { "on" } else { "off" }
        );
        let outcome = run::run(&config, &Target::Embedded, &RunOptions::default())?;
        let r = outcome.result;
        eprintln!("{:.0} msgs/s, p99 {:.1} µs", r.msgs_per_sec, r.latency_us.p99);
        points.push(Point { server_threads: s, client_threads: c, pin, result: r });
    }
    print!("{}", render_text(&points));
    if let Some(path) = &args.json {
        let results: Vec<&RunResult> = points.iter().map(|p| &p.result).collect();
        let text = serde_json::to_string_pretty(&results).expect("serializable");
        std::fs::write(path, text + "\n").map_err(|e| Error::file(path, e))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, render_html(&points)).map_err(|e| Error::file(path, e))?;
    }
    Ok(())
}
