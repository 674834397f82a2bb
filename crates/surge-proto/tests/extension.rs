//! The extension seam, proved with a toy extension shaped like permessage-deflate: RSV1 on a
//! message's first frame marks a run-length-encoded payload, decoded piece by piece as it
//! arrives, with the message cap counted on the decoded size.

use surge_proto::connection::{Connection, Event, Limits};
use surge_proto::error::ProtocolError;
use surge_proto::extension::Extension;
use surge_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use surge_proto::mask::apply_mask;
use surge_proto::message::Message;

const RSV1: u8 = 0b100;

/// Run-length encoding in `(count, byte)` pairs; a pair split between pieces waits for its
/// byte.
#[derive(Debug, Default)]
struct RunLength {
    pending_count: Option<u8>,
}

impl Extension for RunLength {
    fn allowed_rsv(&self) -> u8 {
        RSV1
    }

    fn decodes(&self, rsv: u8) -> bool {
        rsv & RSV1 != 0
    }

    fn decode(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), ProtocolError> {
        for &byte in input {
            match self.pending_count.take() {
                None => self.pending_count = Some(byte),
                Some(count) => {
                    // Bounded: each run is checked against the cap before it is written.
                    if out.len() + usize::from(count) > max_len {
                        return Err(ProtocolError::MessageTooLarge);
                    }
                    out.resize(out.len() + usize::from(count), byte);
                }
            }
        }
        if last && self.pending_count.is_some() {
            return Err(ProtocolError::InvalidClosePayload);
        }
        Ok(())
    }

    fn transforms_output(&self) -> bool {
        true
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Option<u8> {
        if payload.len() < 4 {
            return None; // not worth it: sent as it is
        }
        for run in payload.chunk_by(|a, b| a == b) {
            for part in run.chunks(255) {
                out.extend_from_slice(&[part.len() as u8, part[0]]);
            }
        }
        Some(RSV1)
    }
}

fn frame(fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let key = [9, 8, 7, 6];
    let header =
        FrameHeader { fin, rsv, opcode, mask: Some(key), payload_len: payload.len() as u64 };
    let mut encoded = [0; MAX_HEADER_LEN];
    let len = header.encode(&mut encoded);
    let mut body = payload.to_vec();
    apply_mask(&mut body, key, 0);
    [&encoded[..len], &body[..]].concat()
}

/// Feeds `wire` in `chunk`-byte reads; returns the messages as text, or the error.
fn receive(
    server: &mut Connection<RunLength>,
    wire: &[u8],
    chunk: usize,
) -> Vec<Result<String, ProtocolError>> {
    let mut assembly = Vec::new();
    let mut got = Vec::new();
    for piece in wire.chunks(chunk) {
        let mut buf = piece.to_vec();
        let mut rest = &mut buf[..];
        loop {
            let (used, event) = server.read(&mut *rest, &mut assembly);
            match event {
                None => break,
                Some(Event::Message(Message::Text(text))) => got.push(Ok(text.to_owned())),
                Some(Event::Error(error)) => got.push(Err(error)),
                Some(other) => panic!("unexpected {other:?}"),
            }
            rest = &mut rest[used..];
        }
    }
    got
}

#[test]
fn a_transformed_message_is_decoded_piece_by_piece_across_fragments_and_reads() {
    let mut wire = frame(false, RSV1, OpCode::TEXT, &[3, b'a', 2]);
    wire.extend(frame(true, 0, OpCode::CONTINUATION, &[b'b', 1, b'c']));
    wire.extend(frame(true, 0, OpCode::TEXT, b"plain"));
    for chunk in [1, 3, wire.len()] {
        let mut server = Connection::server_with(Limits::default(), RunLength::default());
        let got = receive(&mut server, &wire, chunk);
        assert_eq!(got, [Ok("aaabbc".into()), Ok("plain".into())], "in reads of {chunk}");
    }
}

#[test]
fn the_message_cap_counts_decoded_bytes() {
    let limits = Limits { max_message_size: 1000, ..Limits::default() };
    let mut server = Connection::server_with(limits, RunLength::default());
    // Twelve bytes on the wire that would decode to 1275.
    let wire = frame(true, RSV1, OpCode::BINARY, &[255, 0, 255, 0, 255, 0, 255, 0, 255, 0]);
    let mut assembly = Vec::new();
    let mut buf = wire.clone();
    let (_, event) = server.read(&mut buf, &mut assembly);
    assert_eq!(event, Some(Event::Error(ProtocolError::MessageTooLarge)));
    assert!(assembly.len() <= 1000, "stopped at the cap: {} bytes", assembly.len());
}

#[test]
fn extension_bits_belong_on_a_first_frame_only() {
    let mut continuation = frame(false, 0, OpCode::TEXT, b"a");
    continuation.extend(frame(true, RSV1, OpCode::CONTINUATION, b"b"));
    let ping = frame(true, RSV1, OpCode::PING, b"");
    for wire in [continuation, ping] {
        let mut server = Connection::server_with(Limits::default(), RunLength::default());
        assert_eq!(receive(&mut server, &wire, 64), [Err(ProtocolError::ReservedBits)]);
    }
    // Without the extension the same first frame is a violation.
    let mut plain = Connection::server(Limits::default());
    let mut wire = frame(true, RSV1, OpCode::TEXT, &[1, b'x']);
    let mut assembly = Vec::new();
    let (_, event) = plain.read(&mut wire, &mut assembly);
    assert_eq!(event, Some(Event::Error(ProtocolError::ReservedBits)));
}

#[test]
fn sends_are_encoded_with_rsv1_on_the_frame_and_decode_back() {
    let mut client = Connection::client_with(Limits::default(), 42, RunLength::default());
    let mut server = Connection::server_with(Limits::default(), RunLength::default());
    let long = "z".repeat(600) + "yyy";
    let mut wire = Vec::new();
    client.send(Message::Text(&long), &mut wire).unwrap();
    assert_eq!(wire[0] & 0x70, RSV1 << 4, "RSV1 on the message's frame");
    assert!(wire.len() < 20, "encoded: {} bytes", wire.len());
    client.send(Message::Text("hi"), &mut wire).unwrap();
    let got = receive(&mut server, &wire, 5);
    assert_eq!(got, [Ok(long), Ok("hi".into())]);
    let mut header = [0; 14];
    let unused = server.send_header(&Message::Text("x"), &mut header).unwrap();
    assert_eq!(unused, None, "no direct path for output the extension transforms");
}
