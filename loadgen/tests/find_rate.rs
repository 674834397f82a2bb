//! `--find-rate` against a server that holds a known rate and no more.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The rate the throttled server holds, messages per second.
const CAPACITY: f64 = 2000.0;
const MESSAGE: usize = 16;

/// A raw TCP echo server that answers at most `CAPACITY` messages a second over all its
/// connections: a token bucket refilled by the clock at `CAPACITY` per second, holding at most
/// `BURST` tokens. A message takes a token and is echoed at once, or waits for the next one.
/// Below the capacity it answers at once; above it a queue grows, second after second, and so
/// does latency. Refilling by the clock (not counting sleeps) keeps the rate exact however late
/// the sleeps wake on a busy machine, and the burst (50 ms of tokens) lets it catch up after
/// a stall of its own threads instead of queueing behind it.
fn throttled_server() -> SocketAddr {
    const BURST: f64 = CAPACITY * 0.05;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let bucket = Arc::new(Mutex::new((BURST, Instant::now())));
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let bucket = Arc::clone(&bucket);
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut msg = [0u8; MESSAGE];
                while s.read_exact(&mut msg).is_ok() {
                    let wait = {
                        let mut b = bucket.lock().unwrap();
                        let now = Instant::now();
                        let tokens = (b.0 + (now - b.1).as_secs_f64() * CAPACITY).min(BURST);
                        // Taking a token that is not there yet reserves it: later messages
                        // queue behind this one.
                        *b = (tokens - 1.0, now);
                        Duration::from_secs_f64((1.0 - tokens).max(0.0) / CAPACITY)
                    };
                    std::thread::sleep(wait);
                    if s.write_all(&msg).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn finds_the_rate_a_throttled_server_holds_within_ten_percent() {
    let addr = throttled_server();
    let json = std::env::temp_dir().join(format!("surge-loadgen-find-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_surge-loadgen"))
        .arg(format!("tcp://{addr}"))
        .args(["-c", "4", "--size", &MESSAGE.to_string(), "--in-flight", "64"])
        .args(["-d", "2s", "-w", "300ms", "--rate", "1000", "-q"])
        // The median: over capacity by 5% it passes 50 ms within the window (the queue grows
        // by 5% of the time elapsed), while a busy machine's stalls move p99, not p50.
        .args(["--find-rate", "p50<50ms", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let steps = text.lines().filter(|l| l.starts_with("step")).count();
    assert!(steps >= 3, "{text}");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let answer = record["answer"].as_f64().expect("an answer");
    assert!(
        (answer - CAPACITY).abs() <= 0.1 * CAPACITY,
        "found {answer:.0} msg/s, the server holds {CAPACITY}:\n{text}"
    );
    assert_eq!(record["steps"].as_array().unwrap().len(), steps);
    assert!(text.contains(&format!("highest rate holding p50<50ms: {answer:.0} msg/s")), "{text}");
}
