//! The room server: every message received on path P goes to every connection on path P,
//! the sender included (a chat room per path), through the engine's topics, so that in a
//! [cluster](crate::ConfigBuilder::cluster) the room spans every node.

use std::sync::Arc;

use surge_proto::message::Message;

use crate::conn::Conn;
use crate::handler::{Handler, Upgrade};
use crate::request::Request;

/// A room per request path: each connection subscribes to the topic named by its path and
/// publishes every message it receives there, itself included. A member over its
/// backpressure limit misses messages (counted in
/// [`TopicStats::skipped`](crate::TopicStats)) or is closed with 1008, as configured.
///
/// ```no_run
/// use surge::{broadcast::RoomHandler, Config, Server};
///
/// let config = Config::builder().listen("127.0.0.1:0".parse().unwrap()).build()?;
/// let server = Server::start(config, |_| RoomHandler)?;
/// println!("rooms on ws://{}/ROOM", server.local_addrs()[0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RoomHandler;

impl Handler for RoomHandler {
    /// The room: the request's path.
    type State = Arc<str>;

    fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<Arc<str>> {
        Upgrade::accept(Arc::from(request.path()))
    }

    fn on_open(&mut self, conn: &mut Conn<'_>, room: &mut Arc<str>) {
        conn.subscribe(room);
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, room: &mut Arc<str>, msg: Message<'_>) {
        conn.publish(room, msg);
    }
}
