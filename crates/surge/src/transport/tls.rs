//! The TLS transport: rustls' sans-IO `ServerConnection` over a TCP socket.
//!
//! Reading takes what the socket has into rustls (`read_tls`), processes it, writes any
//! records that produced (handshake flights, alerts, key-update answers) and hands the
//! plaintext to the engine in the caller's buffer; a read that only advanced the handshake
//! is `WouldBlock`. Writing encrypts what rustls takes and writes the records; records the
//! socket did not take stay in rustls and are reported by `wants_write`, so the loop keeps
//! WRITABLE interest and offers an empty write when the socket drains. A peer's protocol
//! error is answered with rustls' alert, then the stream reads as failed; the engine drops
//! the connection as it does any failed stream. Dropping the stream sends `close_notify`
//! (best effort: the socket is non-blocking) before the socket closes.

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use super::Transport;

/// Unsent TLS output one connection may hold past the socket before writes are refused
/// (the engine's own backpressure acts on plaintext above it).
const RECORD_BUFFER_LIMIT: usize = 64 << 10;

/// A TLS server connection over TCP.
#[derive(Debug)]
pub(crate) struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
}

impl TlsStream {
    /// Starts the server side of a handshake on an accepted socket.
    pub(crate) fn new(tcp: TcpStream, config: &Arc<ServerConfig>) -> io::Result<Self> {
        let mut tls = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        tls.set_buffer_limit(Some(RECORD_BUFFER_LIMIT));
        Ok(TlsStream { tcp, tls })
    }

    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// Writes held records until the socket stops taking them.
    fn write_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Transport for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // The engine reads edge-triggered: a short read must mean the socket is drained, so
        // this goes on until the buffer is full or the socket has nothing more.
        let mut filled = 0;
        loop {
            // Plaintext already decrypted goes first; `Ok(0)` here is the peer's close_notify.
            match self.tls.reader().read(&mut buf[filled..]) {
                Ok(0) => return Ok(filled),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            if filled == buf.len() {
                return Ok(filled);
            }
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => return Ok(filled),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            let processed = self.tls.process_new_packets();
            // Handshake flights, alerts (including the one for a protocol error), key-update
            // answers. A socket that does not take them now gets them with the next write.
            let written = self.write_records();
            if let Err(error) = processed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            written?;
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_records()?;
        if self.tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        // rustls takes at most its record buffer's room per call. A short count must mean
        // the socket is full (the engine then waits for WRITABLE, which only a full socket
        // raises), so take more while the socket takes the records.
        let mut taken = self.tls.writer().write_vectored(bufs)?;
        self.write_records()?;
        while taken < total && !self.tls.wants_write() {
            let mut room = [IoSlice::new(&[]); 64];
            let n = self.tls.writer().write_vectored(rest(bufs, taken, &mut room))?;
            if n == 0 {
                break;
            }
            taken += n;
            self.write_records()?;
        }
        if taken == 0 && total > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.tls.send_close_notify();
        self.write_records()?;
        self.tcp.shutdown(std::net::Shutdown::Write)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }
}

/// The slices of `bufs` after the first `skip` bytes, in `room` (as many as fit).
fn rest<'b>(
    bufs: &'b [IoSlice<'_>],
    mut skip: usize,
    room: &'b mut [IoSlice<'b>; 64],
) -> &'b [IoSlice<'b>] {
    let mut count = 0;
    for buf in bufs {
        if skip >= buf.len() {
            skip -= buf.len();
            continue;
        }
        if count == room.len() {
            break;
        }
        room[count] = IoSlice::new(&buf[skip..]);
        skip = 0;
        count += 1;
    }
    &room[..count]
}

impl Drop for TlsStream {
    fn drop(&mut self) {
        if !self.tls.is_handshaking() {
            self.tls.send_close_notify();
            let _ = self.write_records();
        }
    }
}
