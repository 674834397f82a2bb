//! The RFC 6455 §4 opening handshake, server and client side, sans-IO.
//!
//! Both sides work the same way: the caller appends the bytes it reads to one buffer and calls
//! the parser again with the whole buffer. The parser state ([`ServerHandshake`],
//! [`ClientHandshake`]) remembers how far it has already looked for the blank line that ends
//! the head, so a head that arrives one byte at a time costs O(n) in total: nothing is parsed
//! twice, and httparse runs exactly once, on the complete head. `Ok(None)` means "need more
//! bytes" and is not an error.
//!
//! Parsing is zero-copy: the parsed [`UpgradeRequest`] / [`UpgradeResponse`] borrow the
//! caller's buffer and a caller-supplied array of [`Header`]s (a `[EMPTY_HEADER; 64]` on the
//! stack is the intended use).
//!
//! Every answer is written by appending to a caller `Vec<u8>`; nothing here does I/O, reads a
//! clock or draws random numbers.
#![forbid(unsafe_code)]

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

pub use httparse::{Header, EMPTY_HEADER};

/// The GUID that RFC 6455 §1.3 appends to the key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Size limits applied while reading a handshake head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// Largest head accepted, in bytes, including the terminating blank line.
    /// A longer head is refused with 431 (server) or [`ClientHandshakeError::HeadTooLarge`].
    pub max_head_len: usize,
    /// Most header fields accepted. The effective limit is also capped by the length of the
    /// header storage passed to the parser. More are refused with 431 (server) or
    /// [`ClientHandshakeError::TooManyHeaders`].
    pub max_headers: usize,
}

impl Default for HandshakeLimits {
    /// 8 KiB of head and 64 header fields.
    fn default() -> Self {
        Self { max_head_len: 8 * 1024, max_headers: 64 }
    }
}

/// Why a server refuses an opening handshake, or why a caller's answer could not be written.
///
/// Each variant maps to the HTTP status to answer with through [`HandshakeError::status`]; write
/// that answer with [`write_rejection`]. The last four variants are caller bugs, not client
/// faults, and map to 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head did not end within [`HandshakeLimits::max_head_len`] bytes (431).
    #[error("request head is larger than the limit")]
    HeadTooLarge,
    /// The head has more header fields than allowed (431).
    #[error("request has more header fields than the limit")]
    TooManyHeaders,
    /// The head is not a well-formed HTTP/1.x request (400).
    #[error("malformed HTTP request")]
    MalformedHttp,
    /// The method is not `GET` (405).
    #[error("request method is not GET")]
    MethodNotAllowed,
    /// The request is not HTTP/1.1 (400).
    #[error("request is not HTTP/1.1")]
    HttpVersion,
    /// The request target is neither an absolute path nor an absolute http(s)/ws(s) URI, or it
    /// carries a fragment (400).
    #[error("request target is not a resource name")]
    InvalidTarget,
    /// No `Host` header, or an empty one (400).
    #[error("missing Host header")]
    MissingHost,
    /// More than one `Host` header (400).
    #[error("more than one Host header")]
    DuplicateHost,
    /// The request announces a body (`Transfer-Encoding`, or a `Content-Length` other than 0);
    /// its bytes would otherwise be taken for frames (400).
    #[error("upgrade request announces a body")]
    UnexpectedBody,
    /// No `Upgrade` header lists the `websocket` token (400).
    #[error("Upgrade header does not list websocket")]
    MissingUpgrade,
    /// No `Connection` header lists the `upgrade` token (400).
    #[error("Connection header does not list upgrade")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing, repeated or not `13` (426, answered with
    /// `Sec-WebSocket-Version: 13`).
    #[error("missing or unsupported Sec-WebSocket-Version")]
    UnsupportedVersion,
    /// No `Sec-WebSocket-Key` header (400).
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// More than one `Sec-WebSocket-Key` header (400).
    #[error("more than one Sec-WebSocket-Key header")]
    DuplicateKey,
    /// `Sec-WebSocket-Key` is not the base64 encoding of exactly 16 bytes (400).
    #[error("Sec-WebSocket-Key is not the base64 encoding of 16 bytes")]
    InvalidKey,
    /// A `Sec-WebSocket-Protocol` element is not an HTTP token (400).
    #[error("malformed Sec-WebSocket-Protocol header")]
    InvalidSubprotocols,
    /// A `Sec-WebSocket-Extensions` header is malformed: non-ASCII or control bytes, an
    /// unterminated quoted string, or an element whose name is not a token (400).
    #[error("malformed Sec-WebSocket-Extensions header")]
    InvalidExtensions,
    /// More than one `Origin` header (400).
    #[error("more than one Origin header")]
    DuplicateOrigin,
    /// Caller bug: the subprotocol passed to [`UpgradeRequest::accept`] is not one the client
    /// offered (500).
    #[error("chosen subprotocol was not offered by the client")]
    SubprotocolNotOffered,
    /// Caller bug: an extra response header has a name that is not a token or a value with
    /// control bytes such as CR or LF (500).
    #[error("extra response header is not valid HTTP")]
    InvalidResponseHeader,
    /// Caller bug: [`write_rejection`] was given a status outside 400..=599 (500).
    #[error("rejection status is not in 400..=599")]
    InvalidRejectStatus,
    /// Caller bug: [`write_response_head`] was given a status outside 200..=599 (500).
    #[error("response status is not in 200..=599")]
    InvalidResponseStatus,
}

