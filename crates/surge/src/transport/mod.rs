//! The transport seam: what owns a connection's byte stream.
//!
//! The engine reads a connection's input, writes its output (vectored, straight from the
//! pooled or shared buffers it was built in), shuts the write side for a lingering close,
//! and asks for the peer's address, all through [`Transport`], and never through a socket
//! type. [`Stream`] is the one type a connection record holds.
//!
//! # What a transport must provide
//!
//! - `read` into the caller's buffer: plaintext WebSocket bytes, `Ok(0)` at the end of the
//!   stream, `WouldBlock` when nothing is ready. A transport with its own framing (TLS)
//!   reads the socket, processes what came (rustls' `read_tls` then `process_new_packets`)
//!   and copies out plaintext (`reader()`); a read that only advanced its own handshake
//!   returns `WouldBlock`.
//! - `write_vectored` of plaintext, returning how much of it was taken; a short count means
//!   the rest is the engine's to keep and offer again when the socket is writable.
//!   A TLS transport encrypts what it takes (`writer()`) and writes records (`write_tls`);
//!   records it could not write yet it keeps, and reports through
//!   [`Transport::wants_write`] so that the loop keeps WRITABLE interest for them.
//! - `shutdown_write`: no more output (TLS: `send_close_notify` first).
//! - `peer_addr`.
//! - Registration with the backend: the mio backend registers [`Stream`] as a
//!   [`mio::event::Source`]; a transport over a socket delegates to it.
//!
//! Adding a transport (TLS over rustls' sans-IO `ServerConnection`) is one module with the
//! type and its `Transport` impl, and one variant of [`Stream`] here; the per-message path
//! (`turn`, `conn`, `outbox`) only ever sees `Transport`.

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::tls::TlsContext;

/// A connection's byte stream, as the engine uses it.
pub(crate) trait Transport {
    /// Reads received bytes into `buf`; `Ok(0)` is the end of the stream.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes from `bufs` in order; returns how many bytes were taken.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Output the transport holds itself and still has to write (TLS records); the loop
    /// keeps WRITABLE interest while this is true.
    fn wants_write(&self) -> bool {
        false
    }
    /// Ends the output side (a FIN after the last byte).
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// The peer's address.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
}

impl Transport for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match bufs {
            // One slice: `write`, as the kernel would do the same with one more indirection.
            [one] => Write::write(self, one),
            _ => Write::write_vectored(self, bufs),
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        TcpStream::shutdown(self, std::net::Shutdown::Write)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        TcpStream::peer_addr(self)
    }
}

#[cfg(test)]
pub(crate) mod memory;
pub(crate) mod tls;

/// The transport a connection record holds: plain TCP, or TLS over it. Each transport is a
/// variant, dispatched here by a match (no vtable on the per-message path); TLS is boxed, so
/// that a cleartext record stays the size of a socket.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS (wss).
    Tls(Box<tls::TlsStream>),
    /// An in-memory pipe to a test's client (the simulator's backend).
    #[cfg(test)]
    Memory(memory::Pipe),
}

impl Transport for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(tcp) => Transport::read(tcp, buf),
            Stream::Tls(tls) => tls.read(buf),
            #[cfg(test)]
            Stream::Memory(pipe) => pipe.read(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(tcp) => Transport::write_vectored(tcp, bufs),
            Stream::Tls(tls) => tls.write_vectored(bufs),
            #[cfg(test)]
            Stream::Memory(pipe) => pipe.write_vectored(bufs),
        }
    }

    fn wants_write(&self) -> bool {
        match self {
            Stream::Tcp(tcp) => tcp.wants_write(),
            Stream::Tls(tls) => tls.wants_write(),
            #[cfg(test)]
            Stream::Memory(pipe) => pipe.wants_write(),
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(tcp) => tcp.shutdown_write(),
            Stream::Tls(tls) => tls.shutdown_write(),
            #[cfg(test)]
            Stream::Memory(pipe) => pipe.shutdown_write(),
        }
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Tcp(tcp) => Transport::peer_addr(tcp),
            Stream::Tls(tls) => tls.peer_addr(),
            #[cfg(test)]
            Stream::Memory(pipe) => pipe.peer_addr(),
        }
    }
}

impl Stream {
    /// The stream a listener serving `tls` hands out for an accepted socket: TLS over it
    /// when the server has a certificate, the socket itself otherwise.
    pub(crate) fn secured(self, tls: Option<&TlsContext>) -> io::Result<Stream> {
        match (self, tls) {
            (Stream::Tcp(tcp), Some(tls)) => {
                Ok(Stream::Tls(Box::new(tls::TlsStream::new(tcp, &tls.server_config)?)))
            }
            (stream, _) => Ok(stream),
        }
    }

    /// The socket under the stream, for the mio backend's registrations.
    fn socket(&mut self) -> io::Result<&mut TcpStream> {
        match self {
            Stream::Tcp(tcp) => Ok(tcp),
            Stream::Tls(tls) => Ok(tls.socket()),
            #[cfg(test)]
            Stream::Memory(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.socket()?.register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.socket()?.reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket()?.deregister(registry)
    }
}
