//! A broadcast chat: every text message goes to every connection, prefixed with its
//! sender's name (`ws://127.0.0.1:9002/?name=ada`).
//!
//! Each broadcast is encoded once and queued by reference on every connection; a reader
//! too slow to keep up is closed with 1008 rather than buffered without bound.
//!
//! ```text
//! cargo run --release -p surge --example chat -- 127.0.0.1:9002
//! ```

use surge::{
    CloseCode, Config, Conn, ConnectionId, Handler, Message, Request, Server, ServerHandle, Upgrade,
};

/// One per loop. The handle to the whole server is picked up from the first connection.
#[derive(Default)]
struct Chat {
    server: Option<ServerHandle>,
}

impl Chat {
    fn say(&self, line: &str) {
        if let Some(server) = &self.server {
            // Fails only once the server is stopping.
            let _ = server.broadcast_message(Message::Text(line));
        }
    }
}

impl Handler for Chat {
    /// The participant's name.
    type State = String;

    fn on_upgrade(&mut self, req: &Request<'_>) -> Upgrade<String> {
        // A page from another site must not ride on a visitor's cookies (CSWSH).
        if !req.origin_in(&["http://localhost:8000", "http://127.0.0.1:8000"]) {
            return Upgrade::Reject(403);
        }
        let name = req
            .query()
            .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("name=")))
            .filter(|name| !name.is_empty() && name.len() <= 32)
            .unwrap_or("anonymous");
        Upgrade::accept(name.to_owned())
    }

    fn on_open(&mut self, conn: &mut Conn<'_>, name: &mut String) {
        self.server.get_or_insert_with(|| conn.handle().clone());
        self.say(&format!("* {name} joined"));
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, name: &mut String, msg: Message<'_>) {
        match msg {
            Message::Text(text) => self.say(&format!("{name}: {text}")),
            Message::Binary(_) => {
                let _ = conn.close(CloseCode::UNSUPPORTED_DATA, "text only");
            }
        }
    }

    fn on_close(&mut self, _: ConnectionId, name: String, _: CloseCode, _: &str) {
        self.say(&format!("* {name} left"));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9002".into());
    let config = Config::builder().listen(addr.parse()?).build()?;
    let server = Server::start(config, |_loop| Chat::default())?;
    println!("chat on ws://{}/?name=you", server.local_addrs()[0]);
    server.join();
    Ok(())
}
