//! The TLS transport: rustls' unbuffered `UnbufferedServerConnection` over a TCP socket, with
//! every buffer the engine's.
//!
//! Reading: ciphertext is read into the loop's read buffer behind a record's worth of headroom
//! ([`HEADROOM`]), rustls decrypts each record where it lies, and its plaintext is copied to
//! the front of the same buffer, which is what the engine gets; since a record's plaintext is
//! never longer than the record, it always lands before the ciphertext still to process. A
//! record that has not all come (or a handshake message split over records) waits in a pooled
//! buffer until the next read, and only then. Handshake flights and alerts are encoded into a
//! pooled buffer and written at once. A read that only advanced the handshake is `WouldBlock`.
//! On io_uring the ciphertext has been received into the ring's buffers already: it is
//! copied in behind the headroom instead of read from the socket (`read_received`, a part at
//! a time when it is more than the buffer has room for), and processed the same way.
//!
//! Writing: plaintext is encrypted into a pooled buffer and written; records the socket did
//! not take stay in that buffer (at most [`CHUNK`] of plaintext's worth) and are reported by
//! `wants_write`, so the loop keeps WRITABLE interest and offers an empty write when the
//! socket drains. An idle connection holds neither buffer: only rustls' state and the socket.
//!
//! A peer's protocol error is answered with rustls' alert, then the stream reads as failed;
//! the engine drops the connection as it does any failed stream. Where the engine's last
//! output is its Close (it said so through `ending`), `close_notify` follows the Close's
//! record in the same write; otherwise dropping the stream sends it (best effort: the socket
//! is non-blocking) before the socket closes.
//!
//! What rustls 0.23 still does itself: it copies each received record's plaintext into a
//! fresh `Vec` (`ReadTraffic::next_record`; in-place reads are a planned API) and encrypts each
//! outgoing record in a fresh `Vec` before copying it out, so one message costs two
//! allocations inside rustls either way (its buffered API does the same).
//!
//! Each stream counts its handshake's outcome once, in its loop's stats: completed (full or
//! resumed) when rustls stops handshaking, failed (by the class of rustls' error) where it
//! fails, abandoned where the stream is dropped still handshaking.

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    AppDataRecord, ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus,
    WriteTraffic,
};
use rustls::{HandshakeKind, ServerConfig};

use super::Transport;
use crate::buffer_pool::BufferPool;
use crate::stats::{LoopStats, TlsFailure};

/// The most plaintext one record carries (2^14, RFC 8446 5.1; rustls refuses more). Reads
/// leave this much room in front of the ciphertext for the plaintext they copy out.
pub(crate) const HEADROOM: usize = 1 << 14;

/// The largest record on the wire (rustls' bound: 2^14 of plaintext plus 2048 of expansion,
/// and the 5-byte header).
const MAX_RECORD: usize = HEADROOM + 2048 + 5;

/// The smallest loop read buffer a TLS connection can be read with: the headroom and one
/// whole record behind it.
pub(crate) const READ_BUFFER_MIN: usize = HEADROOM + MAX_RECORD;

/// Plaintext encrypted per write before the socket is offered it: what a full socket may
/// leave held here.
const CHUNK: usize = 64 << 10;

/// A TLS server connection over TCP.
pub(crate) struct TlsStream {
    tcp: TcpStream,
    tls: UnbufferedServerConnection,
    /// Received ciphertext not yet processed: a record in pieces, or a handshake message
    /// spread over records. A pooled buffer while there is any; no capacity otherwise.
    incoming: Vec<u8>,
    /// Encrypted output the socket has not taken yet. A pooled buffer while there is any.
    outgoing: Vec<u8>,
    /// `outgoing` holds only records made after the handshake (session tickets, a
    /// KeyUpdate's answer) that no write has offered yet: they wait for the turn's flush, so
    /// that the tickets and the 101 behind them go out in one write, not two.
    deferred: bool,
    /// The loop's counts, where the handshake's outcome goes.
    stats: Arc<LoopStats>,
    /// Whether that outcome is counted yet.
    counted: bool,
    /// The peer's `close_notify` came: the stream has ended.
    peer_closed: bool,
    /// The last read stopped with the socket possibly holding more (its buffer was full).
    socket_full: bool,
    /// rustls failed (its alert is out): nothing more is read, written or sent, since
    /// rustls would parse the bad input again.
    failed: bool,
    /// What is written from now on is the stream's last output (the engine's Close):
    /// `close_notify` goes behind its last record, in the same write.
    ending: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .field("handshaking", &self.tls.is_handshaking())
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.outgoing.len())
            .finish_non_exhaustive()
    }
}

