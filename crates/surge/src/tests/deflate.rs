//! permessage-deflate on the simulator: a broadcast is compressed once per compressor
//! configuration for the connections that share the loop's compressor, and once per
//! connection for those with context takeover; what the loop counts.

use super::*;
use crate::deflate::{DeflateConfig, DeflateMemory};
use crate::handle::Command;
use crate::outbox::SharedFrame;

const TEXT: &str = "a broadcast that compresses: the same words, the same words, the same words";

fn broadcast_to(clients: &mut [Client], sim: &mut Sim<Probe>) {
    sim.command(Command::Broadcast(SharedFrame::encode(Message::Text(TEXT))));
    sim.settle();
    for client in clients.iter_mut() {
        assert_eq!(client.recv(), vec![Got::Text(TEXT.into())]);
    }
}

#[test]
fn a_broadcast_is_compressed_once_for_every_connection_that_shares_the_compressor() {
    let (mut sim, _) = sim(config().deflate(DeflateConfig::default()).build().unwrap());
    let mut clients: Vec<Client> =
        (0..3).map(|_| Client::open_with(&mut sim, WIDE, Some(ClientOffer::default()))).collect();
    clients.push(Client::open(&mut sim, WIDE));
    broadcast_to(&mut clients, &mut sim);
    let stats = sim.deflate_stats();
    assert_eq!(stats.messages_compressed, 1, "{stats:?}");
    assert_eq!(stats.bytes_before, TEXT.len() as u64);
    assert!(stats.bytes_after < stats.bytes_before);
    let metrics = sim.metrics_text();
    for line in [
        "surge_deflate_messages_total{loop=\"0\",way=\"compressed\"} 1\n".to_owned(),
        format!(
            "surge_deflate_bytes_total{{loop=\"0\",way=\"compress_before\"}} {}\n",
            stats.bytes_before
        ),
        format!(
            "surge_deflate_bytes_total{{loop=\"0\",way=\"compress_after\"}} {}\n",
            stats.bytes_after
        ),
    ] {
        assert!(metrics.contains(&line), "no {line:?} in\n{metrics}");
    }
    // A client asking for a smaller window gets a frame of its own, shared by its like.
    let small = ClientOffer { server_max_window_bits: Some(10), ..ClientOffer::default() };
    clients.push(Client::open_with(&mut sim, WIDE, Some(small)));
    clients.push(Client::open_with(&mut sim, WIDE, Some(small)));
    broadcast_to(&mut clients, &mut sim);
    assert_eq!(sim.deflate_stats().messages_compressed, 3, "one per distinct config");
}

#[test]
fn connections_with_context_takeover_compress_a_broadcast_their_own_way() {
    let per_connection = DeflateConfig {
        memory: DeflateMemory::PerConnection { window_bits: 12, mem_level: 4 },
        ..DeflateConfig::default()
    };
    let (mut sim, _) = sim(config().deflate(per_connection).build().unwrap());
    let sharing = ClientOffer { server_no_context_takeover: true, ..ClientOffer::default() };
    let mut clients = vec![
        Client::open_with(&mut sim, WIDE, Some(ClientOffer::default())),
        Client::open_with(&mut sim, WIDE, Some(ClientOffer::default())),
        Client::open_with(&mut sim, WIDE, Some(sharing)),
        Client::open_with(&mut sim, WIDE, Some(sharing)),
    ];
    broadcast_to(&mut clients, &mut sim);
    assert_eq!(sim.deflate_stats().messages_compressed, 3, "two own streams, one shared");
    // The second time, the own streams refer back to the first: fewer bytes.
    let first = sim.deflate_stats();
    broadcast_to(&mut clients, &mut sim);
    let second = sim.deflate_stats();
    assert_eq!(second.messages_compressed - first.messages_compressed, 3);
    assert!(second.bytes_after - first.bytes_after < first.bytes_after, "{first:?} {second:?}");
}

#[test]
fn echo_through_the_shared_codecs_counts_both_ways() {
    let (mut sim, _) = sim(config().deflate(DeflateConfig::default()).build().unwrap());
    let mut client = Client::open_with(&mut sim, WIDE, Some(ClientOffer::default()));
    assert!(
        client.head.contains("Sec-WebSocket-Extensions: permessage-deflate"),
        "{}",
        client.head
    );
    for _ in 0..3 {
        client.send_text(TEXT);
        sim.settle();
        assert_eq!(client.recv(), vec![Got::Text(TEXT.into())]);
    }
    let stats = sim.deflate_stats();
    assert_eq!((stats.messages_inflated, stats.messages_compressed), (3, 3), "{stats:?}");
    assert_eq!(stats.inflated_to, 3 * TEXT.len() as u64);
}
