//! A whole server or client connection fed arbitrary bytes in arbitrary chunks.
//!
//! Invariants: chunking never changes the events; nothing follows a Close or an Error; after
//! an Error the Close sent carries that error's code and the connection is closed; the
//! assembly buffer never holds more than the message cap (and the control frame in pieces it
//! lends, at most 125 bytes, behind it); every byte is consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surge_proto::close::MAX_CONTROL_PAYLOAD;
use surge_proto::connection::{Connection, Event, Limits};
use surge_proto::message::Message;

#[derive(Debug, PartialEq)]
enum Owned {
    Message(bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Error(u16),
}

const LIMITS: Limits = Limits {
    max_frame_size: 1 << 16,
    max_message_size: 1 << 17,
    close_timeout: std::time::Duration::from_secs(5),
    idle_timeout: None,
};

fn run(client: bool, wire: &[u8], chunks: &[u8]) -> (Vec<Owned>, Vec<u8>, Connection) {
    let mut conn = if client { Connection::client(LIMITS, 1) } else { Connection::server(LIMITS) };
    let mut assembly = Vec::new();
    let mut events = Vec::new();
    let mut sizes = chunks.iter().map(|&c| usize::from(c) + 1).cycle();
    let mut rest = wire;
    while !rest.is_empty() {
        let take =
            if chunks.is_empty() { rest.len() } else { sizes.next().unwrap_or(1).min(rest.len()) };
        let mut buf = rest[..take].to_vec();
        rest = &rest[take..];
        let mut input = &mut buf[..];
        loop {
            let len = input.len();
            let (used, event) = conn.read(&mut *input, &mut assembly);
            assert!(used <= len);
            let Some(event) = event else {
                assert_eq!(used, len, "no event means everything was used");
                break;
            };
            events.push(match event {
                Event::Message(Message::Text(text)) => {
                    Owned::Message(true, text.as_bytes().to_vec())
                }
                Event::Message(Message::Binary(bytes)) => Owned::Message(false, bytes.to_vec()),
                Event::Ping(payload) => Owned::Ping(payload.to_vec()),
                Event::Pong(payload) => Owned::Pong(payload.to_vec()),
                Event::Close(frame) => {
                    Owned::Close(frame.code().map(|c| c.as_u16()), frame.reason().to_owned())
                }
                Event::Error(error) => Owned::Error(error.close_code().as_u16()),
            });
            input = &mut input[used..];
            assert!(assembly.len() as u64 <= LIMITS.max_message_size + MAX_CONTROL_PAYLOAD as u64);
        }
    }
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    (events, out, conn)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else { return };
    let chunk_count = usize::from(selector >> 1).min(data.len());
    let (chunks, wire) = data.split_at(chunk_count);
    let client = selector & 1 == 1;

    let (whole, whole_out, _) = run(client, wire, &[]);
    let (split, split_out, conn) = run(client, wire, chunks);
    assert_eq!(whole, split);
    assert_eq!(whole_out, split_out);

    if let Some(end) = whole.iter().position(|e| matches!(e, Owned::Close(..) | Owned::Error(_))) {
        assert_eq!(end + 1, whole.len(), "nothing follows a Close or an Error");
        assert!(conn.is_closed());
        assert!(!conn.can_send());
    }
    if let Some(Owned::Error(code)) = whole.last() {
        // The Close we send is the last frame out; for a server its header is 88 02.
        assert!(split_out.len() >= 4);
        if !client {
            let tail = &split_out[split_out.len() - 4..];
            assert_eq!(tail, [&[0x88, 0x02][..], &code.to_be_bytes()[..]].concat());
        }
    }
    for event in &whole {
        match event {
            Owned::Message(true, text) => assert!(std::str::from_utf8(text).is_ok()),
            Owned::Message(false, bytes) => assert!(bytes.len() as u64 <= LIMITS.max_message_size),
            Owned::Ping(p) | Owned::Pong(p) => assert!(p.len() <= 125),
            _ => {}
        }
    }
});