/// What processing the received records came to.
enum Processed {
    /// Everything complete is processed.
    Done,
    /// rustls failed on the input; its alert is written (or held for the next write).
    Failed(rustls::Error),
}

/// Where a read's ciphertext comes from.
enum Source<'r> {
    /// The socket itself (a readiness backend).
    Socket,
    /// What a completion backend received from the socket, taken from the front.
    Received(&'r [u8]),
}

impl TlsStream {
    /// Starts the server side of a handshake on an accepted socket, its outcome to be
    /// counted in `stats`.
    pub(crate) fn new(
        tcp: TcpStream,
        config: &Arc<ServerConfig>,
        stats: Arc<LoopStats>,
    ) -> io::Result<Self> {
        let tls = UnbufferedServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        Ok(TlsStream {
            tcp,
            tls,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            deferred: false,
            stats,
            counted: false,
            peer_closed: false,
            socket_full: false,
            failed: false,
            ending: false,
        })
    }

    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// Counts the handshake's outcome once it has one.
    fn count_handshake(&mut self, failed: Option<&rustls::Error>) {
        match failed {
            Some(error) => self.stats.tls_failure(failure_of(error)),
            None if !self.tls.is_handshaking() => {
                self.stats.tls_handshake(self.tls.handshake_kind() == Some(HandshakeKind::Resumed))
            }
            None => return,
        }
        self.counted = true;
    }

