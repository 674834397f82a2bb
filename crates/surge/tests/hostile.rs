//! Hostile input against a real `surge echo` process (the attacks of
//! `hostile-inputs.md`): each test names its attack and checks the answer RFC 6455 (or
//! HTTP) names, byte for byte, and that the server shrugged it off: still running, a
//! witness connection opened before the attack still echoing (nothing it sent before was
//! lost), its descriptors back where they were and its memory peak within a budget.
//!
//! Every server is its own process on an ephemeral loopback port, killed when its guard
//! drops; every socket read and write has a timeout.

#[allow(dead_code, reason = "shared with the engine tests; not every helper is used here")]
#[path = "engine/client.rs"]
mod client;

#[path = "hostile/case.rs"]
mod case;
#[path = "hostile/server.rs"]
mod server;
#[path = "hostile/wire.rs"]
mod wire;

#[path = "hostile/deflate.rs"]
mod deflate;
#[path = "hostile/faults.rs"]
mod faults;
#[path = "hostile/frames.rs"]
mod frames;
#[path = "hostile/handshake.rs"]
mod handshake;
#[path = "hostile/http.rs"]
mod http;
#[path = "hostile/tls.rs"]
mod tls;
