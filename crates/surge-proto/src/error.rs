//! Typed errors of the protocol core.
//!
//! Errors are sorted by who is at fault: [`ProtocolError`] is the peer breaking RFC 6455 (each
//! maps to the close code the RFC names), [`SendError`] is the caller asking for something the
//! connection's state forbids. A normal close is an event, never an error.
#![forbid(unsafe_code)]

use crate::close_code::CloseCode;
use crate::opcode::OpCode;

/// The peer broke the protocol; the connection answers with [`ProtocolError::close_code`].
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1-3 set while no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// An opcode RFC 6455 reserves (3-7, 0xB-0xF).
    #[error("reserved opcode {0:?}")]
    ReservedOpcode(OpCode),
    /// A control frame with more than 125 bytes of payload.
    #[error("control frame longer than 125 bytes")]
    ControlFrameTooLong,
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A client frame without a mask (at a server).
    #[error("unmasked frame from a client")]
    UnmaskedFrame,
    /// A server frame with a mask (at a client).
    #[error("masked frame from a server")]
    MaskedFrame,
    /// A 64-bit payload length with its most significant bit set.
    #[error("payload length with the most significant bit set")]
    InvalidLength,
    /// A frame longer than the configured maximum.
    #[error("frame longer than the configured maximum")]
    FrameTooLarge,
    /// A message longer than the configured maximum.
    #[error("message longer than the configured maximum")]
    MessageTooLarge,
    /// A continuation frame with no fragmented message to continue.
    #[error("continuation frame with nothing to continue")]
    UnexpectedContinuation,
    /// A new data frame while a fragmented message was still open.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// Text (or a close reason) that is not UTF-8.
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    /// A Close frame with a one-byte payload.
    #[error("close frame with a one-byte payload")]
    InvalidClosePayload,
    /// A Close frame with a code that may not be sent.
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(CloseCode),
    /// A compressed message (permessage-deflate) whose payload is not a valid DEFLATE
    /// stream, or ends inside a block.
    #[error("corrupt compressed message")]
    CorruptCompression,
}

impl ProtocolError {
    /// The close code RFC 6455 names for this violation.
    pub const fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::FrameTooLarge | ProtocolError::MessageTooLarge => {
                CloseCode::MESSAGE_TOO_BIG
            }
            ProtocolError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// The caller asked the connection for something its state does not allow.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A Close frame was already sent (or queued): nothing may follow it.
    #[error("the connection is closing: nothing may be sent after a Close frame")]
    Closed,
    /// A ping payload or close reason over the 125 bytes a control frame may carry.
    #[error("control frame payload longer than 125 bytes")]
    ControlTooLong,
    /// A close code that may not be sent (1005, 1006, 1015 or unregistered).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(CloseCode),
}

pub use crate::handshake::{ClientHandshakeError, HandshakeError};
