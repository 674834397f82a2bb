//! The engine tests' WebSocket client: surge-client's blocking client, with the panics a test
//! wants instead of errors, and server helpers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use surge::surge_proto::close::CloseCode;
use surge::surge_proto::deflate::ClientOffer;
use surge::surge_proto::frame::OpCode;
use surge::surge_proto::handshake::{ClientHandshakeError, ClientRequest};
use surge::surge_proto::message::Message;
use surge::{Config, ConfigBuilder};
use surge_client::blocking::{self, ConnectError};
use surge_client::ClientConnection;
use surge_client::Keys;

/// What the client got.
pub use surge_client::blocking::Received as Got;

/// Every blocking call in the tests gives up after this.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Grace for the shutdown that ends a test whose clients are no longer read from.
pub const STOP: Duration = Duration::from_millis(50);

fn seed() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0x9e37_79b9);
    NEXT.fetch_add(0x6a09_e667, Ordering::Relaxed)
}

/// A client's keys, from the `seed` counter: distinct per connection, the same every run.
fn keys() -> Keys {
    Keys { nonce: (u128::from(seed()) * 0x9E37_79B9_7F4A_7C15).to_le_bytes(), mask_seed: seed() }
}

#[path = "../support/backend.rs"]
pub mod under_test;
pub use under_test::backend;

/// A loopback config builder for `threads` loops, with short timer ticks, on the
/// [`backend`] under test.
pub fn config(threads: usize) -> ConfigBuilder {
    Config::builder()
        .backend(backend())
        .listen("127.0.0.1:0".parse().unwrap())
        .threads(threads)
        .timer_tick(Duration::from_millis(20))
}

/// surge-client's blocking client, whose calls panic on failure and wait at most `PATIENCE`.
pub struct Client(blocking::Client);

impl Deref for Client {
    type Target = blocking::Client;
    fn deref(&self) -> &blocking::Client {
        &self.0
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut blocking::Client {
        &mut self.0
    }
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
        let host = addr.to_string();
        let request = ClientRequest::new(&host, "/");
        Client(blocking::Client::over(socket.into(), &request, keys(), PATIENCE).unwrap())
    }

    /// Connects offering permessage-deflate as `offer` says.
    pub fn connect_deflate(addr: SocketAddr, offer: ClientOffer) -> Client {
        let host = addr.to_string();
        let request = ClientRequest::new(&host, "/");
        let stream = TcpStream::connect(addr).unwrap();
        Client(
            blocking::Client::over_with(stream, &request, keys(), Some(offer), PATIENCE).unwrap(),
        )
    }

    /// Connects; `Err(status)` when the server refuses the handshake.
    pub fn try_connect(addr: SocketAddr, origin: Option<&str>) -> Result<Client, u16> {
        let host = addr.to_string();
        let request = ClientRequest { origin, ..ClientRequest::new(&host, "/") };
        match blocking::Client::connect(addr, &request, keys(), PATIENCE) {
            Ok(client) => Ok(Client(client)),
            Err(ConnectError::Handshake(ClientHandshakeError::UnexpectedStatus(status))) => {
                Err(status)
            }
            Err(e) => panic!("connect: {e}"),
        }
    }

    pub fn send(&mut self, msg: Message<'_>) {
        self.0.send(msg).unwrap();
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(Message::Text(text));
    }

    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.send(Message::Binary(bytes));
    }

    /// Whether the client may still send data (no Close sent or queued).
    pub fn can_send(&mut self) -> bool {
        self.connection().can_send()
    }

    /// Sends `payload` as a text message in `pieces` fragments, in one write.
    pub fn send_fragments(&mut self, payload: &str, pieces: usize) {
        let chunk = payload.len().div_ceil(pieces).max(1);
        let parts: Vec<&[u8]> = payload.as_bytes().chunks(chunk).collect();
        self.write_frames(|ws, out| {
            for (i, part) in parts.iter().enumerate() {
                let opcode = if i == 0 { OpCode::TEXT } else { OpCode::CONTINUATION };
                ws.send_frame(opcode, i + 1 == parts.len(), part, out).unwrap();
            }
        });
    }

    /// Sends several text messages in one write.
    pub fn send_batch(&mut self, texts: &[String]) {
        self.write_frames(|ws, out| {
            for text in texts {
                ws.send(Message::Text(text), out).unwrap();
            }
        });
    }

    /// Writes whatever `frames` encodes, in one write.
    pub fn write_frames(&mut self, frames: impl FnOnce(&mut ClientConnection, &mut Vec<u8>)) {
        self.0.write_frames(frames).unwrap();
    }

    /// Starts the close handshake from the client.
    pub fn close(&mut self, code: u16) {
        self.0.close(CloseCode::from(code), "").unwrap();
    }

    /// The next thing received, waiting at most `PATIENCE`.
    pub fn recv(&mut self) -> Got {
        self.recv_within(PATIENCE).unwrap_or_else(|| panic!("nothing received within {PATIENCE:?}"))
    }

    /// The next thing received, or `None` at end of stream or after `wait`.
    pub fn recv_within(&mut self, wait: Duration) -> Option<Got> {
        self.0.recv_within(wait).unwrap()
    }

    /// Reads until the server closes TCP; true if it did within `wait`.
    pub fn wait_eof(&mut self, wait: Duration) -> bool {
        self.0.wait_eof(wait).unwrap()
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

/// The bytes the kernel holds for the server's side of the TCP connection from `peer` to
/// `server` that the server has not read yet (Linux's `/proc/net/tcp`), or `None` while
/// there is no such connection. `Some(0)` after `peer` wrote: the server accepted the
/// connection and read what it sent.
pub fn unread_by_server(server: SocketAddr, peer: SocketAddr) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port =
        |address: &str| address.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, queues) = (fields.get(1)?, fields.get(2)?, fields.get(4)?);
        if port(local)? != server.port() || port(remote)? != peer.port() {
            return None;
        }
        usize::from_str_radix(queues.split(':').nth(1)?, 16).ok()
    })
}
