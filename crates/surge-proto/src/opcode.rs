//! The frame opcode (RFC 6455 §5.2): an open newtype over the 4-bit field. A module of its
//! own, below the frame codec, messages and errors, which all name it; re-exported from
//! `frame`.
#![forbid(unsafe_code)]

use core::fmt;

/// A frame's opcode: an open newtype over the 4-bit field, named constants for the six that
/// RFC 6455 defines.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpCode(u8);

impl OpCode {
    /// Continues a fragmented message.
    pub const CONTINUATION: OpCode = OpCode(0x0);
    /// First frame of a text message.
    pub const TEXT: OpCode = OpCode(0x1);
    /// First frame of a binary message.
    pub const BINARY: OpCode = OpCode(0x2);
    /// Close.
    pub const CLOSE: OpCode = OpCode(0x8);
    /// Ping.
    pub const PING: OpCode = OpCode(0x9);
    /// Pong.
    pub const PONG: OpCode = OpCode(0xA);

    /// The opcode of a header's low four bits.
    pub const fn from_bits(bits: u8) -> Self {
        OpCode(bits & 0x0F)
    }

    /// The four-bit value.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Close, ping, pong and the reserved 0xB-0xF.
    pub const fn is_control(self) -> bool {
        self.0 & 0x8 != 0
    }

    /// 0x3-0x7 and 0xB-0xF, which no endpoint may send without an extension.
    pub const fn is_reserved(self) -> bool {
        matches!(self.0, 0x3..=0x7 | 0xB..=0xF)
    }
}

impl fmt::Debug for OpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            OpCode::CONTINUATION => "CONTINUATION",
            OpCode::TEXT => "TEXT",
            OpCode::BINARY => "BINARY",
            OpCode::CLOSE => "CLOSE",
            OpCode::PING => "PING",
            OpCode::PONG => "PONG",
            OpCode(other) => return write!(f, "OpCode({other:#x})"),
        };
        f.write_str(name)
    }
}
