//! The transport seam: what owns a connection's byte stream.
//!
//! The engine reads a connection's input, writes its output (vectored, straight from the
//! pooled or shared buffers it was built in), shuts the write side for a lingering close,
//! and asks for the peer's address, all through [`Transport`], and never through a socket
//! type. [`Stream`] is the one type a connection record holds.
//!
//! # What a transport must provide
//!
//! - `read` into the caller's buffer (the loop's read buffer): plaintext WebSocket bytes,
//!   `Ok(0)` at the end of the stream, `WouldBlock` when nothing is ready, and through
//!   `filled` whether the read may have left input behind (the loop reads again). A
//!   transport with its own framing (TLS) reads its ciphertext into that same buffer,
//!   decrypts it there (rustls' unbuffered `process_tls_records`) and leaves the plaintext
//!   at its front; what it must keep between reads (a record in pieces) it keeps in a buffer
//!   from the loop's pool, lent with each call; a read that only advanced its own handshake
//!   returns `WouldBlock`. Under a completion backend (io_uring) the socket has been read
//!   already: the TLS transport takes the received bytes instead of reading
//!   (`TlsStream::read_received`), through the same record processing.
//! - `write_vectored` of plaintext, returning how much of it was taken; a short count means
//!   the rest is the engine's to keep and offer again when the socket is writable.
//!   A TLS transport encrypts what it takes into a pooled buffer and writes the records;
//!   records the socket did not take it keeps, and reports through
//!   [`Transport::wants_write`] so that the loop keeps WRITABLE interest for them.
//! - `shutdown_write`: no more output (TLS: `close_notify` first).
//! - `ending`: what is written from now on is the stream's last output, so a transport that
//!   ends its stream with a message of its own (TLS: `close_notify`) sends it behind that
//!   output, in the same write, instead of alone when the stream is dropped.
//! - `peer_addr`.
//! - Registration with the backend: the mio backend registers [`Stream`] as a
//!   [`mio::event::Source`]; a transport over a socket delegates to it.
//!
//! Adding a transport (TLS over rustls' sans-IO unbuffered connection) is one module with the
//! type and its `Transport` impl, and one variant of [`Stream`] here; the per-message path
//! (`turn`, `conn`, `outbox`) only ever sees `Transport`.

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::buffer_pool::BufferPool;
use crate::stats::LoopStats;
use crate::tls::TlsContext;

/// A connection's byte stream, as the engine uses it.
pub(crate) trait Transport {
    /// Reads received bytes into `buf`; `Ok(0)` is the end of the stream. `pool` lends the
    /// buffers a transport keeps between calls.
    fn read(&mut self, buf: &mut [u8], pool: &mut BufferPool) -> io::Result<usize>;
    /// Whether the read that returned `read` bytes into a buffer of `room` may have left
    /// input in the socket, so that edge-triggered readiness will not report it again: a
    /// full read. (TLS returns less plaintext than it read, so it says so itself.)
    fn filled(&self, read: usize, room: usize) -> bool {
        read == room
    }
    /// Writes from `bufs` in order; returns how many bytes were taken. `pool` lends the
    /// buffers a transport keeps between calls.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>], pool: &mut BufferPool) -> io::Result<usize>;
    /// Output the transport holds itself and still has to write (TLS records); the loop
    /// keeps WRITABLE interest while this is true.
    fn wants_write(&self) -> bool {
        false
    }
    /// What is written from now on is the last output the stream carries (the engine will
    /// drop it once that is written): a transport that ends its stream with a message of its
    /// own puts it behind that output.
    fn ending(&mut self) {}
    /// Ends the output side (a FIN after the last byte).
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// The peer's address.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
}

impl Transport for TcpStream {
    fn read(&mut self, buf: &mut [u8], _pool: &mut BufferPool) -> io::Result<usize> {
        Read::read(self, buf)
    }

    fn write_vectored(
        &mut self,
        bufs: &[IoSlice<'_>],
        _pool: &mut BufferPool,
    ) -> io::Result<usize> {
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
    fn read(&mut self, buf: &mut [u8], pool: &mut BufferPool) -> io::Result<usize> {
        match self {
            Stream::Tcp(tcp) => Transport::read(tcp, buf, pool),
            Stream::Tls(tls) => tls.read(buf, pool),
            #[cfg(test)]
            Stream::Memory(pipe) => pipe.read(buf, pool),
        }
    }

    fn filled(&self, read: usize, room: usize) -> bool {
        match self {
            Stream::Tcp(tcp) => tcp.filled(read, room),
            Stream::Tls(tls) => tls.filled(read, room),
            #[cfg(test)]
            Stream::Memory(pipe) => pipe.filled(read, room),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>], pool: &mut BufferPool) -> io::Result<usize> {
        match self {
            Stream::Tcp(tcp) => Transport::write_vectored(tcp, bufs, pool),
            Stream::Tls(tls) => tls.write_vectored(bufs, pool),
            #[cfg(test)]
            Stream::Memory(pipe) => pipe.write_vectored(bufs, pool),
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

    fn ending(&mut self) {
        if let Stream::Tls(tls) = self {
            tls.ending();
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
    /// when the server has a certificate (its handshake counted in `stats`), the socket
    /// itself otherwise.
    pub(crate) fn secured(
        self,
        tls: Option<&TlsContext>,
        stats: &Arc<LoopStats>,
    ) -> io::Result<Stream> {
        match (self, tls) {
            (Stream::Tcp(tcp), Some(tls)) => {
                let stream = tls::TlsStream::new(tcp, &tls.server_config, Arc::clone(stats))?;
                Ok(Stream::Tls(Box::new(stream)))
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
