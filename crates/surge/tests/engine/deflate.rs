//! permessage-deflate over loopback: what each memory policy agrees to, compressed echo both
//! ways, fragmented compressed messages, broadcast to a mix of connections.

use surge::surge_proto::deflate::codec::{Compressor, CompressorConfig};
use surge::surge_proto::deflate::{ClientOffer, Params};
use surge::surge_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use surge::surge_proto::mask::apply_mask;
use surge::{DeflateConfig, DeflateMemory, OwnedMessage};

use crate::client::{config, Client, Got, STOP};
use crate::harness::start;

/// A JSON-like text that compresses, longer than the default threshold.
fn json(i: usize) -> String {
    format!(
        r#"{{"type":"trade","symbol":"BTC-USD","price":{},"size":0.{:04},"side":"buy","seq":{i}}}"#,
        40000 + i,
        i % 10_000
    )
}

fn per_connection(window_bits: u8, mem_level: u8) -> DeflateConfig {
    DeflateConfig {
        memory: DeflateMemory::PerConnection { window_bits, mem_level },
        ..DeflateConfig::default()
    }
}

/// Echoes text and binary of several sizes; each reply must be inflated by the client, so
/// the server compressed it.
fn echo_compressed(client: &mut Client) {
    let before = client.deflate_stats();
    let big = "a fairly repetitive line of text, ".repeat(500);
    let binary: Vec<u8> = (0..20_000).map(|i| (i % 7) as u8).collect();
    for i in 0..20 {
        client.send_text(&json(i));
        assert_eq!(client.recv(), Got::Text(json(i)));
    }
    client.send_text(&big);
    assert_eq!(client.recv(), Got::Text(big));
    client.send_binary(&binary);
    assert_eq!(client.recv(), Got::Binary(binary));
    // Under the threshold: sent as it is, and still echoed.
    client.send_text("tiny");
    assert_eq!(client.recv(), Got::Text("tiny".into()));
    let after = client.deflate_stats();
    assert_eq!(after.messages_compressed - before.messages_compressed, 23, "client sent");
    assert_eq!(after.messages_inflated - before.messages_inflated, 22, "server compressed");
    assert!(
        after.bytes_after - before.bytes_after < (after.bytes_before - before.bytes_before) / 4
    );
}

#[test]
fn the_shared_policy_agrees_on_no_context_takeover_and_echoes_compressed() {
    let (server, _) = start(config(1).deflate(DeflateConfig::default()).build().unwrap());
    let mut client = Client::connect_deflate(server.local_addrs()[0], ClientOffer::default());
    assert_eq!(
        client.deflate(),
        Some(Params {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..Params::default()
        })
    );
    echo_compressed(&mut client);
    client.close(1000);
    assert_eq!(client.recv(), Got::Close(Some(1000), String::new()));
    server.shutdown(STOP);
}

#[test]
fn the_per_connection_policy_agrees_on_its_window_with_context_takeover() {
    let (server, _) = start(config(2).deflate(per_connection(12, 4)).build().unwrap());
    let addr = server.local_addrs()[0];
    let mut client = Client::connect_deflate(addr, ClientOffer::default());
    assert_eq!(
        client.deflate(),
        Some(Params {
            server_max_window_bits: Some(12),
            client_max_window_bits: Some(12),
            ..Params::default()
        })
    );
    echo_compressed(&mut client);
    // Context takeover: a message repeated compresses to almost nothing the second time.
    client.send_text(&json(1));
    assert_eq!(client.recv(), Got::Text(json(1)));
    let before = client.deflate_stats();
    client.send_text(&json(1));
    assert_eq!(client.recv(), Got::Text(json(1)));
    let after = client.deflate_stats();
    assert!(after.inflated_from - before.inflated_from < 20, "{before:?} -> {after:?}");
    // A client that does without client_max_window_bits keeps its 15-bit window.
    let offer = ClientOffer { client_max_window_bits: None, ..ClientOffer::default() };
    let mut plain = Client::connect_deflate(addr, offer);
    assert_eq!(plain.deflate().unwrap().client_max_window_bits, None);
    echo_compressed(&mut plain);
    server.shutdown(STOP);
}

#[test]
fn a_client_may_ask_for_no_context_takeover_under_the_per_connection_policy() {
    let (server, _) = start(config(1).deflate(per_connection(15, 8)).build().unwrap());
    let offer = ClientOffer {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..ClientOffer::default()
    };
    let mut client = Client::connect_deflate(server.local_addrs()[0], offer);
    let params = client.deflate().unwrap();
    assert!(params.server_no_context_takeover && params.client_no_context_takeover);
    echo_compressed(&mut client);
    server.shutdown(STOP);
}

