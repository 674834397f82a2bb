//! `surge-loadgen merge`: several agents' results, one report and one histogram.
//!
//! Agents on several machines start together (`--start-at`, `--start-file`), each writing a
//! JSON result and an interval log tagged with its name (`--agent`). `merge` lines them up on
//! absolute time, each agent's measured window by its own clock, and refuses when they began
//! more than one interval apart (clocks that disagree would put one agent's stall in another's
//! second). It then unions them: the total histograms are the sums of the agents' (exact: the
//! histogram of every value any agent recorded), counts and throughputs add up, and the
//! intervals that fall in the same second add into one interval of the merged log. Thresholds
//! are evaluated on the merged data.
//!
//! From JSON alone the merged per-second percentiles are the largest agent's (an upper bound:
//! a percentile of a union is never above the largest of its parts'); the merged interval log
//! has the exact ones.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, LogIteratorError, Tag,
};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::error::{Error, MergeError};
use crate::health::Health;
use crate::report::{
    self, write_hgrm, ChurnStats, ConnStats, CpuStats, Encoded, OutputArgs, OutputFiles, RunResult,
    Sample,
};
use crate::stats::{
    decode_histogram, encode_histogram, new_histogram, HistogramError, Percentiles,
};
use crate::threshold::{self, Breaches, Threshold};

/// Options of `merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// The agents' files: .json results (from --json) and/or .hlog interval logs (from
    /// --hlog), any number.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The merged result's files (the JSON reads as one run's; the interval log needs .hlog
    /// inputs).
    #[command(flatten)]
    pub output: OutputArgs,
    /// Pass/fail condition on the merged data, repeatable (as for a run).
    #[arg(long, value_name = "COND")]
    pub threshold: Vec<Threshold>,
}

/// One interval of one agent's log, on absolute time.
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    /// Start, seconds since the Unix epoch.
    pub start_unix_s: f64,
    /// Length.
    pub length: Duration,
    /// Latency (false: service time).
    pub latency: bool,
    /// The values, ns.
    pub histogram: Histogram<u64>,
}

/// One agent's interval log.
#[derive(Debug, Clone)]
pub struct AgentLog {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its intervals, in file order.
    pub intervals: Vec<LoggedInterval>,
}

impl AgentLog {
    /// Reads an interval log: timestamps are taken relative to its BaseTime (or StartTime),
    /// as surge-loadgen and HdrHistogram's Java tools write them.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        let mut base = None;
        let mut start = None;
        let mut raw = Vec::new();
        for entry in IntervalLogIterator::new(&text) {
            match entry {
                Ok(LogEntry::BaseTime(t)) => base = Some(t.as_secs_f64()),
                Ok(LogEntry::StartTime(t)) => start = Some(t.as_secs_f64()),
                Ok(LogEntry::Interval(i)) => {
                    let service =
                        i.tag().is_some_and(|t| t.as_str() == "service" || t.ends_with(".service"));
                    let histogram = decode_histogram(i.encoded_histogram())?;
                    raw.push((
                        i.start_timestamp().as_secs_f64(),
                        i.duration(),
                        !service,
                        histogram,
                    ));
                }
                Err(LogIteratorError::ParseError { offset }) => {
                    return Err(MergeError::BadLog { path: path.to_owned(), offset }.into())
                }
            }
        }
        if raw.is_empty() {
            return Err(MergeError::EmptyLog(path.to_owned()).into());
        }
        let offset = base.or(start).unwrap_or(0.0);
        let intervals = raw
            .into_iter()
            .map(|(t, length, latency, histogram)| LoggedInterval {
                start_unix_s: offset + t,
                length,
                latency,
                histogram,
            })
            .collect();
        Ok(AgentLog { path: path.to_owned(), intervals })
    }

    fn first_start(&self) -> f64 {
        self.intervals.iter().map(|i| i.start_unix_s).fold(f64::INFINITY, f64::min)
    }
}

