//! The HTTP baseline for Surge's built-in routes: hyper 1 (HTTP/1.1, keep-alive) answering
//! `GET /healthz` with `200 ok\n` as Surge does, 404 elsewhere. See `surge_peers`
//! (src/lib.rs) for the command line; measured by `wrk` in the `/healthz` figure.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use surge_peers::{serve, Args};
use tokio::net::TcpStream;

async fn route(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = if req.uri().path() == "/healthz" {
        Response::new(Full::new(Bytes::from_static(b"ok\n")))
    } else {
        let mut missing = Response::new(Full::new(Bytes::new()));
        *missing.status_mut() = StatusCode::NOT_FOUND;
        missing
    };
    response
        .headers_mut()
        .insert("content-type", "text/plain; charset=utf-8".parse().expect("a header value"));
    Ok(response)
}

async fn connection(stream: TcpStream) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = http1::Builder::new().serve_connection(io, service_fn(route)).await;
}

fn main() {
    let args = Args::parse("hyper-health");
    serve(&args, connection)
}