impl HandshakeError {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            Self::MethodNotAllowed => 405,
            Self::UnsupportedVersion => 426,
            Self::MalformedHttp
            | Self::HttpVersion
            | Self::InvalidTarget
            | Self::MissingHost
            | Self::DuplicateHost
            | Self::UnexpectedBody
            | Self::MissingUpgrade
            | Self::MissingConnectionUpgrade
            | Self::MissingKey
            | Self::DuplicateKey
            | Self::InvalidKey
            | Self::InvalidSubprotocols
            | Self::InvalidExtensions
            | Self::DuplicateOrigin => 400,
            Self::SubprotocolNotOffered
            | Self::InvalidResponseHeader
            | Self::InvalidRejectStatus
            | Self::InvalidResponseStatus => 500,
        }
    }
}

/// Why a client could not build its request, or why it refuses the server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ClientHandshakeError {
    /// Caller bug: the host is empty or has bytes that are not visible ASCII.
    #[error("host is empty or not visible ASCII")]
    InvalidHost,
    /// Caller bug: the target does not start with `/`, has bytes that are not visible ASCII,
    /// or has a fragment.
    #[error("request target is not an absolute path of visible ASCII")]
    InvalidTarget,
    /// Caller bug: the origin has control bytes.
    #[error("origin is not a valid header value")]
    InvalidOrigin,
    /// Caller bug: an offered subprotocol is not a token, or is offered twice.
    #[error("offered subprotocol is not a token or is repeated")]
    InvalidOfferedSubprotocol,
    /// Caller bug: an extra request header has a name that is not a token or a value with
    /// control bytes such as CR or LF.
    #[error("extra request header is not valid HTTP")]
    InvalidHeader,
    /// The response head did not end within [`HandshakeLimits::max_head_len`] bytes.
    #[error("response head is larger than the limit")]
    HeadTooLarge,
    /// The response has more header fields than allowed.
    #[error("response has more header fields than the limit")]
    TooManyHeaders,
    /// The head is not a well-formed HTTP/1.x response.
    #[error("malformed HTTP response")]
    MalformedHttp,
    /// The response is not HTTP/1.1.
    #[error("response is not HTTP/1.1")]
    HttpVersion,
    /// The server answered with this status instead of 101.
    #[error("server answered status {0} instead of 101")]
    UnexpectedStatus(u16),
    /// No `Upgrade` header lists the `websocket` token.
    #[error("Upgrade header does not list websocket")]
    MissingUpgrade,
    /// No `Connection` header lists the `upgrade` token.
    #[error("Connection header does not list upgrade")]
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Accept` header.
    #[error("missing Sec-WebSocket-Accept header")]
    MissingAccept,
    /// More than one `Sec-WebSocket-Accept` header.
    #[error("more than one Sec-WebSocket-Accept header")]
    DuplicateAccept,
    /// `Sec-WebSocket-Accept` does not match the key that was sent.
    #[error("Sec-WebSocket-Accept does not match the key")]
    AcceptMismatch,
    /// More than one `Sec-WebSocket-Protocol` header.
    #[error("more than one Sec-WebSocket-Protocol header")]
    DuplicateSubprotocol,
    /// The server chose a subprotocol that was not offered.
    #[error("server chose a subprotocol that was not offered")]
    UnofferedSubprotocol,
    /// The server answered with an extension; none are offered.
    #[error("server answered with an extension that was not offered")]
    UnexpectedExtension,
    /// The server's permessage-deflate answer does not fit the offer.
    #[error("permessage-deflate answer refused: {0}")]
    DeflateAnswer(crate::deflate::negotiate::ResponseError),
}

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
///
/// `key` is the header value exactly as sent (24 base64 characters). Does not allocate.
///
/// ```
/// use surge_proto::handshake::accept_key;
/// assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    let digest: [u8; 20] = sha.finalize().into();
    let mut out = [b'='; 28];
    base64_encode(&digest, &mut out);
    out
}

/// Standard base64 with padding. `out` must be pre-filled with `=` and hold
/// `4 * ceil(src.len() / 3)` bytes; extra output bytes are left as they are.
fn base64_encode(src: &[u8], out: &mut [u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (chunk, quad) in src.chunks(3).zip(out.chunks_mut(4)) {
        let mut triple = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            triple |= u32::from(b) << (16 - 8 * i);
        }
        // A chunk of n input bytes gives n + 1 output characters; the rest stay `=`.
        for (slot, shift) in quad.iter_mut().zip([18u32, 12, 6, 0]).take(chunk.len() + 1) {
            *slot = ALPHABET[(triple >> shift) as usize & 63];
        }
    }
}

/// Remembers how far the buffer has been searched for the end of the head.
#[derive(Debug, Clone, Copy, Default)]
struct HeadScanner {
    /// Bytes already searched without finding the end of the head.
    scanned: usize,
    /// Length of the head once its end has been found.
    end: Option<usize>,
}

/// The head did not end within the size limit.
struct TooLarge;

