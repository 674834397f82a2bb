//! Echo of every size and shape, across loops.

use std::collections::HashMap;
use std::time::Duration;

use surge::surge_proto::frame::OpCode;

use crate::client::{config, upgrade_request, Client, Got, STOP};
use crate::harness::start;

const GRACE: Duration = Duration::from_secs(2);

#[test]
fn text_binary_and_empty_messages_come_back_as_sent() {
    let (server, _) = start(config(2).build().unwrap());
    let mut client = Client::connect(server.local_addrs()[0]);
    client.send_text("hello");
    assert_eq!(client.recv(), Got::Text("hello".into()));
    client.send_text("héllo wörld ✓");
    assert_eq!(client.recv(), Got::Text("héllo wörld ✓".into()));
    client.send_binary(&[0, 1, 2, 255]);
    assert_eq!(client.recv(), Got::Binary(vec![0, 1, 2, 255]));
    client.send_text("");
    assert_eq!(client.recv(), Got::Text(String::new()));
    client.send_binary(&[]);
    assert_eq!(client.recv(), Got::Binary(Vec::new()));
    client.close(1000);
    assert_eq!(client.recv(), Got::Close(Some(1000), String::new()));
    assert!(client.wait_eof(GRACE), "the server closes TCP after the close handshake");
    assert_eq!(server.shutdown(GRACE).forced, 0);
}

#[test]
fn one_and_sixteen_mib_messages_come_back_whole() {
    let (server, _) = start(config(1).build().unwrap());
    let mut client = Client::connect(server.local_addrs()[0]);
    let one: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    client.send_binary(&one);
    assert_eq!(client.recv(), Got::Binary(one));
    let text = "x".repeat(1 << 20);
    client.send_text(&text);
    assert_eq!(client.recv(), Got::Text(text));
    let sixteen: Vec<u8> = (0..16 << 20).map(|i| (i % 253) as u8).collect();
    client.send_binary(&sixteen);
    assert_eq!(client.recv(), Got::Binary(sixteen));
    server.shutdown(STOP);
}

#[test]
fn fragmented_and_pipelined_messages_keep_their_order() {
    let (server, _) = start(config(1).build().unwrap());
    let mut client = Client::connect(server.local_addrs()[0]);
    let long = "fragmented ✓ ".repeat(5000);
    client.send_fragments(&long, 7);
    assert_eq!(client.recv(), Got::Text(long));
    let batch: Vec<String> = (0..2000).map(|i| format!("message {i}")).collect();
    client.send_batch(&batch);
    for text in batch {
        assert_eq!(client.recv(), Got::Text(text));
    }
    server.shutdown(STOP);
}

/// A handshake and frames that arrive a few bytes at a time go through the engine's held
/// input (partial head) and assembly (partial message) paths.
#[test]
fn a_handshake_and_a_message_trickled_in_pieces_still_echo() {
    use std::io::{Read, Write};
    use surge::surge_proto::connection::{Connection, Event, Limits};
    use surge::Message;

    let (server, _) = start(config(1).build().unwrap());
    let addr = server.local_addrs()[0];
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let trickle = |stream: &mut std::net::TcpStream, bytes: &[u8], piece: usize| {
        for chunk in bytes.chunks(piece) {
            stream.write_all(chunk).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    trickle(&mut stream, &upgrade_request(addr), 7);
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));

    let mut client = Connection::client(Limits::default(), 3);
    let text = "pieces ✓ ".repeat(300);
    let mut frames = Vec::new();
    client.send(Message::Text(&text), &mut frames).unwrap();
    client.send(Message::Binary(b"second"), &mut frames).unwrap();
    trickle(&mut stream, &frames, 97);

    let (mut buf, mut assembly, mut got) = (vec![0u8; 65536], Vec::new(), Vec::new());
    while got.len() < 2 {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0);
        let mut used = 0;
        while used < n {
            let (step, event) = client.read(&mut buf[used..n], &mut assembly);
            used += step;
            match event {
                Some(Event::Message(Message::Text(t))) => got.push(t.as_bytes().to_vec()),
                Some(Event::Message(Message::Binary(b))) => got.push(b.to_vec()),
                Some(other) => panic!("{other:?}"),
                None => break,
            }
        }
    }
    assert_eq!(got, [text.into_bytes(), b"second".to_vec()]);
    server.shutdown(STOP);
}

