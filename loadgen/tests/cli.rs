//! The binary as people script it: one clear line on bad input, compare, Ctrl-C.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use surge_loadgen::floor::EchoServer;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_surge-loadgen"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("surge-loadgen-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn one_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("surge-loadgen: error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_owned()
}

#[test]
fn too_many_connections_for_the_descriptor_limit_is_one_line() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_max > 50_000_000 {
        eprintln!("hard descriptor limit is effectively unlimited here; nothing to check");
        return;
    }
    let conns = (lim.rlim_max + 1).to_string();
    let out = bin().args(["tcp://127.0.0.1:9", "--connections", &conns, "-q"]).output().unwrap();
    let line = one_error_line(&out);
    assert!(line.contains("descriptors") && line.contains("ulimit -Hn"), "{line}");
    assert!(line.contains("--connections"), "{line}");
}

#[test]
fn unreachable_target_is_one_line() {
    let addr = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap();
    let out = bin().args([&format!("tcp://{addr}"), "-d", "1s", "-q"]).output().unwrap();
    let line = one_error_line(&out);
    assert!(line.contains("cannot connect"), "{line}");
    let out = bin().args(["tcp://no-such-host.invalid:80", "-q"]).output().unwrap();
    one_error_line(&out);
    let out = bin().args(["--size", "20m"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn measure(addr: std::net::SocketAddr, json: &std::path::Path, extra: &[&str]) {
    let mut args = vec![format!("tcp://{addr}"), "-c".into(), "8".into(), "-d".into()];
    args.extend(["3s", "-w", "200ms", "-q", "--json"].map(String::from));
    args.push(json.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = bin().args(&args).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("msg/s") && text.contains("p99.99"), "{text}");
    // Every report says whether the load generator itself was the limit.
    assert!(text.contains("self-health"), "{text}");
}

#[test]
fn compare_two_runs_in_text_and_html() {
    let server = EchoServer::start((Ipv4Addr::LOCALHOST, 0).into(), 1, &[]).unwrap();
    let (a, b) = (tmp("a.json"), tmp("b.json"));
    measure(server.addr(), &a, &["--rate", "2000"]);
    measure(server.addr(), &b, &["--rate", "4000"]);
    let html = tmp("report.html");
    let out = bin().arg("compare").args([&a, &b]).arg("--html").arg(&html).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text.lines().find(|l| l.starts_with("msgs/s")).expect("a msgs/s row");
    // Twice the rate, but one run per side: the change is shown, its significance is not
    // claimed.
    assert!(row.contains("+100.0%") || row.contains("+99.9%"), "{row}");
    assert!(!row.contains('*') && !row.contains('~'), "{row}");
    assert!(text.contains("cannot be judged"), "{text}");
    assert!(text.contains("p99.99 µs") && text.contains("note: side 2 differs"), "{text}");
    // Half the throughput of the baseline is slower by more than 5%: exit 1, one line.
    let slower = bin().args(["compare", "--fail-if-slower", "5%"]).args([&b, &a]).output().unwrap();
    assert_eq!(slower.status.code(), Some(1), "{slower:?}");
    let err = String::from_utf8_lossy(&slower.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("surge-loadgen: slower:") && err.contains("msgs/s -50"), "{err}");
    assert!(err.contains("noise not judged"), "{err}");
    let same = bin().args(["compare", "--fail-if-slower", "5%"]).args([&a, &a]).output().unwrap();
    assert!(same.status.success(), "{same:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(page.matches(r#"class="series""#).count(), 4, "2 spectra + 2 throughput lines");
    assert!(page.contains("99.999%"));
    assert!(!page.contains("<script") && !page.contains("<link"), "self-contained");
    let bad = bin().arg("compare").args([&a, &html]).output().unwrap();
    assert!(one_error_line(&bad).contains("not a surge-loadgen result"));
}

/// Six runs of one configuration recorded back to back on a shared 2-core machine, whose
/// throughput drifted by a third between the first three and the last three: alternated
/// into two sides, no row may be flagged as beyond noise, and `--fail-if-slower` passes.
#[test]
fn identical_configurations_are_not_flagged() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/compare");
    let run = |i: u32| data.join(format!("same-config-{i}.json"));
    let out = bin()
        .args(["compare", "--fail-if-slower", "5%"])
        .args([run(1), run(3), run(5)])
        .arg("vs")
        .args([run(2), run(4), run(6)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let table: Vec<&str> = text.lines().skip(4).take_while(|l| !l.is_empty()).collect();
    assert_eq!(table.len(), 11, "{text}");
    assert!(table.iter().all(|row| !row.contains(" *")), "{text}");
    assert!(!text.contains("cannot be judged") && !text.contains("separate"), "{text}");
    // The same six runs split by sitting: the report says why that misleads.
    let out = bin()
        .arg("compare")
        .args([run(1), run(2), run(3)])
        .arg("vs")
        .args([run(4), run(5), run(6)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("instead of alternating"), "{text}");
}

#[test]
fn a_breached_threshold_exits_1_naming_it() {
    let server = EchoServer::start((Ipv4Addr::LOCALHOST, 0).into(), 1, &[]).unwrap();
    let target = format!("tcp://{}", server.addr());
    let common = ["-c", "2", "-d", "500ms", "-w", "100ms", "-q"];
    let out = bin()
        .arg(&target)
        .args(common)
        .args(["--threshold", "p99.9<1ns", "--threshold", "mismatches==0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("surge-loadgen:")).expect("a line");
    assert!(line.starts_with("surge-loadgen: threshold failed: p99.9<1ns (was "), "{line}");
    assert!(!line.contains("mismatches"), "only what failed: {line}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mismatches==0 held"), "{text}");
    let out = bin().arg(&target).args(common).args(["--threshold", "errors==0"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let bad = bin().arg(&target).args(["--threshold", "p99<soon"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("p99<soon"), "{bad:?}");
}

/// A result file that cannot be written fails before the run, not after it.
#[test]
fn a_bad_output_path_fails_before_measuring() {
    let server = EchoServer::start((Ipv4Addr::LOCALHOST, 0).into(), 1, &[]).unwrap();
    for flag in ["--json", "--hgrm", "--hlog"] {
        let out = bin()
            .arg(format!("tcp://{}", server.addr()))
            .args(["-c", "1", "-d", "1h", "-q", flag, "/nonexistent-dir/result"])
            .output()
            .unwrap();
        assert!(one_error_line(&out).contains("/nonexistent-dir/result"), "{flag}");
        assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "{flag}: nothing measured");
    }
}

/// A TCP echo server that counts the bytes it echoed, so that a test can wait for traffic
/// instead of guessing how long starting up takes.
fn counting_echo_server() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let echoed = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&echoed);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let count = Arc::clone(&count);
            // Each connection's thread ends when the client hangs up.
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    count.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (addr, echoed)
}

#[test]
fn ctrl_c_prints_what_was_measured() {
    let (addr, echoed) = counting_echo_server();
    let child = bin()
        .args([&format!("tcp://{addr}"), "-c", "4", "-d", "60s", "-w", "0s", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Nothing is sent before the measurement starts ("go"): traffic means it has begun.
    let give_up = Instant::now() + Duration::from_secs(30);
    while echoed.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < give_up, "no traffic within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    // Prompt, not instant: the bound is about not running out the 60 s, on any machine.
    assert!(start.elapsed() < Duration::from_secs(20), "{:?} after SIGINT", start.elapsed());
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(interrupted)"), "{text}");
    assert!(!text.contains("throughput    0 msg/s"), "{text}");
}

#[test]
fn sweep_names_the_best_setting() {
    let html = tmp("sweep.html");
    let out = bin()
        .args(["sweep", "--raw", "--server-threads", "1", "--threads", "1,2", "--pin", "off"])
        .args(["-c", "4", "-d", "400ms", "-w", "100ms", "--html"])
        .arg(&html)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().filter(|l| l.trim_start().starts_with("1 ")).count(), 2, "{text}");
    assert!(text.contains("best: 1 server thread(s)"), "{text}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches(r#"class="bar""#).count(), 4, "throughput and p99 per point");
}

/// 19,000 connections (under this machine's 20,000-descriptor hard limit) against the floor
/// running as its own process; source addresses spread over 127.0.0.1 and 127.0.0.2.
#[test]
fn nineteen_thousand_connections() {
    const CONNS: u64 = 19_000;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_max < CONNS + 100 {
        eprintln!("skipped: the hard descriptor limit ({}) is below {CONNS}", lim.rlim_max);
        return;
    }
    let addr = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap();
    let mut floor =
        bin().args(["floor", "--listen", &addr.to_string()]).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "floor did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let json = tmp("19k.json");
    let out = bin()
        .arg(format!("tcp://{addr}"))
        .args(["-c", &CONNS.to_string(), "-d", "1s", "-w", "200ms", "--ramp", "20k", "-q"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let _ = floor.kill();
    let _ = floor.wait();
    assert!(out.status.success(), "{out:?}");
    let r = surge_loadgen::report::RunResult::load(&json).unwrap();
    assert_eq!(r.connections.established, CONNS, "{:?}", r.errors);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.messages > 0);
    assert_eq!(r.mismatches, 0);
}

/// `--scrape-metrics` on the embedded Surge server: the server's own counts (at least every
/// message the clients measured, and no more than they could have sent) beside the run's.
#[test]
fn scraped_server_figures_sit_beside_the_measurement() {
    let json = tmp("scrape.json");
    let out = bin()
        .args(["-c", "4", "-d", "1s", "-w", "200ms", "-q", "--scrape-metrics", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  server        its /metrics over"), "{text}");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let measured = result["messages"].as_u64().unwrap();
    let server = &result["server"];
    let received = server["messages_received"].as_u64().unwrap();
    assert!(received >= measured, "server {received} < measured {measured}");
    assert_eq!(server["messages_sent"], server["messages_received"], "an echo sends each back");
    assert!(server["turns"].as_u64().unwrap() > 0);
    assert_eq!(server["backpressure"], 0);
    // Metrics that cannot be had fail the run before any load, with one line.
    let (addr, echoed) = counting_echo_server();
    let nothing = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap();
    let url = format!("http://{nothing}/metrics");
    let out =
        bin().args([&format!("tcp://{addr}"), "--scrape-metrics", &url, "-q"]).output().unwrap();
    assert!(one_error_line(&out).contains("metrics"));
    assert_eq!(echoed.load(Ordering::Relaxed), 0, "no load before the failed scrape");
}
