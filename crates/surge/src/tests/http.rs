//! Plain HTTP beside the WebSocket: the built-in routes, the handler's, keep-alive,
//! pipelining, the body limit and the timeout, at exact instants.

use std::time::Duration;

use super::{config, sim, Client, Got, Probe, REQUEST, TICK, WIDE};
use crate::backend::sim::Sim;
use crate::handle::Command;
use crate::readiness::ReadyFlag;
use crate::transport::memory::Peer;

/// One answer as the client read it.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Every whole answer in `bytes`, in order; panics on bytes that are not one.
fn answers(bytes: &[u8]) -> Vec<Answer> {
    let mut found = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = response.parse(rest) else {
            panic!("not an answer: {:?}", String::from_utf8_lossy(rest));
        };
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .expect("every answer has a Content-Length");
        let body = String::from_utf8_lossy(&rest[head..head + length]).into_owned();
        found.push(Answer { status: response.code.unwrap(), headers, body });
        rest = &rest[head + length..];
    }
    found
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: sim\r\n\r\n").into_bytes()
}

/// Sends `request` on `peer` and returns what came back at once.
fn ask(sim: &mut Sim<Probe>, peer: &Peer, request: &[u8]) -> Vec<Answer> {
    peer.write(request);
    sim.settle();
    answers(&peer.take())
}

#[test]
fn the_built_in_routes_answer_and_keep_the_connection() {
    let (mut sim, _) = sim(config().build().unwrap());
    let peer = sim.connect(WIDE);
    let [health] = &ask(&mut sim, &peer, &get("/healthz"))[..] else { panic!() };
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(health.header("Connection"), None, "kept alive");
    let [ready] = &ask(&mut sim, &peer, &get("/readyz"))[..] else { panic!() };
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let [metrics] = &ask(&mut sim, &peer, &get("/metrics"))[..] else { panic!() };
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(
        metrics.body.contains("surge_http_responses_total{loop=\"0\",status=\"200\"} 2\n"),
        "{}",
        metrics.body
    );
    peer.write(b"HEAD /healthz HTTP/1.1\r\nHost: sim\r\n\r\n");
    sim.settle();
    let head = String::from_utf8(peer.take()).unwrap();
    assert!(
        head.ends_with("Content-Length: 3\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"),
        "HEAD: the length, no body: {head:?}"
    );
    assert!(!peer.server_gone());
}

#[test]
fn wrong_methods_get_405_with_allow_and_unknown_paths_404() {
    let (mut sim, _) = sim(config().build().unwrap());
    let peer = sim.connect(WIDE);
    let request = b"POST /healthz HTTP/1.1\r\nHost: sim\r\nContent-Length: 0\r\n\r\n";
    let [refused] = &ask(&mut sim, &peer, request)[..] else { panic!() };
    assert_eq!((refused.status, refused.header("Allow")), (405, Some("GET, HEAD")));
    let [theirs] = &ask(&mut sim, &peer, b"DELETE /hello HTTP/1.1\r\nHost: sim\r\n\r\n")[..] else {
        panic!()
    };
    assert_eq!((theirs.status, theirs.header("Allow")), (405, Some("GET")));
    let [missing] = &ask(&mut sim, &peer, &get("/nowhere"))[..] else { panic!() };
    assert_eq!(missing.status, 404);
    assert!(!peer.server_gone(), "a 404 or 405 keeps the connection");
}

#[test]
fn the_handlers_routes_get_method_path_and_body() {
    let (mut sim, _) = sim(config().build().unwrap());
    let peer = sim.connect(WIDE);
    let [hello] = &ask(&mut sim, &peer, &get("/hello?x=1"))[..] else { panic!() };
    assert_eq!((hello.status, hello.body.as_str()), (200, "hello"));
    assert_eq!(hello.header("Content-Type"), Some("text/plain"));
    // A body in three pieces: answered once the last comes.
    let request = b"POST /echo HTTP/1.1\r\nHost: sim\r\nContent-Length: 11\r\n\r\nhello world";
    let (head, body) = request.split_at(request.len() - 11);
    assert_eq!(ask(&mut sim, &peer, head), []);
    assert_eq!(ask(&mut sim, &peer, &body[..5]), []);
    let [echo] = &ask(&mut sim, &peer, &body[5..])[..] else { panic!() };
    assert_eq!((echo.status, echo.body.as_str()), (200, "hello world"));
}