impl HeadScanner {
    /// Looks for the blank line that ends the head (`\r\n\r\n`, or a bare `\n` in place of
    /// either `\r\n`, as httparse accepts), only among bytes not searched before.
    ///
    /// `Ok(Some(len))`: the head is `buf[..len]`. `Ok(None)`: need more bytes.
    fn scan(&mut self, buf: &[u8], max_len: usize) -> Result<Option<usize>, TooLarge> {
        if buf.len() < self.scanned || self.end.is_some_and(|end| buf.len() < end) {
            // The caller shrank the buffer: start over rather than trust stale state.
            *self = Self::default();
        }
        if let Some(end) = self.end {
            return Ok(Some(end));
        }
        let limit = buf.len().min(max_len);
        let mut from = self.scanned;
        while let Some(at) =
            buf.get(from..limit).and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        {
            let at = from + at;
            let blank_line = match at.checked_sub(1).and_then(|i| buf.get(i)) {
                Some(b'\n') => true,
                Some(b'\r') => at.checked_sub(2).and_then(|i| buf.get(i)) == Some(&b'\n'),
                _ => false,
            };
            if blank_line {
                self.end = Some(at + 1);
                return Ok(self.end);
            }
            from = at + 1;
        }
        self.scanned = limit;
        if buf.len() >= max_len {
            Err(TooLarge)
        } else {
            Ok(None)
        }
    }
}

/// The first `max` entries of the caller's header storage.
fn header_storage<'h, 'b>(headers: &'h mut [Header<'b>], max: usize) -> &'h mut [Header<'b>] {
    let len = headers.len().min(max);
    // `len <= headers.len()`, so this cannot fail.
    &mut headers[..len]
}

/// Server side of the opening handshake: reads the client's request incrementally.
///
/// Keep one per connection until the head is complete.
///
/// ```
/// use surge_proto::handshake::{ServerHandshake, EMPTY_HEADER};
///
/// let mut server = ServerHandshake::default();
/// let mut inbuf = Vec::new();
/// let mut out = Vec::new();
/// // Bytes arrive in pieces; here the second piece also carries the start of a frame.
/// let pieces: [&[u8]; 2] = [
///     b"GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n",
///     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n\x81",
/// ];
/// for piece in pieces {
///     inbuf.extend_from_slice(piece);
///     let mut headers = [EMPTY_HEADER; 64];
///     match server.parse(&inbuf, &mut headers) {
///         Ok(None) => continue, // need more bytes
///         Ok(Some(request)) => {
///             assert_eq!(request.path(), "/chat");
///             assert_eq!(request.query(), Some("room=1"));
///             let chosen = request.subprotocols().find(|p| *p == "chat");
///             request.accept(chosen, &[], &mut out).expect("chat was offered");
///             // Bytes after the head are the first frames.
///             assert_eq!(&inbuf[request.head_len()..], b"\x81");
///         }
///         Err(error) => {
///             surge_proto::handshake::write_rejection(error.status(), &[], &mut out)
///                 .expect("a 4xx status");
///         }
///     }
///     break;
/// }
/// assert_eq!(
///     out,
///     b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///       Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
/// );
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerHandshake {
    limits: HandshakeLimits,
    scanner: HeadScanner,
}

impl ServerHandshake {
    /// A parser that applies `limits`.
    pub fn new(limits: HandshakeLimits) -> Self {
        Self { limits, scanner: HeadScanner::default() }
    }

    /// Parses the request head at the start of `buf`.
    ///
    /// `buf` holds every byte received so far: call again with the same bytes plus the new
    /// ones (append only) until this returns `Ok(Some(_))` or an error. Only the bytes not
    /// seen before are searched, so the total cost is linear in the head length.
    ///
    /// `headers` is scratch storage for the header fields; its length, together with
    /// [`HandshakeLimits::max_headers`], bounds how many are accepted.
    ///
    /// On error, answer with [`write_rejection`] using [`HandshakeError::status`] and close.
    pub fn parse<'h, 'b>(
        &mut self,
        buf: &'b [u8],
        headers: &'h mut [Header<'b>],
    ) -> Result<Option<UpgradeRequest<'h, 'b>>, HandshakeError> {
        let head_len = match self.scanner.scan(buf, self.limits.max_head_len) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(TooLarge) => return Err(HandshakeError::HeadTooLarge),
        };
        let head = buf.get(..head_len).ok_or(HandshakeError::MalformedHttp)?;
        let mut request = httparse::Request::new(header_storage(headers, self.limits.max_headers));
        match request.parse(head) {
            Ok(httparse::Status::Complete(len)) if len == head_len => {}
            Ok(_) => return Err(HandshakeError::MalformedHttp),
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
            Err(_) => return Err(HandshakeError::MalformedHttp),
        }
        if request.method != Some("GET") {
            return Err(HandshakeError::MethodNotAllowed);
        }
        if request.version != Some(1) {
            return Err(HandshakeError::HttpVersion);
        }
        let target = request.path.ok_or(HandshakeError::MalformedHttp)?;
        let (path, query) = split_target(target).ok_or(HandshakeError::InvalidTarget)?;
        let headers: &'h [Header<'b>] = request.headers;
        let fields = RequestFields::collect(headers)?;
        Ok(Some(UpgradeRequest {
            head_len,
            target,
            path,
            query,
            headers,
            host: fields.host,
            origin: fields.origin,
            key: fields.key,
        }))
    }
}

