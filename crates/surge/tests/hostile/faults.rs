//! Many connections and faults: crowds holding half a message, resets, half-closes, a peer
//! that never answers our Close, churn.

use std::net::Shutdown;
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::case::{Case, FLOOD};
use crate::wire::{
    close_frame, frame, header, masked, read_to_eof, Frame, Raw, BINARY, CLOSE, FIN, PING, TEXT,
    WAIT,
};

/// The start of a 4000-byte binary frame: its header and 1000 payload bytes.
fn half_a_message() -> Vec<u8> {
    let mut bytes = header(FIN | BINARY, true, 4000);
    bytes.extend(masked(&[9; 1000], 0));
    bytes
}

#[test]
fn many_connections_each_holding_half_a_message_keep_memory_bounded_and_are_cleaned_up() {
    let crowd = 500;
    let mut case = Case::start();
    let mut raws: Vec<Raw> = (0..crowd).map(|_| Raw::connect(case.addr())).collect();
    for raw in &mut raws {
        raw.send(&half_a_message());
    }
    case.witness().roundtrip();
    assert_eq!(case.server.fds(), case.fds_before() + crowd, "every connection is held");
    let growth = case.rss_growth();
    assert!(
        growth < FLOOD as i64,
        "{crowd} connections with 1000 bytes each held: {growth} B more resident"
    );
    // Each still works: the message completes and echoes.
    for raw in raws.iter_mut().step_by(50) {
        raw.send(&masked(&[9; 3000], 1000));
        raw.expect(&Frame::binary(&[9; 4000]));
    }
    drop(raws);
    case.check_within("500 connections holding half a message", FLOOD);
}

#[test]
fn reset_mid_frame_leaks_no_descriptor() {
    let mut case = Case::start();
    for _ in 0..50 {
        let mut raw = Raw::connect(case.addr());
        raw.send(&half_a_message());
        let socket = Socket::from(raw.stream);
        socket.set_linger(Some(Duration::ZERO)).expect("set SO_LINGER 0");
        // Dropping a socket with a zero linger sends RST.
        drop(socket);
    }
    case.check("50 resets in the middle of a frame");
}

#[test]
fn reset_mid_handshake_leaks_no_descriptor() {
    // A long handshake timeout: the descriptor must come back because of the reset.
    let mut case = Case::with(&[("--handshake-timeout", "10s")]);
    for _ in 0..50 {
        let mut stream = crate::wire::tcp(case.addr());
        std::io::Write::write_all(&mut stream, b"GET / HTTP/1.1\r\nHost: x\r\n")
            .expect("send half a request");
        let socket = Socket::from(stream);
        socket.set_linger(Some(Duration::ZERO)).expect("set SO_LINGER 0");
        drop(socket);
    }
    case.check("50 resets in the middle of a handshake");
}

#[test]
fn half_close_mid_frame_makes_the_server_close_without_leak() {
    let mut case = Case::start();
    for _ in 0..20 {
        let mut raw = Raw::connect(case.addr());
        raw.send(&half_a_message());
        raw.stream.shutdown(Shutdown::Write).expect("shut down our writing side");
        let (got, closed) = read_to_eof(&mut raw.stream, WAIT);
        assert!(closed, "the server kept a half-closed connection open for {WAIT:?}");
        // 1006 is never sent: the server just closes (a Close frame would be allowed).
        assert!(got.is_empty() || got[0] == FIN | CLOSE, "after a half-close: {got:?}");
    }
    case.check("20 half-closes in the middle of a frame");
}

#[test]
fn peer_that_never_answers_our_close_is_dropped_at_the_close_timeout() {
    // The idle timeout makes the server start the close; the attacker never answers.
    let mut case = Case::with(&[("--idle-timeout", "1s"), ("--close-timeout", "1s")]);
    let mut raw = Raw::connect(case.addr());
    let started = Instant::now();
    let mut frames = Vec::new();
    let mut close_at = None;
    let ended = loop {
        // The witness keeps talking, so only the attacker is idle.
        case.witness().roundtrip();
        match raw.try_next_frame(Duration::from_millis(100)) {
            Some(Some(frame)) => {
                if frame.opcode == CLOSE {
                    close_at = Some(started.elapsed());
                }
                frames.push(frame);
            }
            Some(None) => break started.elapsed(),
            None => assert!(started.elapsed() < 4 * WAIT, "never closed: {frames:?}"),
        }
    };
    let mut going_away = 1001u16.to_be_bytes().to_vec();
    going_away.extend_from_slice(b"idle timeout");
    let expected = [
        Frame { fin: true, opcode: PING, payload: Vec::new() },
        Frame { fin: true, opcode: CLOSE, payload: going_away },
    ];
    assert_eq!(frames, expected, "a ping at half the idle timeout, then Close 1001");
    let close_at = close_at.expect("a Close");
    let waited = ended - close_at;
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(6),
        "TCP closed {waited:?} after our Close; the close timeout is 1 s"
    );
    drop(raw);
    case.check("a peer that never answers the server's Close");
}

#[test]
fn churn_of_a_thousand_connections_keeps_descriptors_and_memory_flat() {
    let mut case = Case::start();
    for i in 0..1000u32 {
        let mut raw = Raw::connect(case.addr());
        let text = format!("churn {i}");
        raw.send(&frame(FIN | TEXT, text.as_bytes()));
        raw.expect(&Frame::text(&text));
        match i % 3 {
            0 => {
                raw.send(&close_frame(1000, b""));
                raw.expect_close(1000);
            }
            1 => drop(raw),
            _ => {
                let socket = Socket::from(raw.stream);
                socket.set_linger(Some(Duration::ZERO)).expect("set SO_LINGER 0");
            }
        }
    }
    case.check("1000 connections opened, used and closed three ways");
}
