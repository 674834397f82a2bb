//! Feeds arbitrary bytes, in arbitrary chunks, to both handshake parsers and checks their
//! invariants: chunked verdict == whole verdict, consumed <= len, a 101 answer carries the
//! right accept value and satisfies a client, rejection statuses are the documented ones.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sha1::{Digest as _, Sha1};
use surge_proto::handshake::{
    write_rejection, ClientHandshake, ClientHandshakeError, ClientRequest, HandshakeError,
    ServerHandshake, UpgradeRequest, EMPTY_HEADER,
};

/// What the server concluded, owned so chunked and whole runs can be compared.
#[derive(Debug, PartialEq)]
struct Accepted {
    head_len: usize,
    path: String,
    query: Option<String>,
    host: Vec<u8>,
    origin: Option<Vec<u8>>,
    subprotocols: Vec<String>,
    extensions: Vec<(String, String)>,
    headers: usize,
}

impl Accepted {
    fn of(r: &UpgradeRequest<'_, '_>) -> Self {
        Self {
            head_len: r.head_len(),
            path: r.path().to_owned(),
            query: r.query().map(str::to_owned),
            host: r.host().to_vec(),
            origin: r.origin().map(<[u8]>::to_vec),
            subprotocols: r.subprotocols().map(str::to_owned).collect(),
            extensions: r.extensions().map(|e| (e.name.to_owned(), e.params.to_owned())).collect(),
            headers: r.headers().len(),
        }
    }
}

type ServerVerdict = Result<Option<Accepted>, HandshakeError>;
type ClientVerdict = Result<Option<(usize, Option<String>)>, ClientHandshakeError>;

fn server_step(server: &mut ServerHandshake, buf: &[u8]) -> ServerVerdict {
    let mut headers = [EMPTY_HEADER; 64];
    server.parse(buf, &mut headers).map(|r| r.as_ref().map(Accepted::of))
}

fn client_step(client: &mut ClientHandshake, buf: &[u8]) -> ClientVerdict {
    let mut headers = [EMPTY_HEADER; 64];
    client
        .parse_response(buf, &mut headers)
        .map(|r| r.map(|r| (r.head_len(), r.subprotocol().map(str::to_owned))))
}

/// Prefix ends for feeding `len` bytes in chunks whose sizes come from `plan`.
fn chunk_ends(plan: &[u8], len: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    for &b in plan.iter().cycle().take(if plan.is_empty() { 0 } else { len }) {
        // Mostly small chunks, byte by byte included; sometimes large ones.
        at += if b & 0x80 == 0 { usize::from(b & 0x0f) + 1 } else { usize::from(b & 0x7f) * 8 + 1 };
        if at >= len {
            break;
        }
        ends.push(at);
    }
    ends.push(len);
    ends
}

/// Runs `step` on growing prefixes; returns the first verdict that is not "need more".
fn chunked<T, E>(
    ends: &[usize],
    buf: &[u8],
    mut step: impl FnMut(&[u8]) -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    let mut verdict = Ok(None);
    for &end in ends {
        verdict = step(&buf[..end]);
        if !matches!(verdict, Ok(None)) {
            break;
        }
    }
    verdict
}

