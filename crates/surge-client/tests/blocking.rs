//! The blocking client against a small echo server on surge-proto's server side.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use surge_client::blocking::{Client, ConnectError, Received};
use surge_client::Keys;
use surge_proto::close::CloseCode;
use surge_proto::connection::{Connection, Event, Limits};
use surge_proto::handshake::{
    write_rejection, ClientHandshakeError, ClientRequest, HandshakeLimits, ServerHandshake,
    EMPTY_HEADER,
};

const PATIENCE: Duration = Duration::from_secs(20);

/// Accepts one connection: `/no` gets a 403; anything else is echoed until the client closes.
fn server() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let (mut buf, mut chunk, mut out) = (Vec::new(), vec![0u8; 65536], Vec::new());
        let mut hs = ServerHandshake::new(HandshakeLimits::default());
        let head_len = loop {
            let Ok(n @ 1..) = s.read(&mut chunk) else { return };
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [EMPTY_HEADER; 32];
            match hs.parse(&buf, &mut headers).unwrap() {
                None => {}
                Some(req) if req.path() == "/no" => {
                    write_rejection(403, &[], &mut out).unwrap();
                    let _ = s.write_all(&out);
                    return;
                }
                Some(req) => {
                    req.accept(None, &[], &mut out).unwrap();
                    break req.head_len();
                }
            }
        };
        let mut conn = Connection::server(Limits::default());
        let (mut assembly, mut input) = (Vec::new(), buf.split_off(head_len));
        loop {
            let mut used = 0;
            while used < input.len() {
                let (n, event) = conn.read(&mut input[used..], &mut assembly);
                used += n;
                match event {
                    Some(Event::Message(m)) if conn.can_send() => conn.send(m, &mut out).unwrap(),
                    Some(_) => conn.poll_transmit(&mut out),
                    None => break,
                }
            }
            s.write_all(&out).unwrap();
            out.clear();
            if conn.is_closed() {
                return; // ends TCP: the server closes first
            }
            let Ok(n @ 1..) = s.read(&mut chunk) else { return };
            input = chunk[..n].to_vec();
        }
    });
    addr
}

fn keys() -> Keys {
    Keys { nonce: *b"0123456789abcdef", mask_seed: 42 }
}

#[test]
fn echoes_and_closes() {
    let addr = server();
    let host = addr.to_string();
    let mut c = Client::connect(addr, &ClientRequest::new(&host, "/"), keys(), PATIENCE).unwrap();
    c.send(surge_proto::message::Message::Text("héllo")).unwrap();
    assert_eq!(c.recv_within(PATIENCE).unwrap(), Some(Received::Text("héllo".into())));
    c.close(CloseCode::NORMAL, "bye").unwrap();
    assert!(matches!(c.recv_within(PATIENCE).unwrap(), Some(Received::Close(Some(1000), _))));
    assert!(c.wait_eof(PATIENCE).unwrap());
    assert!(c.connection().is_closed());
}

#[test]
fn a_refusal_carries_the_status() {
    let addr = server();
    let host = addr.to_string();
    match Client::connect(addr, &ClientRequest::new(&host, "/no"), keys(), PATIENCE) {
        Err(ConnectError::Handshake(ClientHandshakeError::UnexpectedStatus(403))) => {}
        other => panic!("{other:?}"),
    }
}
