//! The in-process server a run without a target measures: Surge's echo server, or in raw mode
//! the TCP echo floor.

use std::net::{Ipv4Addr, SocketAddr};

use crate::error::Error;
use crate::floor::EchoServer;

/// A running in-process echo server; stopped when dropped.
#[derive(Debug)]
pub enum EmbeddedServer {
    /// The raw TCP echo floor.
    Floor(EchoServer),
}

impl EmbeddedServer {
    /// What is running, for the summary.
    pub fn describe(&self) -> &'static str {
        match self {
            EmbeddedServer::Floor(_) => "TCP echo floor",
        }
    }
}

/// Starts the WebSocket echo server in-process on an ephemeral loopback port with `threads`
/// threads, pinned to `cores` when not empty.
pub fn start_embedded_echo(
    threads: usize,
    cores: &[usize],
) -> Result<(SocketAddr, EmbeddedServer), Error> {
    let _ = (threads, cores);
    Err(Error::Embedded(
        "the Surge engine is not part of this build yet; use --raw or give a ws:// target".into(),
    ))
}

/// Starts the raw TCP echo floor in-process on an ephemeral loopback port.
pub fn start_embedded_floor(
    threads: usize,
    cores: &[usize],
) -> Result<(SocketAddr, EmbeddedServer), Error> {
    let server = EchoServer::start((Ipv4Addr::LOCALHOST, 0).into(), threads, cores)?;
    Ok((server.addr(), EmbeddedServer::Floor(server)))
}
