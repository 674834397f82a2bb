//! One WebSocket (RFC 6455) client endpoint over surge-proto, for everything in this workspace
//! that speaks the client side: surge-loadgen's event-loop workers, its probe and
//! `autobahn-client`, the engine's tests and the benches.
//!
//! - [`ClientEndpoint`] is sans-IO, like surge-proto itself: it writes the opening request,
//!   takes the server's answer in whatever pieces it arrives, then reads and writes frames
//!   through surge-proto's [`Connection`]. An event loop (mio, epoll) owns the socket; reading
//!   an open endpoint allocates nothing.
//! - [`blocking`] drives an endpoint over a [`std::net::TcpStream`]: connect, handshake, send,
//!   receive with a time limit. For tests, probes and tools, not for the hot path.
//!
//! Keys (the handshake nonce and the masking seed) come from the caller, so that this crate
//! needs no random source: tools draw them from the operating system, tests from a counter.

pub mod blocking;

use surge_proto::connection::{Connection, Event, Limits};
use surge_proto::deflate::codec::CompressorConfig;
use surge_proto::deflate::{ClientOffer, DeflateSession, DeflateStats, Params, SharedCodecs};
use surge_proto::handshake::{ClientHandshake, ClientHandshakeError, ClientRequest, EMPTY_HEADER};

pub use surge_proto;

/// Header fields the answer to the opening request may have.
const MAX_RESPONSE_HEADERS: usize = 64;

/// The per-connection secrets of a client: the `Sec-WebSocket-Key` nonce and the seed of the
/// frame masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    /// The opening handshake's nonce (RFC 6455 §4.1: 16 random bytes).
    pub nonce: [u8; 16],
    /// Seeds the masking keys of the frames the client sends.
    pub mask_seed: u64,
}

/// How far the opening handshake got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// The answer is not complete yet.
    Pending,
    /// The server accepted; `early` holds the bytes that came after its answer's head (its
    /// first frames), to be fed to [`ClientEndpoint::read`].
    Open {
        /// The server's first frames, if any came with the answer.
        early: Vec<u8>,
    },
}

/// The protocol state of a client connection: permessage-deflate when it was agreed.
pub type ClientConnection = Connection<Option<DeflateSession<Box<SharedCodecs>>>>;

/// A WebSocket client connection without I/O: the opening handshake, then frames.
#[derive(Debug)]
pub struct ClientEndpoint {
    /// While opening: the handshake and the answer's bytes so far.
    opening: Option<(ClientHandshake, Vec<u8>)>,
    proto: ClientConnection,
    assembly: Vec<u8>,
    keys: Keys,
    /// The permessage-deflate offer made, if any.
    offer: Option<ClientOffer>,
    /// What the server agreed to, once open.
    agreed: Option<Params>,
}

impl ClientEndpoint {
    /// Starts the opening handshake: appends the request to `out`.
    pub fn start(
        request: &ClientRequest<'_>,
        keys: Keys,
        limits: Limits,
        out: &mut Vec<u8>,
    ) -> Result<Self, ClientHandshakeError> {
        Self::start_with(request, keys, limits, None, out)
    }

    /// Starts the opening handshake offering permessage-deflate as `offer` says (when
    /// `Some`); the server's answer is checked against it, and a compressed connection
    /// compresses every message it sends (context takeover as agreed, window 15 or what
    /// the server allows, level 6).
    pub fn start_with(
        request: &ClientRequest<'_>,
        keys: Keys,
        limits: Limits,
        offer: Option<ClientOffer>,
        out: &mut Vec<u8>,
    ) -> Result<Self, ClientHandshakeError> {
        let value = offer.map(|offer| offer.to_string());
        let mut headers: Vec<(&str, &[u8])> = request.headers.to_vec();
        if let Some(value) = &value {
            headers.push(("Sec-WebSocket-Extensions", value.as_bytes()));
        }
        let request = ClientRequest { headers: &headers, ..*request };
        let handshake = ClientHandshake::start(&request, keys.nonce, out)?;
        Ok(ClientEndpoint {
            opening: Some((handshake, Vec::new())),
            proto: Connection::client_with(limits, keys.mask_seed, None),
            assembly: Vec::new(),
            keys,
            offer,
            agreed: None,
        })
    }

    /// The permessage-deflate parameters the server agreed to, if it did.
    pub fn deflate(&self) -> Option<Params> {
        self.agreed
    }

