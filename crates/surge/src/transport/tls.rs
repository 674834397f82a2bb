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
//!
//! Each stream counts its handshake's outcome once, in its loop's stats: completed (full or
//! resumed) where `process_new_packets` ends the handshake, failed (by the class of
//! rustls' error) where it fails, abandoned where the stream is dropped still handshaking.
//! After that a read costs one more test of a flag.

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{HandshakeKind, ServerConfig, ServerConnection};

use super::Transport;
use crate::stats::{LoopStats, TlsFailure};

/// Unsent TLS output one connection may hold past the socket before writes are refused
/// (the engine's own backpressure acts on plaintext above it).
const RECORD_BUFFER_LIMIT: usize = 64 << 10;

/// A TLS server connection over TCP.
#[derive(Debug)]
pub(crate) struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
    /// The loop's counts, where the handshake's outcome goes.
    stats: Arc<LoopStats>,
    /// Whether that outcome is counted yet.
    counted: bool,
}

impl TlsStream {
    /// Starts the server side of a handshake on an accepted socket, its outcome to be
    /// counted in `stats`.
    pub(crate) fn new(
        tcp: TcpStream,
        config: &Arc<ServerConfig>,
        stats: Arc<LoopStats>,
    ) -> io::Result<Self> {
        let mut tls = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        tls.set_buffer_limit(Some(RECORD_BUFFER_LIMIT));
        Ok(TlsStream { tcp, tls, stats, counted: false })
    }

    /// Counts the handshake's outcome once it has one: after `processed` (what
    /// `process_new_packets` returned) it has either ended, failed, or is still going.
    fn count_handshake<T>(&mut self, processed: &Result<T, rustls::Error>) {
        match processed {
            Err(error) => self.stats.tls_failure(failure_of(error)),
            Ok(_) if !self.tls.is_handshaking() => {
                self.stats.tls_handshake(self.tls.handshake_kind() == Some(HandshakeKind::Resumed))
            }
            Ok(_) => return,
        }
        self.counted = true;
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
            if !self.counted {
                self.count_handshake(&processed);
            }
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

/// The class a handshake's failure is counted under.
fn failure_of(error: &rustls::Error) -> TlsFailure {
    use rustls::Error;
    match error {
        Error::AlertReceived(_) => TlsFailure::AlertReceived,
        Error::PeerIncompatible(_) | Error::NoApplicationProtocol => TlsFailure::Incompatible,
        Error::InvalidMessage(_) | Error::PeerSentOversizedRecord => TlsFailure::Malformed,
        Error::PeerMisbehaved(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::DecryptError => TlsFailure::Misbehaved,
        _ => TlsFailure::Other,
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
        if !self.counted {
            self.stats.tls_failure(TlsFailure::Abandoned);
        }
        if !self.tls.is_handshaking() {
            self.tls.send_close_notify();
            let _ = self.write_records();
        }
    }
}
