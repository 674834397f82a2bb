//! The in-process server a run without a target measures: Surge's echo server, or in raw mode
//! the TCP echo floor.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::error::Error;
use crate::floor::EchoServer;

/// A running in-process echo server; stopped when dropped.
#[derive(Debug)]
pub enum EmbeddedServer {
    /// Surge's WebSocket echo server.
    Surge(Option<surge::Server>),
    /// The raw TCP echo floor.
    Floor(EchoServer),
}

impl EmbeddedServer {
    /// What is running, for the summary.
    pub fn describe(&self) -> &'static str {
        match self {
            EmbeddedServer::Surge(_) => "Surge echo server",
            EmbeddedServer::Floor(_) => "TCP echo floor",
        }
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        if let EmbeddedServer::Surge(server) = self {
            if let Some(server) = server.take() {
                // Clients are gone by now: the grace only covers Close frames in flight.
                server.shutdown(Duration::from_secs(1));
            }
        }
    }
}

/// Starts the WebSocket echo server in-process on an ephemeral loopback port with `threads`
/// threads, pinned to `cores` when not empty, accepting permessage-deflate (with the default
/// [`surge::DeflateConfig`], as `surge echo --deflate`) when `deflate`.
pub fn start_embedded_echo(
    threads: usize,
    cores: &[usize],
    deflate: bool,
) -> Result<(SocketAddr, EmbeddedServer), Error> {
    let mut config =
        surge::Config::builder().listen((Ipv4Addr::LOCALHOST, 0).into()).threads(threads);
    if deflate {
        config = config.deflate(surge::DeflateConfig::default());
    }
    if !cores.is_empty() {
        config = config.pinning(surge::Pinning::Cores(cores.to_vec()));
    }
    let config = config.build().map_err(surge::ServerError::from)?;
    let server = surge::Server::start(config, |_| surge::echo::EchoHandler)?;
    let addr = server.local_addrs()[0];
    Ok((addr, EmbeddedServer::Surge(Some(server))))
}

/// Starts the raw TCP echo floor in-process on an ephemeral loopback port.
pub fn start_embedded_floor(
    threads: usize,
    cores: &[usize],
) -> Result<(SocketAddr, EmbeddedServer), Error> {
    let server = EchoServer::start((Ipv4Addr::LOCALHOST, 0).into(), threads, cores)?;
    Ok((server.addr(), EmbeddedServer::Floor(server)))
}