    /// Processes the complete records in `buf[*start..end]`: plaintext is copied to
    /// `buf[*plain..]`, handshake records and alerts are encoded and written, and `*start`
    /// moves past what rustls is done with.
    fn process(
        &mut self,
        buf: &mut [u8],
        plain: &mut usize,
        start: &mut usize,
        end: usize,
        pool: &mut BufferPool,
    ) -> io::Result<Processed> {
        let TlsStream { tcp, tls, outgoing, deferred, peer_closed, .. } = self;
        let mut failed = None;
        // Records may wait for the flush only behind records that wait for it too, never
        // behind ones the socket refused (those bound what a full socket leaves held).
        let may_defer = outgoing.is_empty() || *deferred;
        loop {
            let (front, back) = buf.split_at_mut(*start);
            let UnbufferedStatus { mut discard, state } =
                tls.process_tls_records(&mut back[..end - *start]);
            let go_on = match state {
                Ok(ConnectionState::ReadTraffic(mut traffic)) if failed.is_none() => {
                    while let Some(record) = traffic.next_record() {
                        let AppDataRecord { discard: more, payload } =
                            record.map_err(invalid_data)?;
                        discard += more;
                        // In room: `*plain` trails `*start` by at least the headroom, which
                        // one record's plaintext cannot exceed.
                        let to = front
                            .get_mut(*plain..*plain + payload.len())
                            .ok_or_else(|| invalid_data(rustls::Error::PeerSentOversizedRecord))?;
                        to.copy_from_slice(payload);
                        *plain += payload.len();
                    }
                    true
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut encode, outgoing, pool);
                    // After a failure this is the alert, and the last call: one more would
                    // parse the bad input again (and have rustls make a second alert).
                    failed.is_none()
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) if failed.is_none() => {
                    // Given to the socket now, held, or (after the handshake) left for the
                    // turn's flush: either way rustls is done with them.
                    transmit.done();
                    if may_defer && !tls.is_handshaking() {
                        *deferred = true;
                    } else {
                        send(tcp, outgoing, pool)?;
                    }
                    true
                }
                Ok(ConnectionState::PeerClosed) if failed.is_none() => {
                    *peer_closed = true;
                    true
                }
                Err(error) if failed.is_none() => {
                    // Once more: the alert rustls queued for this comes out first, to encode.
                    failed = Some(error);
                    true
                }
                // Waiting for input, done with it, closed, or failed with the alert out.
                _ => false,
            };
            *start += discard;
            if !go_on {
                break;
            }
        }
        // What rustls encoded without asking for it to be transmitted: an alert after an
        // error in the input, which rustls reports before its records come out (and then
        // whatever waited with it).
        let sent = match failed {
            None if *deferred => Ok(()),
            _ => send(tcp, outgoing, pool),
        };
        Ok(match failed {
            Some(error) => Processed::Failed(error),
            None => {
                sent?;
                Processed::Done
            }
        })
    }

    /// Reads ciphertext from `source` into `buf[*end..]` and processes what came (see
    /// [`process`]) until the source is drained or the buffer cannot take another record;
    /// returns whether the stream ended. A failure of rustls marks the stream failed.
    ///
    /// [`process`]: Self::process
    fn read_records(
        &mut self,
        source: &mut Source<'_>,
        buf: &mut [u8],
        plain: &mut usize,
        start: &mut usize,
        end: &mut usize,
        pool: &mut BufferPool,
    ) -> io::Result<bool> {
        loop {
            let room = buf.len() - *end;
            let (read, ended) = match source {
                Source::Socket => match Read::read(&mut self.tcp, &mut buf[*end..]) {
                    Ok(0) => (0, true),
                    Ok(n) => (n, false),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => (0, false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                },
                Source::Received(rest) => {
                    let (now, later) = rest.split_at(rest.len().min(room));
                    buf[*end..*end + now.len()].copy_from_slice(now);
                    *rest = later;
                    (now.len(), false)
                }
            };
            *end += read;
            let processed = self.process(buf, plain, start, *end, pool);
            let processed = processed.inspect_err(|_| self.failed = true)?;
            if !self.counted {
                let failed = match &processed {
                    Processed::Failed(error) => Some(error),
                    Processed::Done => None,
                };
                self.count_handshake(failed);
            }
            if let Processed::Failed(error) = processed {
                self.failed = true;
                return Err(invalid_data(error));
            }
            if ended || self.peer_closed {
                return Ok(ended);
            }
            if read < room {
                // A short socket read that gave the engine nothing (a handshake step, a
                // record in pieces) is made once more: an end of stream that came in with
                // those bytes raises no further readiness edge, and the engine, told
                // `WouldBlock`, would not look again until the handshake timeout.
                let look_again = matches!(source, Source::Socket) && read > 0 && *plain == 0;
                if look_again {
                    continue;
                }
                return Ok(false);
            }
            // The source may hold more: move what is unprocessed down behind the plaintext
            // (keeping the headroom) and read again while a whole record still fits.
            let to = *plain + HEADROOM;
            let pending = *end - *start;
            if to + pending + MAX_RECORD > buf.len() {
                if *plain == 0 {
                    // A handshake message larger than the buffer can gather.
                    self.failed = true;
                    return Err(invalid_data(rustls::Error::PeerSentOversizedRecord));
                }
                self.socket_full = true;
                return Ok(false);
            }
            buf.copy_within(*start..*end, to);
            *start = to;
            *end = to + pending;
        }
    }

    /// Writes held records until the socket stops taking them.
    fn send_held(&mut self, pool: &mut BufferPool) -> io::Result<()> {
        send(&mut self.tcp, &mut self.outgoing, pool)
    }

    /// Encrypts up to [`CHUNK`] of `bufs` (from byte `skip` on) into `out` with `traffic`;
    /// returns how many plaintext bytes it took. Several slices are gathered into a pooled
    /// buffer first, so that a header and its payload go in one record.
    fn encrypt(
        traffic: &mut WriteTraffic<'_, ServerConnectionData>,
        bufs: &[IoSlice<'_>],
        skip: usize,
        out: &mut Vec<u8>,
        pool: &mut BufferPool,
    ) -> io::Result<usize> {
        let mut rest = skip;
        let mut pieces = bufs
            .iter()
            .filter_map(|buf| {
                if rest >= buf.len() {
                    rest -= buf.len();
                    return None;
                }
                let piece = &buf[rest..];
                rest = 0;
                Some(piece)
            })
            .peekable();
        let Some(first) = pieces.next() else { return Ok(0) };
        if first.len() >= CHUNK || pieces.peek().is_none() {
            let plaintext = &first[..first.len().min(CHUNK)];
            return encrypt_into(traffic, plaintext, out).map(|()| plaintext.len());
        }
        let mut gathered = pool.take();
        for piece in std::iter::once(first).chain(pieces) {
            let room = CHUNK - gathered.len();
            gathered.extend_from_slice(&piece[..piece.len().min(room)]);
            if gathered.len() == CHUNK {
                break;
            }
        }
        let result = encrypt_into(traffic, &gathered, out).map(|()| gathered.len());
        pool.give(gathered);
        result
    }

    /// Sends our `close_notify` once the handshake is done (rustls makes it once however
    /// often asked), behind the held output; best effort: if the socket does not take all
    /// that is held, the alert is not sent (it must not cut into a record).
    fn close_notify(&mut self) {
        if self.failed || self.tls.is_handshaking() {
            return;
        }
        let TlsStream { tls, incoming, outgoing, tcp, .. } = self;
        while !outgoing.is_empty() {
            match tcp.write(outgoing) {
                Ok(n) if n > 0 => {
                    outgoing.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return,
            }
        }
        let UnbufferedStatus { state, .. } = tls.process_tls_records(incoming);
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
            let mut alert = [0; CLOSE_NOTIFY_MAX];
            let record = close_notify_record(&mut traffic, &mut alert);
            if !record.is_empty() {
                drop(tcp.write(record));
            }
        }
    }
}

/// Room for one `close_notify` record: 5 bytes of header, the 2-byte alert, and the cipher's
/// expansion (at most 24 with the AEAD suites served: an explicit nonce and a tag).
const CLOSE_NOTIFY_MAX: usize = 64;

/// rustls' `close_notify` record, encoded into `alert`; empty when it was made already
/// (rustls makes it once, however often asked).
fn close_notify_record<'a>(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    alert: &'a mut [u8; CLOSE_NOTIFY_MAX],
) -> &'a [u8] {
    let n = traffic.queue_close_notify(alert).unwrap_or(0);
    &alert[..n]
}

