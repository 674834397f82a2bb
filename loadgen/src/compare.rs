//! `surge-loadgen compare`: results side by side, each change judged against the runs' own noise.
//!
//! The noise comes from the per-second samples every result carries: a Welch t-test on the
//! per-second values (throughput, p50, p90, p99, p99.9) of the baseline and of each other run
//! says whether a change is beyond what the runs vary by themselves (two-sided, 5 %).
//! Percentiles without per-second values (p99.99, max) are shown without a verdict.

use std::fmt::Write as _;
use std::path::Path;

use std::path::PathBuf;

use clap::Args;

use crate::error::Error;
use crate::plot::{self, escape, Series};
use crate::report::{RunResult, Sample};
use crate::stats::decode_histogram;

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

/// Samples shorter than this (a run's partial last interval) are left out of the noise.
const MIN_SAMPLE_S: f64 = 0.5;

/// One compared quantity.
struct Metric {
    name: &'static str,
    value: fn(&RunResult) -> f64,
    per_second: Option<fn(&Sample) -> f64>,
    higher_is_better: bool,
}

const METRICS: &[Metric] = &[
    Metric {
        name: "msgs/s",
        value: |r| r.msgs_per_sec,
        per_second: Some(|s| s.msgs_per_sec),
        higher_is_better: true,
    },
    Metric { name: "MB/s", value: |r| r.mb_per_sec, per_second: None, higher_is_better: true },
    Metric {
        name: "p50 µs",
        value: |r| r.latency_us.p50,
        per_second: Some(|s| s.p50_us),
        higher_is_better: false,
    },
    Metric {
        name: "p90 µs",
        value: |r| r.latency_us.p90,
        per_second: Some(|s| s.p90_us),
        higher_is_better: false,
    },
    Metric {
        name: "p99 µs",
        value: |r| r.latency_us.p99,
        per_second: Some(|s| s.p99_us),
        higher_is_better: false,
    },
    Metric {
        name: "p99.9 µs",
        value: |r| r.latency_us.p99_9,
        per_second: Some(|s| s.p99_9_us),
        higher_is_better: false,
    },
    Metric {
        name: "p99.99 µs",
        value: |r| r.latency_us.p99_99,
        per_second: None,
        higher_is_better: false,
    },
    Metric {
        name: "max µs",
        value: |r| r.latency_us.max,
        per_second: None,
        higher_is_better: false,
    },
    Metric {
        name: "handshake p99 µs",
        value: |r| r.handshake_us.p99,
        per_second: None,
        higher_is_better: false,
    },
    Metric {
        name: "client ns/msg",
        value: |r| r.cpu.client_ns_per_msg,
        per_second: None,
        higher_is_better: false,
    },
    Metric {
        name: "errors",
        value: |r| r.errors.values().sum::<u64>() as f64 + r.mismatches as f64,
        per_second: None,
        higher_is_better: false,
    },
];

/// Whether a change stands out from the runs' own variation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Beyond the noise (Welch's t).
    Beyond(f64),
    /// Within the noise (Welch's t).
    Within(f64),
    /// No per-second samples to judge by.
    Unknown,
}

/// Two-sided 5 % critical values of Student's t for 1..=30 degrees of freedom.
const T_CRIT: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

fn t_critical(df: f64) -> f64 {
    match df {
        d if d < 1.0 => T_CRIT[0],
        d if d <= 30.0 => T_CRIT[d.floor() as usize - 1],
        d if d <= 40.0 => 2.021,
        d if d <= 60.0 => 2.000,
        d if d <= 120.0 => 1.980,
        _ => 1.960,
    }
}

fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

