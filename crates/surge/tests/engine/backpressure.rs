//! Backpressure against clients that stop reading: memory stays at the limit, sends are
//! handed back or the connection closed with 1008, and nothing is dropped silently.

use std::io::Write;
use std::time::Duration;

use surge::surge_proto::connection::{Connection, Limits};
use surge::{BackpressurePolicy, Message, SendResult};

use crate::client::{config, eventually, unread_by_server, Client, Got, STOP};
use crate::harness::start;

const GRACE: Duration = Duration::from_secs(2);
const LIMIT: usize = 64 * 1024;

#[test]
fn sends_past_the_limit_are_handed_back_then_drained() {
    let (server, shared) = start(config(1).backpressure_limit(LIMIT).build().unwrap());
    let mut client = Client::connect(server.local_addrs()[0]);
    client.send_text("flood 1024");
    eventually("the flood ran", || shared.log().flood.is_some());
    let (sent, buffered, result) = shared.log().flood.unwrap();
    assert_eq!(result, SendResult::Backpressure);
    assert!((LIMIT..LIMIT + 1024 + 14).contains(&buffered), "{buffered} bytes held");
    assert_eq!(sent, LIMIT.div_ceil(1024 + 4));
    for _ in 0..sent {
        assert_eq!(client.recv(), Got::Binary(vec![7; 1024]));
    }
    assert_eq!(client.recv(), Got::Text("drained".into()), "on_drain after the hand-back");
    assert_eq!(shared.log().drained, 1);
    server.shutdown(STOP);
}

#[test]
fn under_the_close_policy_the_connection_is_closed_with_1008() {
    let config = config(1)
        .backpressure_limit(LIMIT)
        .backpressure_policy(BackpressurePolicy::Close1008)
        .build()
        .unwrap();
    let (server, shared) = start(config);
    let mut client = Client::connect(server.local_addrs()[0]);
    client.send_text("flood 1024");
    eventually("the flood ran", || shared.log().flood.is_some());
    let (sent, _, result) = shared.log().flood.unwrap();
    assert_eq!(result, SendResult::Closed);
    for _ in 0..sent {
        assert_eq!(client.recv(), Got::Binary(vec![7; 1024]));
    }
    assert_eq!(client.recv(), Got::Close(Some(1008), "backpressure".into()));
    assert!(client.wait_eof(GRACE));
    server.shutdown(STOP);
}

#[test]
fn messages_from_other_threads_to_a_reader_that_stalls_are_handed_back_not_dropped() {
    let (server, shared) = start(config(1).backpressure_limit(4 * LIMIT).build().unwrap());
    let mut client = Client::connect(server.local_addrs()[0]);
    client.send_text("whoami");
    let Got::Text(me) = client.recv() else { panic!() };
    let id = shared.id(&me);
    // The client reads nothing while 25 MiB are sent at it: more than the kernel buffers.
    let total = 400;
    for n in 0..total {
        let mut payload = vec![0u8; LIMIT];
        payload[..4].copy_from_slice(&(n as u32).to_be_bytes());
        server.handle().send(id, payload.into()).unwrap();
    }
    eventually("refusals", || shared.log().refused > 0);
    // Broadcasts meet the same limit: shared frames are handed back too.
    let broadcasts = 20;
    for n in total..total + broadcasts {
        let mut payload = vec![0u8; LIMIT];
        payload[..4].copy_from_slice(&(n as u32).to_be_bytes());
        server.handle().broadcast(payload.into()).unwrap();
    }
    // Every message is delivered or handed back: read until the two add up, each read
    // bounded (a message dropped silently stalls it), then check nothing else came.
    let expected = total + broadcasts;
    let mut received = 0;
    let mut last = None;
    let next_binary = |client: &mut Client| loop {
        match client.recv() {
            Got::Binary(payload) => return u32::from_be_bytes(payload[..4].try_into().unwrap()),
            Got::Text(text) if text == "drained" => {}
            other => panic!("{other:?}"),
        }
    };
    while received + shared.log().refused < expected {
        let n = next_binary(&mut client);
        assert!(last.is_none_or(|last| n > last), "in order");
        last = Some(n);
        received += 1;
    }
    // The connection's loop handles commands in order: once this one arrives, nothing sent
    // before it is still on its way.
    server.handle().send(id, Message::Binary(&u32::MAX.to_be_bytes()).into()).unwrap();
    assert_eq!(next_binary(&mut client), u32::MAX, "nothing past the expected count");
    let (refused, max_buffered) = {
        let log = shared.log();
        (log.refused, log.max_buffered)
    };
    assert!(max_buffered <= 4 * LIMIT + LIMIT + 14, "held {max_buffered} bytes");
    assert_eq!(received + refused, total + broadcasts, "every message delivered or handed back");
    server.shutdown(STOP);
}

#[test]
fn an_echo_client_that_stops_reading_pauses_the_server_and_loses_nothing() {
    let (server, shared) = start(config(1).backpressure_limit(LIMIT).build().unwrap());
    let mut client = Client::connect_small_buffers(server.local_addrs()[0]);
    let mut writer = client.stream().try_clone().unwrap();
    let count = 2048;
    let size = 16 * 1024;
    // 32 MiB of echo requests, written without reading a byte back: the server must stop
    // reading (TCP then stops the writer) instead of buffering the echoes.
    let write = std::thread::spawn(move || {
        let mut encoder = Connection::client(Limits::default(), 7);
        let mut out = Vec::new();
        for n in 0..count {
            out.clear();
            let mut payload = vec![(n % 256) as u8; size];
            payload[..4].copy_from_slice(&(n as u32).to_be_bytes());
            encoder.send(Message::Binary(&payload), &mut out).unwrap();
            writer.write_all(&out).unwrap();
        }
    });
    // The server's output reaches the limit, so it stops reading: a whole message waits
    // unread in its socket.
    let (server_addr, client_addr) =
        (server.local_addrs()[0], client.stream().local_addr().unwrap());
    eventually("the server stops reading", || {
        shared.log().max_echo_buffered >= LIMIT
            && unread_by_server(server_addr, client_addr).is_some_and(|unread| unread >= size)
    });
    assert!(!write.is_finished(), "the writer should be held back by TCP flow control");
    for n in 0..count {
        let Got::Binary(payload) = client.recv() else { panic!("binary expected") };
        assert_eq!(payload.len(), size);
        assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), n as u32);
    }
    write.join().unwrap();
    let held = shared.log().max_echo_buffered;
    assert!(held <= LIMIT + size + 14, "held {held} bytes of echoes: the server kept reading");
    server.shutdown(STOP);
}

#[test]
fn a_reset_while_output_is_blocked_frees_the_connection() {
    let (server, shared) = start(config(1).backpressure_limit(LIMIT).build().unwrap());
    let mut client = Client::connect_small_buffers(server.local_addrs()[0]);
    client.send_text("whoami");
    let Got::Text(me) = client.recv() else { panic!() };
    let id = shared.id(&me);
    // Far more than the socket buffers hold, so the server's write blocks.
    for _ in 0..200 {
        server.handle().send(id, vec![0u8; LIMIT].into()).unwrap();
    }
    eventually("the output is blocked", || shared.log().refused > 0);
    socket2::SockRef::from(client.stream()).set_linger(Some(Duration::ZERO)).unwrap();
    drop(client); // a reset, not a close handshake
    eventually("the connection is gone", || shared.close_code(id) == Some(1006));
    assert_eq!(server.handle().connections(), 0);
    server.shutdown(STOP);
}