/// Writes `outgoing` until the socket stops taking it; gives the buffer back once empty.
fn send(tcp: &mut TcpStream, outgoing: &mut Vec<u8>, pool: &mut BufferPool) -> io::Result<()> {
    let mut written = 0;
    let result = loop {
        if written == outgoing.len() {
            break Ok(());
        }
        match tcp.write(&outgoing[written..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    if written == outgoing.len() {
        pool.give(std::mem::take(outgoing));
    } else {
        outgoing.drain(..written);
    }
    result
}

/// Encodes one handshake record (or alert) behind what `out` holds.
fn encode_into(
    encode: &mut EncodeTlsData<'_, ServerConnectionData>,
    out: &mut Vec<u8>,
    pool: &mut BufferPool,
) {
    let need = match encode.encode(&mut []) {
        Err(EncodeError::InsufficientSize(size)) => size.required_size,
        // Empty, or already encoded: nothing to add.
        _ => return,
    };
    if out.capacity() == 0 {
        *out = pool.take();
    }
    let at = out.len();
    out.resize(at + need, 0);
    let written = encode.encode(&mut out[at..]).unwrap_or(0);
    out.truncate(at + written);
}

/// Encrypts `plaintext` as records behind what `out` holds.
fn encrypt_into(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let need = match traffic.encrypt(plaintext, &mut []) {
        Err(EncryptError::InsufficientSize(size)) => size.required_size,
        Ok(_) => return Ok(()),
        Err(error) => return Err(io::Error::other(error)),
    };
    let at = out.len();
    out.resize(at + need, 0);
    let result = traffic.encrypt(plaintext, &mut out[at..]);
    let written = *result.as_ref().unwrap_or(&0);
    out.truncate(at + written);
    result.map(|_| ()).map_err(io::Error::other)
}

fn invalid_data(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl TlsStream {
    /// [`Transport::read`] with what a completion backend received from the socket as the
    /// input: takes from the front of `received` as much as `buf` has room for behind the
    /// headroom (a part at a time when it has more: call again with the rest once the
    /// plaintext is used), and returns that part's plaintext at the front of `buf`, as a read
    /// does. The same record processing serves both: only the source differs.
    pub(crate) fn read_received(
        &mut self,
        received: &mut &[u8],
        buf: &mut [u8],
        pool: &mut BufferPool,
    ) -> io::Result<usize> {
        let mut source = Source::Received(std::mem::take(received));
        let read = self.read_from(&mut source, buf, pool);
        if let Source::Received(rest) = source {
            *received = rest;
        }
        read
    }

    /// A read of the records `source` holds, behind those held since the last read.
    fn read_from(
        &mut self,
        source: &mut Source<'_>,
        buf: &mut [u8],
        pool: &mut BufferPool,
    ) -> io::Result<usize> {
        self.socket_full = false;
        if self.failed {
            return Err(io::ErrorKind::InvalidData.into());
        }
        if self.peer_closed {
            return Ok(0);
        }
        if buf.len() < READ_BUFFER_MIN {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        // Plaintext goes to buf[..plain]; ciphertext waits in buf[start..end], starting with
        // what waited since the last read.
        let mut plain = 0;
        let mut start = HEADROOM;
        let mut end = start + self.incoming.len();
        buf[start..end].copy_from_slice(&self.incoming);
        pool.give(std::mem::take(&mut self.incoming));
        let read = self.read_records(source, buf, &mut plain, &mut start, &mut end, pool);
        // Kept on every path: rustls' handshake deframer counts in this buffer's offsets.
        if start < end {
            self.incoming = pool.take();
            self.incoming.extend_from_slice(&buf[start..end]);
        }
        match read {
            // Plaintext that came before an error goes first; the error is the next read's
            // (a failed socket fails again, and `failed` is kept).
            Err(_) if plain > 0 => Ok(plain),
            Err(error) => Err(error),
            Ok(ended) => match plain {
                0 if ended || self.peer_closed => Ok(0),
                0 => Err(io::ErrorKind::WouldBlock.into()),
                n => Ok(n),
            },
        }
    }
}

impl Transport for TlsStream {
    fn read(&mut self, buf: &mut [u8], pool: &mut BufferPool) -> io::Result<usize> {
        self.read_from(&mut Source::Socket, buf, pool)
    }

    fn filled(&self, _read: usize, _room: usize) -> bool {
        self.socket_full
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>], pool: &mut BufferPool) -> io::Result<usize> {
        if self.failed {
            return Err(io::ErrorKind::InvalidData.into());
        }
        // Records the socket refused go first, alone; records left for this flush go with
        // what it brings.
        if !std::mem::take(&mut self.deferred) {
            self.send_held(pool)?;
            if !self.outgoing.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            self.send_held(pool)?;
            return Ok(0);
        }
        let mut taken = 0;
        while taken < total {
            let TlsStream { tls, incoming, outgoing, failed, ending, .. } = self;
            let UnbufferedStatus { discard, state } = tls.process_tls_records(incoming);
            let result = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    if outgoing.capacity() == 0 {
                        *outgoing = pool.take();
                    }
                    let encrypted = Self::encrypt(&mut traffic, bufs, taken, outgoing, pool);
                    if *ending && encrypted.as_ref().is_ok_and(|n| taken + n == total) {
                        // The last record of the last output: the alert rides with it.
                        let mut alert = [0; CLOSE_NOTIFY_MAX];
                        outgoing.extend_from_slice(close_notify_record(&mut traffic, &mut alert));
                    }
                    encrypted.map(Some)
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut encode, outgoing, pool);
                    Ok(Some(0))
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Ok(Some(0))
                }
                Ok(ConnectionState::PeerClosed) => Ok(Some(0)),
                // Still handshaking: nothing may be sent yet.
                Ok(ConnectionState::BlockedHandshake) => Ok(None),
                Ok(_) => Err(io::ErrorKind::BrokenPipe.into()),
                Err(error) => {
                    *failed = true;
                    Err(invalid_data(error))
                }
            };
            incoming.drain(..discard);
            match result? {
                Some(n) => taken += n,
                None => break,
            }
            self.send_held(pool)?;
            if !self.outgoing.is_empty() {
                // The socket is full; what it did not take is held.
                break;
            }
        }
        if taken == 0 && total > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    fn ending(&mut self) {
        self.ending = true;
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.close_notify();
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

impl Drop for TlsStream {
    fn drop(&mut self) {
        if !self.counted {
            self.stats.tls_failure(TlsFailure::Abandoned);
        }
        self.close_notify();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream as StdTcpStream};
    use std::time::{Duration, Instant};

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::*;

    /// A server stream and a rustls client over loopback, a self-signed certificate between.
    fn pair() -> (TlsStream, ClientConnection, StdTcpStream) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = StdTcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let tcp = TcpStream::from_std(accepted);
        let stream =
            TlsStream::new(tcp, &Arc::new(server), Arc::new(LoopStats::default())).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let client = ClientConnection::new(Arc::new(client), name).unwrap();
        (stream, client, socket)
    }

    /// Reads the server side until `done` holds (the bytes are on their way over loopback).
    fn read_until(
        stream: &mut TlsStream,
        buf: &mut [u8],
        pool: &mut BufferPool,
        mut done: impl FnMut(&TlsStream, &io::Result<usize>) -> bool,
    ) -> io::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let read = stream.read(buf, pool);
            if done(stream, &read) || Instant::now() > deadline {
                return read;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Runs the handshake: each side takes what the other sent, until both are done.
    fn handshake(
        stream: &mut TlsStream,
        client: &mut ClientConnection,
        socket: &mut StdTcpStream,
        buf: &mut [u8],
        pool: &mut BufferPool,
    ) {
        socket.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while client.is_handshaking() || stream.tls.is_handshaking() {
            assert!(Instant::now() < deadline, "the handshake did not finish");
            while client.wants_write() {
                client.write_tls(socket).unwrap();
            }
            let read = stream.read(buf, pool);
            assert!(matches!(read, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock));
            match client.read_tls(socket) {
                Ok(_) => {
                    client.process_new_packets().unwrap();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        socket.set_nonblocking(false).unwrap();
    }

    #[test]
    fn a_record_in_pieces_waits_in_a_pooled_buffer_and_an_idle_stream_holds_none() {
        let (mut stream, mut client, mut socket) = pair();
        let mut pool = BufferPool::new(1 << 20);
        let mut buf = vec![0; READ_BUFFER_MIN];
        handshake(&mut stream, &mut client, &mut socket, &mut buf, &mut pool);

        // One application record, sent in two pieces.
        client.writer().write_all(b"hello").unwrap();
        let mut record = Vec::new();
        client.write_tls(&mut record).unwrap();
        socket.write_all(&record[..record.len() / 2]).unwrap();
        let read = read_until(&mut stream, &mut buf, &mut pool, |s, _| {
            s.incoming.len() == record.len() / 2
        });
        assert!(matches!(read, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock));
        assert!(stream.incoming.capacity() > 0, "the first piece waits in a pooled buffer");
        socket.write_all(&record[record.len() / 2..]).unwrap();
        let read = read_until(&mut stream, &mut buf, &mut pool, |_, read| read.is_ok());
        assert_eq!(&buf[..read.unwrap()], b"hello");

        // The answer, encrypted into a pooled buffer the socket takes at once.
        let answer = [IoSlice::new(b"wor"), IoSlice::new(b"ld")];
        assert_eq!(stream.write_vectored(&answer, &mut pool).unwrap(), 5);
        let mut got = [0; 5];
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reply = client.reader();
        let mut filled = 0;
        while filled < got.len() {
            match reply.read(&mut got[filled..]) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    client.read_tls(&mut socket).unwrap();
                    client.process_new_packets().unwrap();
                    reply = client.reader();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&got, b"world");

        // Idle again: neither buffer is held, both went back to the pool.
        assert_eq!((stream.incoming.capacity(), stream.outgoing.capacity()), (0, 0));
        assert!(!stream.wants_write());
        assert!(pool.pooled_bytes() > 0, "the buffers are the pool's again");
    }

    /// The output written after `ending` is the last: `close_notify` goes out behind it in
    /// the same write, before the stream is dropped, and only once.
    #[test]
    fn the_last_output_carries_close_notify_behind_it() {
        let (mut stream, mut client, mut socket) = pair();
        let mut pool = BufferPool::new(1 << 20);
        let mut buf = vec![0; READ_BUFFER_MIN];
        handshake(&mut stream, &mut client, &mut socket, &mut buf, &mut pool);
        // A first write, which carries the session tickets the handshake left waiting.
        assert!(stream.write_vectored(&[IoSlice::new(b"before")], &mut pool).is_ok());

        stream.ending();
        let close = [0x88, 0x02, 0x03, 0xe8];
        assert_eq!(stream.write_vectored(&[IoSlice::new(&close)], &mut pool).unwrap(), 4);
        assert!(!stream.wants_write(), "all of it went in that write");
        // The stream is still alive: what the client gets now came from that write alone.
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut plaintext = Vec::new();
        loop {
            client.read_tls(&mut socket).unwrap();
            let state = client.process_new_packets().unwrap();
            let mut chunk = vec![0; state.plaintext_bytes_to_read()];
            client.reader().read_exact(&mut chunk).unwrap();
            plaintext.extend_from_slice(&chunk);
            if state.peer_has_closed() {
                break;
            }
        }
        assert_eq!(plaintext, [&b"before"[..], &close].concat(), "the data, then the alert");

        // Dropped: nothing more comes (rustls makes the alert once), only the end of stream.
        drop(stream);
        let mut rest = Vec::new();
        socket.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{} bytes after close_notify", rest.len());
    }
}
