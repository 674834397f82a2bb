//! Raw TCP mode against the in-process echo floor and against misbehaving servers.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};

use std::time::Duration;
use surge_loadgen::floor::EchoServer;

use surge_loadgen::config::{Mode, Pacing, RunConfig};
use surge_loadgen::run::{run, RunOptions};
use surge_loadgen::target::Target;
use surge_loadgen::workload::SizeSpec;

fn config(connections: usize, size: &str, rate: Option<f64>, duration_s: f64) -> RunConfig {
    RunConfig {
        connections,
        size: size.parse().unwrap(),
        pacing: rate.map_or(Pacing::Closed, |rate| Pacing::Open { rate }),
        duration: Duration::from_secs_f64(duration_s),
        warmup: Duration::from_millis(200),
        connect_rate: None,
        connect_timeout: Duration::from_secs(2),
        ..RunConfig::new("test", Mode::Raw)
    }
}

#[test]
fn closed_loop_echoes_and_checks_every_message() {
    let server = EchoServer::start((Ipv4Addr::LOCALHOST, 0).into(), 1, &[]).unwrap();
    let target = Target::Tcp { addr: server.addr() };
    let mut c = config(20, "16,64,1000", None, 1.0);
    c.in_flight = 4;
    let out = run(&c, &target, RunOptions::default()).unwrap();
    let r = &out.result;
    assert!(r.messages > 1000, "{} messages", r.messages);
    assert_eq!(r.mismatches, 0);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.connections.established, 20);
    assert_eq!(r.connections.lost, 0);
    assert_eq!(r.handshake_us.count, 20);
    assert!(!r.per_second.is_empty());
    assert_eq!(r.per_second.iter().map(|s| s.messages).sum::<u64>(), r.messages);
    assert_eq!(out.latency.len(), r.messages);
    // Closed loop: latency and service time are the same thing.
    assert_eq!(out.latency.len(), out.service.len());
    assert!(r.cpu.client_s > 0.0 && r.cpu.client_ns_per_msg > 0.0);
    assert_eq!(c.size, SizeSpec::List(vec![16, 64, 1000]));
    assert_eq!(r.send_lag_us.count, 0, "closed loop has no schedule to lag behind");
}

#[test]
fn open_loop_holds_its_rate() {
    let server = EchoServer::start((Ipv4Addr::LOCALHOST, 0).into(), 1, &[]).unwrap();
    let target = Target::Tcp { addr: server.addr() };
    let c = config(10, "64", Some(2000.0), 1.5);
    let r = run(&c, &target, RunOptions::default()).unwrap().result;
    let expected = 2000.0;
    // Every slot of the schedule is answered (the server keeps up), however busy the machine:
    // the rate is the schedule's, not the machine's.
    assert_eq!((r.messages, r.backlog, r.unanswered), (r.scheduled, 0, 0), "{r:?}");
    assert!(
        (r.msgs_per_sec - expected).abs() < expected * 0.1,
        "{} msg/s instead of {expected}",
        r.msgs_per_sec
    );
    assert_eq!(r.mismatches, 0);
    // Both latencies are recorded for every message, and the correction only ever adds the
    // time a message waited past its slot: it never reads below the service time.
    assert_eq!((r.latency_us.count, r.service_us.count), (r.messages, r.messages));
    assert!(r.latency_us.p50 >= r.service_us.p50, "{:?} {:?}", r.latency_us, r.service_us);
    // The client's own lateness is measured where a message was due with room to go.
    assert!((1..=r.messages).contains(&r.send_lag_us.count), "{:?}", r.send_lag_us);
}