/// Refuses agents whose measurements began more than `interval_s` apart.
pub fn check_clocks(starts: &[(&Path, f64)], interval_s: f64) -> Result<(), MergeError> {
    let early = starts.iter().min_by(|a, b| a.1.total_cmp(&b.1));
    let late = starts.iter().max_by(|a, b| a.1.total_cmp(&b.1));
    if let (Some(&(early, t0)), Some(&(late, t1))) = (early, late) {
        // A millisecond of slack: StartTime is written to the millisecond.
        if t1 - t0 > interval_s + 1e-3 {
            return Err(MergeError::ClocksDisagree {
                early: early.to_owned(),
                late: late.to_owned(),
                apart_s: t1 - t0,
                interval_s,
            });
        }
    }
    Ok(())
}

/// Several agents' logs as one: each agent's k-th interval adds into the k-th merged one
/// (they cover the same stretch of absolute time, to within the checked clock agreement).
#[derive(Debug, Clone)]
pub struct MergedLog {
    /// The earliest agent's first interval, seconds since the Unix epoch.
    pub start_unix_s: f64,
    /// Per slot: offset from the start, length, latency and service histograms.
    pub intervals: Vec<(Duration, Duration, Histogram<u64>, Histogram<u64>)>,
    /// Every latency value of every agent.
    pub latency: Histogram<u64>,
    /// Every service-time value of every agent.
    pub service: Histogram<u64>,
}

/// Merges interval logs on absolute time (see [`MergedLog`]); refuses logs whose clocks
/// disagree by more than an interval.
pub fn merge_logs(logs: &[AgentLog]) -> Result<MergedLog, MergeError> {
    let interval_s = logs
        .iter()
        .flat_map(|l| l.intervals.iter().map(|i| i.length.as_secs_f64()))
        .fold(0.0, f64::max)
        .max(1e-3);
    let starts: Vec<(&Path, f64)> =
        logs.iter().map(|l| (l.path.as_path(), l.first_start())).collect();
    check_clocks(&starts, interval_s)?;
    let start = starts.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
    let mut slots: BTreeMap<u64, (Duration, Histogram<u64>, Histogram<u64>)> = BTreeMap::new();
    let (mut latency, mut service) = (new_histogram(), new_histogram());
    for (log, &(_, first)) in logs.iter().zip(&starts) {
        for i in &log.intervals {
            // Each agent's k-th interval: the clocks check above puts them in the same second.
            let slot = ((i.start_unix_s - first) / interval_s).round().max(0.0) as u64;
            let entry = slots
                .entry(slot)
                .or_insert_with(|| (Duration::ZERO, new_histogram(), new_histogram()));
            entry.0 = entry.0.max(i.length);
            // Histograms of the same bounds: adding cannot fail.
            if i.latency {
                let _ = entry.1.add(&i.histogram);
                let _ = latency.add(&i.histogram);
            } else {
                let _ = entry.2.add(&i.histogram);
                let _ = service.add(&i.histogram);
            }
        }
    }
    let intervals = slots
        .into_iter()
        .map(|(slot, (len, lat, svc))| {
            (Duration::from_secs_f64(slot as f64 * interval_s), len, lat, svc)
        })
        .collect();
    Ok(MergedLog { start_unix_s: start, intervals, latency, service })
}

/// A merged log as text, in the layout of one run's (untagged latency, Tag=service).
pub fn render_merged_log(m: &MergedLog, agents: usize) -> Result<Vec<u8>, HistogramError> {
    const IN_MEMORY: &str = "writing to memory cannot fail";
    let mut out = Vec::new();
    writeln!(out, "#[Histogram log format version 1.3]").expect(IN_MEMORY);
    writeln!(out, "#[surge-loadgen merge of {agents} agents' logs on absolute time]")
        .expect(IN_MEMORY);
    writeln!(out, "#[Untagged: latency from scheduled send, ns; Tag=service: service time, ns]")
        .expect(IN_MEMORY);
    let t0 = UNIX_EPOCH + Duration::from_secs_f64(m.start_unix_s);
    let mut serializer = V2DeflateSerializer::new();
    let mut w = IntervalLogWriterBuilder::new()
        .with_start_time(t0)
        .with_base_time(t0)
        .with_max_value_divisor(1e6)
        .begin_log_with(&mut out, &mut serializer)
        .expect(IN_MEMORY);
    for (at, len, lat, svc) in &m.intervals {
        w.write_histogram(lat, *at, *len, None)?;
        w.write_histogram(svc, *at, *len, Tag::new("service"))?;
    }
    drop(w);
    Ok(out)
}

