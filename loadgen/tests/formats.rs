//! The `.hgrm` and `.hlog` outputs, read back the way HdrHistogram's own tools read them.

use std::net::Ipv4Addr;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use surge_loadgen::config::{Mode, Pacing, RunConfig};
use surge_loadgen::floor::EchoServer;
use surge_loadgen::report::{write_hgrm, OutputFile, RunResult};
use surge_loadgen::run::{run, RunOptions};
use surge_loadgen::stats::{decode_histogram, new_histogram};
use surge_loadgen::target::Target;

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("surge-loadgen-formats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn hgrm_has_the_percentile_distribution_layout() {
    let mut h = new_histogram();
    for v in 1..=10_000u64 {
        h.record(v * 1000).unwrap();
    }
    let mut out = Vec::new();
    write_hgrm(&h, 1000.0, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "       Value     Percentile TotalCount 1/(1-Percentile)");
    assert_eq!(lines.next().unwrap(), "");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(2)
        .take_while(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.len() > 50);
    let first = &rows[0];
    assert_eq!(first.len(), 4);
    assert_eq!(first[1], "0.000000000000");
    assert_eq!(first[3], "1.00");
    // Values and counts never decrease; the last row is the 100th percentile with 3 columns.
    let mut prev = (0.0f64, 0u64);
    for r in &rows {
        let (v, c): (f64, u64) = (r[0].parse().unwrap(), r[2].parse().unwrap());
        assert!(v >= prev.0 && c >= prev.1);
        prev = (v, c);
    }
    let last = rows.last().unwrap();
    assert_eq!(last.len(), 3);
    assert_eq!(last[1], "1.000000000000");
    assert_eq!(last[2], "10000");
    assert!((last[0].parse::<f64>().unwrap() - 10_000.0).abs() < 10.0);
    let footer: Vec<&str> = text.lines().filter(|l| l.starts_with("#[")).collect();
    assert_eq!(footer.len(), 3);
    assert!(
        footer[0].starts_with("#[Mean    =     5000.") && footer[0].contains("StdDeviation   =")
    );
    assert!(footer[1].contains("Total count    =        10000]"));
    assert_eq!(footer[2], "#[Buckets =           32, SubBuckets     =         2048]");
}

/// Four raw connections at `rate` msg/s for `duration_s` after `warmup_s`.
fn open_loop(rate: f64, duration_s: f64, warmup_s: f64) -> RunConfig {
    RunConfig {
        connections: 4,
        pacing: Pacing::Open { rate },
        duration: Duration::from_secs_f64(duration_s),
        warmup: Duration::from_secs_f64(warmup_s),
        connect_rate: None,
        connect_timeout: Duration::from_secs(2),
        ..RunConfig::new("test", Mode::Raw)
    }
}

#[test]
fn hlog_round_trips_through_the_interval_log_reader_and_json_keeps_histograms() {
    let server = EchoServer::start((Ipv4Addr::LOCALHOST, 0).into(), 1, &[]).unwrap();
    let hlog = tmp("run.hlog");
    let config = open_loop(1000.0, 2.5, 0.2);
    let hlog_file = OutputFile::create(&hlog).unwrap();
    let opts = RunOptions { hlog: Some(hlog_file), ..RunOptions::default() };
    let out = run(&config, &Target::Tcp { addr: server.addr() }, opts).unwrap();
    let text = std::fs::read(&hlog).unwrap();
    let mut latency: Histogram<u64> = new_histogram();
    let mut service: Histogram<u64> = new_histogram();
    let (mut intervals, mut start_time, mut base_time) = (0, false, false);
    let mut last_start = -1.0;
    for entry in IntervalLogIterator::new(&text) {
        match entry.expect("every line parses") {
            LogEntry::StartTime(_) => start_time = true,
            LogEntry::BaseTime(_) => base_time = true,
            LogEntry::Interval(i) => {
                let bytes = base64_decode(i.encoded_histogram());
                let h: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
                assert!((i.max() - h.max() as f64 / 1e6).abs() < 0.01, "max in ms");
                match i.tag().map(|t| t.as_str()) {
                    None => {
                        intervals += 1;
                        let start = i.start_timestamp().as_secs_f64();
                        assert!(start > last_start);
                        last_start = start;
                        latency.add(&h).unwrap();
                    }
                    Some("service") => service.add(&h).unwrap(),
                    Some(other) => panic!("unexpected tag {other}"),
                }
            }
        }
    }
    assert!(start_time && base_time);
    assert_eq!(intervals, 3, "two whole seconds and a half");
    assert_eq!(latency.len(), out.result.messages);
    assert_eq!(service.len(), out.result.messages);
    assert_eq!(latency.max(), out.latency.max());

    // The JSON keeps the whole histogram and the per-second samples.
    let json = tmp("run.json");
    out.result.save(&json).unwrap();
    let back = RunResult::load(&json).unwrap();
    assert_eq!(back.config, out.result.config);
    assert_eq!(back.messages, out.result.messages);
    assert_eq!(back.per_second, out.result.per_second);
    assert_eq!(back.histograms, out.result.histograms);
    let h = decode_histogram(&back.histograms.latency).unwrap();
    assert_eq!(h.len(), out.result.messages);
    assert_eq!(back.per_second.len(), 3);
    assert!((back.per_second[2].length_s - 0.5).abs() < 0.05);
    assert!(back.machine.cores >= 1 && !back.machine.git_commit.is_empty());
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// HdrHistogram's own Java HistogramLogProcessor reads the interval log, and its overall
/// percentile distribution (in µs) is the `.hgrm` we write, byte for byte.
/// Needs `java` and Debian's libhdrhistogram-java; skipped without them.
#[test]
fn java_histogram_log_processor_reads_the_hlog_and_agrees_with_the_hgrm() {
    let jar = "/usr/share/java/hdrhistogram.jar";
    let java_ok = std::process::Command::new("java").arg("-version").output().is_ok();
    if !java_ok || !std::path::Path::new(jar).exists() {
        eprintln!("skipped: needs java and {jar} (apt-get install libhdrhistogram-java)");
        return;
    }
    let server = EchoServer::start((Ipv4Addr::LOCALHOST, 0).into(), 1, &[]).unwrap();
    let hlog = tmp("java.hlog");
    let config = open_loop(2000.0, 2.0, 0.1);
    let hlog_file = OutputFile::create(&hlog).unwrap();
    let opts = RunOptions { hlog: Some(hlog_file), ..RunOptions::default() };
    let out = run(&config, &Target::Tcp { addr: server.addr() }, opts).unwrap();
    let prefix = tmp("java-out");
    let status = std::process::Command::new("java")
        .args(["-cp", jar, "org.HdrHistogram.HistogramLogProcessor", "-i"])
        .arg(&hlog)
        .arg("-o")
        .arg(&prefix)
        .args(["-outputValueUnitRatio", "1000"])
        .status()
        .unwrap();
    assert!(status.success());
    let java = std::fs::read_to_string(prefix.with_extension("hgrm")).unwrap();
    // Java adds two header comments (the time range and the StartTime).
    let java: String = java
        .lines()
        .filter(|l| !l.starts_with("#[Overall") && !l.starts_with("#[StartTime"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut ours = Vec::new();
    write_hgrm(&out.latency, 1000.0, &mut ours).unwrap();
    assert_eq!(String::from_utf8(ours).unwrap(), java);
    assert!(java.contains(&format!("Total count    = {:>12}]", out.result.messages)));
}