#[test]
fn pipelined_requests_are_answered_in_order_in_one_write() {
    let (mut sim, _) = sim(config().build().unwrap());
    let peer = sim.connect(WIDE);
    let mut requests = get("/hello");
    requests.extend(b"POST /echo HTTP/1.1\r\nHost: sim\r\nContent-Length: 2\r\n\r\nhi");
    requests.extend(get("/nowhere"));
    requests.extend(get("/healthz"));
    let got = ask(&mut sim, &peer, &requests);
    let statuses: Vec<(u16, &str)> = got.iter().map(|a| (a.status, a.body.as_str())).collect();
    assert_eq!(statuses, [(200, "hello"), (200, "hi"), (404, ""), (200, "ok\n")]);
}

#[test]
fn a_keep_alive_connection_can_upgrade_after_its_requests() {
    let (mut sim, _) = sim(config().build().unwrap());
    let peer = sim.connect(WIDE);
    let mut bytes = get("/healthz");
    bytes.extend(REQUEST);
    peer.write(&bytes);
    sim.settle();
    let got = peer.take();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("HTTP/1.1 101 Switching Protocols\r\n"), "{text}");
}

#[test]
fn a_body_over_the_limit_gets_413_and_the_connection_closes() {
    let (mut sim, _) = sim(config().http_body_limit(10).build().unwrap());
    let peer = sim.connect(WIDE);
    let request = b"POST /echo HTTP/1.1\r\nHost: sim\r\nContent-Length: 11\r\n\r\n";
    let [too_large] = &ask(&mut sim, &peer, request)[..] else { panic!() };
    assert_eq!((too_large.status, too_large.header("Connection")), (413, Some("close")));
    peer.shut();
    sim.settle();
    assert!(peer.server_gone());
    // Exactly at the limit is fine.
    let peer = sim.connect(WIDE);
    let request = b"POST /echo HTTP/1.1\r\nHost: sim\r\nContent-Length: 10\r\n\r\n0123456789";
    let [echo] = &ask(&mut sim, &peer, request)[..] else { panic!() };
    assert_eq!((echo.status, echo.body.as_str()), (200, "0123456789"));
}

#[test]
fn malformed_and_unsupported_requests_get_400_or_411_and_close() {
    for (request, status) in [
        (&b"GET /healthz HTTP/1.1\r\n\r\n"[..], 400),
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: sim\r\nContent-Length: x\r\n\r\n", 400),
        (
            b"POST /echo HTTP/1.1\r\nHost: sim\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        (b"POST /echo HTTP/1.1\r\nHost: sim\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"GET /he llo HTTP/1.1\r\nHost: sim\r\n\r\n", 400),
    ] {
        let (mut sim, _) = sim(config().build().unwrap());
        let peer = sim.connect(WIDE);
        let got = ask(&mut sim, &peer, request);
        assert_eq!(got.len(), 1, "{:?}", String::from_utf8_lossy(request));
        assert_eq!((got[0].status, got[0].header("Connection")), (status, Some("close")));
    }
}

#[test]
fn a_plain_request_past_the_head_limit_gets_431() {
    let (mut sim, _) = sim(config().build().unwrap());
    let peer = sim.connect(WIDE);
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: sim\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let [too_large] = &ask(&mut sim, &peer, request.as_bytes())[..] else { panic!() };
    assert_eq!((too_large.status, too_large.header("Connection")), (431, Some("close")));
}

#[test]
fn http_1_0_and_connection_close_are_answered_then_closed() {
    for request in [
        &b"GET /healthz HTTP/1.0\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n",
    ] {
        let (mut sim, _) = sim(config().build().unwrap());
        let peer = sim.connect(WIDE);
        let got = ask(&mut sim, &peer, request);
        assert_eq!((got[0].status, got[0].header("Connection")), (200, Some("close")));
        peer.shut();
        sim.settle();
        assert!(peer.server_gone());
    }
}

#[test]
fn a_request_trickled_byte_by_byte_is_cut_at_the_handshake_timeout() {
    let timeout = Duration::from_millis(200);
    let (mut sim, _) = sim(config().handshake_timeout(timeout).build().unwrap());
    let peer = sim.connect(WIDE);
    let request = get("/healthz");
    // One byte per tick: the request would need far longer than the timeout.
    for byte in &request[..request.len() - 1] {
        peer.write(std::slice::from_ref(byte));
        sim.advance(TICK);
        if peer.server_gone() {
            break;
        }
    }
    assert!(peer.server_gone(), "still there at {:?}", sim.elapsed());
    assert!(sim.elapsed() <= timeout + TICK, "cut at {:?}", sim.elapsed());
    assert!(peer.take().is_empty(), "no answer to half a request");
}

