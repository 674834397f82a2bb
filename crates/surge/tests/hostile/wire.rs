//! Raw bytes on a socket: requests and frames built by hand (the encoder under test is not
//! trusted to write them), and the server's answers parsed exactly.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Every read and write on a test socket gives up after this.
pub const WAIT: Duration = Duration::from_secs(5);

/// The key of RFC 6455 §1.3 and the accept value it must produce.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The masking key of the founding documents' example.
pub const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

pub const FIN: u8 = 0x80;
pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A TCP connection to `addr` whose reads and writes time out.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    stream.set_read_timeout(Some(WAIT)).expect("set a read timeout");
    stream.set_write_timeout(Some(WAIT)).expect("set a write timeout");
    stream
}

// ---- requests ----------------------------------------------------------------------------

/// An upgrade request, valid until a test edits it.
#[derive(Clone)]
pub struct Request {
    pub request_line: String,
    headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// `GET / HTTP/1.1` with Host, Upgrade, Connection, the RFC key and version 13.
    pub fn valid(addr: SocketAddr) -> Request {
        Request {
            request_line: "GET / HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), addr.to_string().into_bytes()),
                ("Upgrade".into(), b"websocket".to_vec()),
                ("Connection".into(), b"Upgrade".to_vec()),
                ("Sec-WebSocket-Key".into(), KEY.as_bytes().to_vec()),
                ("Sec-WebSocket-Version".into(), b"13".to_vec()),
            ],
        }
    }

    pub fn line(mut self, line: &str) -> Request {
        self.request_line = line.into();
        self
    }

    /// Drops every header named `name`.
    pub fn without(mut self, name: &str) -> Request {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// Replaces the headers named `name` with one carrying `value`.
    pub fn set(self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.without(name).add(name, value)
    }

    /// Adds a header (another one if `name` is already there).
    pub fn add(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.request_line).into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

// ---- HTTP answers ------------------------------------------------------------------------

/// The head of an HTTP answer and what followed it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    /// Bytes after the head that came with it.
    pub rest: Vec<u8>,
}

impl Answer {
    /// The value of the single header `name`; panics if it is repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "header {name} repeated in {self:?}");
        first
    }
}

/// Reads one HTTP answer head from `stream` (at most [`WAIT`]); `None` if the server closed
/// without one.
pub fn read_answer(stream: &mut TcpStream) -> Option<Answer> {
    let give_up = Instant::now() + WAIT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let left = give_up.checked_duration_since(Instant::now());
        let left = left.unwrap_or_else(|| panic!("no complete answer within {WAIT:?}: {buf:?}"));
        stream.set_read_timeout(Some(left)).expect("set a read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => {
                assert!(buf.is_empty(), "the server closed inside its answer: {buf:?}");
                return None;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && buf.is_empty() => return None,
            Err(e) => panic!("reading the answer: {e} (after {buf:?})"),
        }
    };
    let head = std::str::from_utf8(&buf[..end]).expect("the answer head is ASCII");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line").to_owned();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 status line: {status_line:?}"));
    let headers = lines
        .map(|line| {
            let (name, value) =
                line.split_once(':').unwrap_or_else(|| panic!("not a header: {line:?}"));
            (name.to_owned(), value.trim().to_owned())
        })
        .collect();
    Some(Answer { status, status_line, headers, rest: buf[end + 4..].to_vec() })
}

/// Reads until the server closes the connection (at most `wait`); returns what came and
/// whether the end was seen.
pub fn read_to_eof(stream: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let give_up = Instant::now() + wait;
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let Some(left) = give_up.checked_duration_since(Instant::now()) else {
            return (got, false);
        };
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).expect("timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, true),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, false)
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Sends `request` and expects a refusal with `status`: the exact status, `Connection:
/// close`, `Content-Length: 0`, and then the end of the connection with nothing after the
/// head. Returns the answer for further checks.
pub fn expect_refusal(addr: SocketAddr, request: &[u8], status: u16) -> Answer {
    let mut stream = tcp(addr);
    // The server may answer and close before reading all of a large request: a failed
    // write is fine, the answer is what counts.
    let _ = stream.write_all(request);
    let answer = read_answer(&mut stream)
        .unwrap_or_else(|| panic!("closed without an answer; expected {status}"));
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(answer.header("Connection"), Some("close"), "{answer:?}");
    assert_eq!(answer.header("Content-Length"), Some("0"), "{answer:?}");
    assert!(answer.header("Sec-WebSocket-Accept").is_none(), "{answer:?}");
    let (after, closed) = read_to_eof(&mut stream, WAIT);
    assert!(closed, "the server kept the connection open after {status}");
    assert!(answer.rest.is_empty() && after.is_empty(), "bytes after the {status} head");
    answer
}

/// Checks a 101 answer to a request with [`KEY`].
pub fn assert_switching(answer: &Answer) {
    assert_eq!(answer.status_line, "HTTP/1.1 101 Switching Protocols", "{answer:?}");
    assert_eq!(answer.header("Upgrade").map(str::to_ascii_lowercase).as_deref(), Some("websocket"));
    assert_eq!(
        answer.header("Connection").map(str::to_ascii_lowercase).as_deref(),
        Some("upgrade")
    );
    assert_eq!(answer.header("Sec-WebSocket-Accept"), Some(ACCEPT), "{answer:?}");
}

// ---- frames ------------------------------------------------------------------------------

/// A frame header exactly as given: `b0` carries FIN, RSV and the opcode; the length uses the
/// shortest form unless `len` needs more. Masked with [`MASK`] when `masked`.
pub fn header(b0: u8, masked: bool, len: u64) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![b0];
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&MASK);
    }
    out
}