/// Welch's t-test of `b` against `a` (two-sided, 5 %); `Unknown` with fewer than two samples.
pub fn welch(a: &[f64], b: &[f64]) -> Verdict {
    if a.len() < 2 || b.len() < 2 {
        return Verdict::Unknown;
    }
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let (sa, sb) = (va / a.len() as f64, vb / b.len() as f64);
    let se = (sa + sb).sqrt();
    if se == 0.0 {
        return if ma == mb { Verdict::Within(0.0) } else { Verdict::Beyond(f64::INFINITY) };
    }
    let t = (mb - ma) / se;
    let df = (sa + sb).powi(2)
        / (sa.powi(2) / (a.len() as f64 - 1.0) + sb.powi(2) / (b.len() as f64 - 1.0));
    if t.abs() > t_critical(df) {
        Verdict::Beyond(t)
    } else {
        Verdict::Within(t)
    }
}

/// One row of the comparison: the metric's value in every run, and each run's change against
/// the first.
#[derive(Debug, Clone)]
pub struct Row {
    /// Metric name.
    pub name: &'static str,
    /// Whether larger is better.
    pub higher_is_better: bool,
    /// Value per run.
    pub values: Vec<f64>,
    /// Change against the baseline, in percent (None for the baseline, or a zero baseline).
    pub changes: Vec<Option<f64>>,
    /// Verdict per run (the baseline's is `Unknown`).
    pub verdicts: Vec<Verdict>,
}

/// Compares runs, the first as the baseline.
pub fn compare(runs: &[RunResult]) -> Vec<Row> {
    let samples = |r: &RunResult, f: fn(&Sample) -> f64| -> Vec<f64> {
        r.per_second.iter().filter(|s| s.length_s >= MIN_SAMPLE_S).map(f).collect()
    };
    METRICS
        .iter()
        .map(|m| {
            let values: Vec<f64> = runs.iter().map(m.value).collect();
            let base = values[0];
            let changes = values
                .iter()
                .enumerate()
                .map(|(i, v)| (i > 0 && base != 0.0).then(|| (v - base) / base * 100.0))
                .collect();
            let verdicts = runs
                .iter()
                .enumerate()
                .map(|(i, r)| match m.per_second {
                    Some(f) if i > 0 => welch(&samples(&runs[0], f), &samples(r, f)),
                    _ => Verdict::Unknown,
                })
                .collect();
            Row { name: m.name, higher_is_better: m.higher_is_better, values, changes, verdicts }
        })
        .collect()
}

/// Differences in configuration or machine that make a comparison less fair.
pub fn caveats(runs: &[RunResult]) -> Vec<String> {
    let base = &runs[0];
    let mut notes = Vec::new();
    for (i, r) in runs.iter().enumerate().skip(1) {
        let (a, b) = (&base.config, &r.config);
        let mut diffs = Vec::new();
        let mut check = |name: &str, x: String, y: String| {
            if x != y {
                diffs.push(format!("{name} {x} vs {y}"));
            }
        };
        check("target", a.target.clone(), b.target.clone());
        check("mode", format!("{:?}", a.mode), format!("{:?}", b.mode));
        check("connections", a.connections.to_string(), b.connections.to_string());
        check("size", a.size.to_string(), b.size.to_string());
        check("payload", format!("{:?}", a.payload), format!("{:?}", b.payload));
        check("in-flight", a.in_flight.to_string(), b.in_flight.to_string());
        let rate = |r: Option<f64>| r.map_or("closed loop".to_owned(), |x| format!("{x:.0}/s"));
        check("rate", rate(a.rate), rate(b.rate));
        check("threads", a.threads.to_string(), b.threads.to_string());
        check(
            "server threads",
            format!("{:?}", a.server_threads),
            format!("{:?}", b.server_threads),
        );
        check("pin", a.pin.to_string(), b.pin.to_string());
        check("cpu", base.machine.cpu_model.clone(), r.machine.cpu_model.clone());
        check("cores", base.machine.cores.to_string(), r.machine.cores.to_string());
        check("kernel", base.machine.kernel.clone(), r.machine.kernel.clone());
        if !diffs.is_empty() {
            notes.push(format!("run {} differs from the baseline: {}", i + 1, diffs.join("; ")));
        }
        if r.interrupted {
            notes.push(format!("run {} was interrupted", i + 1));
        }
    }
    if base.interrupted {
        notes.push("the baseline was interrupted".to_owned());
    }
    notes
}

