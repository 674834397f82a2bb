//! Surge: a WebSocket (RFC 6455) server engine.
//!
//! One [mio] event loop per thread, each with its own `SO_REUSEPORT` listener; connections
//! in a per-loop slab; one read buffer per loop, so a message that arrives whole reaches the
//! handler borrowed from it, without a copy; output built in pooled buffers and written once
//! per connection per loop turn; broadcast frames encoded once and shared. The protocol
//! itself (handshake, frames, UTF-8, close codes) is [`surge_proto`], which does no I/O.
//!
//! ```text
//!  accept (per loop) --> handshake --on_upgrade--> 101 --on_open-->
//!  readable --> one read into the loop buffer --> surge_proto::Connection::read
//!           --> on_message(conn, state, Message<'_>) --> conn.send(..) appends a frame
//!  end of turn --> one write/writev per connection with output --> pool takes buffers back
//!  other threads --> ServerHandle::{send, broadcast, close, shutdown} --> channel + waker
//! ```
//!
//! # Where things are
//!
//! Set-up: `config`, `acceptor` (listeners), `server` (threads). A loop turn: `event_loop`
//! (readiness, timers, the end-of-turn flush). Per message: `inbound` (read, protocol events,
//! handler calls), `conn` (what a send costs), `outbox` (the write), `buffer_pool`. Around
//! them: `upgrade` (the opening handshake), `timer` (the wheel), `slab` (connection ids),
//! `handle` (other threads).
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use surge::{Config, Conn, Handler, Request, Server, Upgrade};
//! use surge_proto::message::Message;
//!
//! struct Shout;
//!
//! impl Handler for Shout {
//!     type State = ();
//!     fn on_upgrade(&mut self, req: &Request<'_>) -> Upgrade<()> {
//!         if !req.origin_in(&["https://example.com"]) {
//!             return Upgrade::Reject(403);
//!         }
//!         Upgrade::accept(())
//!     }
//!     fn on_message(&mut self, conn: &mut Conn<'_>, _: &mut (), msg: Message<'_>) {
//!         if let Message::Text(text) = msg {
//!             let _ = conn.send_text(&text.to_uppercase());
//!         }
//!     }
//! }
//!
//! let config = Config::builder().listen("127.0.0.1:9001".parse().unwrap()).build()?;
//! let server = Server::start(config, |_loop| Shout)?;
//! let report = server.shutdown(Duration::from_secs(5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod acceptor;
mod admission;
mod backend;
mod buffer_pool;
pub mod config;
mod conn;
mod connections;
mod context;
pub mod echo;
pub mod error;
mod event_loop;
mod handle;
mod handler;
mod key;
mod outbox;
mod request;
mod server;
mod slab;
#[cfg(test)]
mod tests;
mod timer;
mod transport;
mod turn;
mod upgrade;

pub use config::{BackpressurePolicy, Config, ConfigBuilder, ConfigError, Pinning};
pub use conn::{Conn, SendResult};
pub use error::{HandleError, ServerError};
pub use handle::{ConnectionId, LoopIndex, OwnedMessage, ServerHandle, ShutdownReport};
pub use handler::{Handler, Upgrade};
pub use request::Request;
pub use server::Server;
/// The protocol crate, re-exported so that embedders name one dependency.
pub use surge_proto;
pub use surge_proto::close::CloseCode;
pub use surge_proto::message::Message;