    /// What this connection compressed and inflated (zero without deflate).
    pub fn deflate_stats(&self) -> DeflateStats {
        self.proto.extension().as_ref().map(DeflateSession::stats).unwrap_or_default()
    }

    /// Whether the opening handshake completed.
    pub fn is_open(&self) -> bool {
        self.opening.is_none()
    }

    /// Takes bytes of the server's answer to the opening request. An error means the server
    /// refused ([`ClientHandshakeError::UnexpectedStatus`]) or answered something invalid.
    pub fn receive_handshake(&mut self, bytes: &[u8]) -> Result<Opening, ClientHandshakeError> {
        let Some((handshake, head)) = self.opening.as_mut() else {
            return Ok(Opening::Open { early: bytes.to_vec() });
        };
        head.extend_from_slice(bytes);
        let mut headers = [EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let (head_len, agreed) = match handshake.parse_response(head, &mut headers)? {
            None => return Ok(Opening::Pending),
            Some(response) => {
                let answers = response
                    .headers()
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                    .map(|h| h.value);
                let agreed = match &self.offer {
                    Some(offer) => offer
                        .check_response(answers)
                        .map_err(ClientHandshakeError::DeflateAnswer)?,
                    None => None,
                };
                (response.head_len(), agreed)
            }
        };
        let early = head.split_off(head_len);
        self.opening = None;
        if let Some(params) = agreed {
            let codecs = Box::new(SharedCodecs::new(0));
            let session = DeflateSession::client(codecs, &params, CompressorConfig::default());
            self.proto =
                Connection::client_with(self.proto.limits(), self.keys.mask_seed, Some(session));
            self.agreed = Some(params);
        }
        Ok(Opening::Open { early })
    }

    /// Reads frames from `input` (after the handshake): how many bytes were used, the event
    /// they completed, if any (see [`Connection::read`]), and the protocol state, to answer
    /// the event (an echo) while it is borrowed.
    #[inline]
    pub fn read<'a>(
        &'a mut self,
        input: &'a mut [u8],
    ) -> (usize, Option<Event<'a>>, &'a mut ClientConnection) {
        let (used, event) = self.proto.read(input, &mut self.assembly);
        (used, event, &mut self.proto)
    }

    /// The protocol state, to send, close, answer pings and keep its timers.
    #[inline]
    pub fn connection(&mut self) -> &mut ClientConnection {
        &mut self.proto
    }

    /// The protocol state, to ask it (whether it owes the server frames, may send, closed).
    #[inline]
    pub fn protocol(&self) -> &ClientConnection {
        &self.proto
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use surge_proto::handshake::{HandshakeLimits, ServerHandshake};
    use surge_proto::message::Message;

    #[test]
    fn opens_in_pieces_and_keeps_the_servers_first_frames() {
        let keys = Keys { nonce: [7; 16], mask_seed: 1 };
        let mut request = Vec::new();
        let mut client = ClientEndpoint::start(
            &ClientRequest::new("h", "/"),
            keys,
            Limits::default(),
            &mut request,
        )
        .unwrap();
        let mut server = ServerHandshake::new(HandshakeLimits::default());
        let mut headers = [EMPTY_HEADER; 16];
        let mut answer = Vec::new();
        server
            .parse(&request, &mut headers)
            .unwrap()
            .unwrap()
            .accept(None, &[], &mut answer)
            .unwrap();
        let mut server_ws = Connection::server(Limits::default());
        server_ws.send(Message::Text("hi"), &mut answer).unwrap();
        let (first, rest) = answer.split_at(10);
        assert_eq!(client.receive_handshake(first).unwrap(), Opening::Pending);
        let Opening::Open { mut early } = client.receive_handshake(rest).unwrap() else {
            panic!("not open")
        };
        assert!(client.is_open());
        let (_, event, _) = client.read(&mut early);
        assert!(matches!(event, Some(Event::Message(Message::Text("hi")))));
    }

    #[test]
    fn a_refusal_is_the_status() {
        let keys = Keys { nonce: [7; 16], mask_seed: 1 };
        let mut out = Vec::new();
        let mut client =
            ClientEndpoint::start(&ClientRequest::new("h", "/"), keys, Limits::default(), &mut out)
                .unwrap();
        let err = client.receive_handshake(b"HTTP/1.1 403 Forbidden\r\n\r\n").unwrap_err();
        assert_eq!(err, ClientHandshakeError::UnexpectedStatus(403));
    }
}
