//! Room server written the way tokio users write one: tokio-tungstenite for the protocol,
//! one `tokio::sync::broadcast` channel per room (the request path), every message sent to
//! the room, the sender included (what `surge broadcast` does). Each connection is a task
//! that reads and publishes, and forwards what the room's receiver yields; a receiver that
//! falls more than the channel's capacity behind skips (`Lagged`), like Surge's skip policy.
//! See `surge_peers` (src/lib.rs) for the command line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::{SinkExt, StreamExt};
use surge_peers::{serve, Args};
use tokio::net::TcpStream;
use tokio::sync::broadcast::{self, error::RecvError, Sender};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// Messages a room buffers for its slowest member.
const CAPACITY: usize = 4096;

fn room(path: &str) -> Sender<Message> {
    static ROOMS: OnceLock<Mutex<HashMap<String, Sender<Message>>>> = OnceLock::new();
    let mut rooms = ROOMS.get_or_init(Default::default).lock().unwrap();
    rooms.entry(path.to_owned()).or_insert_with(|| broadcast::channel(CAPACITY).0).clone()
}

async fn connection(stream: TcpStream) {
    let path = Arc::new(Mutex::new(String::new()));
    let seen = Arc::clone(&path);
    // The error type is tungstenite's `Callback` contract (an HTTP response), not ours to box.
    #[allow(clippy::result_large_err)]
    let callback = move |request: &Request, response: Response| {
        *seen.lock().unwrap() = request.uri().path().to_owned();
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
    let room = room(&path.lock().unwrap());
    let mut inbox = room.subscribe();
    let (mut sink, mut source) = ws.split();
    loop {
        tokio::select! {
            incoming = source.next() => match incoming {
                Some(Ok(msg)) if msg.is_text() || msg.is_binary() => {
                    let _ = room.send(msg);
                }
                Some(Ok(msg)) if msg.is_close() => break,
                Some(Ok(_)) => {}
                _ => break,
            },
            outgoing = inbox.recv() => match outgoing {
                Ok(msg) => {
                    if sink.send(msg).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
        }
    }
    let _ = sink.close().await;
}

fn main() {
    let args = Args::parse("tungstenite-room");
    serve(&args, connection)
}