/// Splits a request target into path and query. Accepts origin-form (`/path?query`) and
/// absolute-form with an http, https, ws or wss scheme; refuses anything with a fragment.
///
/// ```
/// use surge_proto::handshake::split_target;
/// assert_eq!(split_target("/a?b=1"), Some(("/a", Some("b=1"))));
/// assert_eq!(split_target("http://host"), Some(("/", None)));
/// assert_eq!(split_target("/a#frag"), None);
/// ```
pub fn split_target(target: &str) -> Option<(&str, Option<&str>)> {
    if target.contains('#') {
        return None;
    }
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        let (scheme, rest) = target.split_once("://")?;
        if !["http", "https", "ws", "wss"].iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
            return None;
        }
        match rest.find(['/', '?']) {
            Some(at) => rest.get(at..)?,
            None => "",
        }
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    Some((if path.is_empty() { "/" } else { path }, query))
}

/// The handshake fields of a request, checked.
struct RequestFields<'b> {
    host: &'b [u8],
    origin: Option<&'b [u8]>,
    key: &'b [u8],
}

impl<'b> RequestFields<'b> {
    /// One pass over the headers, then the checks of RFC 6455 §4.2.1 in a fixed order.
    fn collect(headers: &[Header<'b>]) -> Result<Self, HandshakeError> {
        let mut host = None;
        let mut hosts = 0usize;
        let mut origin = None;
        let mut origins = 0usize;
        let mut key = None;
        let mut keys = 0usize;
        let mut version = None;
        let mut versions = 0usize;
        let mut upgrade = false;
        let mut connection = false;
        let mut body = false;
        let mut subprotocols_ok = true;
        let mut extensions_ok = true;
        for header in headers {
            let name = header.name;
            let value = trim_ows(header.value);
            if name.eq_ignore_ascii_case("host") {
                hosts += 1;
                host = Some(value);
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade |= list_has_token(value, b"websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                connection |= list_has_token(value, b"upgrade");
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                keys += 1;
                key = Some(value);
            } else if name.eq_ignore_ascii_case("sec-websocket-version") {
                versions += 1;
                version = Some(value);
            } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                subprotocols_ok &= valid_token_list(value);
            } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
                extensions_ok &= valid_extension_list(value);
            } else if name.eq_ignore_ascii_case("origin") {
                origins += 1;
                origin = Some(value);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                body = true;
            } else if name.eq_ignore_ascii_case("content-length") {
                body |= value != b"0";
            }
        }
        let host = match (hosts, host) {
            (1, Some(host)) if !host.is_empty() => host,
            (0 | 1, _) => return Err(HandshakeError::MissingHost),
            _ => return Err(HandshakeError::DuplicateHost),
        };
        if body {
            return Err(HandshakeError::UnexpectedBody);
        }
        if !upgrade {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !connection {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        if versions != 1 || version != Some(b"13") {
            return Err(HandshakeError::UnsupportedVersion);
        }
        let key = match (keys, key) {
            (1, Some(key)) => key,
            (0, _) => return Err(HandshakeError::MissingKey),
            _ => return Err(HandshakeError::DuplicateKey),
        };
        if !valid_key(key) {
            return Err(HandshakeError::InvalidKey);
        }
        if !subprotocols_ok {
            return Err(HandshakeError::InvalidSubprotocols);
        }
        if !extensions_ok {
            return Err(HandshakeError::InvalidExtensions);
        }
        if origins > 1 {
            return Err(HandshakeError::DuplicateOrigin);
        }
        Ok(Self { host, origin, key })
    }
}

/// A `Sec-WebSocket-Key` must be base64 (with padding) of exactly 16 bytes: 24 characters.
fn valid_key(key: &[u8]) -> bool {
    // 24 characters decode to at most 18 bytes.
    let mut decoded = [0u8; 18];
    key.len() == 24
        && base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded) == Ok(16)
}

/// A validated opening-handshake request, borrowing the caller's buffer and header storage.
///
/// Its method is `GET`, its version HTTP/1.1, and every check of RFC 6455 §4.2.1 passed.
/// Answer it with [`accept`](Self::accept), or refuse it with [`write_rejection`] (for example
/// 403 for an unwanted `Origin`, 503 while shutting down).
#[derive(Debug, Clone, Copy)]
pub struct UpgradeRequest<'h, 'b> {
    head_len: usize,
    target: &'b str,
    path: &'b str,
    query: Option<&'b str>,
    headers: &'h [Header<'b>],
    host: &'b [u8],
    origin: Option<&'b [u8]>,
    key: &'b [u8],
}

