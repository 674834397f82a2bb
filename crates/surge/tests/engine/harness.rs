//! A test handler that echoes and obeys a few commands, recording what the engine told it.

use std::sync::{Arc, Mutex, MutexGuard};

use surge::{
    CloseCode, Config, Conn, ConnectionId, Handler, Message, Request, SendResult, Server, Upgrade,
};

/// What the handlers saw, across loops.
#[derive(Debug, Default)]
pub struct Log {
    pub opened: Vec<ConnectionId>,
    /// `(id, close code, messages echoed)`.
    pub closed: Vec<(ConnectionId, u16, u64)>,
    pub drained: usize,
    pub refused: usize,
    /// The largest unsent output seen when a send was refused.
    pub max_buffered: usize,
    /// The largest unsent output seen after an echo.
    pub max_echo_buffered: usize,
    /// `(messages sent, unsent bytes, result)` of the last flood.
    pub flood: Option<(usize, usize, SendResult)>,
}

#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<Log>>);

impl Shared {
    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.0.lock().unwrap()
    }

    /// The id whose printed form is `text` (as a client learns it from `whoami`).
    pub fn id(&self, text: &str) -> ConnectionId {
        *self.log().opened.iter().find(|id| id.to_string() == text).expect("an opened id")
    }

    pub fn close_code(&self, id: ConnectionId) -> Option<u16> {
        self.log().closed.iter().find(|(closed, ..)| *closed == id).map(|c| c.1)
    }
}

/// Echoes, and answers:
/// - `whoami`: the connection id;
/// - `panic`: panics;
/// - `shutdown`: shuts the server down from inside the handler;
/// - `flood SIZE`: sends SIZE-byte binaries until one is refused, records it in `flood`;
/// - `close CODE`: closes with CODE.
pub struct TestHandler {
    pub shared: Shared,
}

impl Handler for TestHandler {
    type State = u64;

    fn on_upgrade(&mut self, req: &Request<'_>) -> Upgrade<u64> {
        if req.path() == "/nope" {
            return Upgrade::Reject(404);
        }
        Upgrade::accept(0)
    }

    fn on_open(&mut self, conn: &mut Conn<'_>, _: &mut u64) {
        self.shared.log().opened.push(conn.id());
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, echoed: &mut u64, msg: Message<'_>) {
        match msg {
            Message::Text("whoami") => {
                let id = conn.id().to_string();
                assert_eq!(conn.send_text(&id), SendResult::Sent);
            }
            Message::Text("panic") => panic!("asked to panic"),
            Message::Text("shutdown") => {
                // On the loop's thread: starts the shutdown without waiting for itself.
                let report = conn.handle().shutdown(std::time::Duration::from_secs(5));
                assert_eq!(report, surge::ShutdownReport::default());
            }
            Message::Text(text) if text.starts_with("flood ") => {
                let size = text[6..].parse().unwrap();
                let payload = vec![7u8; size];
                let mut sent = 0;
                let result = loop {
                    match conn.send_binary(&payload) {
                        SendResult::Sent => sent += 1,
                        other => break other,
                    }
                };
                self.shared.log().flood = Some((sent, conn.buffered_amount(), result));
            }
            Message::Text(text) if text.starts_with("close ") => {
                conn.close(CloseCode::from(text[6..].parse::<u16>().unwrap()), "asked").unwrap();
            }
            _ => {
                if conn.send(msg) == SendResult::Sent {
                    *echoed += 1;
                }
                let mut log = self.shared.log();
                log.max_echo_buffered = log.max_echo_buffered.max(conn.buffered_amount());
            }
        }
    }

    fn on_drain(&mut self, conn: &mut Conn<'_>, _: &mut u64) {
        self.shared.log().drained += 1;
        let _ = conn.send_text("drained");
    }

    fn on_refused(&mut self, conn: &mut Conn<'_>, _: &mut u64, _: Message<'_>) {
        let mut log = self.shared.log();
        log.refused += 1;
        log.max_buffered = log.max_buffered.max(conn.buffered_amount());
    }

    fn on_close(&mut self, id: ConnectionId, echoed: u64, code: CloseCode, _: &str) {
        self.shared.log().closed.push((id, code.as_u16(), echoed));
    }
}

/// Starts a server with the test handler.
pub fn start(config: Config) -> (Server, Shared) {
    let shared = Shared::default();
    let for_loops = shared.clone();
    let server = Server::start(config, move |_| TestHandler { shared: for_loops.clone() })
        .expect("server starts");
    (server, shared)
}
