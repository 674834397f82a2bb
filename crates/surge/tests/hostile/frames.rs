//! Frames and messages: lengths, fragments, control frames, close codes, UTF-8, floods.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::case::{Case, FLOOD};
use crate::server::MAX_MESSAGE;
use crate::wire::{
    close_frame, frame, header, masked, read_answer, Frame, Raw, Request, BINARY, CLOSE, CONT, FIN,
    PING, PONG, TEXT, WAIT,
};

/// The peak memory an attack that must not allocate may add.
const TIGHT: u64 = 1 << 20;

/// Sends `bytes` on a fresh connection and expects the server's Close with `code`, then the
/// end of the connection, and the usual checks.
fn violation(case: &mut Case, attack: &str, bytes: &[u8], code: u16) {
    let mut raw = Raw::connect(case.addr());
    raw.send_lossy(bytes);
    raw.expect_close(code);
    drop(raw);
    case.check(attack);
}

/// Like [`violation`], for several inputs against one server.
fn violations(attacks: &[(&str, Vec<u8>)], code: u16) {
    let mut case = Case::start();
    for (attack, bytes) in attacks {
        violation(&mut case, attack, bytes, code);
    }
}

/// A connection whose receive buffer is small and fixed: a client that does not read
/// blocks the server's output at once.
fn connect_small_receive_buffer(addr: SocketAddr) -> Raw {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket.set_recv_buffer_size(4096).expect("set SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect to the server");
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    stream.set_write_timeout(Some(WAIT)).expect("set a write timeout");
    stream.write_all(&Request::valid(addr).bytes()).expect("send the request");
    let answer = read_answer(&mut stream).expect("an answer");
    crate::wire::assert_switching(&answer);
    Raw::over(stream, answer.rest)
}

// ---- lengths -----------------------------------------------------------------------------

#[test]
fn length_64_bit_with_top_bit_set_gets_1002() {
    violations(
        &[
            ("length 2^63", header(FIN | BINARY, true, 1 << 63)),
            ("length 2^64 - 1", header(FIN | BINARY, true, u64::MAX)),
            ("length 2^63 + 5 on text", header(FIN | TEXT, true, (1 << 63) | 5)),
        ],
        1002,
    );
}

#[test]
fn largest_legal_64_bit_length_gets_1009_at_once_without_allocating() {
    let mut case = Case::start();
    let mut raw = Raw::connect(case.addr());
    raw.send(&header(FIN | BINARY, true, (1 << 63) - 1));
    raw.expect_close(1009);
    drop(raw);
    case.check_within("length 2^63 - 1", TIGHT);
}

#[test]
fn declared_length_2_pow_40_then_stall_gets_1009_without_allocating() {
    let mut case = Case::start();
    let mut raw = Raw::connect(case.addr());
    let started = Instant::now();
    raw.send(&header(BINARY, true, 1 << 40));
    raw.send(&masked(b"and then nothing", 0));
    raw.expect_close(1009);
    let took = started.elapsed();
    // A server that waited for the rest would answer only at a timeout, or never (5 s).
    assert!(took < Duration::from_secs(3), "1009 after {took:?}: not at once");
    drop(raw);
    case.check_within("length 2^40, then a stall", TIGHT);
}

#[test]
fn declared_length_under_a_large_cap_then_stall_reserves_nothing() {
    let mut case = Case::with(&[("--max-message", "1GiB")]);
    let mut raw = Raw::connect(case.addr());
    raw.send(&header(FIN | BINARY, true, 512 << 20));
    raw.send(&masked(&[7; 1000], 0));
    // The witness's echo comes after the loop has read the attacker's bytes.
    case.witness().roundtrip();
    let growth = case.rss_growth();
    assert!(growth < TIGHT as i64, "a 512 MiB declaration, 1000 bytes sent: {growth} B held");
    drop(raw);
    case.check_within("512 MiB declared under a 1 GiB cap, then a stall", TIGHT);
}

// ---- fragments ---------------------------------------------------------------------------

