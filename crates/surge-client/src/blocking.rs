//! A blocking client over [`std::net::TcpStream`]: the [`ClientEndpoint`] driven with plain
//! reads and writes, each bounded in time. For tests, probes and tools.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use surge_proto::close::CloseCode;
use surge_proto::connection::{Event, Limits};
use surge_proto::deflate::{ClientOffer, DeflateStats, Params};
use surge_proto::error::{ProtocolError, SendError};
use surge_proto::handshake::{ClientHandshakeError, ClientRequest};
use surge_proto::message::Message;

use crate::{ClientEndpoint, Keys, Opening};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No TCP connection.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// The socket failed (or timed out) during the opening handshake.
    #[error("I/O error during the opening handshake: {0}")]
    Io(io::Error),
    /// The server closed TCP before its answer was complete.
    #[error("the server closed the connection before answering the handshake")]
    Eof,
    /// The request could not be built, or the server refused or botched its answer
    /// ([`ClientHandshakeError::UnexpectedStatus`] carries a refusal's status).
    #[error("opening handshake: {0}")]
    Handshake(#[from] ClientHandshakeError),
}

impl ConnectError {
    /// Whether the handshake ran out of time (rather than failing).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ConnectError::Io(e) if is_timeout(e))
    }
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendFailure {
    /// The protocol refused (a Close was already sent).
    #[error(transparent)]
    Protocol(#[from] SendError),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Whether an I/O error is a time limit running out.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Time left until `deadline`, or a timeout error once it passed.
fn left(deadline: Instant) -> io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Reads once, waiting at most until `deadline`.
pub fn read_until(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        stream.set_read_timeout(Some(left(deadline)?))?;
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// Writes all of `data`, each write bounded by `deadline`.
pub fn write_until(stream: &mut TcpStream, mut data: &[u8], deadline: Instant) -> io::Result<()> {
    while !data.is_empty() {
        stream.set_write_timeout(Some(left(deadline)?))?;
        match stream.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs the opening handshake on a connected `stream`, all of it by `deadline`; returns the
/// open endpoint and the server's first frames, if any came with its answer.
pub fn open(
    stream: &mut TcpStream,
    request: &ClientRequest<'_>,
    keys: Keys,
    limits: Limits,
    deadline: Instant,
) -> Result<(ClientEndpoint, Vec<u8>), ConnectError> {
    open_with(stream, request, keys, limits, None, deadline)
}

/// [`open`], offering permessage-deflate as `offer` says (see
/// [`ClientEndpoint::start_with`]).
pub fn open_with(
    stream: &mut TcpStream,
    request: &ClientRequest<'_>,
    keys: Keys,
    limits: Limits,
    offer: Option<ClientOffer>,
    deadline: Instant,
) -> Result<(ClientEndpoint, Vec<u8>), ConnectError> {
    let mut out = Vec::new();
    let mut endpoint = ClientEndpoint::start_with(request, keys, limits, offer, &mut out)?;
    write_until(stream, &out, deadline).map_err(ConnectError::Io)?;
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = read_until(stream, &mut chunk, deadline).map_err(ConnectError::Io)?;
        if n == 0 {
            return Err(ConnectError::Eof);
        }
        if let Opening::Open { early } = endpoint.receive_handshake(&chunk[..n])? {
            return Ok((endpoint, early));
        }
    }
}

/// What the client received, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping (answered by the protocol when [`Client::answer`] is set).
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// A Close frame: its code and reason.
    Close(Option<u16>, String),
    /// The server broke the protocol, as the client sees it.
    Violation(ProtocolError),
}

impl From<Event<'_>> for Received {
    fn from(event: Event<'_>) -> Received {
        match event {
            Event::Message(Message::Text(text)) => Received::Text(text.to_owned()),
            Event::Message(Message::Binary(bytes)) => Received::Binary(bytes.to_vec()),
            Event::Ping(payload) => Received::Ping(payload.to_vec()),
            Event::Pong(payload) => Received::Pong(payload.to_vec()),
            Event::Close(frame) => {
                Received::Close(frame.code().map(CloseCode::as_u16), frame.reason().to_owned())
            }
            Event::Error(error) => Received::Violation(error),
        }
    }
}

/// A blocking WebSocket client connection.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    endpoint: ClientEndpoint,
    /// Received bytes not yet fed to the protocol.
    pending: Vec<u8>,
    chunk: Vec<u8>,
    out: Vec<u8>,
    received: VecDeque<Received>,
    eof: bool,
    /// Write what the protocol owes the server (pongs, the Close reply) as it comes due.
    pub answer: bool,
}

impl Client {
    /// Connects to `addr` and opens `request`, all within `timeout`.
    pub fn connect(
        addr: SocketAddr,
        request: &ClientRequest<'_>,
        keys: Keys,
        timeout: Duration,
    ) -> Result<Client, ConnectError> {
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(ConnectError::Connect)?;
        Client::over(stream, request, keys, timeout)
    }

    /// Opens `request` over a connected `stream` (one with socket options of the caller's),
    /// within `timeout`.
    pub fn over(
        stream: TcpStream,
        request: &ClientRequest<'_>,
        keys: Keys,
        timeout: Duration,
    ) -> Result<Client, ConnectError> {
        Client::over_with(stream, request, keys, None, timeout)
    }

    /// [`over`](Self::over), offering permessage-deflate as `offer` says; whether the
    /// server agreed is [`deflate`](Self::deflate).
    pub fn over_with(
        mut stream: TcpStream,
        request: &ClientRequest<'_>,
        keys: Keys,
        offer: Option<ClientOffer>,
        timeout: Duration,
    ) -> Result<Client, ConnectError> {
        stream.set_nodelay(true).map_err(ConnectError::Io)?;
        let deadline = Instant::now() + timeout;
        let (endpoint, pending) =
            open_with(&mut stream, request, keys, Limits::default(), offer, deadline)?;
        Ok(Client {
            stream,
            endpoint,
            pending,
            chunk: vec![0; READ_CHUNK],
            out: Vec::new(),
            received: VecDeque::new(),
            eof: false,
            answer: true,
        })
    }

    /// The permessage-deflate parameters agreed, if any.
    pub fn deflate(&self) -> Option<Params> {
        self.endpoint.deflate()
    }

    /// What this connection compressed and inflated.
    pub fn deflate_stats(&self) -> DeflateStats {
        self.endpoint.deflate_stats()
    }

    /// The socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The protocol state (to ask whether it may still send, or is closed).
    pub fn connection(&mut self) -> &mut crate::ClientConnection {
        self.endpoint.connection()
    }

    /// Sends one message.
    pub fn send(&mut self, msg: Message<'_>) -> Result<(), SendFailure> {
        self.out.clear();
        self.endpoint.connection().send(msg, &mut self.out)?;
        Ok(self.stream.write_all(&self.out)?)
    }

    /// Writes whatever `frames` encodes with the protocol state, in one write.
    pub fn write_frames(
        &mut self,
        frames: impl FnOnce(&mut crate::ClientConnection, &mut Vec<u8>),
    ) -> io::Result<()> {
        self.out.clear();
        frames(self.endpoint.connection(), &mut self.out);
        self.stream.write_all(&self.out)
    }

    /// Starts the close handshake.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendFailure> {
        self.out.clear();
        self.endpoint.connection().close(Instant::now(), code, reason, &mut self.out)?;
        Ok(self.stream.write_all(&self.out)?)
    }

    /// Writes what the protocol owes the server now (a pong, the Close reply).
    pub fn answer_now(&mut self) -> io::Result<()> {
        self.out.clear();
        self.endpoint.connection().poll_transmit(&mut self.out);
        self.stream.write_all(&self.out)
    }

    /// The next thing received, or `None` at the end of the stream or after `wait`.
    pub fn recv_within(&mut self, wait: Duration) -> io::Result<Option<Received>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(got) = self.received.pop_front() {
                return Ok(Some(got));
            }
            if self.eof || !self.fill(deadline)? {
                return Ok(None);
            }
        }
    }

    /// Reads until the server ends TCP; whether it did within `wait`.
    pub fn wait_eof(&mut self, wait: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + wait;
        while !self.eof {
            if !self.fill(deadline)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Feeds pending bytes to the protocol, reading once (by `deadline`) when there are none;
    /// false when the time ran out.
    fn fill(&mut self, deadline: Instant) -> io::Result<bool> {
        if self.pending.is_empty() {
            match read_until(&mut self.stream, &mut self.chunk, deadline) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(true);
                }
                Ok(n) => self.pending.extend_from_slice(&self.chunk[..n]),
                Err(e) if is_timeout(&e) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.eof = true;
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
        }
        let mut input = std::mem::take(&mut self.pending);
        let mut used = 0;
        while used < input.len() {
            let (n, event, _) = self.endpoint.read(&mut input[used..]);
            used += n;
            let Some(event) = event else { break };
            self.received.push_back(Received::from(event));
        }
        if self.answer && self.endpoint.connection().wants_transmit() {
            self.answer_now()?;
        }
        Ok(true)
    }
}
