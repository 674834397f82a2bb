//! Handshake, idle and close timeouts, each at the instant the configuration names.

use std::time::Duration;

use super::{config, sim, Client, Got, REQUEST, TICK, WIDE};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_handshake_that_stalls_is_cut_off_at_the_handshake_timeout() {
    let (mut sim, _) = sim(config().handshake_timeout(ms(200)).build().unwrap());
    let peer = sim.connect(WIDE);
    peer.write(&REQUEST[..20]);
    sim.advance(ms(200) - TICK);
    assert!(!peer.server_gone(), "still waiting one tick before the timeout");
    sim.advance(TICK);
    assert!(peer.server_gone(), "dropped at {:?}", sim.elapsed());
    assert!(peer.take().is_empty(), "no answer to half a request");
}

/// A connection accepted late in a tick gets its whole timeout: deadlines round up to the
/// wheel, never down (they were the current tick plus the timeout's ticks, up to one early).
#[test]
fn a_handshake_accepted_mid_tick_is_not_cut_before_its_timeout() {
    let (mut sim, _) = sim(config().handshake_timeout(ms(200)).build().unwrap());
    sim.advance(TICK * 9 / 10);
    let peer = sim.connect(WIDE);
    peer.write(&REQUEST[..20]);
    sim.advance(ms(200) - TICK / 10);
    assert!(!peer.server_gone(), "dropped {:?} after it came", ms(200) - TICK / 10);
    sim.advance(TICK);
    assert!(peer.server_gone(), "still there {:?} after it came", ms(200) + TICK * 9 / 10);
}

#[test]
fn a_silent_connection_is_pinged_at_half_the_idle_timeout_then_closed_with_1001() {
    let (mut sim, log) = sim(config().idle_timeout(Some(ms(400))).build().unwrap());
    let mut client = Client::open(&mut sim, WIDE);
    sim.advance(ms(200) - TICK);
    assert_eq!(client.recv(), []);
    sim.advance(TICK);
    assert_eq!(client.recv(), [Got::Ping(Vec::new())], "the ping at {:?}", sim.elapsed());
    sim.advance(ms(200) - TICK);
    assert_eq!(client.recv(), []);
    sim.advance(TICK);
    assert_eq!(client.recv(), [Got::Close(Some(1001), "idle timeout".into())]);
    assert_eq!(log.seen().closes, [], "on_close waits for the close handshake");
    client.answer();
    sim.settle();
    assert!(client.gone());
    assert_eq!(log.seen().closes, [1001]);
}

#[test]
fn a_connection_that_answers_pings_stays_open() {
    let (mut sim, _) = sim(config().idle_timeout(Some(ms(300))).build().unwrap());
    let mut client = Client::open(&mut sim, WIDE);
    // Silence is measured from the last read: each pong restarts it, so a ping comes every
    // half idle timeout for as long as the client answers.
    for _ in 0..8 {
        sim.advance(ms(150) - TICK);
        assert_eq!(client.recv(), []);
        sim.advance(TICK);
        assert_eq!(client.recv(), [Got::Ping(Vec::new())], "at {:?}", sim.elapsed());
        client.answer();
        sim.settle();
    }
    client.send_text("still here");
    sim.settle();
    assert_eq!(client.recv(), [Got::Text("still here".into())]);
}

#[test]
fn a_peer_that_never_answers_our_close_is_dropped_at_the_close_timeout() {
    let (mut sim, log) = sim(config().close_timeout(ms(300)).build().unwrap());
    let mut client = Client::open(&mut sim, WIDE);
    client.send_text("close 4001");
    sim.settle();
    assert_eq!(client.recv(), [Got::Close(Some(4001), "asked".into())]);
    sim.advance(ms(300) - TICK);
    assert!(!client.gone());
    sim.advance(TICK);
    assert!(client.gone(), "dropped at {:?}", sim.elapsed());
    assert_eq!(log.seen().closes, [1006], "no close handshake: 1006");
}
