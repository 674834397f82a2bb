//! `surge-loadgen compare`: results side by side, each change judged against the noise
//! between runs.
//!
//! A *side* is one or more runs of the same configuration (`compare a1 a2 a3 vs b1 b2 b3`;
//! without `vs`, every file is a side of one run). Each side shows the median of its runs, and
//! a change against the first side is marked as beyond the noise only when the per-run values
//! of the two sides (each run's whole-run msgs/s, p99, ...) do not overlap at all *and*
//! Welch's t-test on them rejects "no change" at 5 % two-sided. The statistic is one value per
//! run, not one per second, because what makes two runs on a shared machine differ is mostly
//! drift *between* runs (other work, frequency, placement), which the seconds inside one run
//! do not see: judged by the per-second spread, two identical runs back to back were "beyond
//! noise" on most rows. With one run on either side nothing can be said about noise, and the
//! report says so instead of marking. The runs of the two sides should alternate (a1 b1 a2 b2
//! ...), so that drift over the sitting spreads over both sides instead of reading as change;
//! the report notes sides that ran in separate sittings.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use clap::Args;
use hdrhistogram::Histogram;

use crate::error::Error;
use crate::plot::{self, escape, Series};
use crate::report::{OutputFile, RunResult};
use crate::stats::{decode_histogram, new_histogram};

/// What the marks of a change mean.
const LEGEND: &str = "* beyond the noise between runs (the sides' runs do not overlap and Welch's t on one value per run rejects no change, 5 %); ~ within it; no mark: one run on a side, not judged";

/// The word that separates the sides on the command line.
pub const SIDE_SEPARATOR: &str = "vs";

/// Options of `compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Result files from --json; the first side is the baseline. Separate sides of several
    /// runs each with `vs` (a1.json a2.json a3.json vs b1.json b2.json b3.json); without
    /// `vs`, each file is a side of its own.
    #[arg(required = true, num_args = 2..)]
    pub files: Vec<PathBuf>,
    /// Also write a self-contained HTML report with a percentile-spectrum plot.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Exit 1 when a side is slower than the baseline by more than PCT (msgs/s lower or p99
    /// higher), beyond the noise between runs where that can be judged (e.g. 5%).
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub fail_if_slower: Option<f64>,
}

/// A `--fail-if-slower` value that is not a percentage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: give a percentage such as 5%")]
pub struct PercentError(String);

fn parse_percent(s: &str) -> Result<f64, PercentError> {
    let n: f64 = s.trim().trim_end_matches('%').parse().map_err(|_| PercentError(s.to_owned()))?;
    if n.is_finite() && n >= 0.0 {
        Ok(n)
    } else {
        Err(PercentError(s.to_owned()))
    }
}

/// One or more runs of one configuration.
#[derive(Debug, Clone)]
pub struct Side {
    /// A label: the first file's stem, with the number of runs.
    pub label: String,
    /// The runs.
    pub runs: Vec<RunResult>,
}

impl Side {
    fn values(&self, m: &Metric) -> Vec<f64> {
        self.runs.iter().map(m.value).collect()
    }

    /// The side's latency histogram: all its runs' together.
    fn latency(&self) -> Result<Histogram<u64>, Error> {
        let mut h = new_histogram();
        for r in &self.runs {
            // Same bounds on both sides: adding cannot fail.
            let _ = h.add(decode_histogram(&r.histograms.latency)?);
        }
        Ok(h)
    }
}

/// Splits the command line's files into sides at each `vs`.
pub fn sides_of(files: &[PathBuf]) -> Vec<Vec<PathBuf>> {
    if files.iter().any(|f| f.as_os_str() == SIDE_SEPARATOR) {
        files
            .split(|f| f.as_os_str() == SIDE_SEPARATOR)
            .filter(|g| !g.is_empty())
            .map(<[PathBuf]>::to_vec)
            .collect()
    } else {
        files.iter().map(|f| vec![f.clone()]).collect()
    }
}

/// One compared quantity.
struct Metric {
    name: &'static str,
    value: fn(&RunResult) -> f64,
    higher_is_better: bool,
}