#[test]
fn fragments_each_under_the_frame_cap_together_over_the_message_cap_get_1009() {
    let mut case = Case::start();
    let piece = vec![b'x'; 30 << 10];
    let mut bytes = frame(BINARY, &piece);
    bytes.extend(frame(CONT, &piece));
    bytes.extend(frame(CONT, &piece));
    bytes.extend(frame(FIN | CONT, &piece));
    violation(&mut case, "four 30 KiB fragments under a 64 KiB cap", &bytes, 1009);
    let mut text = frame(TEXT, &piece);
    text.extend(frame(CONT, &piece));
    text.extend(frame(FIN | CONT, &piece));
    violation(&mut case, "three 30 KiB text fragments", &text, 1009);
}

#[test]
fn fin_0_then_one_byte_continuations_hold_little_memory_and_get_1009() {
    let cap = 1usize << 20;
    let mut case = Case::with(&[("--max-message", "1MiB")]);
    let mut raw = Raw::connect(case.addr());
    raw.send(&frame(BINARY, b"x"));
    let one = frame(CONT, b"y");
    // Each continuation costs its header and payload against the cap: 7 bytes.
    let needed = (cap - 1) / one.len() + 1;
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 4096).collect();
    let mut sent = 0;
    let close = loop {
        if let Some(frame) = raw.try_next_frame(Duration::from_millis(1)) {
            break frame;
        }
        assert!(sent < 2 * needed, "{sent} continuations and no Close");
        if !raw.send_lossy(&batch) {
            break raw.next_frame(WAIT);
        }
        sent += 4096;
    };
    assert_eq!(close, Some(Frame::close(1009)), "after {sent} one-byte continuations");
    assert!(sent + 4096 >= needed, "1009 after {sent} continuations, before the cap");
    raw.expect_eof(WAIT);
    drop(raw);
    // 1 MiB on the wire held 150 KB of payload; no per-fragment cost may show.
    case.check_within("one-byte continuations past a 1 MiB cap", 2 << 20);
}

#[test]
fn message_budget_is_reset_at_fin_so_fragmented_messages_over_the_cap_in_total_echo() {
    let mut case = Case::start();
    let mut raw = Raw::connect(case.addr());
    let pieces = 10;
    for i in 0..12u8 {
        // Five eighths of the cap each: the second message alone would overflow a budget
        // that is not reset at FIN.
        let message: Vec<u8> = (0..MAX_MESSAGE / 8 * 5).map(|j| i ^ j as u8).collect();
        let chunks: Vec<&[u8]> = message.chunks(message.len() / pieces).collect();
        let mut bytes = Vec::new();
        for (k, chunk) in chunks.iter().enumerate() {
            let opcode = if k == 0 { BINARY } else { CONT };
            let fin = if k + 1 == chunks.len() { FIN } else { 0 };
            bytes.extend(frame(fin | opcode, chunk));
        }
        raw.send(&bytes);
        raw.expect(&Frame::binary(&message));
    }
    drop(raw);
    case.check("twelve 40 KiB fragmented messages under a 64 KiB cap");
}

#[test]
fn continuation_with_nothing_to_continue_gets_1002() {
    violations(
        &[
            ("a final continuation first", frame(FIN | CONT, b"x")),
            ("a continuation first", frame(CONT, b"x")),
        ],
        1002,
    );
    let mut case = Case::start();
    let mut raw = Raw::connect(case.addr());
    let mut bytes = frame(FIN | TEXT, b"whole");
    bytes.extend(frame(FIN | CONT, b"more"));
    raw.send(&bytes);
    raw.expect(&Frame::text("whole"));
    raw.expect_close(1002);
    drop(raw);
    case.check("a continuation after a whole message");
}

#[test]
fn new_data_frame_inside_a_fragmented_message_gets_1002() {
    let mut text = frame(TEXT, b"he");
    text.extend(frame(FIN | TEXT, b"llo"));
    let mut binary = frame(BINARY, b"he");
    binary.extend(frame(BINARY, b"llo"));
    violations(&[("text inside text", text), ("binary inside binary", binary)], 1002);
}

