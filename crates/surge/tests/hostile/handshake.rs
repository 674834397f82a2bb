//! The opening handshake: budgets, malformed and odd requests, slowloris, the connection cap
//! and shutdown.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::case::{Case, Witness};
use crate::server::Surge;
use crate::wire::{
    assert_switching, expect_refusal, frame, read_answer, read_to_eof, tcp, Frame, Raw, Request,
    FIN, TEXT, WAIT,
};

/// The server's head budget (`HandshakeLimits::default`): 8 KiB and 64 header fields.
const HEAD_BUDGET: usize = 8 * 1024;

/// Checks that a request edited by `edit` is refused with `status`.
fn refused(attack: &str, status: u16, edit: impl FnOnce(Request) -> Request) {
    let mut case = Case::start();
    let request = edit(Request::valid(case.addr())).bytes();
    expect_refusal(case.addr(), &request, status);
    case.check(attack);
}

/// Checks that a request edited by `edit` is accepted, and that the connection echoes.
fn accepted(attack: &str, edit: impl FnOnce(Request) -> Request) -> crate::wire::Answer {
    let mut case = Case::start();
    let mut stream = tcp(case.addr());
    let request = edit(Request::valid(case.addr())).bytes();
    stream.write_all(&request).expect("send the request");
    let answer = read_answer(&mut stream).expect("an answer");
    assert_switching(&answer);
    let mut raw = Raw::over(stream, answer.rest.clone());
    raw.send(&frame(FIN | TEXT, b"after an odd handshake"));
    raw.expect(&Frame::text("after an odd handshake"));
    drop(raw);
    case.check(attack);
    answer
}

#[test]
fn header_dribbled_in_tiny_packets_without_end_gets_431_at_the_head_budget() {
    // A 10 s handshake timeout: an answer before it can only come from the byte budget.
    let mut case = Case::with(&[("--handshake-timeout", "10s")]);
    let mut stream = tcp(case.addr());
    let mut reader = stream.try_clone().expect("clone the socket");
    let answered = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let read = {
        let (answered, sent) = (Arc::clone(&answered), Arc::clone(&sent));
        std::thread::spawn(move || {
            let answer = read_answer(&mut reader);
            let sent_by_then = sent.load(Ordering::SeqCst);
            answered.store(true, Ordering::SeqCst);
            (answer, sent_by_then, started.elapsed())
        })
    };
    let start = b"GET / HTTP/1.1\r\nHost: x\r\nX-Growing: ";
    stream.write_all(start).expect("write the start");
    // Eight bytes a packet, never a line end, until the server answers (or 64 KiB went out).
    while !answered.load(Ordering::SeqCst) && sent.load(Ordering::SeqCst) < 64 << 10 {
        if stream.write_all(b"aaaaaaaa").is_err() {
            break;
        }
        sent.fetch_add(8, Ordering::SeqCst);
    }
    let (answer, sent_by_then, took) = read.join().expect("the reader thread");
    let answer = answer.expect("an answer before the connection closed");
    assert_eq!(answer.status, 431, "{answer:?}");
    assert!(
        // `sent` lags the socket by at most one packet.
        start.len() + sent_by_then + 8 >= HEAD_BUDGET,
        "431 after {sent_by_then} bytes, before the budget was spent"
    );
    assert!(took < Duration::from_secs(8), "431 took {took:?}: not from the byte budget");
    let (_, closed) = read_to_eof(&mut stream, WAIT);
    assert!(closed, "the connection stays open after 431");
    case.check("a header dribbled in 8-byte packets");
}

#[test]
fn thousands_of_headers_within_the_byte_budget_get_431() {
    refused("1600 empty headers", 431, |mut request| {
        for _ in 0..1600 {
            request = request.add("a", "");
        }
        assert!(request.bytes().len() < HEAD_BUDGET, "under the byte budget: the count decides");
        request
    });
}

#[test]
fn thousands_of_headers_over_the_byte_budget_get_431() {
    refused("5000 headers", 431, |mut request| {
        for i in 0..5000 {
            request = request.add(&format!("X-{i}"), "v");
        }
        request
    });
}

#[test]
fn subprotocol_header_of_100_kb_spaces_and_commas_gets_431() {
    refused("a 100 KB Sec-WebSocket-Protocol", 431, |request| {
        request.add("Sec-WebSocket-Protocol", " ,".repeat(50_000))
    });
}