/// Autobahn 2.10 and 5.6: every ping of a batch is answered, each in wire order.
#[test]
fn pongs_go_out_in_wire_order_one_per_ping() {
    let (server, _) = start(config(1).build().unwrap());
    let mut client = Client::connect(server.local_addrs()[0]);
    client.write_frames(|ws, out| {
        ws.send_frame(OpCode::TEXT, false, b"frag", out).unwrap();
        ws.ping(b"between", out).unwrap();
        ws.send_frame(OpCode::CONTINUATION, true, b"ment", out).unwrap();
        for i in 0..10 {
            ws.ping(format!("ping {i}").as_bytes(), out).unwrap();
        }
    });
    assert_eq!(client.recv(), Got::Pong(b"between".to_vec()));
    assert_eq!(client.recv(), Got::Text("fragment".into()));
    for i in 0..10 {
        assert_eq!(client.recv(), Got::Pong(format!("ping {i}").into_bytes()));
    }
    server.shutdown(STOP);
}

/// Large replies may be written as they are sent instead of at the end of the loop turn; they
/// still go out in wire order behind the pong and the replies queued ahead of them.
#[test]
fn large_replies_keep_wire_order_with_pongs_and_small_replies() {
    let (server, _) = start(config(1).build().unwrap());
    let mut client = Client::connect(server.local_addrs()[0]);
    let big = |seed: u8, len: usize| (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    let (x, y, w): (Vec<u8>, Vec<u8>, Vec<u8>) = (big(3, 20_000), big(5, 17_000), big(7, 40_000));
    for _ in 0..3 {
        client.write_frames(|ws, out| {
            ws.ping(b"first", out).unwrap();
            ws.send(surge::Message::Binary(&x), out).unwrap();
            ws.send(surge::Message::Binary(&y), out).unwrap();
            ws.send(surge::Message::Text("small"), out).unwrap();
            ws.send(surge::Message::Binary(&w), out).unwrap();
        });
        assert_eq!(client.recv(), Got::Pong(b"first".to_vec()));
        assert_eq!(client.recv(), Got::Binary(x.clone()));
        assert_eq!(client.recv(), Got::Binary(y.clone()));
        assert_eq!(client.recv(), Got::Text("small".into()));
        assert_eq!(client.recv(), Got::Binary(w.clone()));
        // Alone in its read: the reply is written at once.
        client.send_binary(&x);
        assert_eq!(client.recv(), Got::Binary(x.clone()));
    }
    server.shutdown(STOP);
}

#[test]
fn many_connections_spread_over_every_loop_and_all_echo() {
    let loops = 4;
    let (server, _) = start(config(loops).build().unwrap());
    let addr = server.local_addrs()[0];
    let mut clients: Vec<Client> = (0..64).map(|_| Client::connect(addr)).collect();
    let mut per_loop = HashMap::new();
    for client in &mut clients {
        client.send_text("whoami");
        let Got::Text(id) = client.recv() else { panic!("no id") };
        *per_loop.entry(id.split(':').next().unwrap().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(per_loop.len(), loops, "connections per loop: {per_loop:?}");
    for round in 0..10 {
        for (i, client) in clients.iter_mut().enumerate() {
            client.send_text(&format!("{i}/{round}"));
        }
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(client.recv(), Got::Text(format!("{i}/{round}")));
        }
    }
    let handle = server.handle().clone();
    let shutdown = std::thread::spawn(move || handle.shutdown(Duration::from_secs(10)));
    for client in &mut clients {
        assert_eq!(client.recv(), Got::Close(Some(1001), "server shutting down".into()));
        assert!(client.wait_eof(GRACE));
    }
    let report = shutdown.join().unwrap();
    assert_eq!((report.closed_cleanly, report.forced), (64, 0));
    server.join();
}

#[test]
fn without_reuse_port_one_loop_deals_connections_round_robin() {
    let loops = 3;
    let (server, _) = start(config(loops).reuse_port(false).build().unwrap());
    let addr = server.local_addrs()[0];
    let mut per_loop = HashMap::new();
    let mut clients = Vec::new();
    for _ in 0..9 {
        let mut client = Client::connect(addr);
        client.send_text("whoami");
        let Got::Text(id) = client.recv() else { panic!("no id") };
        *per_loop.entry(id.split(':').next().unwrap().to_owned()).or_insert(0) += 1;
        client.send_text("still echoing");
        assert_eq!(client.recv(), Got::Text("still echoing".into()));
        clients.push(client);
    }
    assert_eq!(per_loop.values().copied().collect::<Vec<_>>(), [3, 3, 3], "{per_loop:?}");
    server.shutdown(STOP);
}

#[test]
fn ipv4_and_ipv6_listeners_side_by_side() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let config = config(2).listen("[::1]:0".parse().unwrap()).build().unwrap();
    let (server, _) = start(config);
    let addrs = server.local_addrs().to_vec();
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6());
    for addr in addrs {
        let mut client = Client::connect(addr);
        client.send_text("over both");
        assert_eq!(client.recv(), Got::Text("over both".into()));
    }
    server.shutdown(STOP);
}
