//! A small blocking WebSocket client on surge-proto's client side, and server helpers.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use surge::surge_proto::close::CloseCode;
use surge::surge_proto::connection::{Connection, Event, Limits};
use surge::surge_proto::handshake::{ClientHandshake, ClientRequest, EMPTY_HEADER};
use surge::surge_proto::message::Message;
use surge::{Config, ConfigBuilder};

/// Every blocking call in the tests gives up after this.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Grace for the shutdown that ends a test whose clients are no longer read from.
pub const STOP: Duration = Duration::from_millis(50);

/// What the client got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    /// The server broke the protocol (as the client sees it).
    Violation(String),
}

pub struct Client {
    pub stream: TcpStream,
    ws: Connection,
    buf: Vec<u8>,
    assembly: Vec<u8>,
    out: Vec<u8>,
    got: VecDeque<Got>,
    /// Write what the protocol owes the server (pongs, the Close reply).
    pub answer: bool,
    eof: bool,
}

fn seed() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0x9e37_79b9);
    NEXT.fetch_add(0x6a09_e667, Ordering::Relaxed)
}

/// A loopback config builder for `threads` loops, with short timer ticks.
pub fn config(threads: usize) -> ConfigBuilder {
    Config::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .threads(threads)
        .timer_tick(Duration::from_millis(20))
}