impl<'h, 'b> UpgradeRequest<'h, 'b> {
    /// How many bytes of the buffer the head used. Bytes after it (frames a client sent
    /// right behind its request) belong to the WebSocket connection and must be kept.
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// The request target as sent, e.g. `/chat?room=1`.
    pub fn target(&self) -> &'b str {
        self.target
    }

    /// The path of the target, without the query, e.g. `/chat`. For an absolute-form target
    /// (`http://host/chat`) this is the path after the authority, `/` when there is none.
    /// Not percent-decoded.
    pub fn path(&self) -> &'b str {
        self.path
    }

    /// The query of the target, after the first `?`, if there is one. Not percent-decoded.
    pub fn query(&self) -> Option<&'b str> {
        self.query
    }

    /// All header fields, in order, as received.
    pub fn headers(&self) -> &'h [Header<'b>] {
        self.headers
    }

    /// The value of the first header named `name` (compared case-insensitively), as received.
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        find_header(self.headers, name)
    }

    /// The `Host` header value, trimmed; present and unique.
    pub fn host(&self) -> &'b [u8] {
        self.host
    }

    /// The `Origin` header value, trimmed, if present (at most one is accepted). Browsers
    /// always send it; check it against an allow-list to stop cross-site WebSocket hijacking.
    pub fn origin(&self) -> Option<&'b [u8]> {
        self.origin
    }

    /// The subprotocols the client offered, in order, across every `Sec-WebSocket-Protocol`
    /// header: comma-separated, trimmed, empty elements skipped. Each is an HTTP token.
    /// Linear in the header length.
    pub fn subprotocols(&self) -> Subprotocols<'h, 'b> {
        Subprotocols { headers: self.headers.iter(), rest: &[] }
    }

    /// The extensions the client offered, in order, across every `Sec-WebSocket-Extensions`
    /// header. Linear in the header length.
    pub fn extensions(&self) -> Extensions<'h, 'b> {
        Extensions { headers: self.headers.iter(), rest: &[] }
    }

    /// Appends the `101 Switching Protocols` answer to `out`.
    ///
    /// `subprotocol`, if any, must be one of [`subprotocols`](Self::subprotocols) (compared
    /// case-sensitively). `extra_headers` are written after the handshake fields; names must be
    /// tokens and values free of control bytes. Nothing is appended on error.
    pub fn accept(
        &self,
        subprotocol: Option<&str>,
        extra_headers: &[(&str, &[u8])],
        out: &mut Vec<u8>,
    ) -> Result<(), HandshakeError> {
        if let Some(chosen) = subprotocol {
            if !self.subprotocols().any(|offered| offered == chosen) {
                return Err(HandshakeError::SubprotocolNotOffered);
            }
        }
        if !valid_headers(extra_headers) {
            return Err(HandshakeError::InvalidResponseHeader);
        }
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Accept: ",
        );
        out.extend_from_slice(&accept_key(self.key));
        out.extend_from_slice(b"\r\n");
        if let Some(chosen) = subprotocol {
            push_header(out, "Sec-WebSocket-Protocol", chosen.as_bytes());
        }
        push_headers(out, extra_headers);
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// Appends a refusal of the handshake to `out`:
/// `HTTP/1.1 <status> <reason>`, `Connection: close`, `Content-Length: 0`, then
/// `Sec-WebSocket-Version: 13` for 426 and `Allow: GET` for 405 (RFC 9110 §15.5.6), then
/// `extra_headers` (for example `Retry-After` with 503), then the blank line.
///
/// `status` must be in 400..=599; nothing is appended on error. Close the connection after
/// sending it.
pub fn write_rejection(
    status: u16,
    extra_headers: &[(&str, &[u8])],
    out: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    if !(400..=599).contains(&status) {
        return Err(HandshakeError::InvalidRejectStatus);
    }
    if !valid_headers(extra_headers) {
        return Err(HandshakeError::InvalidResponseHeader);
    }
    push_status_line(status, out);
    out.extend_from_slice(b"Connection: close\r\nContent-Length: 0\r\n");
    match status {
        426 => out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n"),
        405 => out.extend_from_slice(b"Allow: GET\r\n"),
        _ => {}
    }
    push_headers(out, extra_headers);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Appends the head of an HTTP/1.1 answer to a plain request (one that is not an upgrade,
/// served beside the WebSocket): `HTTP/1.1 <status> <reason>`, `Content-Length: body_len`,
/// then `headers`, then the blank line; the body follows it.
///
/// `status` must be in 200..=599 and `headers` valid HTTP (token names, values without
/// control bytes); nothing is appended on error.
///
/// ```
/// let mut out = Vec::new();
/// surge_proto::handshake::write_response_head(200, 3, &[("Content-Type", b"text/plain")], &mut out)
///     .unwrap();
/// assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\n");
/// ```
pub fn write_response_head(
    status: u16,
    body_len: usize,
    headers: &[(&str, &[u8])],
    out: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    if !(200..=599).contains(&status) {
        return Err(HandshakeError::InvalidResponseStatus);
    }
    if !valid_headers(headers) {
        return Err(HandshakeError::InvalidResponseHeader);
    }
    push_status_line(status, out);
    out.extend_from_slice(b"Content-Length: ");
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut left = body_len;
    loop {
        at -= 1;
        digits[at] = b'0' + (left % 10) as u8;
        left /= 10;
        if left == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
    push_headers(out, headers);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `HTTP/1.1 <status> <reason>` and its line end, for a status of three digits.
fn push_status_line(status: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The reason phrase for a status.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ if status < 300 => "Success",
        _ if status < 400 => "Redirection",
        _ if status < 500 => "Client Error",
        _ => "Server Error",
    }
}

/// Iterator over the offered subprotocols; see [`UpgradeRequest::subprotocols`].
#[derive(Debug, Clone)]
pub struct Subprotocols<'h, 'b> {
    headers: core::slice::Iter<'h, Header<'b>>,
    rest: &'b [u8],
}

impl<'b> Iterator for Subprotocols<'_, 'b> {
    type Item = &'b str;

    fn next(&mut self) -> Option<&'b str> {
        loop {
            while !self.rest.is_empty() {
                let (element, rest) = split_plain(self.rest);
                self.rest = rest;
                let element = trim_ows(element);
                if !element.is_empty() {
                    // Checked to be a token, hence ASCII, when the request was parsed.
                    if let Ok(element) = core::str::from_utf8(element) {
                        return Some(element);
                    }
                }
            }
            self.rest = next_value(&mut self.headers, "sec-websocket-protocol")?;
        }
    }
}

/// One extension offered by the client: its name and its raw parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtensionOffer<'b> {
    /// The extension name, e.g. `permessage-deflate`. An HTTP token; any token is just a name.
    pub name: &'b str,
    /// Everything after the first `;`, trimmed, e.g. `client_max_window_bits; x=1`, or empty.
    /// Visible ASCII, spaces and tabs, with balanced quoted strings; not otherwise checked.
    pub params: &'b str,
}

