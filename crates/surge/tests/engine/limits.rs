//! Refusals at the door: connection cap, origin allow-list, the handler, bad requests, and
//! a port that is taken.

use std::time::Duration;

use surge::{Config, Server, ServerError};

use crate::client::{
    config, eventually, raw_exchange, status_of, upgrade_request, Client, Got, STOP,
};
use crate::harness::{start, TestHandler};

const GRACE: Duration = Duration::from_secs(2);

#[test]
fn past_max_connections_handshakes_get_503() {
    let (server, _) = start(config(2).max_connections(2).build().unwrap());
    let addr = server.local_addrs()[0];
    let mut first = Client::connect(addr);
    let _second = Client::connect(addr);
    assert_eq!(Client::try_connect(addr, None).err(), Some(503));
    first.close(1000);
    assert!(first.wait_eof(GRACE));
    eventually("a place frees up", || server.handle().connections() == 1);
    let mut third = Client::connect(addr);
    third.send_text("in");
    assert_eq!(third.recv(), Got::Text("in".into()));
    server.shutdown(STOP);
}

#[test]
fn origins_outside_the_allow_list_get_403() {
    let config = config(1).allowed_origins(["https://good.example"]).build().unwrap();
    let (server, _) = start(config);
    let addr = server.local_addrs()[0];
    assert_eq!(Client::try_connect(addr, Some("https://evil.example")).err(), Some(403));
    assert!(Client::try_connect(addr, Some("https://GOOD.example")).is_ok());
    assert!(Client::try_connect(addr, None).is_ok(), "no Origin: not a browser page");
    server.shutdown(STOP);
}

#[test]
fn bad_requests_and_handler_refusals_get_their_status() {
    let (server, _) = start(config(1).build().unwrap());
    let addr = server.local_addrs()[0];
    let refused = String::from_utf8(upgrade_request(addr)).unwrap().replace("GET / ", "GET /nope ");
    assert_eq!(status_of(&raw_exchange(addr, refused.as_bytes())), 404);
    let post = String::from_utf8(upgrade_request(addr)).unwrap().replace("GET", "POST");
    assert_eq!(status_of(&raw_exchange(addr, post.as_bytes())), 405);
    let no_key = String::from_utf8(upgrade_request(addr))
        .unwrap()
        .replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    assert_eq!(status_of(&raw_exchange(addr, no_key.as_bytes())), 400);
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    assert_eq!(status_of(&raw_exchange(addr, huge.as_bytes())), 431);
    let client = Client::try_connect(addr, None);
    assert!(client.is_ok(), "and a good request still gets 101");
    server.shutdown(STOP);
}

#[test]
fn a_port_already_taken_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = Config::builder().listen(addr).threads(2).build().unwrap();
    let err = Server::start(config, |_| TestHandler { shared: Default::default() }).unwrap_err();
    assert!(matches!(err, ServerError::Listen { .. }));
    assert_eq!(err.to_string(), format!("cannot listen on {addr}: address in use"));
}

#[test]
fn partial_messages_past_the_assembly_budget_get_1013() {
    use surge::surge_proto::frame::OpCode;
    let (server, shared) = start(config(1).assembly_budget(3 << 20).build().unwrap());
    let addr = server.local_addrs()[0];
    let half = vec![1u8; 3 << 19]; // 1.5 MiB: its buffer grows to 2 MiB
    let mut first = Client::connect(addr);
    first.write_frames(|ws, out| ws.send_frame(OpCode::BINARY, false, &half, out).unwrap());
    // A ping between fragments: its pong says the fragment was read.
    first.write_frames(|ws, out| ws.ping(b"read?", out).unwrap());
    assert_eq!(first.recv(), Got::Pong(b"read?".to_vec()));
    let mut second = Client::connect(addr);
    second.write_frames(|ws, out| ws.send_frame(OpCode::BINARY, false, &half, out).unwrap());
    assert_eq!(second.recv(), Got::Close(Some(1013), "busy".into()));
    // The first connection finishes its message as if nothing happened.
    first.write_frames(|ws, out| ws.send_frame(OpCode::CONTINUATION, true, b"end", out).unwrap());
    let Got::Binary(echo) = first.recv() else { panic!("the echo") };
    assert_eq!(echo.len(), half.len() + 3);
    eventually("on_close for the second", || shared.log().closed.iter().any(|c| c.1 == 1013));
    server.shutdown(STOP);
}
