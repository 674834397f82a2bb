//! Plain HTTP beside the WebSocket on the same port, over loopback against `surge echo`:
//! the built-in routes, 404 and 405, keep-alive and pipelining, and the hostile requests
//! (trickled, too large, not HTTP), each with the witness still echoing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::case::Case;
use crate::wire::{expect_refusal, read_answer, read_to_eof, tcp, WAIT};

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// One answer and its body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads one answer and its body (by its Content-Length) from `stream`; `carry` holds the
/// bytes read past the previous answer, and keeps those past this one.
fn next_answer(stream: &mut TcpStream, carry: &mut Vec<u8>) -> Reply {
    let give_up = Instant::now() + WAIT;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = response.parse(carry).expect("an HTTP answer") {
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            let status = response.code.expect("a status");
            let reply = Reply { status, headers, body: Vec::new() };
            let length: usize = reply.header("Content-Length").expect("a length").parse().unwrap();
            while carry.len() < head + length {
                assert!(Instant::now() < give_up, "no whole body within {WAIT:?}");
                let n = stream.read(&mut chunk).expect("read a body");
                assert!(n > 0, "closed inside the body");
                carry.extend_from_slice(&chunk[..n]);
            }
            let rest = carry.split_off(head + length);
            let body = carry.split_off(head);
            *carry = rest;
            return Reply { body, ..reply };
        }
        assert!(Instant::now() < give_up, "no answer within {WAIT:?}");
        let n = stream.read(&mut chunk).expect("read an answer");
        assert!(n > 0, "closed before the answer");
        carry.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn routes_answer_over_one_kept_alive_connection() {
    let mut case = Case::start();
    let mut stream = tcp(case.addr());
    let mut carry = Vec::new();
    for (path, status, body) in
        [("/healthz", 200, &b"ok\n"[..]), ("/readyz", 200, b"ready\n"), ("/nowhere", 404, b"")]
    {
        stream.write_all(&get(path)).unwrap();
        let answer = next_answer(&mut stream, &mut carry);
        assert_eq!((answer.status, &answer.body[..]), (status, body), "{path}");
        assert_eq!(answer.header("Connection"), None, "{path}: kept alive");
    }
    stream.write_all(b"DELETE /metrics HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let answer = next_answer(&mut stream, &mut carry);
    assert_eq!((answer.status, answer.header("Allow")), (405, Some("GET, HEAD")));
    stream.write_all(&get("/metrics")).unwrap();
    let answer = next_answer(&mut stream, &mut carry);
    let metrics = String::from_utf8(answer.body).unwrap();
    assert_eq!(answer.status, 200);
    // The witness, and the answers on this connection so far.
    assert!(metrics.contains("surge_connections_open 1\n"), "{metrics}");
    assert!(metrics.contains("surge_http_responses_total{loop=\"0\",status=\"200\"} 2\n"));
    assert!(metrics.contains("surge_http_responses_total{loop=\"0\",status=\"404\"} 1\n"));
    case.check("four requests on one connection");
}

#[test]
fn pipelined_requests_come_back_in_order() {
    let mut case = Case::start();
    let mut stream = tcp(case.addr());
    let mut requests = Vec::new();
    for path in ["/healthz", "/nowhere", "/readyz", "/healthz"] {
        requests.extend(get(path));
    }
    stream.write_all(&requests).unwrap();
    let mut carry = Vec::new();
    let statuses: Vec<(u16, Vec<u8>)> = (0..4)
        .map(|_| {
            let answer = next_answer(&mut stream, &mut carry);
            (answer.status, answer.body)
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (200, b"ok\n".to_vec()),
            (404, vec![]),
            (200, b"ready\n".to_vec()),
            (200, b"ok\n".to_vec())
        ]
    );
    case.check("four pipelined requests");
}

#[test]
fn a_body_over_the_limit_gets_413() {
    let mut case = Case::start();
    let request = b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 10000000\r\n\r\nxx";
    let mut stream = tcp(case.addr());
    stream.write_all(request).unwrap();
    let answer = read_answer(&mut stream).expect("an answer");
    assert_eq!((answer.status, answer.header("Connection")), (413, Some("close")));
    let (_, closed) = read_to_eof(&mut stream, WAIT);
    assert!(closed, "the connection closes after 413");
    case.check("a 10 MB body announced");
}

#[test]
fn a_request_that_is_not_http_gets_400() {
    let mut case = Case::start();
    for junk in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
    ] {
        expect_refusal(case.addr(), junk, 400);
        case.check("not HTTP");
    }
}

#[test]
fn a_request_trickled_byte_by_byte_is_cut_at_the_handshake_timeout() {
    let mut case = Case::start();
    let mut stream = tcp(case.addr());
    let request = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut cut = false;
    for byte in request.iter() {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(40));
        // The handshake timeout of the test server is 1 s.
        if started.elapsed() > Duration::from_millis(1500) {
            break;
        }
    }
    let (answer, closed) = read_to_eof(&mut stream, WAIT);
    assert!(cut || closed, "the trickled request was not cut");
    assert!(answer.is_empty(), "no answer to a request cut short: {answer:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "cut after {took:?}"
    );
    case.check("a request trickled a byte per 40 ms");
}
