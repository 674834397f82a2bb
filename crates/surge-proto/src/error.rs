//! Typed errors of the protocol core.
#![forbid(unsafe_code)]
pub use crate::handshake::{ClientHandshakeError, HandshakeError};
