//! The embedding API: what an application implements to serve WebSocket connections.

use surge_proto::close::CloseCode;
use surge_proto::message::Message;

use crate::conn::Conn;
use crate::handle::ConnectionId;
use crate::http::{HttpRequest, HttpResponse};
use crate::request::Request;

/// An application's side of the server. One handler is made per event loop by the factory
/// given to [`Server::start`](crate::Server::start) and used only on that loop's thread, so a
/// handler needs no locking and need not be `Send`; share state between loops explicitly
/// (an `Arc`, a channel, a [`ServerHandle`](crate::ServerHandle)).
///
/// Every call for one connection happens on its loop, in order: `on_upgrade`, `on_open`,
/// then `on_message`, `on_drain`, `on_missed` and `on_refused` any number of times, then exactly one
/// `on_close`. A panic in any of them is caught: the connection is closed with 1011
/// (internal error), the panic is logged, and the loop and every other connection go on.
///
/// ```
/// use surge::{Conn, Handler, Request, Upgrade};
/// use surge_proto::message::Message;
///
/// /// Echoes text, counting messages per connection.
/// struct Counter;
///
/// impl Handler for Counter {
///     type State = u64;
///
///     fn on_upgrade(&mut self, req: &Request<'_>) -> Upgrade<u64> {
///         if req.path() != "/count" {
///             return Upgrade::Reject(404);
///         }
///         Upgrade::accept(0)
///     }
///
///     fn on_message(&mut self, conn: &mut Conn<'_>, count: &mut u64, msg: Message<'_>) {
///         *count += 1;
///         if let Message::Text(text) = msg {
///             let _ = conn.send_text(text);
///         }
///     }
/// }
/// ```
pub trait Handler {
    /// Per-connection state, made by [`on_upgrade`](Self::on_upgrade) and handed back by
    /// [`on_close`](Self::on_close).
    type State;

    /// Decides whether to accept an opening handshake the protocol layer found valid (the
    /// configured origin allow-list and connection cap were checked already).
    fn on_upgrade(&mut self, req: &Request<'_>) -> Upgrade<Self::State>;

    /// The connection is open; the 101 response is queued ahead of anything sent here.
    fn on_open(&mut self, conn: &mut Conn<'_>, state: &mut Self::State) {
        let _ = (conn, state);
    }

    /// A whole message arrived. It is borrowed from the loop's read buffer (or from the
    /// connection's assembly buffer when it came in pieces): copy what must outlive the call.
    fn on_message(&mut self, conn: &mut Conn<'_>, state: &mut Self::State, msg: Message<'_>);

    /// Output that had reached the backpressure limit has fallen under the low watermark:
    /// sends are accepted again. Called once after each
    /// [`SendResult::Backpressure`](crate::SendResult::Backpressure).
    fn on_drain(&mut self, conn: &mut Conn<'_>, state: &mut Self::State) {
        let _ = (conn, state);
    }

    /// A message from another thread ([`ServerHandle::send`](crate::ServerHandle::send) or
    /// a broadcast) found this connection over its backpressure limit, under
    /// [`BackpressurePolicy::HandBack`](crate::BackpressurePolicy). The message is handed
    /// here instead of being dropped. By default the connection is closed with 1008.
    fn on_refused(&mut self, conn: &mut Conn<'_>, state: &mut Self::State, msg: Message<'_>) {
        let _ = (state, msg);
        let _ = conn.close(CloseCode::POLICY_VIOLATION, "backpressure");
    }

    /// Publishes to this connection's topics were skipped while its output was over the
    /// backpressure limit (under [`BackpressurePolicy::HandBack`](crate::BackpressurePolicy)):
    /// `missed` of them since the last call, exactly. Called once the output has drained
    /// under the low watermark (after [`on_drain`](Self::on_drain)). Also
    /// counted in [`TopicStats::skipped`](crate::TopicStats). By default nothing more is
    /// done: a feed of prices can skip, a chat may want to tell its user.
    fn on_missed(&mut self, conn: &mut Conn<'_>, state: &mut Self::State, missed: u64) {
        let _ = (conn, state, missed);
    }

    /// The WebSocket is closed; no more calls for this connection follow. `code` is the
    /// peer's close code (1005 when its Close had none), the code of the protocol violation
    /// we closed for, or 1006 when the connection ended without a close handshake (reset,
    /// end of stream, close timeout, shutdown deadline).
    fn on_close(&mut self, id: ConnectionId, state: Self::State, code: CloseCode, reason: &str) {
        let _ = (id, state, code, reason);
    }

    /// A plain HTTP request (not an upgrade) for a path the engine does not answer itself
    /// (`/healthz`, `/readyz` and `/metrics` are its own): the application's routes, such as
    /// a status page or a token endpoint. By default every path is 404. Answer 405 with
    /// [`HttpResponse::method_not_allowed`] for a known path and a wrong method. A panic
    /// here answers 500.
    ///
    /// ```
    /// use surge::{Conn, Handler, HttpRequest, HttpResponse, Request, Upgrade};
    /// use surge_proto::message::Message;
    ///
    /// struct Status;
    ///
    /// impl Handler for Status {
    ///     type State = ();
    ///     fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
    ///         Upgrade::accept(())
    ///     }
    ///     fn on_message(&mut self, _: &mut Conn<'_>, _: &mut (), _: Message<'_>) {}
    ///     fn on_http(&mut self, req: &HttpRequest<'_>) -> HttpResponse {
    ///         match (req.method(), req.path()) {
    ///             ("GET", "/status") => HttpResponse::new(200).with_body("application/json", "{}"),
    ///             (_, "/status") => HttpResponse::method_not_allowed("GET"),
    ///             _ => HttpResponse::not_found(),
    ///         }
    ///     }
    /// }
    /// ```
    fn on_http(&mut self, req: &HttpRequest<'_>) -> HttpResponse {
        let _ = req;
        HttpResponse::not_found()
    }
}

/// The answer to an opening handshake.
///
/// ```
/// use surge::Upgrade;
///
/// let answer = Upgrade::accept(0u32).with_header("Set-Cookie", "session=1");
/// let Upgrade::Accept { headers, .. } = answer else { unreachable!() };
/// assert_eq!(headers, [("Set-Cookie", b"session=1".to_vec())]);
/// ```
#[derive(Debug)]
pub enum Upgrade<S> {
    /// Switch protocols.
    Accept {
        /// The subprotocol chosen, one of those the client offered
        /// ([`Request::protocols`]), or `None`.
        protocol: Option<&'static str>,
        /// Headers added to the 101 answer, such as the `Sec-WebSocket-Extensions` that
        /// concludes an extension's negotiation. Names must be HTTP tokens and values free of
        /// control bytes; an answer that breaks this is not sent (the client gets 500).
        headers: Vec<(&'static str, Vec<u8>)>,
        /// The connection's state.
        state: S,
    },
    /// Refuse with this HTTP status (400-599; anything else is sent as 500).
    Reject(u16),
}

impl<S> Upgrade<S> {
    /// Accepts without a subprotocol or extra headers.
    pub fn accept(state: S) -> Self {
        Upgrade::Accept { protocol: None, headers: Vec::new(), state }
    }

    /// Adds a header to the 101 answer of an `Accept` (a `Reject` stays as it is).
    pub fn with_header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        if let Upgrade::Accept { headers, .. } = &mut self {
            headers.push((name, value.into()));
        }
        self
    }
}