#[test]
fn keep_alive_gives_each_request_the_whole_timeout_then_closes_when_idle() {
    let timeout = Duration::from_millis(200);
    let (mut sim, _) = sim(config().handshake_timeout(timeout).build().unwrap());
    let peer = sim.connect(WIDE);
    sim.advance(timeout - TICK);
    assert_eq!(ask(&mut sim, &peer, &get("/healthz")).len(), 1);
    sim.advance(timeout - TICK);
    assert!(!peer.server_gone(), "the timeout counts again from the answer");
    assert_eq!(ask(&mut sim, &peer, &get("/healthz")).len(), 1);
    sim.advance(timeout + TICK);
    assert!(peer.server_gone(), "an idle keep-alive connection goes at the timeout");
}

#[test]
fn readyz_waits_for_its_conditions_and_says_503_while_draining() {
    let broker = ReadyFlag::new(false);
    let (mut sim, _) = sim(config().ready_when("broker", broker.clone()).build().unwrap());
    let peer = sim.connect(WIDE);
    let [waiting] = &ask(&mut sim, &peer, &get("/readyz"))[..] else { panic!() };
    assert_eq!((waiting.status, waiting.body.as_str()), (503, "not ready: broker\n"));
    broker.set(true);
    let [ready] = &ask(&mut sim, &peer, &get("/readyz"))[..] else { panic!() };
    assert_eq!(ready.status, 200);
    sim.command(Command::Shutdown { deadline: sim.at(Duration::from_secs(5)) });
    sim.settle();
    assert!(!peer.server_gone(), "a keep-alive connection between requests stays");
    let [draining] = &ask(&mut sim, &peer, &get("/readyz"))[..] else { panic!() };
    assert_eq!((draining.status, draining.body.as_str()), (503, "not ready: draining\n"));
    assert_eq!(draining.header("Connection"), Some("close"));
    peer.shut();
    sim.settle();
    assert!(sim.finished(), "the shutdown ends with the last connection");
}

#[test]
fn a_panicking_route_answers_500_and_the_loop_goes_on() {
    let (mut sim, _) = sim(config().build().unwrap());
    let mut client = Client::open(&mut sim, WIDE);
    let peer = sim.connect(WIDE);
    let [failed] = &ask(&mut sim, &peer, &get("/panic"))[..] else { panic!() };
    assert_eq!(failed.status, 500);
    assert_eq!(ask(&mut sim, &peer, &get("/hello"))[0].status, 200);
    client.send_text("still here");
    sim.settle();
    assert_eq!(client.recv(), [Got::Text("still here".into())]);
}

#[test]
fn metrics_count_what_the_connections_did() {
    let (mut sim, _) = sim(config().build().unwrap());
    let mut client = Client::open(&mut sim, WIDE);
    for text in ["one", "two", "three"] {
        client.send_text(text);
    }
    sim.settle();
    assert_eq!(client.recv().len(), 3);
    client.send_text("close 4000");
    sim.settle();
    let peer = sim.connect(WIDE);
    peer.write(b"GET / HTTP/1.1\r\nHost: sim\r\nUpgrade: websocket\r\n\r\n");
    sim.settle();
    let scraper = sim.connect(WIDE);
    let [metrics] = &ask(&mut sim, &scraper, &get("/metrics"))[..] else { panic!() };
    let body = &metrics.body;
    for line in [
        "surge_connections_open 1",
        "surge_loop_connections_open{loop=\"0\"} 1",
        "surge_connections_accepted_total{loop=\"0\"} 3",
        "surge_messages_received_total{loop=\"0\",kind=\"text\"} 4",
        "surge_message_bytes_received_total{loop=\"0\",kind=\"text\"} 21",
        "surge_messages_sent_total{loop=\"0\",kind=\"text\"} 3",
        "surge_message_bytes_sent_total{loop=\"0\",kind=\"binary\"} 0",
        "surge_closes_sent_total{loop=\"0\",code=\"3000-4999\"} 1",
        "surge_handshakes_failed_total{loop=\"0\",status=\"400\"} 1",
        "surge_loop_turn_seconds_bucket{loop=\"0\",le=\"+Inf\"}",
        "surge_loop_events_per_turn_count{loop=\"0\"}",
        "surge_pubsub_publishes_total{loop=\"0\"} 0",
        "surge_pubsub_subscriptions{loop=\"0\"} 0",
    ] {
        assert!(body.lines().any(|l| l.starts_with(line)), "no {line:?} in\n{body}");
    }
}