#[test]
fn without_the_policy_or_the_offer_nothing_is_compressed() {
    let (server, _) = start(config(1).build().unwrap());
    let mut client = Client::connect_deflate(server.local_addrs()[0], ClientOffer::default());
    assert_eq!(client.deflate(), None, "deflate is off by default");
    client.send_text(&json(0));
    assert_eq!(client.recv(), Got::Text(json(0)));
    assert_eq!(client.deflate_stats().messages_inflated, 0);
    server.shutdown(STOP);

    let (server, _) = start(config(1).deflate(DeflateConfig::default()).build().unwrap());
    let mut client = Client::connect(server.local_addrs()[0]);
    client.send_text(&json(0));
    assert_eq!(client.recv(), Got::Text(json(0)), "uncompressed for a client that did not offer");
    server.shutdown(STOP);
}

/// A compressed message in `pieces` masked frames (RSV1 on the first only), in one write.
fn send_compressed_fragments(client: &mut Client, text: &str, pieces: usize, takeover: bool) {
    let config = CompressorConfig { no_context_takeover: !takeover, ..CompressorConfig::default() };
    let mut payload = Vec::new();
    Compressor::new(config).unwrap().compress(text.as_bytes(), &mut payload).unwrap();
    let chunk = payload.len().div_ceil(pieces);
    let parts: Vec<&[u8]> = payload.chunks(chunk).collect();
    client.write_frames(|_, out| {
        for (i, part) in parts.iter().enumerate() {
            let key = [1, 2, 3, i as u8];
            let header = FrameHeader {
                fin: i + 1 == parts.len(),
                rsv: if i == 0 { 0b100 } else { 0 },
                opcode: if i == 0 { OpCode::TEXT } else { OpCode::CONTINUATION },
                mask: Some(key),
                payload_len: part.len() as u64,
            };
            let mut encoded = [0; MAX_HEADER_LEN];
            let len = header.encode(&mut encoded);
            out.extend_from_slice(&encoded[..len]);
            let start = out.len();
            out.extend_from_slice(part);
            apply_mask(&mut out[start..], key, 0);
        }
    });
}

#[test]
fn a_compressed_message_in_fragments_is_inflated_whole_under_either_policy() {
    let text = "fragments of a compressed message ✓ ".repeat(400);
    for deflate in [DeflateConfig::default(), per_connection(15, 8)] {
        let (server, _) = start(config(1).deflate(deflate).build().unwrap());
        let offer = ClientOffer { client_max_window_bits: None, ..ClientOffer::default() };
        let mut client = Client::connect_deflate(server.local_addrs()[0], offer);
        let takeover = !client.deflate().unwrap().client_no_context_takeover;
        for pieces in [1, 2, 7] {
            send_compressed_fragments(&mut client, &text, pieces, takeover);
            assert_eq!(client.recv(), Got::Text(text.clone()), "{deflate:?}, {pieces} pieces");
        }
        server.shutdown(STOP);
    }
}

#[test]
fn a_broadcast_reaches_compressed_own_stream_and_plain_connections_alike() {
    let (server, _) = start(config(2).deflate(per_connection(12, 4)).build().unwrap());
    let addr = server.local_addrs()[0];
    let shared_offer = ClientOffer { server_no_context_takeover: true, ..ClientOffer::default() };
    let mut clients = vec![
        Client::connect_deflate(addr, shared_offer),
        Client::connect_deflate(addr, shared_offer),
        Client::connect_deflate(addr, ClientOffer::default()),
        Client::connect_deflate(addr, ClientOffer::default()),
        Client::connect(addr),
    ];
    // Every connection is open on its loop before the broadcast.
    for client in &mut clients {
        client.send_text("ready");
        assert_eq!(client.recv(), Got::Text("ready".into()));
    }
    for i in 0..5 {
        server.handle().broadcast(OwnedMessage::Text(json(i))).unwrap();
        server.handle().broadcast(OwnedMessage::Binary(vec![i as u8; 3000])).unwrap();
    }
    for client in &mut clients {
        for i in 0..5 {
            assert_eq!(client.recv(), Got::Text(json(i)));
            assert_eq!(client.recv(), Got::Binary(vec![i as u8; 3000]));
        }
    }
    for client in &clients[..4] {
        assert_eq!(client.deflate_stats().messages_inflated, 10, "compressed for deflate clients");
    }
    assert_eq!(clients[4].deflate_stats().messages_inflated, 0);
    server.shutdown(STOP);
}
