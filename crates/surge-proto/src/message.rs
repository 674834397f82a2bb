//! Whole WebSocket messages as the application sees them.
#![forbid(unsafe_code)]

use crate::opcode::OpCode;

/// A complete data message, borrowed from the bytes that carried it.
///
/// Text is validated UTF-8 by the time it is a `Message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }

    /// The opcode of the message's first frame.
    pub fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::TEXT,
            Message::Binary(_) => OpCode::BINARY,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
