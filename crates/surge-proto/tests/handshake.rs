//! Opening handshake (RFC 6455 §4): server parsing and answers, client request and response
//! checks, incremental parsing.

use base64::Engine as _;
use proptest::prelude::*;
use sha1::{Digest as _, Sha1};
use surge_proto::handshake::{
    accept_key, write_rejection, ClientHandshake, ClientHandshakeError, ClientRequest,
    ExtensionOffer, HandshakeError, HandshakeLimits, ServerHandshake, UpgradeRequest, EMPTY_HEADER,
};

const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\
Origin: http://example.com\r\n\
\r\n";

const RFC_RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
Sec-WebSocket-Protocol: chat\r\n\
\r\n";

/// The header lines of a minimal valid request, without the request line.
const BASE_HEADERS: [&str; 5] = [
    "Host: example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

/// `GET /` with the base headers, where `replace` swaps the base header of the same name
/// (an empty value after the colon removes it) and `add` appends lines.
fn request_with(replace: &[&str], add: &[&str]) -> Vec<u8> {
    let mut lines = vec!["GET / HTTP/1.1".to_owned()];
    for base in BASE_HEADERS {
        let name = base.split(':').next().unwrap();
        match replace.iter().find(|r| r.split(':').next().unwrap().eq_ignore_ascii_case(name)) {
            Some(r) if r.trim_end().ends_with(':') => {}
            Some(r) => lines.push((*r).to_owned()),
            None => lines.push(base.to_owned()),
        }
    }
    lines.extend(add.iter().map(|s| (*s).to_owned()));
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// What a server parse concluded, owned, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Accepted {
    head_len: usize,
    path: String,
    query: Option<String>,
    host: Vec<u8>,
    origin: Option<Vec<u8>>,
    subprotocols: Vec<String>,
    extensions: Vec<(String, String)>,
    header_count: usize,
}

impl Accepted {
    fn of(request: &UpgradeRequest<'_, '_>) -> Self {
        Self {
            head_len: request.head_len(),
            path: request.path().to_owned(),
            query: request.query().map(str::to_owned),
            host: request.host().to_vec(),
            origin: request.origin().map(<[u8]>::to_vec),
            subprotocols: request.subprotocols().map(str::to_owned).collect(),
            extensions: request
                .extensions()
                .map(|e| (e.name.to_owned(), e.params.to_owned()))
                .collect(),
            header_count: request.headers().len(),
        }
    }
}

type Verdict = Result<Option<Accepted>, HandshakeError>;

fn parse_with(server: &mut ServerHandshake, buf: &[u8]) -> Verdict {
    let mut headers = [EMPTY_HEADER; 64];
    server.parse(buf, &mut headers).map(|r| r.as_ref().map(Accepted::of))
}

fn parse_once(buf: &[u8]) -> Verdict {
    parse_with(&mut ServerHandshake::default(), buf)
}

fn parse_limited(buf: &[u8], limits: HandshakeLimits) -> Verdict {
    parse_with(&mut ServerHandshake::new(limits), buf)
}

/// Feeds `buf` in pieces ending at each of `cuts` (then the rest), stopping at the first
/// verdict that is not "need more".
fn parse_chunked(buf: &[u8], cuts: &[usize]) -> Verdict {
    let mut server = ServerHandshake::default();
    let mut ends: Vec<usize> = cuts.iter().map(|&c| c.min(buf.len())).collect();
    ends.sort_unstable();
    ends.push(buf.len());
    let mut received = Vec::new();
    let mut fed = 0;
    for end in ends {
        received.extend_from_slice(&buf[fed..end]);
        fed = end;
        match parse_with(&mut server, &received) {
            Ok(None) => {}
            verdict => return verdict,
        }
    }
    Ok(None)
}

fn status_of(buf: &[u8]) -> u16 {
    match parse_once(buf) {
        Ok(Some(_)) => 101,
        Ok(None) => panic!("incomplete head"),
        Err(e) => e.status(),
    }
}

fn rejection(status: u16) -> Vec<u8> {
    let mut out = Vec::new();
    write_rejection(status, &[], &mut out).unwrap();
    out
}

// ---- accept key ----

#[test]
fn accept_key_seed_vectors() {
    assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(&accept_key(b"q4xkcO32u266gldTuKaSOw=="), b"fA9dggdnMPU79lJgAE3W4TRnyDM=");
}

// ---- the RFC example ----

#[test]
fn rfc_example_request_and_answer_byte_for_byte() {
    let mut headers = [EMPTY_HEADER; 64];
    let request = ServerHandshake::default().parse(RFC_REQUEST, &mut headers).unwrap().unwrap();
    assert_eq!(request.head_len(), RFC_REQUEST.len());
    assert_eq!(request.target(), "/chat");
    assert_eq!(request.path(), "/chat");
    assert_eq!(request.query(), None);
    assert_eq!(request.host(), b"server.example.com");
    assert_eq!(request.origin(), Some(&b"http://example.com"[..]));
    assert_eq!(request.headers().len(), 8);
    assert_eq!(request.subprotocols().collect::<Vec<_>>(), ["chat", "superchat"]);
    assert_eq!(
        request.extensions().collect::<Vec<_>>(),
        [ExtensionOffer { name: "permessage-deflate", params: "" }]
    );
    let mut out = Vec::new();
    request.accept(Some("chat"), &[], &mut out).unwrap();
    assert_eq!(out, RFC_RESPONSE);
}

#[test]
fn accept_without_subprotocol_and_with_extra_headers() {
    let mut headers = [EMPTY_HEADER; 64];
    let request = ServerHandshake::default().parse(RFC_REQUEST, &mut headers).unwrap().unwrap();
    let mut out = b"kept".to_vec();
    request.accept(None, &[("Server", b"surge"), ("X-Id", b"7")], &mut out).unwrap();
    assert_eq!(
        out,
        &b"keptHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
           Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nServer: surge\r\nX-Id: 7\r\n\r\n"
            [..]
    );
}

#[test]
fn header_lookup_is_case_insensitive_and_borrows() {
    let buf = request_with(&[], &["X-Custom: one", "x-custom: two"]);
    let mut headers = [EMPTY_HEADER; 64];
    let request = ServerHandshake::default().parse(&buf, &mut headers).unwrap().unwrap();
    assert_eq!(request.header("X-CUSTOM"), Some(&b"one"[..]));
    assert_eq!(request.header("sec-websocket-version"), Some(&b"13"[..]));
    assert_eq!(request.header("absent"), None);
    let value = request.header("x-custom").unwrap();
    assert!(buf.as_ptr_range().contains(&value.as_ptr()), "zero copy");
}

// ---- caller errors on accept ----

#[test]
fn accepting_an_unoffered_subprotocol_is_an_error_and_writes_nothing() {
    let mut headers = [EMPTY_HEADER; 64];
    let request = ServerHandshake::default().parse(RFC_REQUEST, &mut headers).unwrap().unwrap();
    let mut out = Vec::new();
    for chosen in ["mqtt", "CHAT", "chat, superchat", ""] {
        assert_eq!(
            request.accept(Some(chosen), &[], &mut out),
            Err(HandshakeError::SubprotocolNotOffered)
        );
    }
    assert!(out.is_empty());
    assert_eq!(HandshakeError::SubprotocolNotOffered.status(), 500);
}

#[test]
fn header_injection_in_extra_headers_is_refused() {
    let mut headers = [EMPTY_HEADER; 64];
    let request = ServerHandshake::default().parse(RFC_REQUEST, &mut headers).unwrap().unwrap();
    let mut out = Vec::new();
    let bad: [&[(&str, &[u8])]; 4] =
        [&[("X", b"a\r\nSet-Cookie: x")], &[("X: y", b"a")], &[("", b"a")], &[("X", b"a\0")]];
    for extra in bad {
        assert_eq!(
            request.accept(None, extra, &mut out),
            Err(HandshakeError::InvalidResponseHeader)
        );
        assert_eq!(
            write_rejection(403, extra, &mut out),
            Err(HandshakeError::InvalidResponseHeader)
        );
    }
    assert!(out.is_empty());
}

// ---- rejections ----

#[test]
fn rejection_responses_are_exact() {
    assert_eq!(
        rejection(400),
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        rejection(426),
        &b"HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Length: 0\r\n\
           Sec-WebSocket-Version: 13\r\n\r\n"[..]
    );
    assert_eq!(
        rejection(405),
        &b"HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 0\r\n\
           Allow: GET\r\n\r\n"[..]
    );
    assert_eq!(
        rejection(431),
        &b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\
           Content-Length: 0\r\n\r\n"[..]
    );
    assert_eq!(
        rejection(403),
        b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        rejection(499),
        b"HTTP/1.1 499 Client Error\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        rejection(599),
        b"HTTP/1.1 599 Server Error\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    let mut out = Vec::new();
    write_rejection(503, &[("Retry-After", b"5")], &mut out).unwrap();
    assert_eq!(
        out,
        &b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\
           Retry-After: 5\r\n\r\n"[..]
    );
}

#[test]
fn rejection_status_must_be_an_error_status() {
    let mut out = Vec::new();
    for status in [0, 101, 200, 399, 600, 999, u16::MAX] {
        assert_eq!(
            write_rejection(status, &[], &mut out),
            Err(HandshakeError::InvalidRejectStatus)
        );
    }
    assert!(out.is_empty());
}

#[test]
fn method_other_than_get_is_405() {
    for method in ["POST", "HEAD", "PUT", "get", "OPTIONS"] {
        let buf = request_with(&[], &[]);
        let buf = [method.as_bytes(), &buf[3..]].concat();
        assert_eq!(parse_once(&buf), Err(HandshakeError::MethodNotAllowed), "{method}");
        assert_eq!(status_of(&buf), 405);
    }
}

#[test]
fn http_version_other_than_1_1_is_400() {
    let buf = request_with(&[], &[]);
    let text = String::from_utf8(buf).unwrap();
    let v10 = text.replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_eq!(parse_once(v10.as_bytes()), Err(HandshakeError::HttpVersion));
    assert_eq!(status_of(v10.as_bytes()), 400);
    let v20 = text.replacen("HTTP/1.1", "HTTP/2.0", 1);
    assert_eq!(parse_once(v20.as_bytes()), Err(HandshakeError::MalformedHttp));
}

#[test]
fn host_is_required_and_unique() {
    assert_eq!(parse_once(&request_with(&["Host:"], &[])), Err(HandshakeError::MissingHost));
    assert_eq!(parse_once(&request_with(&["Host:  "], &[])), Err(HandshakeError::MissingHost));
    assert_eq!(
        parse_once(&request_with(&[], &["Host: evil.example"])),
        Err(HandshakeError::DuplicateHost)
    );
    assert_eq!(status_of(&request_with(&["Host:"], &[])), 400);
    assert_eq!(status_of(&request_with(&[], &["host: b"])), 400);
}

#[test]
fn upgrade_must_list_websocket_in_any_case() {
    for ok in [
        "Upgrade: websocket",
        "upgrade: WebSocket",
        "UPGRADE: WEBSOCKET",
        "Upgrade: h2c, websocket",
    ] {
        assert!(parse_once(&request_with(&[ok], &[])).unwrap().is_some(), "{ok}");
    }
    for bad in ["Upgrade:", "Upgrade: h2c", "Upgrade: websocket2", "Upgrade: web socket"] {
        assert_eq!(
            parse_once(&request_with(&[bad], &[])),
            Err(HandshakeError::MissingUpgrade),
            "{bad}"
        );
        assert_eq!(status_of(&request_with(&[bad], &[])), 400);
    }
}

#[test]
fn connection_must_list_upgrade_in_any_case() {
    for ok in [
        "Connection: Upgrade",
        "Connection: upgrade",
        "Connection: UPGRADE",
        "Connection: keep-alive, Upgrade",
        "Connection: keep-alive,upgrade ,close",
    ] {
        assert!(parse_once(&request_with(&[ok], &[])).unwrap().is_some(), "{ok}");
    }
    // Split over two Connection headers.
    let two = request_with(&["Connection: keep-alive"], &["Connection: Upgrade"]);
    assert!(parse_once(&two).unwrap().is_some());
    for bad in
        ["Connection:", "Connection: keep-alive", "Connection: close", "Connection: upgrades"]
    {
        assert_eq!(
            parse_once(&request_with(&[bad], &[])),
            Err(HandshakeError::MissingConnectionUpgrade),
            "{bad}"
        );
        assert_eq!(status_of(&request_with(&[bad], &[])), 400);
    }
}

#[test]
fn key_must_be_present_unique_and_16_bytes_of_base64() {
    assert_eq!(
        parse_once(&request_with(&["Sec-WebSocket-Key:"], &[])),
        Err(HandshakeError::MissingKey)
    );
    assert_eq!(
        parse_once(&request_with(&[], &["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="])),
        Err(HandshakeError::DuplicateKey)
    );
    assert_eq!(
        parse_once(&request_with(&[], &["sec-websocket-key: q4xkcO32u266gldTuKaSOw=="])),
        Err(HandshakeError::DuplicateKey)
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let fifteen = format!("Sec-WebSocket-Key: {}", b64.encode([7u8; 15]));
    let seventeen = format!("Sec-WebSocket-Key: {}", b64.encode([7u8; 17]));
    let sixteen = format!("Sec-WebSocket-Key: {}", b64.encode([7u8; 16]));
    for bad in [
        fifteen.as_str(),
        seventeen.as_str(),
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!==",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==",
        "Sec-WebSocket-Key: ________________________",
        "Sec-WebSocket-Key: \u{e9}GhlIHNhbXBsZSBub25jZQ=",
    ] {
        assert_eq!(
            parse_once(&request_with(&[bad], &[])),
            Err(HandshakeError::InvalidKey),
            "{bad}"
        );
        assert_eq!(status_of(&request_with(&[bad], &[])), 400);
    }
    assert!(parse_once(&request_with(&[sixteen.as_str()], &[])).unwrap().is_some());
    assert_eq!(status_of(&request_with(&["Sec-WebSocket-Key:"], &[])), 400);
}

#[test]
fn version_other_than_13_is_426() {
    for bad in [
        "Sec-WebSocket-Version:",
        "Sec-WebSocket-Version: 8",
        "Sec-WebSocket-Version: 12",
        "Sec-WebSocket-Version: 130",
        "Sec-WebSocket-Version: 13, 8",
    ] {
        assert_eq!(
            parse_once(&request_with(&[bad], &[])),
            Err(HandshakeError::UnsupportedVersion),
            "{bad}"
        );
        assert_eq!(status_of(&request_with(&[bad], &[])), 426);
    }
    assert_eq!(
        parse_once(&request_with(&[], &["Sec-WebSocket-Version: 8"])),
        Err(HandshakeError::UnsupportedVersion)
    );
    assert!(rejection(426).windows(27).any(|w| w == b"Sec-WebSocket-Version: 13\r\n"));
}

#[test]
fn malformed_http_is_400() {
    for bad in [
        &b"GET / HTTP/1.1\r\nHost example.com\r\n\r\n"[..],
        b"GET  HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"GET /\0 HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(parse_once(bad), Err(HandshakeError::MalformedHttp), "{:?}", bad.escape_ascii());
        assert_eq!(status_of(bad), 400);
    }
}

#[test]
fn target_is_split_into_path_and_query() {
    let cases: [(&str, &str, Option<&str>); 6] = [
        ("/chat?room=1&x=?", "/chat", Some("room=1&x=?")),
        ("/?", "/", Some("")),
        ("/a/b", "/a/b", None),
        ("http://example.com/chat?x", "/chat", Some("x")),
        ("WSS://example.com", "/", None),
        ("https://example.com?q", "/", Some("q")),
    ];
    for (target, path, query) in cases {
        let buf = request_with(&[], &[]);
        let buf = [format!("GET {target}").as_bytes(), &buf[5..]].concat();
        let accepted = parse_once(&buf).unwrap().unwrap();
        assert_eq!((accepted.path.as_str(), accepted.query.as_deref()), (path, query), "{target}");
    }
    for target in ["*", "chat", "example.com:80", "ftp://example.com/", "/chat#frag"] {
        let buf = request_with(&[], &[]);
        let buf = [format!("GET {target}").as_bytes(), &buf[5..]].concat();
        assert_eq!(parse_once(&buf), Err(HandshakeError::InvalidTarget), "{target}");
    }
}

#[test]
fn a_request_body_is_refused() {
    assert!(parse_once(&request_with(&[], &["Content-Length: 0"])).unwrap().is_some());
    for bad in ["Content-Length: 5", "Transfer-Encoding: chunked", "Content-Length: 0, 5"] {
        assert_eq!(
            parse_once(&request_with(&[], &[bad])),
            Err(HandshakeError::UnexpectedBody),
            "{bad}"
        );
    }
}

#[test]
fn origin_is_optional_but_unique() {
    assert_eq!(parse_once(&request_with(&[], &[])).unwrap().unwrap().origin, None);
    assert_eq!(
        parse_once(&request_with(&[], &["Origin: https://a.example", "Origin: https://b.example"])),
        Err(HandshakeError::DuplicateOrigin)
    );
}

#[test]
fn every_error_maps_to_its_status() {
    use HandshakeError::*;
    let expected = [
        (HeadTooLarge, 431),
        (TooManyHeaders, 431),
        (MalformedHttp, 400),
        (MethodNotAllowed, 405),
        (HttpVersion, 400),
        (InvalidTarget, 400),
        (MissingHost, 400),
        (DuplicateHost, 400),
        (UnexpectedBody, 400),
        (MissingUpgrade, 400),
        (MissingConnectionUpgrade, 400),
        (UnsupportedVersion, 426),
        (MissingKey, 400),
        (DuplicateKey, 400),
        (InvalidKey, 400),
        (InvalidSubprotocols, 400),
        (InvalidExtensions, 400),
        (DuplicateOrigin, 400),
        (SubprotocolNotOffered, 500),
        (InvalidResponseHeader, 500),
        (InvalidRejectStatus, 500),
    ];
    for (error, status) in expected {
        assert_eq!(error.status(), status, "{error:?}");
        assert!(!error.to_string().is_empty());
    }
}

// ---- limits ----

/// A request whose head is exactly `len` bytes, padded with one `X-Pad` header.
fn request_of_len(len: usize) -> Vec<u8> {
    let base = request_with(&[], &["X-Pad: "]);
    let pad = len - base.len();
    request_with(&[], &[&format!("X-Pad: {}", "a".repeat(pad))])
}

#[test]
fn head_of_8_kib_passes_and_one_byte_more_is_431() {
    let ok = request_of_len(8192);
    assert_eq!(ok.len(), 8192);
    assert_eq!(parse_once(&ok).unwrap().unwrap().head_len, 8192);
    let big = request_of_len(8193);
    assert_eq!(parse_once(&big), Err(HandshakeError::HeadTooLarge));
    assert_eq!(status_of(&big), 431);
    // Byte by byte, the refusal comes as soon as 8192 bytes hold no end of head.
    let mut server = ServerHandshake::default();
    for end in 1..8192 {
        assert_eq!(parse_with(&mut server, &big[..end]), Ok(None));
    }
    assert_eq!(parse_with(&mut server, &big[..8192]), Err(HandshakeError::HeadTooLarge));
}

#[test]
fn endless_head_is_431_once_past_the_limit() {
    let junk = vec![b'a'; 8191];
    assert_eq!(parse_once(&junk), Ok(None));
    assert_eq!(parse_once(&[junk.as_slice(), b"a"].concat()), Err(HandshakeError::HeadTooLarge));
}

#[test]
fn sixty_four_headers_pass_and_sixty_five_are_431() {
    let pads: Vec<String> = (0..64 - BASE_HEADERS.len()).map(|i| format!("X-{i}: v")).collect();
    let pads: Vec<&str> = pads.iter().map(String::as_str).collect();
    let ok = request_with(&[], &pads);
    assert_eq!(parse_once(&ok).unwrap().unwrap().header_count, 64);
    let too_many = request_with(&[], &[pads.as_slice(), &["X-Last: v"]].concat());
    assert_eq!(parse_once(&too_many), Err(HandshakeError::TooManyHeaders));
    assert_eq!(status_of(&too_many), 431);
}

#[test]
fn limits_are_configurable_and_capped_by_storage() {
    let buf = request_with(&[], &[]);
    let small = HandshakeLimits { max_head_len: buf.len() - 1, ..HandshakeLimits::default() };
    assert_eq!(parse_limited(&buf, small), Err(HandshakeError::HeadTooLarge));
    let few = HandshakeLimits { max_headers: 4, ..HandshakeLimits::default() };
    assert_eq!(parse_limited(&buf, few), Err(HandshakeError::TooManyHeaders));
    let mut storage = [EMPTY_HEADER; 4];
    assert_eq!(
        ServerHandshake::default().parse(&buf, &mut storage).err(),
        Some(HandshakeError::TooManyHeaders)
    );
}

// ---- incremental parsing ----

#[test]
fn head_fed_one_byte_at_a_time_equals_head_fed_at_once() {
    let mut server = ServerHandshake::default();
    for end in 0..RFC_REQUEST.len() {
        assert_eq!(parse_with(&mut server, &RFC_REQUEST[..end]), Ok(None), "prefix {end}");
    }
    let chunked = parse_with(&mut server, RFC_REQUEST);
    assert_eq!(chunked, parse_once(RFC_REQUEST));
    assert!(chunked.unwrap().is_some());
    // Asking again after completion gives the same answer.
    assert_eq!(parse_with(&mut server, RFC_REQUEST), parse_once(RFC_REQUEST));
}

#[test]
fn trailing_bytes_after_the_head_are_left_to_the_caller() {
    let frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    let buf = [RFC_REQUEST, frame].concat();
    let mut headers = [EMPTY_HEADER; 64];
    let request = ServerHandshake::default().parse(&buf, &mut headers).unwrap().unwrap();
    assert_eq!(request.head_len(), RFC_REQUEST.len());
    assert_eq!(&buf[request.head_len()..], frame);
    // The same when the frame arrives in the same read as the last head bytes.
    assert_eq!(parse_chunked(&buf, &[10, RFC_REQUEST.len() - 1]), parse_once(&buf));
}

#[test]
fn bare_lf_line_ends_are_accepted_like_httparse_does() {
    let text = String::from_utf8(request_with(&[], &[])).unwrap().replace("\r\n", "\n");
    let accepted = parse_once(text.as_bytes()).unwrap().unwrap();
    assert_eq!(accepted.head_len, text.len());
}

#[test]
fn a_shrunk_buffer_does_not_panic() {
    let mut server = ServerHandshake::default();
    assert_eq!(parse_with(&mut server, &RFC_REQUEST[..50]), Ok(None));
    assert_eq!(parse_with(&mut server, &RFC_REQUEST[..10]), Ok(None));
    assert!(parse_with(&mut server, RFC_REQUEST).unwrap().is_some());
    assert_eq!(parse_with(&mut server, &RFC_REQUEST[..10]), Ok(None));
}

// ---- subprotocols and extensions ----

#[test]
fn subprotocols_span_headers_are_trimmed_and_skip_empty_items() {
    let buf = request_with(
        &[],
        &["Sec-WebSocket-Protocol: , chat ,\t,superchat,", "sec-websocket-protocol: v2.json"],
    );
    let accepted = parse_once(&buf).unwrap().unwrap();
    assert_eq!(accepted.subprotocols, ["chat", "superchat", "v2.json"]);
    let empty = request_with(&[], &["Sec-WebSocket-Protocol:"]);
    assert!(parse_once(&empty).unwrap().unwrap().subprotocols.is_empty());
}

#[test]
fn non_token_or_non_ascii_subprotocols_are_400() {
    for bad in [
        "Sec-WebSocket-Protocol: chat, sup\u{e9}r",
        "Sec-WebSocket-Protocol: ch at",
        "Sec-WebSocket-Protocol: chat/1",
        "Sec-WebSocket-Protocol: \"chat\"",
    ] {
        assert_eq!(
            parse_once(&request_with(&[], &[bad])),
            Err(HandshakeError::InvalidSubprotocols),
            "{bad}"
        );
    }
    // Raw bytes that are not UTF-8 at all.
    let mut buf = request_with(&[], &["Sec-WebSocket-Protocol: chat\u{1}"]);
    let at = buf.iter().position(|&b| b == 1).unwrap();
    for byte in [0x80, 0xff, 0xc3] {
        buf[at] = byte;
        assert_eq!(parse_once(&buf), Err(HandshakeError::InvalidSubprotocols));
    }
}

#[test]
fn non_ascii_in_other_headers_is_carried_safely() {
    let mut buf = request_with(&[], &["User-Agent: caf\u{e9} \u{1f980}", "X-Raw: ab"]);
    let at = buf.windows(5).position(|w| w == b"X-Raw").unwrap() + 7;
    buf[at] = 0xff;
    let mut headers = [EMPTY_HEADER; 64];
    let request = ServerHandshake::default().parse(&buf, &mut headers).unwrap().unwrap();
    assert_eq!(request.header("user-agent"), Some("caf\u{e9} \u{1f980}".as_bytes()));
    assert_eq!(request.header("x-raw"), Some(&b"\xffb"[..]));
}

#[test]
fn a_megabyte_of_separators_in_subprotocols_is_linear() {
    let limits = HandshakeLimits { max_head_len: 4 << 20, ..HandshakeLimits::default() };
    let separators: String = ", \t ,,".repeat(200_000);
    let line = format!("Sec-WebSocket-Protocol: {separators}");
    let buf = request_with(&[], &[&line]);
    assert!(buf.len() > 1_000_000);
    let accepted = parse_limited(&buf, limits).unwrap().unwrap();
    assert!(accepted.subprotocols.is_empty());

    let line = format!("Sec-WebSocket-Protocol: {separators}chat{separators}");
    let buf = request_with(&[], &[&line]);
    let mut headers = [EMPTY_HEADER; 64];
    let request = ServerHandshake::new(limits).parse(&buf, &mut headers).unwrap().unwrap();
    assert_eq!(request.subprotocols().collect::<Vec<_>>(), ["chat"]);
    let mut out = Vec::new();
    request.accept(Some("chat"), &[], &mut out).unwrap();
    assert!(out.ends_with(b"Sec-WebSocket-Protocol: chat\r\n\r\n"));
    // The same megabyte fed in 1 KiB pieces.
    let cuts: Vec<usize> = (1..buf.len() / 1024).map(|i| i * 1024).collect();
    let mut server = ServerHandshake::new(limits);
    let mut verdict = Ok(None);
    for end in cuts.iter().copied().chain([buf.len()]) {
        verdict = parse_with(&mut server, &buf[..end]);
        if !matches!(verdict, Ok(None)) {
            break;
        }
    }
    assert_eq!(verdict, parse_limited(&buf, limits));
}

#[test]
fn a_megabyte_of_extension_separators_is_linear() {
    let limits = HandshakeLimits { max_head_len: 4 << 20, ..HandshakeLimits::default() };
    let line = format!(
        "Sec-WebSocket-Extensions: {}x; a=\"{}\"",
        ", ".repeat(300_000),
        ",;".repeat(200_000)
    );
    let buf = request_with(&[], &[&line]);
    let accepted = parse_limited(&buf, limits).unwrap().unwrap();
    assert_eq!(accepted.extensions.len(), 1);
    assert_eq!(accepted.extensions[0].0, "x");
}

#[test]
fn extension_offers_are_names_with_raw_params() {
    let buf = request_with(
        &[],
        &[
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, constructor",
            "Sec-WebSocket-Extensions: __proto__ ; a=1;b, toString,, hasOwnProperty;x=\"a,b;c\\\"\"",
        ],
    );
    let accepted = parse_once(&buf).unwrap().unwrap();
    let expected: Vec<(String, String)> = [
        ("permessage-deflate", "client_max_window_bits"),
        ("constructor", ""),
        ("__proto__", "a=1;b"),
        ("toString", ""),
        ("hasOwnProperty", "x=\"a,b;c\\\"\""),
    ]
    .iter()
    .map(|(n, p)| ((*n).to_owned(), (*p).to_owned()))
    .collect();
    assert_eq!(accepted.extensions, expected);
}

#[test]
fn malformed_extensions_are_400() {
    for bad in [
        "Sec-WebSocket-Extensions: ; a=1",
        "Sec-WebSocket-Extensions: perm essage",
        "Sec-WebSocket-Extensions: x; a=\"open",
        "Sec-WebSocket-Extensions: \"x\"",
        "Sec-WebSocket-Extensions: d\u{e9}flate",
        "Sec-WebSocket-Extensions: x, y/z",
    ] {
        assert_eq!(
            parse_once(&request_with(&[], &[bad])),
            Err(HandshakeError::InvalidExtensions),
            "{bad}"
        );
    }
}

// ---- client ----

const NONCE: [u8; 16] = *b"the sample nonce";

#[test]
fn client_request_is_built_exactly() {
    let request = ClientRequest {
        origin: Some("http://example.com"),
        subprotocols: &["chat", "superchat"],
        headers: &[("Authorization", b"Bearer x")],
        ..ClientRequest::new("server.example.com", "/chat?x=1")
    };
    let mut out = b"kept".to_vec();
    ClientHandshake::start(&request, NONCE, &mut out).unwrap();
    assert_eq!(
        out,
        &b"keptGET /chat?x=1 HTTP/1.1\r\n\
           Host: server.example.com\r\n\
           Upgrade: websocket\r\n\
           Connection: Upgrade\r\n\
           Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
           Sec-WebSocket-Version: 13\r\n\
           Origin: http://example.com\r\n\
           Sec-WebSocket-Protocol: chat, superchat\r\n\
           Authorization: Bearer x\r\n\
           \r\n"[..]
    );
    let mut out = Vec::new();
    ClientHandshake::start(&ClientRequest::new("h", "/"), [0xff; 16], &mut out).unwrap();
    assert_eq!(
        out,
        &b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
           Sec-WebSocket-Key: /////////////////////w==\r\nSec-WebSocket-Version: 13\r\n\r\n"[..]
    );
}

#[test]
fn client_refuses_invalid_request_parts() {
    let cases: [(ClientRequest<'_>, ClientHandshakeError); 11] = [
        (ClientRequest::new("", "/"), ClientHandshakeError::InvalidHost),
        (ClientRequest::new("a b", "/"), ClientHandshakeError::InvalidHost),
        (ClientRequest::new("a\r\nX: y", "/"), ClientHandshakeError::InvalidHost),
        (ClientRequest::new("h", "chat"), ClientHandshakeError::InvalidTarget),
        (ClientRequest::new("h", "/a b"), ClientHandshakeError::InvalidTarget),
        (ClientRequest::new("h", "/a#b"), ClientHandshakeError::InvalidTarget),
        (ClientRequest::new("h", "/caf\u{e9}"), ClientHandshakeError::InvalidTarget),
        (
            ClientRequest { origin: Some("a\nb"), ..ClientRequest::new("h", "/") },
            ClientHandshakeError::InvalidOrigin,
        ),
        (
            ClientRequest { subprotocols: &["a b"], ..ClientRequest::new("h", "/") },
            ClientHandshakeError::InvalidOfferedSubprotocol,
        ),
        (
            ClientRequest { subprotocols: &["a", "b", "a"], ..ClientRequest::new("h", "/") },
            ClientHandshakeError::InvalidOfferedSubprotocol,
        ),
        (
            ClientRequest { headers: &[("X", b"1\r\n")], ..ClientRequest::new("h", "/") },
            ClientHandshakeError::InvalidHeader,
        ),
    ];
    for (request, error) in cases {
        let mut out = Vec::new();
        assert_eq!(ClientHandshake::start(&request, NONCE, &mut out).err(), Some(error));
        assert!(out.is_empty());
    }
}

fn client(protocols: &'static [&'static str]) -> ClientHandshake {
    let request = ClientRequest { subprotocols: protocols, ..ClientRequest::new("h", "/chat") };
    ClientHandshake::start(&request, NONCE, &mut Vec::new()).unwrap()
}

type ClientVerdict = Result<Option<(usize, Option<String>)>, ClientHandshakeError>;

fn client_parse(client: &mut ClientHandshake, buf: &[u8]) -> ClientVerdict {
    let mut headers = [EMPTY_HEADER; 64];
    client
        .parse_response(buf, &mut headers)
        .map(|r| r.map(|r| (r.head_len(), r.subprotocol().map(str::to_owned))))
}

fn response_with(replace: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::from_utf8(RFC_RESPONSE.to_vec()).unwrap();
    for (from, to) in replace {
        text = text.replacen(from, to, 1);
    }
    text.into_bytes()
}

#[test]
fn client_accepts_the_rfc_answer_and_reports_frames_after_it() {
    let frame = b"\x81\x02hi";
    let buf = [RFC_RESPONSE, frame].concat();
    assert_eq!(
        client_parse(&mut client(&["chat", "superchat"]), &buf),
        Ok(Some((RFC_RESPONSE.len(), Some("chat".to_owned()))))
    );
    let mut headers = [EMPTY_HEADER; 64];
    let mut c = client(&["chat"]);
    let response = c.parse_response(&buf, &mut headers).unwrap().unwrap();
    assert_eq!(response.header("sec-websocket-accept"), Some(&b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="[..]));
    assert_eq!(response.headers().len(), 4);
    // Byte by byte.
    let mut c = client(&["chat"]);
    for end in 0..RFC_RESPONSE.len() {
        assert_eq!(client_parse(&mut c, &buf[..end]), Ok(None));
    }
    assert_eq!(client_parse(&mut c, &buf), client_parse(&mut client(&["chat"]), &buf));
}

#[test]
fn client_refuses_bad_answers() {
    let no_protocol = response_with(&[("Sec-WebSocket-Protocol: chat\r\n", "")]);
    assert_eq!(client_parse(&mut client(&[]), &no_protocol), Ok(Some((no_protocol.len(), None))));
    assert_eq!(
        client_parse(&mut client(&["chat"]), &no_protocol),
        Ok(Some((no_protocol.len(), None)))
    );
    let cases: Vec<(&[&str], Vec<u8>, ClientHandshakeError)> = vec![
        (
            &["chat"],
            response_with(&[("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo")]),
            ClientHandshakeError::AcceptMismatch,
        ),
        (
            &["chat"],
            response_with(&[("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "fA9dggdnMPU79lJgAE3W4TRnyDM=")]),
            ClientHandshakeError::AcceptMismatch,
        ),
        (
            &["chat"],
            response_with(&[("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", "")]),
            ClientHandshakeError::MissingAccept,
        ),
        (
            &["chat"],
            response_with(&[(
                "Sec-WebSocket-Protocol",
                "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol",
            )]),
            ClientHandshakeError::DuplicateAccept,
        ),
        (
            &["chat"],
            response_with(&[("Upgrade: websocket\r\n", "")]),
            ClientHandshakeError::MissingUpgrade,
        ),
        (
            &["chat"],
            response_with(&[("Upgrade: websocket", "Upgrade: h2c")]),
            ClientHandshakeError::MissingUpgrade,
        ),
        (
            &["chat"],
            response_with(&[("Connection: Upgrade", "Connection: keep-alive")]),
            ClientHandshakeError::MissingConnectionUpgrade,
        ),
        (
            &["chat"],
            response_with(&[("101 Switching Protocols", "403 Forbidden")]),
            ClientHandshakeError::UnexpectedStatus(403),
        ),
        (
            &["chat"],
            b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec(),
            ClientHandshakeError::UnexpectedStatus(426),
        ),
        (
            &["chat"],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
            ClientHandshakeError::UnexpectedStatus(200),
        ),
        (&["chat"], response_with(&[("HTTP/1.1", "HTTP/1.0")]), ClientHandshakeError::HttpVersion),
        (&["superchat"], response_with(&[]), ClientHandshakeError::UnofferedSubprotocol),
        (&[], response_with(&[]), ClientHandshakeError::UnofferedSubprotocol),
        (
            &["chat"],
            response_with(&[(": chat", ": CHAT")]),
            ClientHandshakeError::UnofferedSubprotocol,
        ),
        (
            &["chat", "superchat"],
            response_with(&[(": chat", ": chat, superchat")]),
            ClientHandshakeError::UnofferedSubprotocol,
        ),
        (
            &["chat"],
            response_with(&[(": chat", ": chat\r\nSec-WebSocket-Protocol: chat")]),
            ClientHandshakeError::DuplicateSubprotocol,
        ),
        (
            &["chat"],
            response_with(&[(
                ": chat\r\n",
                ": chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
            )]),
            ClientHandshakeError::UnexpectedExtension,
        ),
        (&["chat"], b"HTTP/1.1 1O1 x\r\n\r\n".to_vec(), ClientHandshakeError::MalformedHttp),
        (&["chat"], b"garbage\r\n\r\n".to_vec(), ClientHandshakeError::MalformedHttp),
    ];
    for (offered, response, error) in cases {
        let mut c = ClientHandshake::start(
            &ClientRequest { subprotocols: offered, ..ClientRequest::new("h", "/") },
            NONCE,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(client_parse(&mut c, &response), Err(error), "{:?}", response.escape_ascii());
    }
    // Non-UTF-8 subprotocol bytes.
    let mut bad = response_with(&[(": chat", ": ch\u{1}t")]);
    let at = bad.iter().position(|&b| b == 1).unwrap();
    bad[at] = 0xff;
    assert_eq!(
        client_parse(&mut client(&["chat"]), &bad),
        Err(ClientHandshakeError::UnofferedSubprotocol)
    );
    // An empty extensions header is no extension.
    let empty_ext = response_with(&[(": chat\r\n", ": chat\r\nSec-WebSocket-Extensions: ,\r\n")]);
    assert!(client_parse(&mut client(&["chat"]), &empty_ext).unwrap().is_some());
}

#[test]
fn client_response_limits() {
    let pads: String = (0..64).map(|i| format!("X-{i}: v\r\n")).collect();
    let many =
        response_with(&[("Upgrade: websocket\r\n", &format!("Upgrade: websocket\r\n{pads}"))]);
    assert_eq!(
        client_parse(&mut client(&["chat"]), &many),
        Err(ClientHandshakeError::TooManyHeaders)
    );
    let big = response_with(&[(
        "Upgrade: websocket\r\n",
        &format!("Upgrade: websocket\r\nX: {}\r\n", "a".repeat(8192)),
    )]);
    assert_eq!(client_parse(&mut client(&["chat"]), &big), Err(ClientHandshakeError::HeadTooLarge));
    let mut roomy =
        client(&["chat"]).with_limits(HandshakeLimits { max_head_len: 1 << 20, max_headers: 100 });
    assert!(client_parse(&mut roomy, &big).unwrap().is_some());
    // The header limit is also capped by the storage passed in.
    let mut roomy =
        client(&["chat"]).with_limits(HandshakeLimits { max_head_len: 1 << 20, max_headers: 100 });
    assert_eq!(client_parse(&mut roomy, &many), Err(ClientHandshakeError::TooManyHeaders));
    let mut headers = [EMPTY_HEADER; 100];
    assert!(roomy.parse_response(&many, &mut headers).unwrap().is_some());
}

#[test]
fn round_trip_client_server_client() {
    for (offered, server_pick) in
        [(&["mqtt", "chat"][..], Some("chat")), (&[][..], None), (&["a"][..], None)]
    {
        let request = ClientRequest {
            origin: Some("https://app.example"),
            subprotocols: offered,
            headers: &[("Cookie", b"id=1")],
            ..ClientRequest::new("server.example.com:8443", "/ws?token=abc")
        };
        let nonce: [u8; 16] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        let mut wire = Vec::new();
        let mut client = ClientHandshake::start(&request, nonce, &mut wire).unwrap();

        let mut headers = [EMPTY_HEADER; 64];
        let server_request =
            ServerHandshake::default().parse(&wire, &mut headers).unwrap().unwrap();
        assert_eq!(server_request.head_len(), wire.len());
        assert_eq!(server_request.path(), "/ws");
        assert_eq!(server_request.query(), Some("token=abc"));
        assert_eq!(server_request.host(), b"server.example.com:8443");
        assert_eq!(server_request.origin(), Some(&b"https://app.example"[..]));
        assert_eq!(server_request.header("cookie"), Some(&b"id=1"[..]));
        assert_eq!(server_request.subprotocols().collect::<Vec<_>>(), offered);
        let mut answer = Vec::new();
        server_request.accept(server_pick, &[], &mut answer).unwrap();
        answer.extend_from_slice(b"\x81\x00");

        let mut headers = [EMPTY_HEADER; 64];
        let response = client.parse_response(&answer, &mut headers).unwrap().unwrap();
        assert_eq!(response.subprotocol(), server_pick);
        assert_eq!(&answer[response.head_len()..], b"\x81\x00");
    }
}

// ---- properties ----

fn reference_accept(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A valid request with one random byte-level mutation (or none).
fn mutated_request() -> impl Strategy<Value = Vec<u8>> {
    (any::<prop::sample::Index>(), 0u8..4, any::<u8>()).prop_map(|(at, kind, byte)| {
        let mut buf = [RFC_REQUEST, b"\x81\x80"].concat();
        let i = at.index(buf.len());
        match kind {
            0 => {}
            1 => buf[i] = byte,
            2 => buf.insert(i, byte),
            _ => {
                buf.remove(i);
            }
        }
        buf
    })
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        prop::collection::vec(prop::sample::select(b"\r\n:, ;\"\\aG/T".to_vec()), 0..256),
        mutated_request(),
    ]
}

proptest! {
    #[test]
    fn chunked_server_parse_equals_whole(buf in any_input(), cuts in prop::collection::vec(0usize..600, 0..12)) {
        let whole = parse_once(&buf);
        prop_assert_eq!(parse_chunked(&buf, &cuts), whole.clone());
        if let Ok(Some(accepted)) = &whole {
            prop_assert!(accepted.head_len <= buf.len());
        }
        if let Err(e) = &whole {
            prop_assert!([400, 405, 426, 431].contains(&e.status()));
        }
    }

    #[test]
    fn chunked_client_parse_equals_whole(
        buf in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, byte)| {
                let mut b = [RFC_RESPONSE, b"\x81\x00"].concat();
                let i = at.index(b.len());
                b[i] = byte;
                b
            }),
        ],
        cuts in prop::collection::vec(0usize..600, 0..12),
    ) {
        let whole = client_parse(&mut client(&["chat"]), &buf);
        let mut c = client(&["chat"]);
        let mut ends: Vec<usize> = cuts.iter().map(|&x| x.min(buf.len())).collect();
        ends.sort_unstable();
        ends.push(buf.len());
        let mut chunked = Ok(None);
        for end in ends {
            chunked = client_parse(&mut c, &buf[..end]);
            if !matches!(chunked, Ok(None)) {
                break;
            }
        }
        prop_assert_eq!(chunked, whole.clone());
        if let Ok(Some((len, _))) = whole {
            prop_assert!(len <= buf.len());
        }
    }

    #[test]
    fn accept_key_matches_reference(key in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(accept_key(&key).to_vec(), reference_accept(&key).into_bytes());
    }

    #[test]
    fn any_nonce_round_trips(nonce in any::<[u8; 16]>()) {
        let mut wire = Vec::new();
        let mut client = ClientHandshake::start(&ClientRequest::new("h", "/"), nonce, &mut wire).unwrap();
        let mut headers = [EMPTY_HEADER; 64];
        let request = ServerHandshake::default().parse(&wire, &mut headers).unwrap().unwrap();
        let mut answer = Vec::new();
        request.accept(None, &[], &mut answer).unwrap();
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        let expected = format!("Sec-WebSocket-Accept: {}\r\n", reference_accept(key.as_bytes()));
        prop_assert!(answer.windows(expected.len()).any(|w| w == expected.as_bytes()));
        let mut headers = [EMPTY_HEADER; 64];
        prop_assert!(client.parse_response(&answer, &mut headers).unwrap().is_some());
    }
}