fn add_encoded(total: &mut Histogram<u64>, text: &str) -> Result<(), Error> {
    // Histograms of the same bounds: adding cannot fail.
    let _ = total.add(decode_histogram(text)?);
    Ok(())
}

/// The larger of two percentile summaries, field by field (an upper bound of their union's).
fn upper(a: &Percentiles, b: &Percentiles) -> Percentiles {
    Percentiles {
        count: a.count + b.count,
        mean: a.mean.max(b.mean),
        p50: a.p50.max(b.p50),
        p90: a.p90.max(b.p90),
        p99: a.p99.max(b.p99),
        p99_9: a.p99_9.max(b.p99_9),
        p99_99: a.p99_99.max(b.p99_99),
        max: a.max.max(b.max),
    }
}

/// Merges agents' JSON results into one (see the module docs); refuses results whose clocks
/// disagree by more than a second (their intervals).
pub fn merge_results(results: &[(PathBuf, RunResult)]) -> Result<RunResult, Error> {
    let mut starts = Vec::new();
    for (path, r) in results {
        let start = r.measure_start_unix_s.ok_or_else(|| MergeError::NoStartTime(path.clone()))?;
        starts.push((path.as_path(), start));
    }
    check_clocks(&starts, 1.0)?;
    let start = starts.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
    let first = &results[0].1;
    let (mut latency, mut service, mut handshake) =
        (new_histogram(), new_histogram(), new_histogram());
    let mut m = first.clone();
    m.config.agent = None;
    m.embedded = None;
    m.started_unix_s = results.iter().map(|r| r.1.started_unix_s).fold(f64::INFINITY, f64::min);
    m.measure_start_unix_s = Some(start);
    m.per_second.clear();
    m.errors.clear();
    m.close_codes.clear();
    m.connections = ConnStats::default();
    (m.messages, m.mismatches, m.scheduled, m.backlog, m.unanswered) = (0, 0, 0, 0, 0);
    (m.msgs_per_sec, m.mb_per_sec, m.measured_s) = (0.0, 0.0, 0.0);
    m.send_lag_us = Percentiles::default();
    m.churn = None;
    m.deflate = None;
    m.health = Health::default();
    m.cpu = CpuStats::default();
    m.config.connections = 0;
    m.config.threads = 0;
    m.config.rate = results.iter().map(|r| r.1.config.rate).sum();
    let mut seconds: BTreeMap<u64, Sample> = BTreeMap::new();
    for (_, r) in results {
        add_encoded(&mut latency, &r.histograms.latency)?;
        add_encoded(&mut service, &r.histograms.service)?;
        add_encoded(&mut handshake, &r.histograms.handshake)?;
        m.interrupted |= r.interrupted;
        m.config.connections += r.config.connections;
        m.config.threads += r.config.threads;
        m.measured_s = m.measured_s.max(r.measured_s);
        m.messages += r.messages;
        m.msgs_per_sec += r.msgs_per_sec;
        m.mb_per_sec += r.mb_per_sec;
        m.mismatches += r.mismatches;
        m.scheduled += r.scheduled;
        m.backlog += r.backlog;
        m.unanswered += r.unanswered;
        m.send_lag_us = upper(&m.send_lag_us, &r.send_lag_us);
        m.connections.add(&r.connections);
        m.health.busiest_thread_pct = m.health.busiest_thread_pct.max(r.health.busiest_thread_pct);
        m.health.limits.extend(r.health.limits.iter().copied());
        if let Some(ch) = &r.churn {
            let total = m.churn.get_or_insert_with(ChurnStats::default);
            total.rate += ch.rate;
            total.closed += ch.closed;
            total.failed += ch.failed;
            total.handshake_us = upper(&total.handshake_us, &ch.handshake_us);
        }
        m.cpu.add(&r.cpu);
        if let Some(d) = &r.deflate {
            m.deflate.get_or_insert_with(Default::default).add(d);
        }
        for (k, n) in &r.errors {
            *m.errors.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &r.close_codes {
            *m.close_codes.entry(k.clone()).or_default() += n;
        }
        for s in &r.per_second {
            // Each agent's k-th second: the clocks check above puts them in the same second.
            let slot = s.t_s.round().max(0.0) as u64;
            let e = seconds
                .entry(slot)
                .or_insert_with(|| Sample { t_s: slot as f64, ..Sample::default() });
            e.length_s = e.length_s.max(s.length_s);
            e.messages += s.messages;
            e.msgs_per_sec += s.msgs_per_sec;
            (e.p50_us, e.p90_us, e.p99_us) =
                (e.p50_us.max(s.p50_us), e.p90_us.max(s.p90_us), e.p99_us.max(s.p99_us));
            (e.p99_9_us, e.max_us) = (e.p99_9_us.max(s.p99_9_us), e.max_us.max(s.max_us));
        }
    }
    m.per_second = seconds.into_values().collect();
    m.cpu.client_ns_per_msg =
        if m.messages > 0 { m.cpu.client_measured_s * 1e9 / m.messages as f64 } else { 0.0 };
    m.latency_us = Percentiles::of(&latency);
    m.service_us = Percentiles::of(&service);
    m.handshake_us = Percentiles::of(&handshake);
    m.histograms = Encoded {
        latency: encode_histogram(&latency)?,
        service: encode_histogram(&service)?,
        handshake: encode_histogram(&handshake)?,
    };
    Ok(m)
}

/// Runs `merge`: prints the merged summary, writes the merged files; returns the thresholds
/// the merged data broke, if any.
pub fn main(args: &MergeArgs) -> Result<Option<Breaches>, Error> {
    let (mut results, mut logs) = (Vec::new(), Vec::new());
    for path in &args.files {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => results.push((path.clone(), RunResult::load(path)?)),
            Some("hlog") => logs.push(AgentLog::read(path)?),
            _ => return Err(MergeError::UnknownKind(path.clone()).into()),
        }
    }
    let OutputFiles { json, hgrm, hlog } = args.output.create()?;
    let merged_log = if logs.is_empty() { None } else { Some(merge_logs(&logs)?) };
    let merged = if results.is_empty() { None } else { Some(merge_results(&results)?) };
    let latency = match (&merged, &merged_log) {
        (_, Some(l)) => l.latency.clone(),
        (Some(r), None) => decode_histogram(&r.histograms.latency)?,
        (None, None) => unreachable!("clap requires a file"),
    };
    let agents = results.len().max(logs.len());
    println!(
        "surge-loadgen merge: {agents} agents ({} results, {} interval logs)",
        results.len(),
        logs.len()
    );
    match &merged {
        Some(r) => print!("{}", report::summary(r)),
        None => {
            let p = Percentiles::of(&latency);
            println!(
                "  latency µs    p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} values)",
                p.p50, p.p90, p.p99, p.p99_9, p.max, p.count
            );
        }
    }
    if let Some(file) = json {
        let r = merged.as_ref().ok_or_else(|| MergeError::UnknownKind(file.path().to_owned()))?;
        file.write(r.to_json())?;
    }
    if let Some(file) = hgrm {
        file.with(|out| write_hgrm(&latency, 1000.0, out))?;
    }
    if let (Some(file), Some(m)) = (hlog, &merged_log) {
        file.write(render_merged_log(m, logs.len())?)?;
    }
    if merged.is_none() {
        if let Some(t) = args.threshold.iter().find(|t| !t.metric.is_latency()) {
            return Err(MergeError::CountsUnknown(t.to_string()).into());
        }
    }
    let (checks, breaches) = threshold::evaluate(&args.threshold, merged.as_ref(), &latency);
    print!("{}", threshold::render(&checks));
    Ok(breaches)
}
