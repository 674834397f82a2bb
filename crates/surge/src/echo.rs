//! The echo server: every message goes back to its sender.

use surge_proto::close::CloseCode;
use surge_proto::message::Message;

use crate::conn::{Conn, SendResult};
use crate::handler::{Handler, Upgrade};
use crate::request::Request;

/// Sends every message back as it came (text as text, binary as binary), accepting every
/// handshake. Reading pauses while a connection's output is at the backpressure limit, so
/// an echo is always accepted; should one ever be refused, the connection is closed with
/// 1008 rather than the message dropped.
///
/// ```no_run
/// use surge::{echo::EchoHandler, Config, Server};
///
/// let config = Config::builder().listen("127.0.0.1:0".parse().unwrap()).build()?;
/// let server = Server::start(config, |_| EchoHandler)?;
/// println!("echo on {}", server.local_addrs()[0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoHandler;

impl Handler for EchoHandler {
    type State = ();

    fn on_upgrade(&mut self, _request: &Request<'_>) -> Upgrade<()> {
        Upgrade::accept(())
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, _: &mut (), msg: Message<'_>) {
        if conn.send(msg) == SendResult::Backpressure {
            let _ = conn.close(CloseCode::POLICY_VIOLATION, "backpressure");
        }
    }
}
