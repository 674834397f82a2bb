//! Backpressure against a client that reads slowly: sends are handed back at the limit, and
//! `on_drain` comes once the output is under the low watermark, with nothing lost.

use super::{config, sim, Client, Got};
use crate::conn::SendResult;
use crate::BackpressurePolicy;

const LIMIT: usize = 64 * 1024;

/// The client's window: a quarter of the limit, so the flush is partial and the server
/// waits for writability.
const WINDOW: usize = 16 * 1024;

#[test]
fn sends_past_the_limit_are_handed_back_then_drained_as_the_client_reads() {
    let (mut sim, log) = sim(config().backpressure_limit(LIMIT).build().unwrap());
    let mut client = Client::open(&mut sim, WINDOW);
    client.send_text("flood 1024");
    sim.settle();
    let (sent, buffered, refusal) = log.seen().flood.unwrap();
    assert_eq!(refusal, SendResult::Backpressure);
    assert_eq!(sent, LIMIT.div_ceil(1024 + 4), "queued while under the limit");
    assert_eq!(buffered, sent * (1024 + 4), "nothing written during the handler's call");
    let mut got = Vec::new();
    while got.len() <= sent {
        let before = got.len();
        got.extend(client.recv());
        sim.settle();
        assert!(got.len() > before || got.len() > sent, "the server stalled after {before}");
    }
    assert!(got[..sent].iter().all(|m| *m == Got::Binary(vec![7; 1024])));
    assert_eq!(got[sent..], [Got::Text("drained".into())], "on_drain after the hand-back");
    assert_eq!(log.seen().drains, 1);
}

#[test]
fn under_the_close_policy_the_connection_is_closed_with_1008() {
    let config = config()
        .backpressure_limit(LIMIT)
        .backpressure_policy(BackpressurePolicy::Close1008)
        .build()
        .unwrap();
    let (mut sim, log) = sim(config);
    let mut client = Client::open(&mut sim, WINDOW);
    client.send_text("flood 1024");
    sim.settle();
    let (sent, _, refusal) = log.seen().flood.unwrap();
    assert_eq!(refusal, SendResult::Closed);
    let mut got = Vec::new();
    while !got.last().is_some_and(|m| matches!(m, Got::Close(..))) {
        got.extend(client.recv());
        sim.settle();
    }
    assert_eq!(got.len(), sent + 1);
    assert_eq!(got[sent], Got::Close(Some(1008), "backpressure".into()));
    client.answer();
    sim.settle();
    assert!(client.gone());
    assert_eq!(log.seen().closes, [1008]);
}