#[test]
fn ping_between_fragments_is_answered_and_the_message_intact() {
    let mut case = Case::start();
    let mut raw = Raw::connect(case.addr());
    let mut bytes = frame(TEXT, b"Hel");
    bytes.extend(frame(FIN | PING, b"in between"));
    bytes.extend(frame(CONT, b"lo, "));
    raw.send(&bytes);
    raw.expect(&Frame::pong(b"in between"));
    // And split across writes, a ping in the middle of the last fragment's way.
    raw.send(&frame(FIN | PING, b"again"));
    raw.expect(&Frame::pong(b"again"));
    raw.send(&frame(FIN | CONT, b"world"));
    raw.expect(&Frame::text("Hello, world"));
    drop(raw);
    case.check("pings between fragments");
}

// ---- frame header rules ------------------------------------------------------------------

#[test]
fn unmasked_client_frame_gets_1002() {
    let unmasked = |b0: u8, payload: &[u8]| {
        let mut bytes = header(b0, false, payload.len() as u64);
        bytes.extend_from_slice(payload);
        bytes
    };
    violations(
        &[
            ("an unmasked text", unmasked(FIN | TEXT, b"hello")),
            ("an unmasked ping", unmasked(FIN | PING, b"")),
            ("an unmasked close", unmasked(FIN | CLOSE, &1000u16.to_be_bytes())),
        ],
        1002,
    );
}

#[test]
fn rsv_bits_without_an_extension_get_1002() {
    violations(
        &[
            ("RSV1 on text", frame(0x40 | FIN | TEXT, b"x")),
            ("RSV2 on binary", frame(0x20 | FIN | BINARY, b"x")),
            ("RSV3 on text", frame(0x10 | FIN | TEXT, b"x")),
            ("RSV1 on a ping", frame(0x40 | FIN | PING, b"")),
            ("all RSV bits", frame(0x70 | FIN | TEXT, b"x")),
        ],
        1002,
    );
}

#[test]
fn reserved_opcodes_get_1002() {
    let attacks: Vec<(String, Vec<u8>)> = [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]
        .iter()
        .map(|&op| (format!("opcode {op:#x}"), frame(FIN | op, b"x")))
        .collect();
    let attacks: Vec<(&str, Vec<u8>)> =
        attacks.iter().map(|(name, bytes)| (name.as_str(), bytes.clone())).collect();
    violations(&attacks, 1002);
}

#[test]
fn control_frame_over_125_bytes_gets_1002() {
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(&[b'r'; 124]);
    violations(
        &[
            ("a 126-byte ping", frame(FIN | PING, &[1; 126])),
            ("a 126-byte pong", frame(FIN | PONG, &[1; 126])),
            ("a 126-byte close", frame(FIN | CLOSE, &close)),
            ("a ping declaring 64 KiB", header(FIN | PING, true, 65_535)),
            ("a ping declaring 2^40 in 64 bits", header(FIN | PING, true, 1 << 40)),
        ],
        1002,
    );
}

#[test]
fn fragmented_control_frame_gets_1002() {
    violations(
        &[
            ("a ping without FIN", frame(PING, b"x")),
            ("a pong without FIN", frame(PONG, b"x")),
            ("a close without FIN", frame(CLOSE, &1000u16.to_be_bytes())),
        ],
        1002,
    );
}

// ---- close frames ------------------------------------------------------------------------

#[test]
fn close_with_one_byte_payload_gets_1002() {
    violations(&[("a 1-byte close", frame(FIN | CLOSE, &[0x03]))], 1002);
}

#[test]
fn close_codes_forbidden_on_the_wire_get_1002() {
    let codes = [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];
    let attacks: Vec<(String, Vec<u8>)> =
        codes.iter().map(|&code| (format!("close code {code}"), close_frame(code, b""))).collect();
    let attacks: Vec<(&str, Vec<u8>)> =
        attacks.iter().map(|(name, bytes)| (name.as_str(), bytes.clone())).collect();
    violations(&attacks, 1002);
}

#[test]
fn close_codes_3000_and_4999_are_echoed() {
    let mut case = Case::start();
    for code in [3000u16, 4999, 1000, 1003, 1011] {
        let mut raw = Raw::connect(case.addr());
        raw.send(&close_frame(code, b"bye"));
        let reply = raw.next_frame(WAIT).expect("a Close reply");
        assert_eq!((reply.opcode, reply.fin), (CLOSE, true), "{reply:?}");
        assert_eq!(reply.payload[..2], code.to_be_bytes(), "close code {code} echoed");
        assert!(matches!(&reply.payload[2..], b"" | b"bye"), "{reply:?}");
        raw.expect_eof(WAIT);
        drop(raw);
        case.check(&format!("close code {code}"));
    }
}