const METRICS: &[Metric] = &[
    Metric { name: "msgs/s", value: |r| r.msgs_per_sec, higher_is_better: true },
    Metric { name: "MB/s", value: |r| r.mb_per_sec, higher_is_better: true },
    Metric { name: "p50 µs", value: |r| r.latency_us.p50, higher_is_better: false },
    Metric { name: "p90 µs", value: |r| r.latency_us.p90, higher_is_better: false },
    Metric { name: "p99 µs", value: |r| r.latency_us.p99, higher_is_better: false },
    Metric { name: "p99.9 µs", value: |r| r.latency_us.p99_9, higher_is_better: false },
    Metric { name: "p99.99 µs", value: |r| r.latency_us.p99_99, higher_is_better: false },
    Metric { name: "max µs", value: |r| r.latency_us.max, higher_is_better: false },
    Metric { name: "handshake p99 µs", value: |r| r.handshake_us.p99, higher_is_better: false },
    Metric { name: "client ns/msg", value: |r| r.cpu.client_ns_per_msg, higher_is_better: false },
    Metric {
        name: "errors",
        value: |r| r.errors.values().sum::<u64>() as f64 + r.mismatches as f64,
        higher_is_better: false,
    },
];

/// Whether a change stands out from the variation between runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Beyond the noise: the sides' runs do not overlap and Welch's t (given) is significant.
    Beyond(f64),
    /// Within the noise (Welch's t, given).
    Within(f64),
    /// One run on a side: the noise between runs is unknown.
    Unjudged,
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

/// Welch's t-test of `b` against `a` (two-sided, 5 %), required on top of the two sets not
/// overlapping; `Unjudged` with fewer than two values on a side.
pub fn judge(a: &[f64], b: &[f64]) -> Verdict {
    if a.len() < 2 || b.len() < 2 {
        return Verdict::Unjudged;
    }
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let (sa, sb) = (va / a.len() as f64, vb / b.len() as f64);
    let se = (sa + sb).sqrt();
    let t = if se == 0.0 {
        if ma == mb {
            0.0
        } else {
            f64::INFINITY.copysign(mb - ma)
        }
    } else {
        (mb - ma) / se
    };
    let df = if se == 0.0 {
        f64::INFINITY
    } else {
        (sa + sb).powi(2)
            / (sa.powi(2) / (a.len() as f64 - 1.0) + sb.powi(2) / (b.len() as f64 - 1.0))
    };
    let (lo_a, hi_a) = min_max(a);
    let (lo_b, hi_b) = min_max(b);
    let apart = hi_a < lo_b || hi_b < lo_a;
    if apart && t.abs() > t_critical(df) {
        Verdict::Beyond(t)
    } else {
        Verdict::Within(t)
    }
}

fn min_max(x: &[f64]) -> (f64, f64) {
    x.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// The median of `x` (not empty).
fn median(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One row of the comparison: the metric's median on every side, and each side's change
/// against the first.
#[derive(Debug, Clone)]
pub struct Row {
    /// Metric name.
    pub name: &'static str,
    /// Whether larger is better.
    pub higher_is_better: bool,
    /// Median per side.
    pub values: Vec<f64>,
    /// Change against the baseline, in percent (None for the baseline, or a zero baseline).
    pub changes: Vec<Option<f64>>,
    /// Verdict per side (the baseline's is `Unjudged`).
    pub verdicts: Vec<Verdict>,
}

/// Compares sides, the first as the baseline.
pub fn compare(sides: &[Side]) -> Vec<Row> {
    METRICS
        .iter()
        .map(|m| {
            let per_run: Vec<Vec<f64>> = sides.iter().map(|s| s.values(m)).collect();
            let values: Vec<f64> = per_run.iter().map(|v| median(v)).collect();
            let base = values[0];
            let changes = values
                .iter()
                .enumerate()
                .map(|(i, v)| (i > 0 && base != 0.0).then(|| (v - base) / base * 100.0))
                .collect();
            let verdicts = per_run
                .iter()
                .enumerate()
                .map(|(i, v)| if i == 0 { Verdict::Unjudged } else { judge(&per_run[0], v) })
                .collect();
            Row { name: m.name, higher_is_better: m.higher_is_better, values, changes, verdicts }
        })
        .collect()
}

/// A side slower than the baseline by more than `--fail-if-slower`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slowdown {
    /// The side's label.
    pub side: String,
    /// The metric that got worse ("msgs/s" or "p99 µs").
    pub metric: &'static str,
    /// The change, percent.
    pub change: f64,
    /// The limit, percent.
    pub limit: f64,
    /// Whether the noise between runs could be judged (several runs on both sides).
    pub judged: bool,
}

impl fmt::Display for Slowdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "slower: {} {} {:+.1}% against the baseline (limit {}%), {}",
            self.side,
            self.metric,
            self.change,
            self.limit,
            if self.judged {
                "beyond the noise between runs"
            } else {
                "noise not judged: one run per side"
            }
        )
    }
}