/// Iterator over the offered extensions; see [`UpgradeRequest::extensions`].
#[derive(Debug, Clone)]
pub struct Extensions<'h, 'b> {
    headers: core::slice::Iter<'h, Header<'b>>,
    rest: &'b [u8],
}

impl<'b> Iterator for Extensions<'_, 'b> {
    type Item = ExtensionOffer<'b>;

    fn next(&mut self) -> Option<ExtensionOffer<'b>> {
        loop {
            while !self.rest.is_empty() {
                let (element, rest) = split_quoted(self.rest);
                self.rest = rest;
                let element = trim_ows(element);
                if element.is_empty() {
                    continue;
                }
                let (name, params) = split_extension(element);
                // Checked to be ASCII when the request was parsed.
                if let (Ok(name), Ok(params)) =
                    (core::str::from_utf8(name), core::str::from_utf8(params))
                {
                    return Some(ExtensionOffer { name, params });
                }
            }
            self.rest = next_value(&mut self.headers, "sec-websocket-extensions")?;
        }
    }
}

/// The value of the next header named `name` (case-insensitively).
fn next_value<'b>(headers: &mut core::slice::Iter<'_, Header<'b>>, name: &str) -> Option<&'b [u8]> {
    headers.find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

/// The value of the first header named `name` (case-insensitively).
fn find_header<'b>(headers: &[Header<'b>], name: &str) -> Option<&'b [u8]> {
    next_value(&mut headers.iter(), name)
}

/// Splits at the first comma: (before, after).
fn split_plain(list: &[u8]) -> (&[u8], &[u8]) {
    match list.iter().position(|&b| b == b',') {
        Some(at) => (list.get(..at).unwrap_or_default(), list.get(at + 1..).unwrap_or_default()),
        None => (list, &[]),
    }
}

/// Splits at the first comma outside a quoted string: (before, after).
fn split_quoted(list: &[u8]) -> (&[u8], &[u8]) {
    let mut quote = QuoteState::Outside;
    for (at, &b) in list.iter().enumerate() {
        quote = quote.step(b);
        if quote == QuoteState::Outside && b == b',' {
            return (list.get(..at).unwrap_or_default(), list.get(at + 1..).unwrap_or_default());
        }
    }
    (list, &[])
}

/// Position relative to HTTP quoted strings, for scanning a header value byte by byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    Outside,
    Inside,
    /// Inside, right after a backslash.
    Escaped,
}

impl QuoteState {
    fn step(self, b: u8) -> Self {
        match (self, b) {
            (Self::Outside, b'"') => Self::Inside,
            (Self::Inside, b'"') => Self::Outside,
            (Self::Inside, b'\\') => Self::Escaped,
            (Self::Escaped, _) => Self::Inside,
            (state, _) => state,
        }
    }
}

/// Trims optional whitespace (SP, HTAB) from both ends.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// An HTTP token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~')
}

fn is_token(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|&b| is_tchar(b))
}

/// Whether the comma-separated list has `token` as an element (case-insensitively).
/// Whether the comma-separated header value `list` has `token` as an element (compared
/// ASCII-case-insensitively), e.g. `close` in `Connection: keep-alive, Close`.
///
/// ```
/// assert!(surge_proto::handshake::list_has_token(b"keep-alive, Close", b"close"));
/// assert!(!surge_proto::handshake::list_has_token(b"closed", b"close"));
/// ```
pub fn list_has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',').any(|element| trim_ows(element).eq_ignore_ascii_case(token))
}

/// Whether every non-empty element of the comma-separated list is a token.
fn valid_token_list(list: &[u8]) -> bool {
    list.split(|&b| b == b',').map(trim_ows).all(|e| e.is_empty() || is_token(e))
}

/// Whether an extension list is visible ASCII / SP / HTAB, its quoted strings are closed, and
/// each non-empty element starts with a token name.
fn valid_extension_list(list: &[u8]) -> bool {
    if !list.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        return false;
    }
    if list.iter().fold(QuoteState::Outside, |quote, &b| quote.step(b)) != QuoteState::Outside {
        return false;
    }
    let mut rest = list;
    while !rest.is_empty() {
        let (element, tail) = split_quoted(rest);
        rest = tail;
        let element = trim_ows(element);
        if !element.is_empty() && !is_token(split_extension(element).0) {
            return false;
        }
    }
    true
}

