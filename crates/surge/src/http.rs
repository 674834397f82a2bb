//! Plain HTTP/1.1 beside the WebSocket on the same port: a request that is not an upgrade
//! attempt is read here (head, then a body up to the configured limit), answered by a
//! built-in route (`/healthz`, `/readyz`, `/metrics`) or by the handler's
//! [`on_http`](crate::Handler::on_http), and the connection kept for the next request
//! (keep-alive, pipelined requests answered in order) unless it asked to close.
//!
//! A request is an upgrade attempt when it names the WebSocket in any way
//! (`Upgrade: websocket`, `Sec-WebSocket-Key` or `Sec-WebSocket-Version`): those keep the
//! upgrade path's answers exactly (a broken upgrade is a 400, not a 404).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use surge_proto::handshake::{list_has_token, split_target, write_response_head, Header};

use crate::context::LoopCtx;
use crate::stats::Limit;

/// A plain HTTP request, borrowed from the loop's buffers for the length of
/// [`Handler::on_http`](crate::Handler::on_http).
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    method: &'a str,
    target: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a [Header<'a>],
    body: &'a [u8],
    peer: SocketAddr,
}

impl<'a> HttpRequest<'a> {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request target as sent, e.g. `/status?verbose=1`.
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The path of the target, without the query (not percent-decoded).
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The query after the first `?`, if any (not percent-decoded).
    pub fn query(&self) -> Option<&'a str> {
        self.query
    }

    /// Every header field, in order.
    pub fn headers(&self) -> &'a [Header<'a>] {
        self.headers
    }

    /// The value of the first header named `name` (case-insensitive), as received.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    /// The body (as long as its `Content-Length`, at most
    /// [`ConfigBuilder::http_body_limit`](crate::ConfigBuilder::http_body_limit)).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

/// The answer to a plain HTTP request: a status, headers, a body. The engine adds
/// `Content-Length` (and `Connection: close` when it closes after the answer).
///
/// ```
/// use surge::HttpResponse;
///
/// let ok = HttpResponse::new(200).with_body("application/json", r#"{"rooms":3}"#);
/// assert_eq!(ok.headers, [("Content-Type", b"application/json".to_vec())]);
/// let wrong = HttpResponse::method_not_allowed("GET, HEAD");
/// assert_eq!((wrong.status, &wrong.headers[0].1[..]), (405, &b"GET, HEAD"[..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// 200-599; anything else (or a header that is not valid HTTP) is sent as 500.
    pub status: u16,
    /// Header fields after `Content-Length`.
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// The body (not sent for `HEAD`).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// An answer with `status`, no header and no body.
    pub fn new(status: u16) -> Self {
        HttpResponse { status, headers: Vec::new(), body: Vec::new() }
    }

    /// 404, what a path no route knows gets.
    pub fn not_found() -> Self {
        HttpResponse::new(404)
    }

    /// 405 with the `Allow` header listing the methods the path takes.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        HttpResponse::new(405).with_header("Allow", allow)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn with_body(self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse { body: body.into(), ..self.with_header("Content-Type", content_type) }
    }
}

/// What the bytes at the start of a connection's input hold.
pub(crate) enum Parsed<'a> {
    /// An upgrade attempt: the upgrade path answers it.
    Upgrade,
    /// A head whose body has not all arrived: wait until the input holds this many bytes.
    Incomplete(usize),
    /// A request that cannot be served: answer this status and close.
    Bad(u16, Option<Limit>),
    /// A whole request, `len` bytes of input, and whether the client keeps the connection.
    Request { request: HttpRequest<'a>, len: usize, keep_alive: bool },
}

