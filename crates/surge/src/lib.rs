//! Surge: a WebSocket (RFC 6455) server engine.
//!
//! One event loop per thread, each with its own `SO_REUSEPORT` listener; connections in a
//! per-loop slab; one read buffer per loop, so a message that arrives whole reaches the
//! handler borrowed from it, without a copy; output built in pooled buffers and written once
//! per connection per loop turn; broadcast frames encoded once and shared. The protocol
//! itself (handshake, frames, UTF-8, close codes, the idle and close timers, extensions) is
//! [`surge_proto`], which does no I/O and reads no clock.
//!
//! Beside the WebSocket, on the same port: plain HTTP/1.1 requests (keep-alive, pipelined)
//! reach the built-in `/healthz`, `/readyz` and `/metrics` (every loop's counts in the
//! Prometheus text format) and the handler's [`Handler::on_http`] routes.
//!
//! What it is not: not a general HTTP server (no chunked bodies, no HTTP/2), not async (handlers are plain callbacks on the loop's thread and must not
//! block it), and not a client (that is `surge-client`, on the same `surge_proto`). TLS,
//! permessage-deflate and io_uring are not here yet; each has a seam to plug into.
//!
//! Topics: a connection subscribes ([`Conn::subscribe`], [`ServerHandle::subscribe`]) and
//! anyone publishes ([`Conn::publish`], [`ServerHandle::publish`]); each loop keeps its own
//! table, a publish is encoded once and shared, and nodes share topics through Redis
//! ([`ConfigBuilder::cluster`], at most once across nodes). The ordering promise is on
//! [`Conn::publish_to`].
//!
//! ```text
//!                 backend (mio today; what waits, owns listeners, carries out flushes)
//!                    |  Ready::{Listener, Input(X), Output(X), Wake}     ^ flush(X)
//!                    v                                                  |
//!  EventLoop::turn(now) ------------------------------------------------+
//!    accept --> Connections::adopt --> Phase::Handshake
//!    Input(X) --> transport (Stream: TCP) read into the loop buffer --> Turn
//!       Turn: handshake --on_upgrade--> 101 (written at once through the transport)
//!             --on_open--> Phase::Open: surge_proto::Connection::read(bytes, assembly)
//!             --> on_message(conn, state, Message<'_>) --> conn.send(..) appends a frame
//!                 (a large reply to the last message of a read: written at once)
//!    timers: the wheel --> handshake / linger deadlines, or the protocol's handle_timeout
//!    end of turn --> Backend::flush per connection with output --> pool takes buffers back
//!  other threads --> ServerHandle::{send, broadcast, publish, close, shutdown} --> channel + waker
//!  publish --> this loop's subscribers after the handler call; other loops' queues;
//!               the broker's bounded queue --> Redis --> other nodes' brokers --> their loops
//! ```
//!
//! # Where things are
//!
//! Each module uses only modules listed before it (the graph has no circle).
//!
//! - Leaves: `key` (a connection's name in its loop), `admission` (the connection cap as a
//!   token), `buffer_pool`, `timer` (the wheel), `slab`, `request`, `readiness`, `config`,
//!   `error`, `stats` (each loop's counts), then `metrics` (the counts gathered for
//!   `/metrics`).
//! - Pub/sub below the loops: `topics` (a loop's table: who is subscribed, whom a publish
//!   reaches, each once), `cluster` (the loops' side of the broker: its bounded queue, its
//!   counters, the message format on Redis).
//! - The seams and what crosses threads: `transport` (a connection's byte stream: TCP, and
//!   an in-memory pipe in tests), `outbox` (queued output, written through a transport),
//!   `handle` (ids, commands and the handle other threads hold), `backend` (what waits for
//!   I/O and flushes: its module docs say what a backend must provide).
//! - Per message: `context` (the loop state a turn lends out), `http` (plain requests beside
//!   the upgrade, and the built-in routes), `conn` (a connection's record,
//!   its phases, what a send costs; `Conn`), `handler` (the embedding API), `upgrade` (the
//!   server's checks and refusals), `turn` (the per-message path: read, handshake, protocol
//!   events, the handler's calls), `panics` (a handler's panic closes its connection with
//!   1011, the engine's drops its connection; neither stops the loop).
//! - A loop and its set-up: `connections` (the slab and what is done to it), `event_loop`
//!   (the turn, accepting, commands), `acceptor` (listeners), `broker` (the cluster's
//!   threads between the loops and Redis), `server` (threads).
//! - Handlers shipped: `echo`, `broadcast` (a room per path).
//! - Tests only, on top: `backend::sim` (a backend on a virtual clock) and `tests` (the
//!   engine's timeouts, backpressure and shutdown at exact instants).
//!
//! A new transport (TLS over rustls' unbuffered connection) is a module under
//! `transport` and a variant of `transport::Stream`; a new backend (io_uring) is a module
//! under `backend` implementing `backend::Backend`, chosen in `server`. Neither touches
//! `turn`, `conn` or `outbox`. An extension (permessage-deflate) implements
//! [`surge_proto::extension::Extension`] and answers its negotiation through
//! [`Upgrade::Accept`]'s headers.
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
// Unsafe code lives only in the io_uring backend (`backend::uring`) and the TLS provider's
// fork handler (`tls::random`), which allow it.
#![deny(unsafe_code)]

mod acceptor;
mod admission;
mod backend;
pub mod broadcast;
mod broker;
mod buffer_pool;
mod cluster;
pub mod config;
mod conn;
mod connections;
mod context;
pub mod deflate;
pub mod echo;
pub mod error;
mod event_loop;
mod handle;
mod handler;
mod http;
mod key;
mod metrics;
mod outbox;
mod panics;
mod rate;
mod readiness;
mod request;
mod server;
mod slab;
// Redis Cluster routing is not wired into the broker yet (work in progress).
#[allow(dead_code)]
mod slots;
mod stats;
#[cfg(test)]
mod tests;
mod timer;
pub mod tls;
mod topics;
mod transport;
mod turn;
mod upgrade;

pub use admission::LimitStats;
#[cfg(target_os = "linux")]
pub use backend::IoUringStats;
pub use cluster::BrokerStats;
pub use config::{
    Backend, BackpressurePolicy, Cluster, Config, ConfigBuilder, ConfigError, Pinning, RateLimit,
    RatePolicy, Sharding,
};
pub use conn::{Conn, SendResult};
pub use deflate::{DeflateConfig, DeflateMemory};
pub use error::{HandleError, ServerError};
pub use handle::{ConnectionId, LoopIndex, OwnedMessage, ServerHandle, ShutdownReport};
pub use handler::{Handler, Upgrade};
pub use http::{HttpRequest, HttpResponse};
pub use readiness::ReadyFlag;
pub use request::Request;
pub use server::Server;
/// The protocol crate, re-exported so that embedders name one dependency.
pub use surge_proto;
pub use surge_proto::close::CloseCode;
pub use surge_proto::message::Message;
pub use topics::{Audience, TopicStats};
