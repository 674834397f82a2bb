//! Graceful shutdown: 503 for handshakes, 1001 for open connections, queues drained, a
//! deadline kept, and a truthful report.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use surge::ShutdownReport;

use crate::client::{config, eventually, status_of, unread_by_server, Client, Got, PATIENCE};
use crate::harness::start;

#[test]
fn under_load_every_client_gets_1001_and_every_acknowledged_echo() {
    let clients = 16;
    let (server, shared) = start(config(2).build().unwrap());
    let addr = server.local_addrs()[0];
    let connected = Arc::new(Barrier::new(clients + 1));
    // Every client has had an echo back before the shutdown starts, however the threads
    // are scheduled on a busy machine.
    let echoed = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let connected = Arc::clone(&connected);
            let echoed = Arc::clone(&echoed);
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                client.send_text("whoami");
                let Got::Text(id) = client.recv() else { panic!("no id") };
                connected.wait();
                // Keep eight echoes in flight until the server says it is going away.
                let (mut sent, mut received) = (0u64, 0u64);
                loop {
                    while client.can_send() && sent - received < 8 {
                        client.send_text(&sent.to_string());
                        sent += 1;
                    }
                    match client.recv() {
                        Got::Text(text) => {
                            assert_eq!(text, received.to_string(), "echoes in order");
                            received += 1;
                            if received == 1 {
                                echoed.wait();
                            }
                        }
                        Got::Close(code, _) => {
                            assert_eq!(code, Some(1001));
                            break;
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                assert!(client.wait_eof(PATIENCE), "TCP closed after the close handshake");
                (id, received)
            })
        })
        .collect();
    connected.wait();
    echoed.wait();
    // A handshake in progress when the shutdown starts.
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let half_addr = half.local_addr().unwrap();
    let half_answer = std::thread::spawn(move || {
        half.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut answer = vec![0; 256];
        let n = half.read(&mut answer).unwrap();
        answer.truncate(n);
        answer // dropping `half` ends the server's lingering close
    });
    eventually("the server read the half handshake", || {
        unread_by_server(addr, half_addr) == Some(0)
    });

    let report = server.handle().shutdown(Duration::from_secs(10));
    assert_eq!(report, ShutdownReport { closed_cleanly: clients, forced: 0 });
    assert_eq!(status_of(&half_answer.join().unwrap()), 503);
    for thread in threads {
        let (id, received) = thread.join().unwrap();
        let id = shared.id(&id);
        let log = shared.log();
        let (_, code, echoed) = *log.closed.iter().find(|c| c.0 == id).unwrap();
        assert_eq!(code, 1001, "the client echoed our code");
        assert_eq!(echoed, received, "every echo the server sent before its Close arrived");
        assert!(received > 0);
    }
    server.join();
}

#[test]
fn peers_that_ignore_the_close_are_forced_at_the_deadline() {
    let (server, _) = start(config(1).build().unwrap());
    let mut silent = Client::connect(server.local_addrs()[0]);
    silent.answer = false;
    let mut polite = Client::connect(server.local_addrs()[0]);
    let polite = std::thread::spawn(move || {
        assert_eq!(polite.recv(), Got::Close(Some(1001), "server shutting down".into()));
        assert!(polite.wait_eof(PATIENCE));
    });
    let grace = Duration::from_millis(400);
    let started = Instant::now();
    let report = server.shutdown(grace);
    let took = started.elapsed();
    assert_eq!(report, ShutdownReport { closed_cleanly: 1, forced: 1 });
    assert!(took >= grace && took < grace * 5, "shutdown took {took:?}");
    polite.join().unwrap();
    assert_eq!(silent.recv(), Got::Close(Some(1001), "server shutting down".into()));
    assert!(silent.wait_eof(PATIENCE));
}

#[test]
fn a_handler_can_shut_the_server_down_without_waiting_for_itself() {
    let (server, _) = start(config(2).build().unwrap());
    let mut client = Client::connect(server.local_addrs()[0]);
    client.send_text("shutdown");
    assert_eq!(client.recv(), Got::Close(Some(1001), "server shutting down".into()));
    assert!(client.wait_eof(PATIENCE));
    // Another thread still gets the report.
    let report = server.shutdown(Duration::from_secs(5));
    assert_eq!(report, ShutdownReport { closed_cleanly: 1, forced: 0 });
}