#[test]
fn subprotocol_header_of_spaces_and_commas_within_the_budget_is_parsed_fast_and_accepted() {
    let started = Instant::now();
    let answer = accepted("7 KB of spaces and commas", |request| {
        request.add("Sec-WebSocket-Protocol", format!("{}chat", " , ,  ,".repeat(1000)))
    });
    // The echo server chooses no subprotocol.
    assert_eq!(answer.header("Sec-WebSocket-Protocol"), None);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn odd_extension_names_like_constructor_are_ignored_with_101() {
    let answer = accepted("Sec-WebSocket-Extensions: constructor", |request| {
        request
            .add("Sec-WebSocket-Extensions", "constructor")
            .add("Sec-WebSocket-Extensions", "__proto__; toString=1, hasOwnProperty")
    });
    assert_eq!(answer.header("Sec-WebSocket-Extensions"), None, "nothing was negotiated");
}

#[test]
fn non_ascii_in_subprotocol_gets_400() {
    let mut case = Case::start();
    for value in [&b"chat, \xC3\xA9cho"[..], b"\xFF\xFE", b"chat\x80"] {
        let request = Request::valid(case.addr()).add("Sec-WebSocket-Protocol", value);
        expect_refusal(case.addr(), &request.bytes(), 400);
        case.check("a non-ASCII Sec-WebSocket-Protocol");
    }
}

#[test]
fn missing_key_gets_400() {
    refused("no Sec-WebSocket-Key", 400, |request| request.without("Sec-WebSocket-Key"));
}

#[test]
fn duplicated_key_gets_400() {
    refused("two Sec-WebSocket-Key", 400, |request| {
        request.add("Sec-WebSocket-Key", "q4xkcO32u266gldTuKaSOw==")
    });
}

#[test]
fn key_of_15_bytes_gets_400() {
    let mut case = Case::start();
    // 15 bytes encode to 20 characters; the others are 16 bytes in the wrong form.
    for key in [
        "AAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAA===",
        "!!!!!!!!!!!!!!!!!!!!!!==",
    ] {
        let request = Request::valid(case.addr()).set("Sec-WebSocket-Key", key);
        expect_refusal(case.addr(), &request.bytes(), 400);
        case.check("a malformed Sec-WebSocket-Key");
    }
}

#[test]
fn method_other_than_get_gets_405_with_allow_get() {
    let mut case = Case::start();
    for line in ["POST / HTTP/1.1", "PUT / HTTP/1.1", "get / HTTP/1.1"] {
        let request = Request::valid(case.addr()).line(line);
        let answer = expect_refusal(case.addr(), &request.bytes(), 405);
        assert_eq!(answer.header("Allow"), Some("GET"), "{answer:?}");
        case.check(line);
    }
}

#[test]
fn http_1_0_request_gets_400() {
    let mut case = Case::start();
    for line in ["GET / HTTP/1.0", "GET / HTTP/2.0", "GET /"] {
        let request = Request::valid(case.addr()).line(line);
        expect_refusal(case.addr(), &request.bytes(), 400);
        case.check(line);
    }
}

#[test]
fn missing_host_gets_400() {
    refused("no Host", 400, |request| request.without("Host"));
}

#[test]
fn missing_upgrade_websocket_token_gets_400() {
    let mut case = Case::start();
    for upgrade in [None, Some("h2c"), Some("websocket2"), Some("")] {
        let mut request = Request::valid(case.addr()).without("Upgrade");
        if let Some(value) = upgrade {
            request = request.add("Upgrade", value);
        }
        expect_refusal(case.addr(), &request.bytes(), 400);
        case.check("no websocket token in Upgrade");
    }
}

#[test]
fn missing_connection_upgrade_token_gets_400() {
    let mut case = Case::start();
    for connection in [None, Some("keep-alive"), Some("upgraded"), Some("close")] {
        let mut request = Request::valid(case.addr()).without("Connection");
        if let Some(value) = connection {
            request = request.add("Connection", value);
        }
        expect_refusal(case.addr(), &request.bytes(), 400);
        case.check("no upgrade token in Connection");
    }
}

#[test]
fn connection_keep_alive_comma_upgrade_gets_101() {
    accepted("Connection: keep-alive, Upgrade", |request| {
        request.set("Connection", "keep-alive, Upgrade")
    });
}

#[test]
fn version_8_gets_426_with_sec_websocket_version_13() {
    let mut case = Case::start();
    for version in ["8", "12", "14", "13, 8"] {
        let request = Request::valid(case.addr()).set("Sec-WebSocket-Version", version);
        let answer = expect_refusal(case.addr(), &request.bytes(), 426);
        assert_eq!(answer.header("Sec-WebSocket-Version"), Some("13"), "{answer:?}");
        case.check("an unsupported Sec-WebSocket-Version");
    }
}

#[test]
fn request_with_a_body_gets_400() {
    let mut case = Case::start();
    let with_length = Request::valid(case.addr()).add("Content-Length", "5");
    let mut bytes = with_length.bytes();
    bytes.extend_from_slice(b"hello");
    expect_refusal(case.addr(), &bytes, 400);
    case.check("Content-Length: 5");
    let chunked = Request::valid(case.addr()).add("Transfer-Encoding", "chunked");
    let mut bytes = chunked.bytes();
    bytes.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    expect_refusal(case.addr(), &bytes, 400);
    case.check("Transfer-Encoding: chunked");
}

#[test]
fn first_frame_pipelined_right_after_the_request_head_is_echoed() {
    let mut case = Case::start();
    let mut bytes = Request::valid(case.addr()).bytes();
    // "hello websocket" masked with 37 FA 21 3D, as the founding documents show it.
    bytes.extend_from_slice(&[
        0x81, 0x8F, 0x37, 0xFA, 0x21, 0x3D, 0x5F, 0x9F, 0x4D, 0x51, 0x58, 0xDA, 0x56, 0x58, 0x55,
        0x89, 0x4E, 0x5E, 0x5C, 0x9F, 0x55,
    ]);
    bytes.extend_from_slice(&[0x88, 0x82, 0x37, 0xFA, 0x21, 0x3D, 0x34, 0x12]);
    let mut raw = Raw::upgrade(case.addr(), &bytes);
    raw.expect(&Frame::text("hello websocket"));
    raw.expect_close(1000);
    case.check("a frame and a Close behind the request head");
}

#[test]
fn half_handshakes_then_silence_are_closed_at_the_handshake_timeout() {
    let mut case = Case::start();
    let started = Instant::now();
    let mut streams: Vec<_> = (0..100)
        .map(|i| {
            let mut stream = tcp(case.addr());
            let half = format!("GET / HTTP/1.1\r\nHost: slow{i}\r\nUpgrade: webs");
            stream.write_all(half.as_bytes()).expect("send half a request");
            stream
        })
        .collect();
    case.witness().roundtrip();
    for stream in &mut streams {
        let (got, closed) = read_to_eof(stream, WAIT);
        assert!(closed, "a half handshake outlived the 1 s handshake timeout by {WAIT:?}");
        assert!(got.is_empty(), "an answer to half a request: {got:?}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "closed after {took:?}, configured 1 s"
    );
    case.check("100 half handshakes");
}

#[test]
fn past_max_connections_handshakes_get_503() {
    let mut case = Case::with(&[("--max-connections", "2"), ("--threads", "2")]);
    // The witness holds one place.
    let mut second = Raw::connect(case.addr());
    let answer = expect_refusal(case.addr(), &Request::valid(case.addr()).bytes(), 503);
    assert_eq!(answer.status_line, "HTTP/1.1 503 Service Unavailable");
    second.send(&frame(FIN | TEXT, b"still here"));
    second.expect(&Frame::text("still here"));
    second.send(&crate::wire::close_frame(1000, b""));
    second.expect_close(1000);
    // The place comes back: a new connection gets in within a bounded wait.
    let give_up = Instant::now() + WAIT;
    let mut third = loop {
        let mut stream = tcp(case.addr());
        stream.write_all(&Request::valid(case.addr()).bytes()).expect("send a request");
        let answer = read_answer(&mut stream).expect("an answer");
        if answer.status == 101 {
            break Raw::over(stream, answer.rest);
        }
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(Instant::now() < give_up, "the closed connection's place never came back");
        std::thread::sleep(Duration::from_millis(20));
    };
    third.send(&frame(FIN | TEXT, b"in"));
    third.expect(&Frame::text("in"));
    drop(third);
    case.check("a third connection past --max-connections 2");
}

#[test]
fn sigterm_sends_1001_to_open_connections_and_503_to_handshakes_in_progress() {
    let mut server = Surge::with(&[("--close-timeout", "2s")]);
    let mut witness = Witness::open(server.addr);
    let mut open = Raw::connect(server.addr);
    let mut half = tcp(server.addr);
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").expect("send half a request");
    witness.roundtrip();
    let started = Instant::now();
    server.terminate();
    let mut payload = 1001u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"server shutting down");
    let going_away = Frame { fin: true, opcode: crate::wire::CLOSE, payload };
    open.expect(&going_away);
    open.send(&crate::wire::close_frame(1001, b""));
    open.expect_eof(WAIT);
    let answer = read_answer(&mut half).expect("an answer to the half handshake");
    assert_eq!(answer.status, 503, "{answer:?}");
    // The witness never answers: the process still exits at the 2 s grace.
    let status = server.wait_exit(WAIT).expect("surge exits after its grace period");
    assert!(status.success(), "surge exited with {status}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "shutdown took {took:?} with a 2 s grace");
    drop(witness);
}
