//! WebSocket mode against a small blocking echo server built on surge-proto's server side.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use surge_loadgen::config::{Mode, Pacing, RunConfig};
use surge_loadgen::run::{run, RunOptions};
use surge_loadgen::target::Target;
use surge_loadgen::workload::PayloadKind;
use surge_proto::close::CloseCode;
use surge_proto::connection::{Connection, Event, Limits};
use surge_proto::deflate::ClientOffer;
use surge_proto::handshake::{write_rejection, HandshakeLimits, ServerHandshake, EMPTY_HEADER};

/// Handshakes `/accept-20` has accepted, over the whole test binary.
static ACCEPTED_OF_20: AtomicUsize = AtomicUsize::new(0);

/// Serves one connection: `/reject` gets a 403, `/close` is closed (1001) after 10 echoes,
/// `/accept-20` accepts 20 handshakes and answers 503 to every later one.
fn serve(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    let mut hs = ServerHandshake::new(HandshakeLimits::default());
    let (head_len, path) = loop {
        let Ok(n @ 1..) = s.read(&mut chunk) else { return };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [EMPTY_HEADER; 64];
        match hs.parse(&buf, &mut headers) {
            Ok(None) => {}
            Ok(Some(req))
                if req.path() == "/reject"
                    || (req.path() == "/accept-20"
                        && ACCEPTED_OF_20.fetch_add(1, Ordering::SeqCst) >= 20) =>
            {
                let status = if req.path() == "/reject" { 403 } else { 503 };
                write_rejection(status, &[], &mut out).unwrap();
                let _ = s.write_all(&out);
                return;
            }
            Ok(Some(req)) => {
                req.accept(None, &[], &mut out).unwrap();
                break (req.head_len(), req.path().to_owned());
            }
            Err(_) => return,
        }
    };
    let mut conn = Connection::server(Limits::default());
    let mut assembly = Vec::new();
    let mut input = buf[head_len..].to_vec();
    let mut echoed = 0;
    loop {
        let mut pos = 0;
        loop {
            let (used, event) = conn.read(&mut input[pos..], &mut assembly);
            pos += used;
            match event {
                None => break,
                Some(Event::Message(m)) => {
                    if conn.can_send() {
                        conn.send(m, &mut out).unwrap();
                        echoed += 1;
                        if path == "/close" && echoed == 10 {
                            conn.close(Instant::now(), CloseCode::GOING_AWAY, "bye", &mut out)
                                .unwrap();
                        }
                    }
                }
                Some(_) => conn.poll_transmit(&mut out),
            }
        }
        if s.write_all(&out).is_err() {
            return;
        }
        out.clear();
        if conn.is_closed() {
            return;
        }
        let Ok(n @ 1..) = s.read(&mut chunk) else { return };
        input.clear();
        input.extend_from_slice(&chunk[..n]);
    }
}

fn server() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

fn config(connections: usize, size: &str, payload: PayloadKind) -> RunConfig {
    RunConfig {
        connections,
        size: size.parse().unwrap(),
        payload,
        in_flight: 2,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        connect_rate: None,
        connect_timeout: Duration::from_secs(2),
        ..RunConfig::new("test", Mode::Ws)
    }
}

fn target(addr: SocketAddr, path: &str) -> Target {
    Target::parse(Some(&format!("ws://{addr}{path}"))).unwrap()
}

#[test]
fn echoes_text_and_binary_and_closes_cleanly() {
    let addr = server();
    for (kind, size) in [(PayloadKind::Text, "0..200"), (PayloadKind::Binary, "1,100000")] {
        let r = run(&config(8, size, kind), &target(addr, "/echo"), RunOptions::default())
            .unwrap()
            .result;
        assert!(r.messages > 100, "{kind:?}: {} messages", r.messages);
        assert_eq!(r.mismatches, 0, "{kind:?}");
        assert!(r.errors.is_empty(), "{kind:?}: {:?}", r.errors);
        assert_eq!(r.connections.established, 8);
        assert_eq!(r.handshake_us.count, 8);
        // Our Close (1000) at the end, answered by the server.
        assert_eq!(r.close_codes.get("1000"), Some(&8), "{:?}", r.close_codes);
    }
}

#[test]
fn refused_handshake_is_one_clear_error() {
    let addr = server();
    let err =
        run(&config(2, "8", PayloadKind::Binary), &target(addr, "/reject"), RunOptions::default())
            .unwrap_err()
            .to_string();
    assert!(err.contains("refused the WebSocket handshake") && err.contains("403"), "{err}");
}

#[test]
fn connections_the_server_closes_are_counted_with_their_code() {
    let addr = server();
    let r =
        run(&config(3, "16", PayloadKind::Binary), &target(addr, "/close"), RunOptions::default())
            .unwrap()
            .result;
    assert_eq!(r.connections.lost, 3);
    assert_eq!(r.errors.get("closed_by_server"), Some(&3));
    assert_eq!(r.close_codes.get("1001"), Some(&3));
    assert_eq!(r.mismatches, 0);
}