/// Reads a request from `buf`, whose head is known to be complete (the upgrade parser found
/// its end within the head limit and refused it).
pub(crate) fn parse<'a>(
    buf: &'a [u8],
    headers: &'a mut [Header<'a>],
    peer: SocketAddr,
    body_limit: usize,
) -> Parsed<'a> {
    let mut head = httparse::Request::new(headers);
    let head_len = match head.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(431, Some(Limit::HeadSize)),
        Ok(httparse::Status::Partial) | Err(_) => return Parsed::Bad(400, None),
    };
    let headers: &'a [Header<'a>] = head.headers;
    let names_websocket = headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-key")
            || h.name.eq_ignore_ascii_case("sec-websocket-version")
            || (h.name.eq_ignore_ascii_case("upgrade") && list_has_token(h.value, b"websocket"))
    });
    if names_websocket {
        return Parsed::Upgrade;
    }
    let (Some(method), Some(target), Some(version)) = (head.method, head.path, head.version) else {
        return Parsed::Bad(400, None);
    };
    let Some((path, query)) = split_target(target) else { return Parsed::Bad(400, None) };
    let mut hosts = 0;
    let mut close = version == 0;
    let mut length: Option<usize> = None;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= list_has_token(header.value, b"close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only bodies of a declared length are read.
            return Parsed::Bad(411, None);
        } else if name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).ok().map(str::trim);
            let parsed = value
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .map(|v| v.parse::<usize>().unwrap_or(usize::MAX));
            match (parsed, length) {
                (None, _) => return Parsed::Bad(400, None),
                (Some(new), Some(old)) if new != old => return Parsed::Bad(400, None),
                (Some(new), _) => length = Some(new),
            }
        }
    }
    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host.
    if version == 1 && hosts != 1 {
        return Parsed::Bad(400, None);
    }
    let body_len = length.unwrap_or(0);
    if body_len > body_limit {
        return Parsed::Bad(413, Some(Limit::BodySize));
    }
    let len = head_len + body_len;
    let Some(body) = buf.get(head_len..len) else { return Parsed::Incomplete(len) };
    let request = HttpRequest { method, target, path, query, headers, body, peer };
    Parsed::Request { request, len, keep_alive: !close }
}

/// The methods the built-in routes take.
const BUILTIN_METHODS: &str = "GET, HEAD";

/// Answers a built-in route into `out` and returns its status, or `None` when `request` is
/// for none of them.
pub(crate) fn builtin(
    ctx: &LoopCtx,
    request: &HttpRequest<'_>,
    close: bool,
    out: &mut Vec<u8>,
) -> Option<u16> {
    let path = request.path();
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return None;
    }
    if !matches!(request.method(), "GET" | "HEAD") {
        let allow = [("Allow", BUILTIN_METHODS.as_bytes())];
        return Some(respond(request, 405, &allow, b"", close, out));
    }
    const TEXT: (&str, &[u8]) = ("Content-Type", b"text/plain; charset=utf-8");
    Some(match path {
        "/healthz" => respond(request, 200, &[TEXT], b"ok\n", close, out),
        "/readyz" => {
            let draining =
                ctx.shutdown.is_some() || ctx.handle.shared.shutting_down.load(Ordering::Acquire);
            // A cluster's broker is a readiness condition of its own, named `broker`.
            let broker = ctx.handle.shared.broker.as_ref().filter(|link| !link.ready());
            let waiting = broker.map(|_| "broker").or_else(|| {
                ctx.config.readiness().iter().find(|(_, flag)| !flag.get()).map(|(name, _)| *name)
            });
            match (draining, waiting) {
                (true, _) => respond(request, 503, &[TEXT], b"not ready: draining\n", close, out),
                (false, Some(name)) => {
                    let body = format!("not ready: {name}\n");
                    respond(request, 503, &[TEXT], body.as_bytes(), close, out)
                }
                (false, None) => respond(request, 200, &[TEXT], b"ready\n", close, out),
            }
        }
        _ => {
            let text = ctx.handle.metrics_text();
            let content_type = ("Content-Type", crate::metrics::CONTENT_TYPE.as_bytes());
            respond(request, 200, &[content_type], text.as_bytes(), close, out)
        }
    })
}

/// Writes an answer to `request` (no body for `HEAD`), `Connection: close` first when the
/// connection ends after it; returns the status written. An answer that is not valid HTTP (a
/// handler's mistake) becomes a 500.
pub(crate) fn respond(
    request: &HttpRequest<'_>,
    status: u16,
    headers: &[(&str, &[u8])],
    body: &[u8],
    close: bool,
    out: &mut Vec<u8>,
) -> u16 {
    let start = out.len();
    let with_close;
    let headers = if close {
        with_close = [&[("Connection", &b"close"[..])][..], headers].concat();
        &with_close[..]
    } else {
        headers
    };
    if write_response_head(status, body.len(), headers, out).is_err() {
        out.truncate(start);
        return refuse(500, close, out);
    }
    if request.method() != "HEAD" {
        out.extend_from_slice(body);
    }
    status
}

/// Writes an answer without a body to a request that could not be read or served.
pub(crate) fn refuse(status: u16, close: bool, out: &mut Vec<u8>) -> u16 {
    let headers: &[(&str, &[u8])] = if close { &[("Connection", b"close")] } else { &[] };
    // 500 with these headers is valid HTTP: this cannot fail.
    let _ = write_response_head(status, 0, headers, out);
    status
}
