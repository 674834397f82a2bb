//! Echo server written against fastwebsockets' API (0.10, `upgrade` feature, hyper 1), as in
//! its `examples/echo_server.rs`: hyper serves the HTTP/1.1 upgrade, the WebSocket is wrapped
//! in a `FragmentCollector` (whole messages), text and binary messages are written back, pings
//! answered and closes echoed by the library (`set_auto_pong(true)`, `set_auto_close(true)`).
//! See `surge_peers` (src/lib.rs) for the command line.

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use surge_peers::{serve, Args};
use tokio::net::TcpStream;

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn upgrade(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        // As the library's example does: no cooperative-scheduling budget on the echo loop.
        let _ = tokio::task::unconstrained(echo(fut)).await;
    });
    Ok(response)
}

async fn connection(stream: TcpStream) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = http1::Builder::new().serve_connection(io, service_fn(upgrade)).with_upgrades().await;
}

fn main() {
    let args = Args::parse("fws-echo");
    serve(&args, connection)
}