/// Open loop with a cap above one: every slot the schedule put in the window is answered and
/// counted, no more and no fewer. (The server speaks first, with its 101: that must not start
/// traffic before the coordinator's "go", or the schedule is skewed by what went early.)
#[test]
fn open_loop_counts_every_scheduled_message_with_many_in_flight() {
    let addr = server();
    let mut c = config(20, "20", PayloadKind::Binary);
    c.in_flight = 16;
    c.pacing = Pacing::Open { rate: 4000.0 };
    let r = run(&c, &target(addr, "/echo"), RunOptions::default()).unwrap().result;
    // 4,000 slots fall in the one-second window, give or take the one on its edge.
    assert!(r.scheduled.abs_diff(4000) <= 1, "{} scheduled", r.scheduled);
    assert_eq!((r.messages, r.backlog, r.unanswered), (r.scheduled, 0, 0));
    assert_eq!(r.per_second.iter().map(|s| s.messages).sum::<u64>(), r.messages);
    assert_eq!(r.mismatches, 0);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

/// Every connection that came up was lost, closed by the churn, or open at the end.
fn assert_books_balance(r: &surge_loadgen::report::RunResult) {
    let c = r.connections;
    assert_eq!(c.established, c.lost + c.churned + c.open_at_end, "{c:?}");
}

#[test]
fn churn_against_the_embedded_server_balances_and_keeps_echoing() {
    let c = RunConfig {
        churn: Some(40.0),
        duration: Duration::from_millis(1500),
        server_threads: Some(1),
        ..config(16, "32", PayloadKind::Binary)
    };
    let r = run(&c, &Target::Embedded, RunOptions::default()).unwrap().result;
    let churn = r.churn.expect("churn stats");
    assert!(churn.closed > 0, "{churn:?}");
    assert_eq!(churn.closed, r.connections.churned);
    assert_eq!(churn.failed, 0, "{:?}", r.errors);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_books_balance(&r);
    // Every churned connection but those closed at the very end came back up.
    assert_eq!(r.connections.open_at_end, 16, "{:?}", r.connections);
    assert_eq!(churn.handshake_us.count, r.connections.established - 16);
    assert_eq!(r.mismatches, 0);
    assert!(r.messages > 100, "echo traffic went on: {}", r.messages);
}

/// A server that stops accepting handshakes: the reopens fail, are counted as failures under
/// churn and as rejected handshakes, and the open-loop books still balance (the slots of a
/// connection that never came back are never sent).
#[test]
fn churn_against_a_server_that_stops_accepting_counts_the_failed_reopens() {
    let addr = server();
    let c = RunConfig {
        churn: Some(40.0),
        pacing: Pacing::Open { rate: 800.0 },
        duration: Duration::from_millis(1500),
        ..config(8, "16", PayloadKind::Binary)
    };
    let r = run(&c, &target(addr, "/accept-20"), RunOptions::default()).unwrap().result;
    let churn = r.churn.expect("churn stats");
    assert!(churn.failed > 0, "{churn:?} {:?}", r.connections);
    assert_eq!(r.errors.get("handshake_rejected"), Some(&churn.failed), "{:?}", r.errors);
    assert_books_balance(&r);
    assert_eq!(r.connections.open_at_end, 8 - churn.failed, "{:?}", r.connections);
    assert_eq!(r.messages + r.backlog + r.unanswered, r.scheduled, "{r:?}");
    assert_eq!(r.mismatches, 0);
}

/// `--deflate` against Surge's echo server with deflate on (what `surge echo --deflate` runs):
/// every connection agrees, the echoes check out after inflating, and the ratio each way
/// comes from the connections' own counts.
#[test]
fn deflate_negotiates_with_surge_and_reports_the_ratio() {
    let c = RunConfig {
        server_threads: Some(1),
        deflate: Some(ClientOffer::default()),
        ..config(4, "137,16k", PayloadKind::Json)
    };
    let r = run(&c, &Target::Embedded, RunOptions::default()).unwrap().result;
    assert!(r.messages > 100, "{} messages", r.messages);
    assert_eq!(r.mismatches, 0);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.config.deflate.as_deref(), Some("permessage-deflate; client_max_window_bits"));
    let d = r.deflate.expect("deflate figures");
    assert_eq!((d.agreed, d.declined), (4, 0));
    assert!(d.sent_compressed >= r.messages, "{d:?}");
    assert!(d.received_compressed > 0 && d.received_compressed <= d.sent_compressed, "{d:?}");
    assert!(d.sent_payload > d.sent_wire && d.received_payload > d.received_wire, "{d:?}");
    // JSON records, 16 KiB of them in half the messages: well over 2x even without context
    // takeover (the default policy).
    assert!(d.sent_ratio > 2.0 && d.received_ratio > 2.0, "{d:?}");
    assert_eq!(d.sent_ratio, d.sent_payload as f64 / d.sent_wire as f64);
}

/// A server that ignores the offer: the connections run uncompressed, counted as declined.
#[test]
fn a_declined_deflate_offer_is_counted_and_the_run_goes_on() {
    let addr = server();
    let c =
        RunConfig { deflate: Some(ClientOffer::default()), ..config(3, "200", PayloadKind::Text) };
    let r = run(&c, &target(addr, "/echo"), RunOptions::default()).unwrap().result;
    assert!(r.messages > 100 && r.mismatches == 0 && r.errors.is_empty(), "{:?}", r.errors);
    let d = r.deflate.expect("deflate figures");
    assert_eq!((d.agreed, d.declined, d.sent_compressed, d.sent_payload), (0, 3, 0, 0));
    assert_eq!((d.sent_ratio, d.received_ratio), (0.0, 0.0));
}