/// The first side slower than the baseline by more than `limit` percent, in throughput or p99:
/// beyond the noise between runs where that can be judged, by the change alone where not.
pub fn slowdown(sides: &[Side], rows: &[Row], limit: f64) -> Option<Slowdown> {
    let watched = ["msgs/s", "p99 µs"];
    for (i, side) in sides.iter().enumerate().skip(1) {
        for row in rows.iter().filter(|r| watched.contains(&r.name)) {
            let Some(change) = row.changes[i] else { continue };
            let worse = if row.higher_is_better { -change } else { change };
            let verdict = row.verdicts[i];
            if worse > limit && !matches!(verdict, Verdict::Within(_)) {
                return Some(Slowdown {
                    side: side.label.clone(),
                    metric: row.name,
                    change,
                    limit,
                    judged: verdict != Verdict::Unjudged,
                });
            }
        }
    }
    None
}

/// Differences in configuration or machine that make a comparison less fair: between each
/// side and the baseline, and between the runs of one side.
pub fn caveats(sides: &[Side]) -> Vec<String> {
    let base = &sides[0].runs[0];
    let mut notes = Vec::new();
    for (i, side) in sides.iter().enumerate() {
        let first = &side.runs[0];
        if i > 0 {
            if let Some(d) = differences(base, first) {
                notes.push(format!("side {} differs from the baseline: {d}", i + 1));
            }
            if one_after_the_other(&sides[0], side) {
                notes.push(format!(
                    "side {} ran wholly before or after the baseline instead of alternating with \
                     it: drift of the machine between the two sittings reads as change; \
                     alternate the runs (a1 b1 a2 b2 a3 b3)",
                    i + 1
                ));
            }
        }
        if side.runs.iter().skip(1).any(|r| differences(first, r).is_some()) {
            notes.push(format!("side {} mixes runs of different configurations", i + 1));
        }
        let limited = side.runs.iter().filter(|r| r.health.client_limited()).count();
        if limited > 0 {
            notes.push(format!(
                "side {}: in {limited} run(s) the load generator itself was the limit (see their \
                 self-health): a change there may be the client's, not the server's",
                i + 1
            ));
        }
        let interrupted = side.runs.iter().filter(|r| r.interrupted).count();
        if interrupted > 0 {
            notes.push(format!("side {}: {interrupted} run(s) were interrupted", i + 1));
        }
    }
    if sides.iter().any(|s| s.runs.len() < 2) {
        notes.push(
            "one run on a side: whether a change is beyond noise cannot be judged; repeat each \
             side (compare a1.json a2.json a3.json vs b1.json b2.json b3.json)"
                .to_owned(),
        );
    }
    notes
}

/// Whether two sides of several runs each were measured in separate sittings (every run of
/// one before every run of the other).
fn one_after_the_other(a: &Side, b: &Side) -> bool {
    let span = |s: &Side| min_max(&s.runs.iter().map(|r| r.started_unix_s).collect::<Vec<_>>());
    let ((a_first, a_last), (b_first, b_last)) = (span(a), span(b));
    a.runs.len() > 1 && b.runs.len() > 1 && (a_last < b_first || b_last < a_first)
}

/// What differs between two runs' configurations and machines, if anything.
fn differences(base: &RunResult, r: &RunResult) -> Option<String> {
    {
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
        (!diffs.is_empty()).then(|| diffs.join("; "))
    }
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
        Verdict::Unjudged => "",
    };
    format!("{c:+.1}%{mark}")
}

