//! Sending, broadcasting and closing from other threads, racing the loops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surge::{CloseCode, HandleError, OwnedMessage};

use crate::client::{config, eventually, Client, Got, STOP};
use crate::harness::start;

const GRACE: Duration = Duration::from_secs(2);

fn whoami(client: &mut Client) -> String {
    client.send_text("whoami");
    match client.recv() {
        Got::Text(id) => id,
        other => panic!("expected an id, got {other:?}"),
    }
}

#[test]
fn sends_and_broadcasts_from_many_threads_all_arrive_in_order() {
    let (server, shared) = start(config(2).build().unwrap());
    let addr = server.local_addrs()[0];
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    let ids: Vec<_> = clients.iter_mut().map(|c| shared.id(&whoami(c))).collect();
    let senders: Vec<_> = (0..4)
        .map(|thread| {
            let handle = server.handle().clone();
            let ids = ids.clone();
            std::thread::spawn(move || {
                for n in 0..250 {
                    for &id in &ids {
                        handle.send(id, format!("{thread}:{n}").into()).unwrap();
                    }
                    if n % 50 == 0 {
                        handle.broadcast(format!("all {thread}:{n}").into()).unwrap();
                    }
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    for client in &mut clients {
        let mut next = [0; 4];
        let mut broadcasts = 0;
        while next.iter().sum::<usize>() < 1000 || broadcasts < 20 {
            let Got::Text(text) = client.recv() else { panic!("text expected") };
            if let Some(rest) = text.strip_prefix("all ") {
                broadcasts += 1;
                assert!(rest.contains(':'));
                continue;
            }
            let (thread, n) = text.split_once(':').unwrap();
            let thread: usize = thread.parse().unwrap();
            assert_eq!(n.parse::<usize>().unwrap(), next[thread], "order from thread {thread}");
            next[thread] += 1;
        }
    }
    server.shutdown(STOP);
}

#[test]
fn sends_racing_connection_churn_never_reach_the_wrong_connection() {
    let (server, shared) = start(config(2).build().unwrap());
    let addr = server.local_addrs()[0];
    let stop = Arc::new(AtomicBool::new(false));
    // Senders aim at every id ever opened, live or gone, tagging each message with it.
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let handle = server.handle().clone();
            let shared = shared.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ids = shared.log().opened.clone();
                    for id in ids {
                        handle.send(id, format!("for {id}").into()).unwrap();
                        sent += 1;
                    }
                    std::thread::yield_now();
                }
                sent
            })
        })
        .collect();
    for _ in 0..40 {
        let mut client = Client::connect(addr);
        // Messages for this connection may come ahead of the answer to `whoami`.
        client.send_text("whoami");
        let mut early = Vec::new();
        let me = loop {
            match client.recv() {
                Got::Text(text) if text.starts_with("for ") => early.push(text),
                Got::Text(id) => break id,
                other => panic!("{other:?}"),
            }
        };
        for text in early {
            assert_eq!(text, format!("for {me}"), "a message for someone else");
        }
        for _ in 0..3 {
            if let Some(Got::Text(text)) = client.recv_within(Duration::from_millis(5)) {
                assert_eq!(text, format!("for {me}"), "a message for someone else");
            }
        }
        client.close(1000);
        while let Some(got) = client.recv_within(Duration::from_secs(5)) {
            match got {
                Got::Text(text) => assert_eq!(text, format!("for {me}")),
                Got::Close(..) => break,
                other => panic!("{other:?}"),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = senders.into_iter().map(|s| s.join().unwrap()).sum();
    assert!(sent > 0);
    server.shutdown(STOP);
}

#[test]
fn a_stale_id_is_refused_and_never_reaches_the_slots_next_tenant() {
    let (server, shared) = start(config(1).build().unwrap());
    let addr = server.local_addrs()[0];
    let mut first = Client::connect(addr);
    let old = shared.id(&whoami(&mut first));
    first.close(1000);
    assert_eq!(first.recv(), Got::Close(Some(1000), String::new()));
    assert!(first.wait_eof(GRACE));
    eventually("the first connection is gone", || shared.close_code(old).is_some());

    let mut second = Client::connect(addr);
    let new = shared.id(&whoami(&mut second));
    let (old_text, new_text) = (old.to_string(), new.to_string());
    assert_eq!(old_text.split('.').next(), new_text.split('.').next(), "same slot reused");
    assert_ne!(old, new);

    let handle = server.handle();
    handle.send(old, "for the old tenant".into()).unwrap();
    handle.send(new, "for the new tenant".into()).unwrap();
    // Commands are handled in order: had the first been delivered it would come first.
    assert_eq!(second.recv(), Got::Text("for the new tenant".into()));
    assert_eq!(second.recv_within(Duration::from_millis(200)), None);
    server.shutdown(STOP);
}

#[test]
fn close_from_another_thread_runs_the_close_handshake() {
    let (server, shared) = start(config(1).build().unwrap());
    let mut client = Client::connect(server.local_addrs()[0]);
    let id = shared.id(&whoami(&mut client));
    let handle = server.handle().clone();
    assert_eq!(
        handle.close(id, CloseCode::ABNORMAL, "no"),
        Err(HandleError::InvalidCloseCode(CloseCode::ABNORMAL))
    );
    handle.close(id, CloseCode::from(4000), "bye").unwrap();
    assert_eq!(client.recv(), Got::Close(Some(4000), "bye".into()));
    assert!(client.wait_eof(GRACE));
    eventually("on_close ran", || shared.close_code(id) == Some(4000));
    assert_eq!(handle.connections(), 0);
    server.shutdown(STOP);
    assert_eq!(handle.send(id, OwnedMessage::from("late")), Err(HandleError::Stopped));
}