fn fmt_value(v: f64) -> String {
    if v.abs() >= 1000.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_change(change: Option<f64>, verdict: Verdict) -> String {
    let Some(c) = change else { return String::new() };
    let mark = match verdict {
        Verdict::Beyond(_) => " *",
        Verdict::Within(_) => " ~",
        Verdict::Unknown => "",
    };
    format!("{c:+.1}%{mark}")
}

/// The comparison as a terminal table.
pub fn render_text(labels: &[String], runs: &[RunResult], rows: &[Row]) -> String {
    let mut s = String::new();
    for (i, (label, r)) in labels.iter().zip(runs).enumerate() {
        let _ = writeln!(
            s,
            "[{}] {label}: surge-loadgen {} {} | {} | {} conns, {} B, {} | {:.1} s",
            i + 1,
            r.machine.tool_version,
            r.machine.git_commit.chars().take(12).collect::<String>(),
            r.config.target,
            r.config.connections,
            r.config.size,
            r.config.rate.map_or("closed loop".to_owned(), |x| format!("{x:.0} msg/s")),
            r.measured_s
        );
    }
    let _ = writeln!(s);
    let _ = write!(s, "{:<18}", "");
    for i in 0..runs.len() {
        let _ =
            write!(s, "{:>14}{:>12}", format!("[{}]", i + 1), if i == 0 { "" } else { "change" });
    }
    let _ = writeln!(s);
    for row in rows {
        let _ = write!(s, "{:<18}", row.name);
        for i in 0..runs.len() {
            let _ = write!(
                s,
                "{:>14}{:>12}",
                fmt_value(row.values[i]),
                fmt_change(row.changes[i], row.verdicts[i])
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "\n* beyond the runs' own per-second noise (Welch t-test, 5 %); ~ within it; no mark: \
         no per-second samples"
    );
    for note in caveats(runs) {
        let _ = writeln!(s, "note: {note}");
    }
    s
}

/// Points of a percentile spectrum: x = log10(1 / (1 - q)) from 0 to 5 (99.999 %), y = log10 µs.
fn spectrum(r: &RunResult) -> Result<Vec<(f64, f64)>, Error> {
    let h = decode_histogram(&r.histograms.latency)?;
    if h.is_empty() {
        return Ok(Vec::new());
    }
    Ok((0..=250)
        .map(|i| {
            let x = f64::from(i) / 50.0;
            let q = 1.0 - 10f64.powf(-x);
            let us = (h.value_at_quantile(q) as f64 / 1000.0).max(0.001);
            (x, us.log10())
        })
        .collect())
}

/// The comparison as a self-contained HTML page with a percentile-spectrum plot of every run.
pub fn render_html(labels: &[String], runs: &[RunResult], rows: &[Row]) -> Result<String, Error> {
    let mut body = String::new();
    body.push_str(
        "<h2>Runs</h2><table><tr><th>#</th><th>file</th><th>surge-loadgen</th><th>commit</th>",
    );
    body.push_str(
        "<th>target</th><th>connections</th><th>size</th><th>load</th><th>machine</th></tr>",
    );
    for (i, (label, r)) in labels.iter().zip(runs).enumerate() {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            escape(label),
            escape(&r.machine.tool_version),
            escape(&r.machine.git_commit.chars().take(12).collect::<String>()),
            escape(&r.config.target),
            r.config.connections,
            escape(&r.config.size.to_string()),
            r.config.rate.map_or("closed loop".to_owned(), |x| format!("{x:.0} msg/s")),
            escape(&format!("{}, {} cores, {}", r.machine.cpu_model, r.machine.cores, r.machine.kernel)),
        );
    }
    body.push_str("</table><h2>Comparison</h2><table><tr><th>metric</th>");
    for i in 0..runs.len() {
        let _ = write!(body, "<th>[{}]</th>", i + 1);
    }
    body.push_str("</tr>");
    for row in rows {
        let _ = write!(body, "<tr><td>{}</td>", escape(row.name));
        for i in 0..runs.len() {
            let class = match (row.verdicts[i], row.changes[i]) {
                (Verdict::Beyond(_), Some(c)) if (c > 0.0) == row.higher_is_better => "up",
                (Verdict::Beyond(_), Some(_)) => "down",
                _ => "",
            };
            let change = fmt_change(row.changes[i], row.verdicts[i]);
            let _ = write!(
                body,
                r#"<td class="{class}">{}{}</td>"#,
                fmt_value(row.values[i]),
                if change.is_empty() { String::new() } else { format!(" ({change})") }
            );
        }
        body.push_str("</tr>");
    }
    body.push_str("</table><p class=\"note\">* beyond the runs' own per-second noise (Welch t-test, 5 %); ~ within it; no mark: no per-second samples. Green: better, red: worse.</p>");
    for note in caveats(runs) {
        let _ = write!(body, "<p class=\"note\">note: {}</p>", escape(&note));
    }

    let mut series = Vec::new();
    for (i, (label, r)) in labels.iter().zip(runs).enumerate() {
        series.push(Series { name: format!("[{}] {label}", i + 1), points: spectrum(r)? });
    }
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (lo, hi) =
        if lo.is_finite() { (lo.floor(), hi.ceil().max(lo.floor() + 1.0)) } else { (0.0, 1.0) };
    let x_ticks: Vec<(f64, String)> = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
        .map(|(i, l)| (i as f64, (*l).to_owned()))
        .collect();
    body.push_str("<h2>Latency by percentile</h2>");
    body.push_str(&plot::line_chart(
        "Latency percentile spectrum (from scheduled send)",
        "percentile",
        "latency, µs (log)",
        &x_ticks,
        &plot::log_ticks(lo, hi),
        &series,
    ));
    let tput: Vec<Series> = labels
        .iter()
        .zip(runs)
        .enumerate()
        .map(|(i, (label, r))| Series {
            name: format!("[{}] {label}", i + 1),
            points: r.per_second.iter().map(|s| (s.t_s + s.length_s, s.msgs_per_sec)).collect(),
        })
        .collect();
    let max_t = runs.iter().map(|r| r.measured_s).fold(1.0, f64::max);
    let max_y =
        runs.iter().flat_map(|r| r.per_second.iter().map(|s| s.msgs_per_sec)).fold(0.0, f64::max);
    body.push_str("<h2>Throughput per second</h2>");
    body.push_str(&plot::line_chart(
        "Throughput per second",
        "seconds",
        "msgs/s",
        &plot::linear_ticks(max_t),
        &plot::linear_ticks(max_y),
        &tput,
    ));
    Ok(plot::page("surge-loadgen comparison", &body))
}

fn label(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
}

/// Runs `compare`.
pub fn main(args: &CompareArgs) -> Result<(), Error> {
    let runs = args.files.iter().map(|p| RunResult::load(p)).collect::<Result<Vec<_>, _>>()?;
    let labels: Vec<String> = args.files.iter().map(|p| label(p)).collect();
    let rows = compare(&runs);
    print!("{}", render_text(&labels, &runs, &rows));
    if let Some(path) = &args.html {
        let html = render_html(&labels, &runs, &rows)?;
        std::fs::write(path, html).map_err(|e| Error::file(path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welch_tells_noise_from_change() {
        let a = [100.0, 102.0, 98.0, 101.0, 99.0];
        let same = [101.0, 99.0, 100.0, 98.0, 102.0];
        let up = [120.0, 122.0, 118.0, 121.0, 119.0];
        assert!(matches!(welch(&a, &same), Verdict::Within(_)));
        assert!(matches!(welch(&a, &up), Verdict::Beyond(t) if t > 0.0));
        assert_eq!(welch(&a, &[1.0]), Verdict::Unknown);
        assert!(matches!(welch(&[1.0, 1.0], &[2.0, 2.0]), Verdict::Beyond(_)));
    }

    #[test]
    fn t_table() {
        assert_eq!(t_critical(1.5), 12.706);
        assert_eq!(t_critical(10.0), 2.228);
        assert_eq!(t_critical(1000.0), 1.96);
    }
}