/// `payload` masked with [`MASK`], as if it started at payload offset `offset`.
pub fn masked(payload: &[u8], offset: usize) -> Vec<u8> {
    payload.iter().enumerate().map(|(i, b)| b ^ MASK[(offset + i) % 4]).collect()
}

/// A whole masked frame.
pub fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(b0, true, payload.len() as u64);
    out.extend_from_slice(&masked(payload, 0));
    out
}

/// A masked Close frame with `code` and `reason` bytes.
pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(FIN | CLOSE, &payload)
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn text(text: &str) -> Frame {
        Frame { fin: true, opcode: TEXT, payload: text.as_bytes().to_vec() }
    }
    pub fn binary(bytes: &[u8]) -> Frame {
        Frame { fin: true, opcode: BINARY, payload: bytes.to_vec() }
    }
    pub fn pong(bytes: &[u8]) -> Frame {
        Frame { fin: true, opcode: PONG, payload: bytes.to_vec() }
    }
    /// A Close with `code` and no reason: how the server reports a violation.
    pub fn close(code: u16) -> Frame {
        Frame { fin: true, opcode: CLOSE, payload: code.to_be_bytes().to_vec() }
    }
}

/// A WebSocket connection driven byte by byte.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Raw {
    /// Connects and completes a valid handshake.
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::upgrade(addr, &Request::valid(addr).bytes())
    }

    /// Connects, sends `request` (with anything after it), expects a 101.
    pub fn upgrade(addr: SocketAddr, request: &[u8]) -> Raw {
        let mut stream = tcp(addr);
        stream.write_all(request).expect("send the upgrade request");
        let answer = read_answer(&mut stream).expect("an answer to the upgrade request");
        assert_switching(&answer);
        Raw::over(stream, answer.rest)
    }

    /// Wraps an upgraded stream and the bytes already read past the 101 head.
    pub fn over(stream: TcpStream, buf: Vec<u8>) -> Raw {
        Raw { stream, buf, eof: false }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    /// Writes `bytes` to a server that may close the connection before taking them all
    /// (it answers a violation at its first byte); returns whether all went out.
    pub fn send_lossy(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// The next frame from the server, `None` at the end of the connection; panics if
    /// nothing comes within `wait`.
    pub fn next_frame(&mut self, wait: Duration) -> Option<Frame> {
        self.try_next_frame(wait).unwrap_or_else(|| panic!("no frame within {wait:?}"))
    }

    /// `Some(next_frame)`, or `None` if nothing whole came within `wait`.
    pub fn try_next_frame(&mut self, wait: Duration) -> Option<Option<Frame>> {
        let give_up = Instant::now() + wait;
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(Some(frame));
            }
            if self.eof {
                assert!(self.buf.is_empty(), "the server closed inside a frame: {:?}", self.buf);
                return Some(None);
            }
            let left = give_up.checked_duration_since(Instant::now())?;
            self.fill(left.max(Duration::from_millis(1)));
        }
    }

    fn fill(&mut self, wait: Duration) {
        let mut chunk = [0u8; 64 * 1024];
        self.stream.set_read_timeout(Some(wait)).expect("set a read timeout");
        match self.stream.read(&mut chunk) {
            Ok(0) => self.eof = true,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => self.eof = true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read from the server: {e}"),
        }
    }

    /// Expects exactly `frame` next.
    pub fn expect(&mut self, frame: &Frame) {
        assert_eq!(self.next_frame(WAIT).as_ref(), Some(frame));
    }

    /// Expects the server's Close with `code` (and no reason), then the end of the TCP
    /// connection within [`WAIT`].
    pub fn expect_close(&mut self, code: u16) {
        let got = self.next_frame(WAIT);
        assert_eq!(got, Some(Frame::close(code)), "expected Close {code}");
        self.expect_eof(WAIT);
    }

    /// Expects the end of the connection within `wait`, with no more frames.
    pub fn expect_eof(&mut self, wait: Duration) {
        match self.try_next_frame(wait) {
            Some(None) => {}
            Some(Some(frame)) => panic!("expected the end of the connection, got {frame:?}"),
            None => panic!("the server kept the connection open for {wait:?}"),
        }
    }
}

/// Parses one unmasked server frame at the front of `buf`.
fn parse_server_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    let [b0, b1, rest @ ..] = buf else { return None };
    assert_eq!(b0 & 0x70, 0, "the server set RSV bits");
    assert_eq!(b1 & 0x80, 0, "the server masked a frame");
    let (len, header) = match b1 & 0x7F {
        126 => (u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)), 4),
        127 => (u64::from_be_bytes(rest.get(..8)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let end = header + usize::try_from(len).expect("a frame that fits in memory");
    let payload = buf.get(header..end)?.to_vec();
    Some((Frame { fin: b0 & 0x80 != 0, opcode: b0 & 0x0F, payload }, end))
}
