//! permessage-deflate (RFC 7692): decompression bombs, RSV1 where it does not belong,
//! corrupt and truncated streams, offers out of range.

use std::net::SocketAddr;

use surge::surge_proto::deflate::codec::{Compressor, CompressorConfig, TAIL};

use crate::case::Case;
use crate::server::MAX_MESSAGE;
use crate::wire::{frame, read_answer, tcp, Raw, Request, BINARY, CONT, FIN, PING, TEXT};

/// The RSV1 bit of a frame's first byte: "compressed".
const RSV1: u8 = 0x40;

/// The server's flags: permessage-deflate with the default (shared) policy.
const DEFLATE: &[(&str, &str)] = &[("--deflate", "shared")];

/// The peak memory a bomb may add: the message cap, a chunk, the loop's codecs (zlib-rs's
/// inflate state is 47 KiB), and the allocator's slack.
const BOMB_BUDGET: u64 = 2 << 20;

/// Upgrades offering permessage-deflate and checks that it was agreed.
fn deflate_connection(addr: SocketAddr) -> Raw {
    let request = Request::valid(addr)
        .add("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits");
    let mut stream = tcp(addr);
    std::io::Write::write_all(&mut stream, &request.bytes()).expect("send the request");
    let answer = read_answer(&mut stream).expect("an answer");
    crate::wire::assert_switching(&answer);
    let agreed = answer.header("Sec-WebSocket-Extensions").expect("deflate agreed");
    assert!(agreed.starts_with("permessage-deflate"), "{agreed}");
    Raw::over(stream, answer.rest)
}

/// The compressed payload of `message` (the tail removed), from a fresh window.
fn compressed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Compressor::new(CompressorConfig { no_context_takeover: true, ..CompressorConfig::default() })
        .unwrap()
        .compress(message, &mut out)
        .unwrap();
    out
}

/// A compressed payload that inflates to `mib` MiB of zeros from about a kilobyte per MiB,
/// built without compressing it all: after the first MiB the window holds zeros only, so
/// the blocks that compress the second MiB inflate to another MiB of zeros every time they
/// are repeated.
fn bomb(mib: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut deflate = Compressor::new(CompressorConfig::default()).unwrap();
    let (mut first, mut next) = (Vec::new(), Vec::new());
    deflate.compress(&zeros, &mut first).unwrap();
    deflate.compress(&zeros, &mut next).unwrap();
    let mut payload = first;
    for _ in 1..mib {
        payload.extend_from_slice(&TAIL);
        payload.extend_from_slice(&next);
    }
    payload
}

fn attack(case: &mut Case, what: &str, bytes: &[u8], code: u16, budget: Option<u64>) {
    let mut raw = deflate_connection(case.addr());
    raw.send_lossy(bytes);
    raw.expect_close(code);
    drop(raw);
    match budget {
        Some(budget) => case.check_within(what, budget),
        None => case.check(what),
    }
}

#[test]
fn a_decompression_bomb_gets_1009_with_memory_near_the_cap() {
    let mut case = Case::with(DEFLATE);
    let payload = bomb(48);
    assert!(payload.len() < MAX_MESSAGE, "the bomb fits one frame: {} B", payload.len());
    let bytes = frame(FIN | RSV1 | BINARY, &payload);
    attack(&mut case, "48 MiB of zeros in one frame", &bytes, 1009, Some(BOMB_BUDGET));
    // In fragments: the cap holds on the inflated size across them too.
    let (a, b) = payload.split_at(payload.len() / 2);
    let mut bytes = frame(RSV1 | TEXT, a);
    bytes.extend_from_slice(&frame(FIN | CONT, b));
    attack(&mut case, "the bomb in two fragments", &bytes, 1009, Some(BOMB_BUDGET));
}

#[test]
fn rsv1_without_the_extension_gets_1002() {
    let mut case = Case::with(DEFLATE);
    let mut raw = Raw::connect(case.addr());
    raw.send_lossy(&frame(FIN | RSV1 | TEXT, &compressed(b"not agreed")));
    raw.expect_close(1002);
    drop(raw);
    case.check("RSV1 on a connection that did not offer deflate");
}

#[test]
fn rsv1_on_a_continuation_or_a_control_frame_gets_1002() {
    let mut case = Case::with(DEFLATE);
    let payload = compressed(&b"fragmented and compressed ".repeat(20));
    let (a, b) = payload.split_at(payload.len() / 2);
    let mut bytes = frame(RSV1 | TEXT, a);
    bytes.extend_from_slice(&frame(FIN | RSV1 | CONT, b));
    attack(&mut case, "RSV1 on a continuation", &bytes, 1002, None);
    attack(&mut case, "RSV1 on a ping", &frame(FIN | RSV1 | PING, b"x"), 1002, None);
}

#[test]
fn a_corrupt_or_truncated_stream_gets_1002_and_bad_text_1007() {
    let mut case = Case::with(DEFLATE);
    let text = "a stream that ends in the middle of its block, ".repeat(40);
    let whole = compressed(text.as_bytes());
    let cut = &whole[..whole.len() / 2];
    attack(&mut case, "a stream ending mid-block", &frame(FIN | RSV1 | TEXT, cut), 1002, None);
    let garbage = [0xff; 64];
    attack(&mut case, "not DEFLATE at all", &frame(FIN | RSV1 | BINARY, &garbage), 1002, None);
    let bad_utf8 = compressed(&[b'o', b'k', 0xff, 0xfe, b'!']);
    attack(
        &mut case,
        "text not UTF-8 once inflated",
        &frame(FIN | RSV1 | TEXT, &bad_utf8),
        1007,
        None,
    );
}

#[test]
fn offers_out_of_range_are_declined_and_the_next_one_taken() {
    let case = Case::with(DEFLATE);
    let answer_to = |offer: &str| {
        let request = Request::valid(case.addr()).add("Sec-WebSocket-Extensions", offer);
        let mut stream = tcp(case.addr());
        std::io::Write::write_all(&mut stream, &request.bytes()).expect("send the request");
        let answer = read_answer(&mut stream).expect("an answer");
        crate::wire::assert_switching(&answer);
        answer.header("Sec-WebSocket-Extensions").map(str::to_owned)
    };
    assert_eq!(answer_to("permessage-deflate; server_max_window_bits=7"), None);
    assert_eq!(answer_to("permessage-deflate; client_max_window_bits=16"), None);
    assert_eq!(answer_to("permessage-deflate; server_max_window_bits"), None, "needs a value");
    assert_eq!(answer_to("permessage-deflate; server_no_context_takeover=1"), None);
    assert_eq!(answer_to("permessage-deflate; x-unknown"), None);
    assert_eq!(
        answer_to("permessage-deflate; server_max_window_bits=7, permessage-deflate").as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    );
}
