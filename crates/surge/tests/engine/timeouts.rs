//! Handshake, idle and close timeouts, with short configured values.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::client::{config, eventually, Client, Got, PATIENCE, STOP};
use crate::harness::start;

const GRACE: Duration = Duration::from_secs(2);

#[test]
fn a_handshake_that_stalls_is_cut_off_at_the_handshake_timeout() {
    let timeout = Duration::from_millis(200);
    let (server, _) = start(config(1).handshake_timeout(timeout).build().unwrap());
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.local_addrs()[0]).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: slow").unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    let took = started.elapsed();
    assert!(answer.is_empty(), "no answer to half a request");
    assert!(took >= timeout && took < timeout * 10, "closed after {took:?}");
    server.shutdown(STOP);
}

#[test]
fn a_silent_connection_is_pinged_then_closed_with_1001() {
    let idle = Duration::from_millis(400);
    let (server, shared) = start(config(1).idle_timeout(Some(idle)).build().unwrap());
    let started = Instant::now();
    let mut client = Client::connect(server.local_addrs()[0]);
    client.answer = false;
    assert_eq!(client.recv(), Got::Ping(Vec::new()));
    let pinged = started.elapsed();
    assert!(pinged >= idle / 2 && pinged < idle * 3, "pinged after {pinged:?}");
    assert_eq!(client.recv(), Got::Close(Some(1001), "idle timeout".into()));
    let closed = started.elapsed();
    assert!(closed >= idle && closed < idle * 4, "closed after {closed:?}");
    client.answer = true;
    client.answer_now();
    assert!(client.wait_eof(GRACE));
    eventually("on_close ran", || !shared.log().closed.is_empty());
    assert_eq!(shared.log().closed[0].1, 1001);
    server.shutdown(STOP);
}

#[test]
fn a_connection_that_answers_pings_stays_open() {
    // The client has the second half of this to answer each ping: long enough for a test
    // thread on a loaded machine (150 ms was not always).
    let idle = Duration::from_secs(1);
    let (server, _) = start(config(1).idle_timeout(Some(idle)).build().unwrap());
    let mut client = Client::connect(server.local_addrs()[0]);
    let mut pings = 0;
    let until = Instant::now() + idle * 4;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match client.recv_within(left) {
            Some(Got::Ping(_)) => pings += 1,
            None => break,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 3, "{pings} pings");
    client.send_text("still here");
    assert_eq!(client.recv(), Got::Text("still here".into()));
    server.shutdown(STOP);
}

#[test]
fn a_peer_that_never_answers_our_close_is_dropped_at_the_close_timeout() {
    let close = Duration::from_millis(300);
    let (server, shared) = start(config(1).close_timeout(close).build().unwrap());
    let mut client = Client::connect(server.local_addrs()[0]);
    client.answer = false;
    client.send_text("close 4001");
    let started = Instant::now();
    assert_eq!(client.recv(), Got::Close(Some(4001), "asked".into()));
    assert!(client.wait_eof(PATIENCE));
    let took = started.elapsed();
    assert!(took >= close / 2 && took < close * 10, "dropped after {took:?}");
    eventually("on_close ran", || !shared.log().closed.is_empty());
    assert_eq!(shared.log().closed[0].1, 1006, "no close handshake: 1006");
    server.shutdown(STOP);
}