fn reference_accept(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b" \t".contains(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b" \t".contains(b)).map_or(start, |e| e + 1);
    &v[start..end]
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_server(plan: &[u8], input: &[u8]) {
    let whole = server_step(&mut ServerHandshake::default(), input);
    let mut server = ServerHandshake::default();
    let by_chunks = chunked(&chunk_ends(plan, input.len()), input, |b| server_step(&mut server, b));
    assert!(by_chunks == whole, "chunked verdict differs from whole: {whole:?}");

    match &whole {
        Ok(None) => assert!(input.len() < 8192, "no verdict past the head limit"),
        Ok(Some(accepted)) => {
            assert!(accepted.head_len <= input.len() && accepted.head_len <= 8192);
            assert!(accepted.subprotocols.iter().all(|p| is_token(p)));
            assert!(accepted.extensions.iter().all(|(name, _)| is_token(name)));
            assert!(accepted.path.starts_with('/'));
            check_accept(input);
        }
        Err(error) => {
            let status = error.status();
            assert!([400, 405, 426, 431].contains(&status), "{error:?} -> {status}");
            let mut out = Vec::new();
            write_rejection(status, &[], &mut out).expect("client errors are 4xx");
            assert!(out.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
            assert!(
                out.ends_with(b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    || status == 426 && out.ends_with(b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
                    || status == 405 && out.ends_with(b"\r\nAllow: GET\r\n\r\n")
            );
        }
    }
}

/// On an accepted request: the 101 carries the right accept value, the chosen subprotocol,
/// refuses an unoffered one, and a client that sent that key accepts it.
fn check_accept(input: &[u8]) {
    let mut headers = [EMPTY_HEADER; 64];
    let Ok(Some(request)) = ServerHandshake::default().parse(input, &mut headers) else {
        unreachable!("accepted once, accepted again");
    };
    let key = trim(request.header("sec-websocket-key").expect("validated key"));
    let offered: Vec<&str> = request.subprotocols().collect();
    let chosen = offered.first().copied();

    let mut out = Vec::new();
    request.accept(chosen, &[("X-Fuzz", b"1")], &mut out).expect("offered protocol");
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(out.ends_with(b"X-Fuzz: 1\r\n\r\n"));
    let accept_line = format!("\r\nSec-WebSocket-Accept: {}\r\n", reference_accept(key));
    assert!(contains(&out, accept_line.as_bytes()), "wrong accept value");
    if let Some(chosen) = chosen {
        assert!(contains(&out, format!("\r\nSec-WebSocket-Protocol: {chosen}\r\n").as_bytes()));
    }
    let unoffered = format!("{}x", offered.concat());
    if !offered.contains(&unoffered.as_str()) {
        let mut none = Vec::new();
        assert_eq!(
            request.accept(Some(&unoffered), &[], &mut none),
            Err(HandshakeError::SubprotocolNotOffered)
        );
        assert!(none.is_empty());
    }

    // A client that sent this key (and offered these protocols) accepts the answer.
    let nonce: [u8; 16] = base64::engine::general_purpose::STANDARD
        .decode(key)
        .expect("validated key")
        .try_into()
        .expect("16 bytes");
    let mut unique = offered.clone();
    unique.sort_unstable();
    unique.dedup();
    let client_request = ClientRequest { subprotocols: &unique, ..ClientRequest::new("h", "/") };
    let mut client =
        ClientHandshake::start(&client_request, nonce, &mut Vec::new()).expect("valid");
    out.extend_from_slice(b"\x81\x00");
    let verdict = client_step(&mut client, &out);
    assert_eq!(verdict, Ok(Some((out.len() - 2, chosen.map(str::to_owned)))));
}

fn check_client(plan: &[u8], input: &[u8]) {
    let start = || {
        let request =
            ClientRequest { subprotocols: &["chat", "superchat"], ..ClientRequest::new("h", "/") };
        ClientHandshake::start(&request, *b"the sample nonce", &mut Vec::new()).expect("valid")
    };
    let whole = client_step(&mut start(), input);
    let mut client = start();
    let by_chunks = chunked(&chunk_ends(plan, input.len()), input, |b| client_step(&mut client, b));
    assert!(by_chunks == whole, "chunked verdict differs from whole: {whole:?}");
    if let Ok(Some((head_len, protocol))) = &whole {
        assert!(*head_len <= input.len());
        assert!(matches!(protocol.as_deref(), None | Some("chat" | "superchat")));
        assert!(contains(&input[..*head_len], b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte says how many of the next bytes plan the chunk sizes.
    let Some((&n, rest)) = data.split_first() else { return };
    let (plan, input) = rest.split_at(usize::from(n % 16).min(rest.len()));
    check_server(plan, input);
    check_client(plan, input);
});
