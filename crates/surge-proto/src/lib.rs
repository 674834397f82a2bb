//! Sans-IO core of the RFC 6455 WebSocket protocol.
#![deny(unsafe_code)]

pub mod error;
pub mod mask;

/// Which side of a WebSocket connection this endpoint plays.
///
/// The role decides masking: a client masks every frame it sends and must receive unmasked
/// frames; a server is the reverse (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The endpoint that accepted the TCP connection and answered the opening handshake.
    Server,
    /// The endpoint that opened the TCP connection and sent the opening handshake.
    Client,
}