/// Splits an extension element into its name and raw parameters, both trimmed.
fn split_extension(element: &[u8]) -> (&[u8], &[u8]) {
    match element.iter().position(|&b| b == b';') {
        Some(at) => (
            trim_ows(element.get(..at).unwrap_or_default()),
            trim_ows(element.get(at + 1..).unwrap_or_default()),
        ),
        None => (trim_ows(element), &[]),
    }
}

/// Whether caller-supplied header fields are safe to write: token names, values of visible
/// ASCII, obs-text, SP or HTAB (no CR, LF or other control bytes).
fn valid_headers(headers: &[(&str, &[u8])]) -> bool {
    headers.iter().all(|(name, value)| is_token(name.as_bytes()) && valid_field_value(value))
}

fn valid_field_value(value: &[u8]) -> bool {
    value.iter().all(|&b| b == b'\t' || (b' ' <= b && b != 0x7f))
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_headers(out: &mut Vec<u8>, headers: &[(&str, &[u8])]) {
    for (name, value) in headers {
        push_header(out, name, value);
    }
}

/// What a client puts in its opening handshake request.
#[derive(Debug, Clone, Copy)]
pub struct ClientRequest<'a> {
    /// The `Host` header: the server's authority, e.g. `server.example.com:8080`.
    pub host: &'a str,
    /// The request target: absolute path and optional query, e.g. `/chat?room=1`.
    pub target: &'a str,
    /// The `Origin` header, if any (browsers always send one; other clients may).
    pub origin: Option<&'a str>,
    /// Subprotocols to offer, most preferred first; each must be a token, none repeated.
    pub subprotocols: &'a [&'a str],
    /// Extra header fields written after the handshake fields (e.g. `Authorization`).
    pub headers: &'a [(&'a str, &'a [u8])],
}

impl<'a> ClientRequest<'a> {
    /// A request for `target` on `host`, with no origin, subprotocols or extra headers.
    pub fn new(host: &'a str, target: &'a str) -> Self {
        Self { host, target, origin: None, subprotocols: &[], headers: &[] }
    }
}

/// Client side of the opening handshake: writes the request, then reads the server's answer
/// incrementally.
///
/// ```
/// use surge_proto::handshake::{ClientHandshake, ClientRequest, EMPTY_HEADER};
///
/// let mut out = Vec::new();
/// let request = ClientRequest { subprotocols: &["chat"], ..ClientRequest::new("example.com", "/ws") };
/// // In real use: 16 bytes from a CSPRNG.
/// let nonce = *b"the sample nonce";
/// let mut client = ClientHandshake::start(&request, nonce, &mut out).expect("valid request");
/// assert!(out.starts_with(b"GET /ws HTTP/1.1\r\nHost: example.com\r\n"));
///
/// let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///                Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
///                Sec-WebSocket-Protocol: chat\r\n\r\n";
/// let mut headers = [EMPTY_HEADER; 64];
/// let response = client.parse_response(answer, &mut headers).unwrap().expect("complete");
/// assert_eq!(response.subprotocol(), Some("chat"));
/// assert_eq!(response.head_len(), answer.len());
/// ```
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    limits: HandshakeLimits,
    scanner: HeadScanner,
    expected_accept: [u8; 28],
    /// The offered subprotocols joined with `,` (tokens never contain one).
    offered: String,
    /// The request offered extensions (a `Sec-WebSocket-Extensions` field among its
    /// headers): the answer's are then the caller's to check (for permessage-deflate,
    /// `deflate::ClientOffer::check_response`); otherwise any is refused.
    extensions_offered: bool,
}

impl ClientHandshake {
    /// Appends the opening handshake request to `out` and returns the state that checks the
    /// answer. Response parsing uses the default [`HandshakeLimits`]; see
    /// [`with_limits`](Self::with_limits).
    ///
    /// `nonce` becomes the `Sec-WebSocket-Key`. It must be 16 fresh bytes from a
    /// cryptographically secure random source for every connection (RFC 6455 §4.1); this
    /// crate does no I/O and so cannot draw them itself. Nothing is appended on error.
    pub fn start(
        request: &ClientRequest<'_>,
        nonce: [u8; 16],
        out: &mut Vec<u8>,
    ) -> Result<Self, ClientHandshakeError> {
        let host = request.host.as_bytes();
        if host.is_empty() || !host.iter().all(|b| (b'!'..=b'~').contains(b)) {
            return Err(ClientHandshakeError::InvalidHost);
        }
        let target = request.target.as_bytes();
        if !target.starts_with(b"/")
            || !target.iter().all(|&b| (b'!'..=b'~').contains(&b) && b != b'#')
        {
            return Err(ClientHandshakeError::InvalidTarget);
        }
        if !request.origin.is_none_or(|origin| valid_field_value(origin.as_bytes())) {
            return Err(ClientHandshakeError::InvalidOrigin);
        }
        let protocols = request.subprotocols;
        let all_tokens = protocols.iter().all(|p| is_token(p.as_bytes()));
        let unique = protocols
            .iter()
            .enumerate()
            .all(|(i, p)| !protocols.iter().take(i).any(|earlier| earlier == p));
        if !(all_tokens && unique) {
            return Err(ClientHandshakeError::InvalidOfferedSubprotocol);
        }
        if !valid_headers(request.headers) {
            return Err(ClientHandshakeError::InvalidHeader);
        }

        let mut key = [b'='; 24];
        base64_encode(&nonce, &mut key);
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(target);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        push_header(out, "Host", host);
        out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
        push_header(out, "Sec-WebSocket-Key", &key);
        out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
        if let Some(origin) = request.origin {
            push_header(out, "Origin", origin.as_bytes());
        }
        let offered = protocols.join(",");
        if !protocols.is_empty() {
            push_header(out, "Sec-WebSocket-Protocol", protocols.join(", ").as_bytes());
        }
        push_headers(out, request.headers);
        out.extend_from_slice(b"\r\n");
        Ok(Self {
            limits: HandshakeLimits::default(),
            scanner: HeadScanner::default(),
            expected_accept: accept_key(&key),
            offered,
            extensions_offered: request
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions")),
        })
    }