impl Client {
    /// Connects and completes the handshake, panicking on failure.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr, None)
            .unwrap_or_else(|status| panic!("handshake refused: {status}"))
    }

    /// Connects with small socket buffers (no autotuning): a client that stops reading
    /// stops the server quickly.
    pub fn connect_small_buffers(addr: SocketAddr) -> Client {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(32 * 1024).unwrap();
        socket.set_send_buffer_size(32 * 1024).unwrap();
        socket.connect(&addr.into()).unwrap();
        Client::handshake(socket.into(), addr, None).unwrap()
    }

    /// Connects; `Err(status)` when the server refuses the handshake.
    pub fn try_connect(addr: SocketAddr, origin: Option<&str>) -> Result<Client, u16> {
        Client::handshake(TcpStream::connect(addr).expect("connect"), addr, origin)
    }

    fn handshake(
        mut stream: TcpStream,
        addr: SocketAddr,
        origin: Option<&str>,
    ) -> Result<Client, u16> {
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut out = Vec::new();
        let host = addr.to_string();
        let request = ClientRequest { origin, ..ClientRequest::new(&host, "/") };
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&seed().to_le_bytes());
        let mut handshake = ClientHandshake::start(&request, nonce, &mut out).unwrap();
        stream.write_all(&out).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).expect("read the handshake answer");
            assert!(n > 0, "connection closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [EMPTY_HEADER; 64];
            match handshake.parse_response(&buf, &mut headers) {
                Ok(None) => continue,
                Ok(Some(response)) => {
                    let head = response.head_len();
                    buf.drain(..head);
                    break;
                }
                Err(_) => return Err(status_of(&buf)),
            }
        }
        Ok(Client {
            stream,
            ws: Connection::client(Limits::default(), seed()),
            buf,
            assembly: Vec::new(),
            out,
            got: VecDeque::new(),
            answer: true,
            eof: false,
        })
    }

    pub fn send(&mut self, msg: Message<'_>) {
        self.out.clear();
        self.ws.send(msg, &mut self.out).unwrap();
        self.stream.write_all(&self.out).unwrap();
    }

    /// Whether the client may still send data (no Close sent or queued).
    pub fn can_send(&self) -> bool {
        self.ws.can_send()
    }

    /// Sends `payload` as a text message in `pieces` fragments, in one write.
    pub fn send_fragments(&mut self, payload: &str, pieces: usize) {
        use surge::surge_proto::frame::OpCode;
        self.out.clear();
        let chunk = payload.len().div_ceil(pieces).max(1);
        let parts: Vec<&[u8]> = payload.as_bytes().chunks(chunk).collect();
        for (i, part) in parts.iter().enumerate() {
            let opcode = if i == 0 { OpCode::TEXT } else { OpCode::CONTINUATION };
            self.ws.send_frame(opcode, i + 1 == parts.len(), part, &mut self.out).unwrap();
        }
        self.stream.write_all(&self.out).unwrap();
    }

    /// Writes whatever `frames` encodes, in one write.
    pub fn write_frames(&mut self, frames: impl FnOnce(&mut Connection, &mut Vec<u8>)) {
        self.out.clear();
        frames(&mut self.ws, &mut self.out);
        self.stream.write_all(&self.out).unwrap();
    }

    /// Sends several text messages in one write.
    pub fn send_batch(&mut self, texts: &[String]) {
        self.out.clear();
        for text in texts {
            self.ws.send(Message::Text(text), &mut self.out).unwrap();
        }
        self.stream.write_all(&self.out).unwrap();
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(Message::Text(text));
    }

    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.send(Message::Binary(bytes));
    }

    /// Starts the close handshake from the client.
    pub fn close(&mut self, code: u16) {
        self.out.clear();
        self.ws.close(Instant::now(), CloseCode::from(code), "", &mut self.out).unwrap();
        self.stream.write_all(&self.out).unwrap();
    }

    /// The next thing received, waiting at most `PATIENCE`.
    pub fn recv(&mut self) -> Got {
        self.recv_within(PATIENCE).unwrap_or_else(|| panic!("nothing received within {PATIENCE:?}"))
    }

    /// The next thing received, or `None` at end of stream or after `wait`.
    pub fn recv_within(&mut self, wait: Duration) -> Option<Got> {
        let give_up = Instant::now() + wait;
        loop {
            if let Some(got) = self.got.pop_front() {
                return Some(got);
            }
            if self.eof {
                return None;
            }
            let left = give_up.checked_duration_since(Instant::now())?;
            self.fill(left.max(Duration::from_millis(1)));
        }
    }

    /// Reads until the server closes TCP; true if it did within `wait`.
    pub fn wait_eof(&mut self, wait: Duration) -> bool {
        let give_up = Instant::now() + wait;
        while !self.eof {
            let Some(left) = give_up.checked_duration_since(Instant::now()) else { return false };
            self.fill(left.max(Duration::from_millis(1)));
        }
        true
    }

    /// One read (at most `wait`), fed to the protocol.
    fn fill(&mut self, wait: Duration) {
        let mut chunk = vec![0u8; 256 * 1024];
        if self.buf.is_empty() {
            self.stream.set_read_timeout(Some(wait)).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    self.eof = true;
                    return;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        let mut input = std::mem::take(&mut self.buf);
        let mut used = 0;
        while used < input.len() {
            let (n, event) = self.ws.read(&mut input[used..], &mut self.assembly);
            used += n;
            let Some(event) = event else { break };
            let got = match event {
                Event::Message(Message::Text(text)) => Got::Text(text.to_owned()),
                Event::Message(Message::Binary(bytes)) => Got::Binary(bytes.to_vec()),
                Event::Ping(payload) => Got::Ping(payload.as_bytes().to_vec()),
                Event::Pong(payload) => Got::Pong(payload.as_bytes().to_vec()),
                Event::Close(frame) => {
                    Got::Close(frame.code().map(|c| c.as_u16()), frame.reason().to_owned())
                }
                Event::Error(error) => Got::Violation(error.to_string()),
            };
            self.got.push_back(got);
        }
        if self.answer && self.ws.wants_transmit() {
            self.out.clear();
            self.ws.poll_transmit(&mut self.out);
            let _ = self.stream.write_all(&self.out);
        }
    }
}

/// The status code of an HTTP answer, 0 if none can be read.
pub fn status_of(head: &[u8]) -> u16 {
    head.get(9..12)
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Sends raw bytes and returns everything the server sends back until it closes.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// A valid upgrade request for `addr`.
pub fn upgrade_request(addr: SocketAddr) -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Polls `cond` until it holds or `PATIENCE` runs out.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < give_up, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
