//! Limits on one client: a connection past its message rate is paused (and resumed as its
//! allowance refills) or closed with 1008 while another connection is served as before; an
//! address past its connection cap gets 503 and past its handshake rate 429, before any
//! WebSocket state exists.

use std::time::Duration;

use super::{config, sim, Client, Got, REQUEST, TICK, WIDE};
use crate::config::{RateLimit, RatePolicy};

fn messages_per_second(rate: u32, policy: RatePolicy) -> RateLimit {
    RateLimit { messages_per_second: Some(rate), bytes_per_second: None, policy }
}

fn texts(count: usize, tag: &str) -> Vec<Got> {
    (0..count).map(|i| Got::Text(format!("{tag} {i}"))).collect()
}

#[test]
fn a_client_past_its_message_rate_is_paused_then_resumed_while_another_is_served() {
    let limit = messages_per_second(10, RatePolicy::Pause);
    let (mut sim, _) = sim(config().rate_limit(limit).build().unwrap());
    let mut greedy = Client::open(&mut sim, WIDE);
    let mut witness = Client::open(&mut sim, WIDE);
    for i in 0..30 {
        greedy.send_text(&format!("greedy {i}"));
    }
    sim.settle();
    // A second's allowance (10) and the one that spent it pass; the rest wait.
    let mut got = greedy.recv();
    assert_eq!(got, texts(11, "greedy"));
    witness.send_text("witness 0");
    sim.settle();
    assert_eq!(witness.recv(), texts(1, "witness"), "the other client is answered at once");
    // One message per 100 ms comes back: after half a second, five more.
    sim.advance(Duration::from_millis(500) + TICK);
    got.extend(greedy.recv());
    assert!((15..=17).contains(&got.len()), "{} after 0.5 s", got.len());
    sim.advance(Duration::from_secs(2));
    got.extend(greedy.recv());
    assert_eq!(got, texts(30, "greedy"), "all of it, in order, nothing lost");
    assert!(sim.handle.limit_stats().rate_paused >= 1);
}

#[test]
fn under_the_close_policy_a_client_past_its_rate_is_closed_with_1008() {
    let limit = messages_per_second(10, RatePolicy::Close1008);
    let (mut sim, log) = sim(config().rate_limit(limit).build().unwrap());
    let mut greedy = Client::open(&mut sim, WIDE);
    let mut witness = Client::open(&mut sim, WIDE);
    for i in 0..20 {
        greedy.send_text(&format!("greedy {i}"));
    }
    witness.send_text("witness 0");
    sim.settle();
    let mut expected = texts(11, "greedy");
    expected.push(Got::Close(Some(1008), "rate limit".into()));
    assert_eq!(greedy.recv(), expected);
    assert_eq!(witness.recv(), texts(1, "witness"));
    assert_eq!(log.seen().closes, [1008]);
    assert_eq!(sim.handle.limit_stats().rate_closed, 1);
}

/// The status line a raw handshake from the simulator's one address is answered with.
fn status_of_next_handshake(sim: &mut crate::backend::sim::Sim<super::Probe>) -> String {
    let peer = sim.connect(WIDE);
    peer.write(REQUEST);
    sim.settle();
    let answer = peer.take();
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

#[test]
fn an_address_at_its_connection_cap_gets_503_until_one_closes() {
    let (mut sim, _) = sim(config().max_connections_per_address(2).build().unwrap());
    let mut first = Client::open(&mut sim, WIDE);
    let _second = Client::open(&mut sim, WIDE);
    assert!(status_of_next_handshake(&mut sim).starts_with("HTTP/1.1 503 "));
    assert_eq!(sim.handle.limit_stats().address_full, 1);
    first.send_text("close 1000");
    sim.settle();
    assert_eq!(first.recv(), [Got::Close(Some(1000), "asked".into())]);
    first.answer();
    sim.settle();
    let status = status_of_next_handshake(&mut sim);
    assert!(status.starts_with("HTTP/1.1 101 "), "{status}");
}

#[test]
fn an_address_past_its_handshake_rate_gets_429_until_its_allowance_refills() {
    let (mut sim, _) = sim(config().handshakes_per_second_per_address(2).build().unwrap());
    assert!(status_of_next_handshake(&mut sim).starts_with("HTTP/1.1 101 "));
    assert!(status_of_next_handshake(&mut sim).starts_with("HTTP/1.1 101 "));
    assert!(status_of_next_handshake(&mut sim).starts_with("HTTP/1.1 429 "));
    sim.advance(Duration::from_millis(500) + TICK);
    assert!(status_of_next_handshake(&mut sim).starts_with("HTTP/1.1 101 "));
    assert_eq!(sim.handle.limit_stats().address_rate, 1);
}