#[test]
fn close_reason_that_is_not_utf8_gets_1007() {
    violations(
        &[
            ("a 0xFF reason", close_frame(1000, b"\xFF")),
            ("an overlong reason", close_frame(1000, b"\xC0\xAF")),
            ("a surrogate reason", close_frame(4000, b"ok\xED\xA0\x80")),
            ("a reason cut short", close_frame(1000, b"caf\xC3")),
        ],
        1007,
    );
}

#[test]
fn data_after_the_peers_close_is_ignored() {
    let mut case = Case::start();
    let mut raw = Raw::connect(case.addr());
    let mut bytes = close_frame(1000, b"");
    bytes.extend(frame(FIN | TEXT, b"after the close"));
    bytes.extend(frame(FIN | PING, b"after the close"));
    bytes.extend(frame(FIN | 0x3, b"not even valid"));
    raw.send(&bytes);
    raw.expect_close(1000);
    drop(raw);
    case.check("frames after a Close");
}

// ---- UTF-8 -------------------------------------------------------------------------------

#[test]
fn overlong_utf8_text_gets_1007() {
    violations(
        &[
            ("overlong '/' (C0 AF)", frame(FIN | TEXT, b"a\xC0\xAF")),
            ("overlong 3-byte '/'", frame(FIN | TEXT, b"\xE0\x80\xAF")),
            ("overlong 4-byte NUL", frame(FIN | TEXT, b"\xF0\x80\x80\x80")),
        ],
        1007,
    );
}

#[test]
fn surrogate_in_utf8_text_gets_1007() {
    violations(
        &[
            ("high surrogate D800", frame(FIN | TEXT, b"\xED\xA0\x80")),
            ("low surrogate DFFF", frame(FIN | TEXT, b"x\xED\xBF\xBFy")),
        ],
        1007,
    );
}

#[test]
fn code_point_above_10ffff_gets_1007() {
    violations(
        &[
            ("U+110000", frame(FIN | TEXT, b"\xF4\x90\x80\x80")),
            ("an F5 lead byte", frame(FIN | TEXT, b"\xF5\x80\x80\x80")),
            ("a 0xFF byte", frame(FIN | TEXT, b"\xFF")),
        ],
        1007,
    );
}

#[test]
fn utf8_sequence_cut_at_the_message_end_gets_1007() {
    let mut fragmented = frame(TEXT, b"a");
    fragmented.extend(frame(FIN | CONT, b"\xE2\x82"));
    violations(
        &[
            ("a cut euro sign", frame(FIN | TEXT, b"price: \xE2\x82")),
            ("a cut 4-byte sequence", frame(FIN | TEXT, b"\xF0\x9D\x84")),
            ("a cut sequence in the last fragment", fragmented),
        ],
        1007,
    );
}

#[test]
fn invalid_bytes_in_an_early_fragment_fail_before_the_final_fragment() {
    let mut case = Case::start();
    for (attack, first) in [
        ("0xFF in the first fragment", frame(TEXT, b"valid so far \xFF")),
        ("a surrogate in the first fragment", frame(TEXT, b"\xED\xA0\x80")),
    ] {
        let mut raw = Raw::connect(case.addr());
        raw.send(&first);
        // The final fragment is never sent: the answer cannot wait for the message's end.
        raw.expect_close(1007);
        drop(raw);
        case.check(attack);
    }
    let mut raw = Raw::connect(case.addr());
    raw.send(&frame(TEXT, b"fine, "));
    raw.send(&frame(CONT, b"then \xC0\xAF"));
    raw.expect_close(1007);
    drop(raw);
    case.check("an overlong form in the second of many fragments");
}

