//! Many agents: logs merged on absolute time, clocks that disagree refused, and local agent
//! processes started together and merged into one report.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use surge_loadgen::floor::EchoServer;
use surge_loadgen::merge::AgentLog;
use surge_loadgen::report::RunResult;
use surge_loadgen::stats::{decode_histogram, new_histogram};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_surge-loadgen"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("surge-loadgen-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Writes agent `agent`'s log: three 1 s intervals from `base`, each with its own values,
/// tagged as `--agent` tags them; every value also goes into `all`.
fn write_agent_log(
    path: &Path,
    agent: &str,
    base: SystemTime,
    seed: u64,
    all: &mut Histogram<u64>,
) {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut w = IntervalLogWriterBuilder::new()
        .with_start_time(base)
        .with_base_time(base)
        .with_max_value_divisor(1e6)
        .begin_log_with(&mut out, &mut serializer)
        .unwrap();
    let service_tag = format!("{agent}.service");
    for second in 0..3u64 {
        let mut h = new_histogram();
        for i in 0..(500 + 100 * seed) {
            // Spread over five decades, different per agent and second.
            let v = 1_000 + (i * 7_919 + seed * 104_729 + second * 31) % 50_000_000;
            h.record(v).unwrap();
            all.record(v).unwrap();
        }
        let at = Duration::from_secs(second);
        let len = Duration::from_secs(1);
        w.write_histogram(&h, at, len, Tag::new(agent)).unwrap();
        w.write_histogram(&h, at, len, Tag::new(&service_tag)).unwrap();
    }
    drop(w);
    std::fs::write(path, out).unwrap();
}

fn read_log_latency(path: &Path) -> Histogram<u64> {
    let mut h = new_histogram();
    for i in AgentLog::read(path).unwrap().intervals.into_iter().filter(|i| i.latency) {
        h.add(&i.histogram).unwrap();
    }
    h
}

fn assert_same_counts(a: &Histogram<u64>, b: &Histogram<u64>) {
    assert_eq!(a.len(), b.len());
    for v in a.iter_recorded() {
        assert_eq!(b.count_at(v.value_iterated_to()), v.count_at_value());
    }
    assert_eq!((a.min(), a.max()), (b.min(), b.max()));
}

#[test]
fn a_merge_of_three_agents_logs_is_the_histogram_of_all_their_values() {
    let base = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut all = new_histogram();
    let mut logs = Vec::new();
    for (k, name) in ["a", "b", "c"].iter().enumerate() {
        let path = tmp(&format!("exact-{name}.hlog"));
        // Clocks a little apart, within an interval.
        let start = base + Duration::from_millis(300 * k as u64);
        write_agent_log(&path, name, start, k as u64, &mut all);
        logs.push(path);
    }
    let merged = tmp("exact-merged.hlog");
    let hgrm = tmp("exact-merged.hgrm");
    let out = bin()
        .arg("merge")
        .args(&logs)
        .arg("--hlog")
        .arg(&merged)
        .arg("--hgrm")
        .arg(&hgrm)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_same_counts(&all, &read_log_latency(&merged));
    // Three seconds of three agents each: three merged intervals.
    let intervals = AgentLog::read(&merged).unwrap().intervals;
    assert_eq!(intervals.iter().filter(|i| i.latency).count(), 3);
    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(text.contains(&format!("Total count    = {:>12}", all.len())), "{text}");
}

#[test]
fn logs_whose_clocks_disagree_by_more_than_an_interval_are_refused() {
    let base = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut all = new_histogram();
    let (a, b) = (tmp("skew-a.hlog"), tmp("skew-b.hlog"));
    write_agent_log(&a, "a", base, 0, &mut all);
    write_agent_log(&b, "b", base + Duration::from_millis(2_500), 1, &mut all);
    let out = bin().arg("merge").args([&a, &b]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("clocks disagree") && err.contains("2.500 s after"), "{err}");
    assert!(err.contains("skew-b.hlog") && err.contains("--start-at"), "{err}");
}

