//! Echo server written against tokio-tungstenite's API: `accept_async`, then a `next()` /
//! `send()` loop writing text and binary messages back. Tungstenite answers pings and echoes
//! the close itself (queued, flushed by the next `next()` or `send()`). See `surge_peers`
//! (src/lib.rs) for the command line.

use futures_util::{SinkExt, StreamExt};
use surge_peers::{serve, Args};
use tokio::net::TcpStream;

async fn connection(stream: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_text() || msg.is_binary() {
            if ws.send(msg).await.is_err() {
                return;
            }
        } else if msg.is_close() {
            break;
        }
    }
    // Flushes the close reply tungstenite queued.
    let _ = ws.close(None).await;
}

fn main() {
    let args = Args::parse("tungstenite-echo");
    serve(&args, connection)
}
