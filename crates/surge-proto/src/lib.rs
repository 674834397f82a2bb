//! The RFC 6455 WebSocket protocol with no I/O.
//!
//! `surge-proto` is everything a WebSocket endpoint decides, and nothing it does: it owns no
//! socket, spawns no thread and reads no clock. Bytes come in as slices, time comes in as an
//! [`Instant`](std::time::Instant) argument, and frames go out into buffers the caller owns.
//! The same code runs in the `surge` engine's event loops, in the load generator's clients,
//! in tests on a virtual clock and under a fuzzer.
//!
//! ```text
//!             TCP bytes in                                   TCP bytes out
//!                  |                                               ^
//!                  v                                               |
//!   handshake::ServerHandshake --101 / 4xx--> caller's Vec<u8> ----+
//!                  | (head done)                                   |
//!                  v                                               |
//!   connection::Connection::read(&mut [u8], &mut assembly)         |
//!      frame::decode_header -> mask::apply_mask (in place)         |
//!      -> extension::Extension::decode (RSV bits negotiated)       |
//!      -> utf8 (streaming) -> message assembly                     |
//!                  |                                               |
//!                  v                                               |
//!   Event::{Message, Ping, Pong, Close, Error}  --> application    |
//!                                                      |           |
//!   Connection::{send, ping, close, poll_transmit} <---+ ----------+
//!   time: handle_input(now) per read; poll_timeout() / handle_timeout(now):
//!         idle ping, idle Close 1001, close deadline
//! ```
//!
//! What it is not: it does not buffer output for you (you own the buffer and decide when to
//! flush), it does not compress (permessage-deflate will be one implementation of
//! [`extension::Extension`], the seam between frames and messages), and it does not choose a
//! subprotocol or check an Origin (the handshake hands the request to you to decide).
//!
//! # Example
//!
//! A server connection answering a client's message and its Close, all in memory:
//!
//! ```
//! use surge_proto::connection::{Connection, Event, Limits};
//! use surge_proto::message::Message;
//!
//! let mut client = Connection::client(Limits::default(), 0x5eed);
//! let mut server = Connection::server(Limits::default());
//! let (mut to_server, mut to_client, mut assembly) = (Vec::new(), Vec::new(), Vec::new());
//!
//! client.send(Message::Text("hello"), &mut to_server).unwrap();
//! let (used, event) = server.read(&mut to_server, &mut assembly);
//! assert_eq!(used, 11);
//! match event {
//!     Some(Event::Message(msg)) => server.send(msg, &mut to_client).unwrap(),
//!     other => panic!("unexpected {other:?}"),
//! }
//! let (_, event) = client.read(&mut to_client, &mut assembly);
//! assert_eq!(event, Some(Event::Message(Message::Text("hello"))));
//! ```
#![deny(unsafe_code)]

pub mod close;
mod close_code;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
mod opcode;
pub mod utf8;

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
