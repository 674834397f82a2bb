//! The frame codec (RFC 6455 §5.2): header decoding with every check the RFC makes, header
//! and frame encoding into caller buffers.
#![forbid(unsafe_code)]

use crate::error::ProtocolError;
use crate::message::Message;
pub use crate::opcode::OpCode;
use crate::Role;

/// The longest header: 2 bytes, an 8-byte extended length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last frame of its message.
    pub fin: bool,
    /// RSV1-RSV3 as the three low bits.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on frames from a client.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Bytes this header takes on the wire.
    pub fn encoded_len(&self) -> usize {
        let length_bytes = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + length_bytes + if self.mask.is_some() { 4 } else { 0 }
    }

    /// FIN, the RSV bits and the opcode: the first byte on the wire.
    #[inline]
    fn first_byte(&self) -> u8 {
        (u8::from(self.fin) << 7) | ((self.rsv & 0x7) << 4) | self.opcode.bits()
    }

    /// Writes the header into `buf`, returning how many bytes it took (at most
    /// [`MAX_HEADER_LEN`]).
    #[inline]
    pub fn encode(&self, buf: &mut [u8; MAX_HEADER_LEN]) -> usize {
        buf[0] = self.first_byte();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = match self.payload_len {
            small @ 0..=125 => {
                buf[1] = mask_bit | small as u8;
                2
            }
            medium @ 126..=0xFFFF => {
                buf[1] = mask_bit | 126;
                buf[2..4].copy_from_slice(&(medium as u16).to_be_bytes());
                4
            }
            large => {
                buf[1] = mask_bit | 127;
                buf[2..10].copy_from_slice(&large.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            buf[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        len
    }
}

/// What a header decoder accepts: the rules that depend on the connection, not the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeRules {
    /// The receiving side: a server wants masked frames, a client unmasked ones.
    pub role: Role,
    /// RSV bits a negotiated extension gave meaning to (none until permessage-deflate).
    pub allowed_rsv: u8,
    /// The largest payload one frame may declare.
    pub max_frame_size: u64,
}

/// Decodes a frame header from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a header ("need more"), else the header
/// and its length. Every check that the header alone decides is made here, before any
/// payload byte is read or any memory reserved: reserved bits and opcodes, control frames
/// fragmented or over 125 bytes, masking by the wrong side, a 64-bit length with its top bit
/// set, and a length over `rules.max_frame_size` (1009).
///
/// ```
/// use surge_proto::frame::{decode_header, DecodeRules, OpCode};
/// use surge_proto::Role;
///
/// let rules = DecodeRules { role: Role::Server, allowed_rsv: 0, max_frame_size: 1 << 20 };
/// let wire = [0x81, 0x8F, 0x37, 0xFA, 0x21, 0x3D, 0x5F];
/// let (header, len) = decode_header(&wire, &rules).unwrap().unwrap();
/// assert_eq!((header.opcode, header.payload_len, len), (OpCode::TEXT, 15, 6));
/// assert_eq!(decode_header(&wire[..1], &rules), Ok(None));
/// ```
pub fn decode_header(
    buf: &[u8],
    rules: &DecodeRules,
) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    let (fin, rsv, opcode) = (b0 & 0x80 != 0, (b0 >> 4) & 0x7, OpCode::from_bits(*b0));
    let masked = b1 & 0x80 != 0;
    let short_len = b1 & 0x7F;

    if rsv & !rules.allowed_rsv != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    if opcode.is_reserved() {
        return Err(ProtocolError::ReservedOpcode(opcode));
    }
    if opcode.is_control() {
        if short_len > 125 {
            return Err(ProtocolError::ControlFrameTooLong);
        }
        if !fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }
    }
    match (rules.role, masked) {
        (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
        (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
        _ => {}
    }

    let (payload_len, rest) = match short_len {
        126 => match rest {
            [hi, lo, rest @ ..] => (u64::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => return Ok(None),
        },
        127 => match rest.split_first_chunk::<8>() {
            Some((len, rest)) => {
                let len = u64::from_be_bytes(*len);
                if len >> 63 != 0 {
                    return Err(ProtocolError::InvalidLength);
                }
                (len, rest)
            }
            None => return Ok(None),
        },
        small => (u64::from(small), rest),
    };
    if payload_len > rules.max_frame_size {
        return Err(ProtocolError::FrameTooLarge);
    }
    let mask = if masked {
        match rest.first_chunk::<4>() {
            Some(key) => Some(*key),
            None => return Ok(None),
        }
    } else {
        None
    };
    // Measured from the wire, not recomputed: a peer may spell a short length in the 16- or
    // 64-bit form, and the header is then longer than `encoded_len` says.
    let header_len = buf.len() - rest.len() + if masked { 4 } else { 0 };
    Ok(Some((FrameHeader { fin, rsv, opcode, mask, payload_len }, header_len)))
}

/// Appends one whole frame to `out`: the header, then the payload, masked with `mask` when
/// given (as a client must).
///
/// ```
/// use surge_proto::frame::{encode_frame, OpCode};
///
/// let mut out = Vec::new();
/// encode_frame(&mut out, OpCode::TEXT, true, None, b"hello websocket");
/// assert_eq!(&out[..2], &[0x81, 0x0F]);
/// ```
#[inline(always)]
pub fn encode_frame(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let header = FrameHeader { fin, rsv: 0, opcode, mask, payload_len: payload.len() as u64 };
    if mask.is_none() && payload.len() <= 125 {
        // A server's frame of up to 125 bytes, the common one: its two header bytes made in
        // registers and stored as one. Through `encode`'s array they were stored byte by
        // byte and loaded back as a pair, a load the CPU cannot forward from the two stores
        // (it waits for them), which measured as most of this function's time when echoing
        // small pipelined messages. Inlined (always): such a frame costs about what the call
        // to a general encoder did.
        out.reserve(2 + payload.len());
        out.extend_from_slice(&[header.first_byte(), payload.len() as u8]);
        out.extend_from_slice(payload);
        return;
    }
    encode_long_or_masked(out, &header, payload);
}

/// [`encode_frame`] for a masked frame or one of more than 125 bytes.
#[inline(never)]
fn encode_long_or_masked(out: &mut Vec<u8>, header: &FrameHeader, payload: &[u8]) {
    let mask = header.mask;
    let mut buf = [0; MAX_HEADER_LEN];
    let header_len = header.encode(&mut buf);
    out.reserve(header_len + payload.len());
    out.extend_from_slice(&buf[..header_len]);
    match mask {
        Some(key) => {
            crate::mask::extend_masked(out, payload, key, 0);
        }
        None => out.extend_from_slice(payload),
    }
}

/// Appends `msg` as one unmasked frame, the form a server sends. Encoding a broadcast once
/// with this and sharing the bytes costs one encoding for any number of receivers.
pub fn encode_message(out: &mut Vec<u8>, msg: Message<'_>) {
    encode_frame(out, msg.opcode(), true, None, msg.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: DecodeRules =
        DecodeRules { role: Role::Server, allowed_rsv: 0, max_frame_size: u64::MAX >> 1 };
    const CLIENT: DecodeRules = DecodeRules { role: Role::Client, ..SERVER };

    #[test]
    fn header_round_trips_at_every_length_class() {
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x1_0000, u64::MAX >> 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let header = FrameHeader {
                    fin: len % 2 == 0,
                    rsv: 0,
                    opcode: OpCode::BINARY,
                    mask,
                    payload_len: len,
                };
                let mut buf = [0; MAX_HEADER_LEN];
                let n = header.encode(&mut buf);
                assert_eq!(n, header.encoded_len());
                let rules = if mask.is_some() { SERVER } else { CLIENT };
                assert_eq!(decode_header(&buf[..n], &rules), Ok(Some((header, n))));
                for cut in 0..n {
                    assert_eq!(decode_header(&buf[..cut], &rules), Ok(None), "len {len} cut {cut}");
                }
            }
        }
    }

    #[test]
    fn a_length_in_a_longer_form_than_needed_counts_its_real_bytes() {
        let wire = [0x82, 0xFE, 0x00, 0x01, 1, 2, 3, 4, 0xAA];
        let (header, len) = decode_header(&wire, &SERVER).unwrap().unwrap();
        assert_eq!((header.payload_len, len, header.encoded_len()), (1, 8, 6));
        let wire = [0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4];
        assert_eq!(decode_header(&wire, &SERVER).unwrap().unwrap().1, 14);
    }

    #[test]
    fn violations_get_the_rfc_close_codes() {
        let cases: &[(&[u8], ProtocolError)] = &[
            (&[0xC1, 0x80], ProtocolError::ReservedBits),
            (&[0x83, 0x80], ProtocolError::ReservedOpcode(OpCode::from_bits(3))),
            (&[0x8B, 0x80], ProtocolError::ReservedOpcode(OpCode::from_bits(0xB))),
            (&[0x89, 0xFE], ProtocolError::ControlFrameTooLong),
            (&[0x09, 0x80], ProtocolError::FragmentedControlFrame),
            (&[0x81, 0x05], ProtocolError::UnmaskedFrame),
            (&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0], ProtocolError::InvalidLength),
        ];
        for (wire, expected) in cases {
            assert_eq!(decode_header(wire, &SERVER), Err(*expected), "{wire:02x?}");
            assert_eq!(expected.close_code().as_u16(), 1002);
        }
        assert_eq!(decode_header(&[0x81, 0x85], &CLIENT), Err(ProtocolError::MaskedFrame));
        let small = DecodeRules { max_frame_size: 100, ..SERVER };
        let err = decode_header(&[0x82, 0xFE, 0x01, 0x00], &small).unwrap_err();
        assert_eq!((err, err.close_code().as_u16()), (ProtocolError::FrameTooLarge, 1009));
    }

    #[test]
    fn seed_echo_frames_encode_byte_for_byte() {
        let mut out = Vec::new();
        encode_frame(
            &mut out,
            OpCode::TEXT,
            true,
            Some([0x37, 0xFA, 0x21, 0x3D]),
            b"hello websocket",
        );
        assert_eq!(
            out,
            [
                0x81, 0x8F, 0x37, 0xFA, 0x21, 0x3D, 0x5F, 0x9F, 0x4D, 0x51, 0x58, 0xDA, 0x56, 0x58,
                0x55, 0x89, 0x4E, 0x5E, 0x5C, 0x9F, 0x55
            ]
        );
        out.clear();
        encode_message(&mut out, Message::Text("hello websocket"));
        assert_eq!(out, b"\x81\x0Fhello websocket");
    }
}