/// A loopback server that runs `serve` on each connection, in a thread of its own.
fn server(serve: impl Fn(TcpStream) + Copy + Send + 'static) -> std::net::SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(s) = stream else { return };
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

/// A server that echoes with one byte changed, or closes after `close_after` bytes.
fn bad_server(corrupt: bool, close_after: usize) -> std::net::SocketAddr {
    server(move |mut s| {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || total >= close_after {
                return;
            }
            total += n;
            if corrupt {
                buf[0] ^= 0xff;
            }
            if s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

/// A server that echoes the first `echo_bytes` bytes of each connection, then reads on and
/// answers nothing.
fn stalling_server(echo_bytes: usize) -> std::net::SocketAddr {
    server(move |mut s| {
        let mut buf = [0u8; 4096];
        let mut echoed = 0;
        while let Ok(n @ 1..) = s.read(&mut buf) {
            let take = n.min(echo_bytes - echoed);
            echoed += take;
            if s.write_all(&buf[..take]).is_err() {
                return;
            }
        }
    })
}

/// Open loop against a server that stops answering mid-window: what it never answered is not
/// lost from the books. Each message due in the window was answered, never sent (the cap was
/// full) or sent and never answered.
#[test]
fn open_loop_accounts_for_what_a_stalled_server_never_answered() {
    let conns = 4;
    let cap = 4;
    // 500 msg/s per connection: the window starts at message 100 (0.2 s warm-up) and the
    // server goes quiet after message 200.
    let target = Target::Tcp { addr: stalling_server(200 * 64) };
    let mut c = config(conns, "64", Some(2000.0), 1.0);
    c.in_flight = cap;
    let r = run(&c, &target, RunOptions::default()).unwrap().result;
    assert!(r.scheduled.abs_diff(2000) <= 1, "{} scheduled", r.scheduled);
    assert_eq!(r.messages + r.backlog + r.unanswered, r.scheduled, "{r:?}");
    // Each connection's pipeline was full when the server stopped, with messages of the window.
    assert_eq!(r.unanswered, (conns * cap) as u64);
    assert!((300..=400).contains(&r.messages), "{} answered", r.messages);
    assert!(r.backlog > 1500, "{} never sent", r.backlog);
    assert_eq!(r.mismatches, 0);
}

#[test]
fn corrupted_echoes_are_counted() {
    let target = Target::Tcp { addr: bad_server(true, usize::MAX) };
    let r = run(&config(2, "32", None, 0.5), &target, RunOptions::default()).unwrap().result;
    assert!(r.messages > 0);
    // Every echo is wrong (warm-up included in the mismatch count).
    assert!(r.mismatches >= r.messages, "{} of {}", r.mismatches, r.messages);
}

#[test]
fn connections_the_server_closes_are_counted_not_fatal() {
    let target = Target::Tcp { addr: bad_server(false, 64) };
    let r = run(&config(4, "32", None, 0.5), &target, RunOptions::default()).unwrap().result;
    assert_eq!(r.connections.established, 4);
    assert_eq!(r.connections.lost, 4);
    assert_eq!(r.errors.get("closed_by_server"), Some(&4));
}

#[test]
fn unreachable_target_is_one_clear_error() {
    // Bind then drop: nothing listens on this port.
    let addr = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap();
    let err = run(&config(1, "8", None, 0.5), &Target::Tcp { addr }, RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect") && err.contains("refused"), "{err}");
    assert!(!err.contains('\n'));
}

/// Raw TCP churn against the floor: connections close once their echo is in and reopen in
/// their place; every connection that came up is accounted for.
#[test]
fn churn_in_raw_mode_balances() {
    let server = EchoServer::start((Ipv4Addr::LOCALHOST, 0).into(), 1, &[]).unwrap();
    let c = RunConfig { churn: Some(50.0), ..config(10, "64", None, 1.0) };
    let r = run(&c, &Target::Tcp { addr: server.addr() }, RunOptions::default()).unwrap().result;
    let conns = r.connections;
    assert_eq!(conns.established, conns.lost + conns.churned + conns.open_at_end, "{conns:?}");
    assert!(conns.churned > 0 && r.churn.is_some_and(|c| c.closed == conns.churned));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.mismatches, 0);
}