fn agent(addr: std::net::SocketAddr, name: &str, start_at: f64) -> std::process::Child {
    bin()
        .arg(format!("tcp://{addr}"))
        .args(["-c", "2", "-d", "1s", "-w", "200ms", "-q", "--agent", name])
        .args(["--start-at", &format!("{start_at:.3}")])
        .arg("--json")
        .arg(tmp(&format!("{name}.json")))
        .arg("--hlog")
        .arg(tmp(&format!("{name}.hlog")))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn wait(child: std::process::Child) -> Output {
    child.wait_with_output().unwrap()
}

/// Three agent processes on this machine, told to start at the same instant, merged: counts
/// add up, the merged histogram holds every message, thresholds apply to the merged data.
#[test]
fn three_local_agents_started_together_merge_into_one_report() {
    let server = EchoServer::start((Ipv4Addr::LOCALHOST, 0).into(), 1, &[]).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let names = ["agent-1", "agent-2", "agent-3"];
    let children: Vec<_> = names.iter().map(|n| agent(server.addr(), n, now + 4.0)).collect();
    for child in children {
        let out = wait(child);
        assert!(out.status.success(), "{out:?}");
    }
    let jsons: Vec<PathBuf> = names.iter().map(|n| tmp(&format!("{n}.json"))).collect();
    let hlogs: Vec<PathBuf> = names.iter().map(|n| tmp(&format!("{n}.hlog"))).collect();
    let results: Vec<RunResult> = jsons.iter().map(|p| RunResult::load(p).unwrap()).collect();
    for (r, n) in results.iter().zip(names) {
        assert_eq!(r.config.agent.as_deref(), Some(n));
    }
    let merged_json = tmp("merged.json");
    let out = bin()
        .arg("merge")
        .args(&jsons)
        .args(&hlogs)
        .arg("--json")
        .arg(&merged_json)
        .args(["--threshold", "mismatches==0", "--threshold", "errors==0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 agents") && text.contains("mismatches==0 held"), "{text}");
    let m = RunResult::load(&merged_json).unwrap();
    let messages: u64 = results.iter().map(|r| r.messages).sum();
    assert_eq!(m.messages, messages);
    assert_eq!(m.config.connections, 6);
    assert_eq!(m.connections.established, 6);
    assert_eq!(decode_histogram(&m.histograms.latency).unwrap().len(), messages);
    assert_eq!(m.per_second.iter().map(|s| s.messages).sum::<u64>(), messages);
    // A threshold the merged data breaks: exit 1, naming it.
    let out = bin().arg("merge").args(&jsons).args(["--threshold", "p50<1ns"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("surge-loadgen: threshold failed: p50<1ns"));
}

/// `--start-file`: the agent waits for the file, connects, and starts at the time written in
/// it; a file that holds no time is one clear line.
#[test]
fn an_agent_waits_for_the_start_file_and_starts_at_its_time() {
    let server = EchoServer::start((Ipv4Addr::LOCALHOST, 0).into(), 1, &[]).unwrap();
    let start_file = tmp("start-at");
    let _ = std::fs::remove_file(&start_file);
    let json = tmp("start-file.json");
    let child = bin()
        .arg(format!("tcp://{}", server.addr()))
        .args(["-c", "2", "-d", "500ms", "-w", "100ms", "-q", "--agent", "waiter"])
        .arg("--start-file")
        .arg(&start_file)
        .arg("--json")
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Written the way a coordinator would: to a temporary name, then renamed into place.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let start_at = (now + 1.0).floor();
    let partial = tmp("start-at.partial");
    std::fs::write(&partial, format!("{start_at}\n")).unwrap();
    std::fs::rename(&partial, &start_file).unwrap();
    let out = wait(child);
    assert!(out.status.success(), "{out:?}");
    let r = RunResult::load(&json).unwrap();
    assert_eq!(r.config.start_at_unix_s, Some(start_at));
    // The window opens after the agreed start (plus the warm-up), never before it.
    assert!(r.measure_start_unix_s.unwrap() >= start_at, "{:?}", r.measure_start_unix_s);

    std::fs::write(&start_file, "soon\n").unwrap();
    let out = bin()
        .arg(format!("tcp://{}", server.addr()))
        .args(["-c", "1", "-d", "1h", "-q", "--start-file"])
        .arg(&start_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a Unix time") && err.contains("soon"), "{err}");
}