    /// Uses `limits` when reading the response.
    pub fn with_limits(mut self, limits: HandshakeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Parses the server's answer at the start of `buf`.
    ///
    /// Like [`ServerHandshake::parse`]: pass every byte received so far (append only) until
    /// this returns `Ok(Some(_))` or an error; the total cost is linear. Bytes after
    /// [`UpgradeResponse::head_len`] are the first frames from the server.
    pub fn parse_response<'h, 'b>(
        &mut self,
        buf: &'b [u8],
        headers: &'h mut [Header<'b>],
    ) -> Result<Option<UpgradeResponse<'h, 'b>>, ClientHandshakeError> {
        let head_len = match self.scanner.scan(buf, self.limits.max_head_len) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(TooLarge) => return Err(ClientHandshakeError::HeadTooLarge),
        };
        let head = buf.get(..head_len).ok_or(ClientHandshakeError::MalformedHttp)?;
        let mut response =
            httparse::Response::new(header_storage(headers, self.limits.max_headers));
        match response.parse(head) {
            Ok(httparse::Status::Complete(len)) if len == head_len => {}
            Ok(_) => return Err(ClientHandshakeError::MalformedHttp),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ClientHandshakeError::TooManyHeaders)
            }
            Err(_) => return Err(ClientHandshakeError::MalformedHttp),
        }
        if response.version != Some(1) {
            return Err(ClientHandshakeError::HttpVersion);
        }
        match response.code {
            Some(101) => {}
            Some(code) => return Err(ClientHandshakeError::UnexpectedStatus(code)),
            None => return Err(ClientHandshakeError::MalformedHttp),
        }
        let headers: &'h [Header<'b>] = response.headers;
        let subprotocol = self.check_response_headers(headers)?;
        Ok(Some(UpgradeResponse { head_len, headers, subprotocol }))
    }

    /// The checks of RFC 6455 §4.2.2 item 5 / §4.1 on a 101 answer; returns the subprotocol.
    fn check_response_headers<'b>(
        &self,
        headers: &[Header<'b>],
    ) -> Result<Option<&'b str>, ClientHandshakeError> {
        let mut upgrade = false;
        let mut connection = false;
        let mut accept = None;
        let mut accepts = 0usize;
        let mut protocol = None;
        let mut protocols = 0usize;
        let mut extension = false;
        for header in headers {
            let name = header.name;
            let value = trim_ows(header.value);
            if name.eq_ignore_ascii_case("upgrade") {
                upgrade |= list_has_token(value, b"websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                connection |= list_has_token(value, b"upgrade");
            } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
                accepts += 1;
                accept = Some(value);
            } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                protocols += 1;
                protocol = Some(value);
            } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
                extension |= value.iter().any(|&b| !matches!(b, b',' | b' ' | b'\t'));
            }
        }
        if !upgrade {
            return Err(ClientHandshakeError::MissingUpgrade);
        }
        if !connection {
            return Err(ClientHandshakeError::MissingConnectionUpgrade);
        }
        match (accepts, accept) {
            (1, Some(accept)) if accept == self.expected_accept => {}
            (1, _) => return Err(ClientHandshakeError::AcceptMismatch),
            (0, _) => return Err(ClientHandshakeError::MissingAccept),
            _ => return Err(ClientHandshakeError::DuplicateAccept),
        }
        if extension && !self.extensions_offered {
            return Err(ClientHandshakeError::UnexpectedExtension);
        }
        if protocols > 1 {
            return Err(ClientHandshakeError::DuplicateSubprotocol);
        }
        match protocol.map(core::str::from_utf8) {
            None => Ok(None),
            Some(Ok(chosen)) if self.offered.split(',').any(|offered| offered == chosen) => {
                Ok(Some(chosen))
            }
            Some(_) => Err(ClientHandshakeError::UnofferedSubprotocol),
        }
    }
}

/// A validated `101 Switching Protocols` answer, borrowing the caller's buffer and header
/// storage.
#[derive(Debug, Clone, Copy)]
pub struct UpgradeResponse<'h, 'b> {
    head_len: usize,
    headers: &'h [Header<'b>],
    subprotocol: Option<&'b str>,
}

impl<'h, 'b> UpgradeResponse<'h, 'b> {
    /// How many bytes of the buffer the head used; bytes after it are the first frames.
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// The subprotocol the server chose, one of those offered, if any.
    pub fn subprotocol(&self) -> Option<&'b str> {
        self.subprotocol
    }

    /// All header fields, in order, as received.
    pub fn headers(&self) -> &'h [Header<'b>] {
        self.headers
    }

    /// The value of the first header named `name` (compared case-insensitively), as received.
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        find_header(self.headers, name)
    }
}