/// The comparison as a terminal table.
pub fn render_text(sides: &[Side], rows: &[Row]) -> String {
    let labels: Vec<&str> = sides.iter().map(|s| s.label.as_str()).collect();
    let runs: Vec<&RunResult> = sides.iter().map(|s| &s.runs[0]).collect();
    let mut s = String::new();
    for (i, (label, r)) in labels.iter().zip(&runs).enumerate() {
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
    let _ = writeln!(s, "\n{LEGEND}");
    for note in caveats(sides) {
        let _ = writeln!(s, "note: {note}");
    }
    s
}

/// Points of a percentile spectrum: x = log10(1 / (1 - q)) from 0 to 5 (99.999 %), y = log10 µs.
fn spectrum(side: &Side) -> Result<Vec<(f64, f64)>, Error> {
    let h = side.latency()?;
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
pub fn render_html(sides: &[Side], rows: &[Row]) -> Result<String, Error> {
    let labels: Vec<&str> = sides.iter().map(|s| s.label.as_str()).collect();
    let runs: Vec<&RunResult> = sides.iter().map(|s| &s.runs[0]).collect();
    let mut body = String::new();
    body.push_str(
        "<h2>Runs</h2><table><tr><th>#</th><th>file</th><th>surge-loadgen</th><th>commit</th>",
    );
    body.push_str(
        "<th>target</th><th>connections</th><th>size</th><th>load</th><th>machine</th></tr>",
    );
    for (i, (label, r)) in labels.iter().zip(&runs).enumerate() {
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
    let _ = write!(
        body,
        "</table><p class=\"note\">{}. Green: better, red: worse.</p>",
        escape(LEGEND)
    );
    for note in caveats(sides) {
        let _ = write!(body, "<p class=\"note\">note: {}</p>", escape(&note));
    }

    let mut series = Vec::new();
    for (i, side) in sides.iter().enumerate() {
        series
            .push(Series { name: format!("[{}] {}", i + 1, side.label), points: spectrum(side)? });
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
        .zip(&runs)
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

/// Runs `compare`: prints the table (and writes the HTML); returns the slowdown that
/// `--fail-if-slower` fails on, if any.
pub fn main(args: &CompareArgs) -> Result<Option<Slowdown>, Error> {
    let mut sides = Vec::new();
    for files in sides_of(&args.files) {
        let runs = files.iter().map(|p| RunResult::load(p)).collect::<Result<Vec<_>, _>>()?;
        let stem = label(&files[0]);
        let label = if runs.len() > 1 { format!("{stem} ({} runs)", runs.len()) } else { stem };
        sides.push(Side { label, runs });
    }
    let html = args.html.as_deref().map(OutputFile::create).transpose()?;
    let rows = compare(&sides);
    print!("{}", render_text(&sides, &rows));
    if let Some(file) = html {
        file.write(render_html(&sides, &rows)?)?;
    }
    Ok(args.fail_if_slower.and_then(|limit| slowdown(&sides, &rows, limit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_tell_noise_from_change() {
        let a = [100.0, 102.0, 98.0, 101.0, 99.0];
        let same = [101.0, 99.0, 100.0, 98.0, 102.0];
        let up = [120.0, 122.0, 118.0, 121.0, 119.0];
        assert!(matches!(judge(&a, &same), Verdict::Within(_)));
        assert!(matches!(judge(&a, &up), Verdict::Beyond(t) if t > 0.0));
        assert_eq!(judge(&a, &[1.0]), Verdict::Unjudged);
        assert!(matches!(judge(&[1.0, 1.0], &[2.0, 2.0]), Verdict::Beyond(_)));
        // Significant by t alone, but one run of the new side lies among the old ones.
        assert!(matches!(
            judge(&[100.0, 101.0, 102.0], &[101.5, 110.0, 111.0]),
            Verdict::Within(_)
        ));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn sides_split_at_vs() {
        let files: Vec<PathBuf> =
            ["a1", "a2", "vs", "b1", "b2"].iter().map(PathBuf::from).collect();
        assert_eq!(sides_of(&files).iter().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
        assert_eq!(sides_of(&files[..2]).len(), 2, "without vs each file is a side");
        assert_eq!(parse_percent("5%").unwrap(), 5.0);
        assert!(parse_percent("fast").is_err());
    }

    #[test]
    fn t_table() {
        assert_eq!(t_critical(1.5), 12.706);
        assert_eq!(t_critical(10.0), 2.228);
        assert_eq!(t_critical(1000.0), 1.96);
    }
}
