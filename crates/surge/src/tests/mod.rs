//! The engine on the simulator (`backend::sim`): one loop, in-memory clients, a virtual
//! clock. Timeouts, backpressure and shutdown happen at exact instants, asserted as such.

mod backpressure;
mod deflate;
mod http;
mod limits;
mod panics;
mod shutdown;
mod timeouts;
mod topics;
mod upgrade;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use surge_client::{ClientEndpoint, Keys, Opening};
use surge_proto::close::CloseCode;
use surge_proto::connection::Limits;
use surge_proto::deflate::ClientOffer;
use surge_proto::handshake::ClientRequest;
use surge_proto::message::Message;

use crate::backend::sim::Sim;
use crate::config::ConfigBuilder;
use crate::conn::{Conn, SendResult};
use crate::handle::ConnectionId;
use crate::handler::{Handler, Upgrade};
use crate::http::{HttpRequest, HttpResponse};
use crate::request::Request;
use crate::transport::memory::Peer;
use crate::Config;

/// The timer tick of every simulated loop.
const TICK: Duration = Duration::from_millis(10);
/// A window no test fills unless it means to.
const WIDE: usize = 1 << 20;

/// A loop configuration with a 10 ms tick and no idle timeout.
fn config() -> ConfigBuilder {
    Config::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .threads(1)
        .timer_tick(TICK)
        .idle_timeout(None)
}

/// What the handler saw.
#[derive(Debug, Default)]
struct Seen {
    /// Close codes given to `on_close`, in order.
    closes: Vec<u16>,
    drains: usize,
    /// `(messages queued, bytes unsent, the refusal)` of the last flood.
    flood: Option<(usize, usize, SendResult)>,
}

#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<Seen>>);

impl Log {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.0.lock().unwrap()
    }
}

/// Echoes; `panic` panics; `close CODE` closes with CODE; `flood SIZE` sends SIZE-byte binaries until one is
/// refused; `on_drain` answers "drained".
struct Probe(Log);

impl Handler for Probe {
    type State = ();

    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::accept(()).with_header("X-Probe", "sim")
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, _: &mut (), msg: Message<'_>) {
        let text = if let Message::Text(text) = msg { text } else { "" };
        if text == "panic" {
            panic!("asked to");
        } else if let Some(code) = text.strip_prefix("close ") {
            conn.close(CloseCode::from(code.parse::<u16>().unwrap()), "asked").unwrap();
        } else if let Some(size) = text.strip_prefix("flood ") {
            let payload = vec![7; size.parse().unwrap()];
            let queued = std::iter::repeat_with(|| conn.send_binary(&payload))
                .take_while(|result| *result == SendResult::Sent)
                .count();
            let refusal = conn.send_binary(&payload);
            self.0.seen().flood = Some((queued, conn.buffered_amount(), refusal));
        } else {
            let _ = conn.send(msg);
        }
    }

    fn on_drain(&mut self, conn: &mut Conn<'_>, _: &mut ()) {
        self.0.seen().drains += 1;
        let _ = conn.send_text("drained");
    }

    fn on_close(&mut self, _: ConnectionId, _: (), code: CloseCode, _: &str) {
        self.0.seen().closes.push(code.as_u16());
    }

    /// `GET /hello` says hello; `POST /echo` answers its body; `/panic` panics.
    fn on_http(&mut self, req: &HttpRequest<'_>) -> HttpResponse {
        match (req.method(), req.path()) {
            ("GET", "/hello") => HttpResponse::new(200).with_body("text/plain", "hello"),
            (_, "/hello") => HttpResponse::method_not_allowed("GET"),
            ("POST", "/echo") => HttpResponse::new(200).with_body("text/plain", req.body()),
            (_, "/panic") => panic!("asked to"),
            _ => HttpResponse::not_found(),
        }
    }
}

/// A simulated loop serving [`Probe`], and what the probe saw.
fn sim(config: Config) -> (Sim<Probe>, Log) {
    let log = Log::default();
    (Sim::new(config, Probe(log.clone())), log)
}

/// What a client received, owned.
use surge_client::blocking::Received as Got;

const REQUEST: &[u8] =
    b"GET / HTTP/1.1\r\nHost: sim\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A WebSocket client over a simulated pipe: surge-client's sans-IO endpoint.
struct Client {
    /// The server's 101 answer.
    head: String,
    peer: Peer,
    endpoint: ClientEndpoint,
    input: Vec<u8>,
    /// Frames encoded and not yet written.
    out: Vec<u8>,
}

impl Client {
    /// Connects and completes the opening handshake at the current instant.
    fn open<H: Handler>(sim: &mut Sim<H>, window: usize) -> Client {
        Client::open_with(sim, window, None)
    }

    /// [`Client::open`], offering permessage-deflate as `offer` says.
    fn open_with<H: Handler>(
        sim: &mut Sim<H>,
        window: usize,
        offer: Option<ClientOffer>,
    ) -> Client {
        let peer = sim.connect(window);
        let mut request = Vec::new();
        let keys = Keys { nonce: [7; 16], mask_seed: 7 };
        let mut endpoint = ClientEndpoint::start_with(
            &ClientRequest::new("sim", "/"),
            keys,
            Limits::default(),
            offer,
            &mut request,
        )
        .unwrap();
        peer.write(&request);
        sim.settle();
        let answer = peer.take();
        let Ok(Opening::Open { early }) = endpoint.receive_handshake(&answer) else {
            panic!("not accepted: {:?}", String::from_utf8_lossy(&answer));
        };
        let head = String::from_utf8_lossy(&answer[..answer.len() - early.len()]).into_owned();
        Client { head, peer, endpoint, input: early, out: Vec::new() }
    }

    fn send_text(&mut self, text: &str) {
        self.queue_text(text);
        self.flush();
    }

    /// Encodes a text message to go with the next [`flush`](Self::flush).
    fn queue_text(&mut self, text: &str) {
        self.endpoint.connection().send(Message::Text(text), &mut self.out).unwrap();
    }

    /// Writes what was queued, in one piece.
    fn flush(&mut self) {
        self.peer.write(&std::mem::take(&mut self.out));
    }

    /// Everything the server wrote since the last look, as messages (pongs left out).
    fn recv(&mut self) -> Vec<Got> {
        let mut input = std::mem::take(&mut self.input);
        input.extend(self.peer.take());
        let mut got = Vec::new();
        let mut rest = &mut input[..];
        loop {
            let (used, event, _) = self.endpoint.read(&mut *rest);
            match event.map(Got::from) {
                None => break,
                Some(Got::Pong(_)) => {}
                Some(Got::Violation(error)) => panic!("the server broke the protocol: {error}"),
                Some(received) => got.push(received),
            }
            rest = &mut rest[used..];
        }
        got
    }

    /// Sends what the client's protocol owes the server: pongs, the Close reply.
    fn answer(&mut self) {
        let mut out = Vec::new();
        self.endpoint.connection().poll_transmit(&mut out);
        self.peer.write(&out);
    }

    /// Ends the client's side of the stream without a close handshake.
    fn hang_up(&mut self) {
        let mut state = self.peer.state();
        state.peer_shut = true;
        state.input_edge = true;
    }

    /// Whether the server has dropped the connection.
    fn gone(&self) -> bool {
        self.peer.server_gone()
    }
}