#[test]
fn code_point_split_across_fragments_is_accepted() {
    let mut case = Case::start();
    let mut raw = Raw::connect(case.addr());
    let mut euro = frame(TEXT, b"\xE2");
    euro.extend(frame(CONT, b"\x82"));
    euro.extend(frame(FIN | CONT, b"\xAC"));
    raw.send(&euro);
    raw.expect(&Frame::text("\u{20AC}"));
    // A 4-byte code point one byte per write.
    let clef = "\u{1D11E}".as_bytes();
    for (i, byte) in clef.iter().enumerate() {
        let opcode = if i == 0 { TEXT } else { CONT };
        let fin = if i + 1 == clef.len() { FIN } else { 0 };
        raw.send(&frame(fin | opcode, &[*byte]));
    }
    raw.expect(&Frame::text("\u{1D11E}"));
    drop(raw);
    case.check("code points split across fragments");
}

// ---- floods ------------------------------------------------------------------------------

#[test]
fn ping_flood_while_never_reading_keeps_memory_bounded() {
    // Unbounded pongs would hold about as much as the flood: 32 MiB.
    let flood_bytes = 32usize << 20;
    let budget = 12u64 << 20;
    let mut case = Case::start();
    let mut raw = connect_small_receive_buffer(case.addr());
    let payload = [0x5A; 125];
    let ping = frame(FIN | PING, &payload);
    let batch: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 1000).collect();
    let mut sent = 0;
    let mut paused = false;
    while sent < flood_bytes {
        if !raw.send_lossy(&batch) {
            // The server stopped reading (a write timed out) or closed: both bound memory.
            paused = true;
            break;
        }
        sent += batch.len();
    }
    case.witness().roundtrip();
    let growth = case.rss_growth();
    assert!(
        growth < budget as i64,
        "{} MiB of pings unread ({paused}): the server holds {growth} B more",
        sent >> 20
    );
    // Now read: pongs (the latest kept, or all while output flowed), then the connection
    // is either usable or closed.
    raw.send_lossy(&frame(FIN | TEXT, b"after the flood"));
    let mut pongs = 0;
    loop {
        match raw.next_frame(WAIT) {
            Some(frame) if frame.opcode == PONG => {
                assert_eq!(frame.payload, payload, "a pong echoes its ping");
                pongs += 1;
            }
            Some(frame) if frame.opcode == TEXT => {
                assert_eq!(frame, Frame::text("after the flood"));
                break;
            }
            Some(frame) if frame.opcode == CLOSE => {
                raw.expect_eof(WAIT);
                break;
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    assert!(pongs > 0 || paused, "{sent} bytes of pings and not one pong");
    drop(raw);
    case.check_within("a ping flood from a peer that never reads", budget);
}

#[test]
fn echo_flood_while_never_reading_stops_reading_at_the_backpressure_limit_and_loses_nothing() {
    let mut case = Case::with(&[("--backpressure-limit", "256KiB")]);
    let raw = connect_small_receive_buffer(case.addr());
    let mut writer = raw.stream.try_clone().expect("clone the socket");
    writer.set_write_timeout(Some(Duration::from_secs(30))).expect("set a write timeout");
    let messages = 2000u32;
    let size = 16 << 10;
    let message = move |i: u32| -> Vec<u8> {
        let mut m = vec![(i % 251) as u8; size];
        m[..4].copy_from_slice(&i.to_be_bytes());
        m
    };
    let written = Arc::new(AtomicUsize::new(0));
    let progress = Arc::clone(&written);
    let write = std::thread::spawn(move || {
        for i in 0..messages {
            writer.write_all(&frame(FIN | BINARY, &message(i))).expect("write a message");
            progress.fetch_add(1, Ordering::SeqCst);
        }
    });
    // Wait until the writer stalls: the server stopped reading.
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut last = usize::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = written.load(Ordering::SeqCst);
        if now == last || now == messages as usize || Instant::now() > give_up {
            break;
        }
        last = now;
    }
    let stalled_at = written.load(Ordering::SeqCst);
    assert!(
        stalled_at < messages as usize,
        "all {} MiB went in while nothing was read: reading never paused",
        (messages as usize * size) >> 20
    );
    let growth = case.rss_growth();
    assert!(growth < 8 << 20, "{stalled_at} messages unread: the server holds {growth} B more");
    let mut raw = raw;
    for i in 0..messages {
        let got = raw.next_frame(WAIT).expect("an echo");
        assert_eq!(got, Frame::binary(&message(i)), "echo {i} of {messages}");
    }
    write.join().expect("the writer thread");
    drop(raw);
    case.check_within("32 MiB of echoes never read", FLOOD);
}
