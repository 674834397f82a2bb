//! wss: the engine's TLS transport against a rustls client over loopback. Echo (text,
//! binary, 1 MiB, close with `close_notify`), records split across receives, ALPN, SNI,
//! resumption by ticket and by session id, certificate reload, the handshake timeout, and
//! hostile TLS input (garbage, plaintext HTTP, a record too long, a truncated record, a
//! key-update flood), each beside a witness connection that must keep echoing.
//!
//! The servers run on the backend `SURGE_TEST_BACKEND` names (tests/run.sh runs this suite
//! on epoll, then on io_uring); the io_uring fault test (a receive ring far too small for
//! the demand) chooses its backend itself.
//!
//! Certificates are made here by rcgen (a CA and leaves signed by it) into a temporary
//! directory; none is committed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::{Resumption, Tls12Resumption};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};
use surge::echo::EchoHandler;
use surge::tls::{TlsConfig, TlsError};
use surge::{Backend, Config, ConfigBuilder, Server};

#[path = "support/backend.rs"]
mod under_test;

const WAIT: Duration = Duration::from_secs(5);

/// A test CA and a directory of leaf certificates it signed.
struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("surge-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "surge test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        Pki { dir, ca, ca_key }
    }

    /// A leaf for `names`, written as `FILE.pem` and `FILE.key`; returns the two paths and
    /// the leaf's DER.
    fn leaf(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.ca, &self.ca_key)
            .unwrap();
        let (cert_path, key_path) =
            (self.dir.join(format!("{file}.pem")), self.dir.join(format!("{file}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path, cert.der().to_vec())
    }

    fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One loop serving `tls` on the backend under test.
fn config(tls: TlsConfig) -> ConfigBuilder {
    Config::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .threads(1)
        .backend(under_test::backend())
        .tls(tls)
}

fn start(tls: TlsConfig, handshake_timeout: Duration) -> (Server, SocketAddr) {
    let config = config(tls).handshake_timeout(handshake_timeout).build().unwrap();
    let server = Server::start(config, |_| EchoHandler).unwrap();
    let addr = server.local_addrs()[0];
    (server, addr)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A wss client: TLS to `addr` as `name`, then the opening handshake.
fn connect(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let conn =
        ClientConnection::new(Arc::clone(config), ServerName::try_from(name.to_owned()).unwrap())
            .unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {name}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{}", String::from_utf8_lossy(&head));
    tls
}

/// Writes one masked client frame.
fn send(tls: &mut impl Write, opcode: u8, payload: &[u8]) {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tls.write_all(&frame).unwrap();
}

/// Reads one server frame: its opcode and payload.
fn recv(tls: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut head = [0; 2];
    tls.read_exact(&mut head)?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut len = [0; 2];
            tls.read_exact(&mut len)?;
            u64::from(u16::from_be_bytes(len))
        }
        127 => {
            let mut len = [0; 8];
            tls.read_exact(&mut len)?;
            u64::from_be_bytes(len)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    tls.read_exact(&mut payload)?;
    Ok((head[0] & 0x0f, payload))
}

fn assert_echoes(tls: &mut Tls, opcode: u8, payload: &[u8]) {
    send(tls, opcode, payload);
    let (got_opcode, got) = recv(tls).unwrap();
    assert_eq!((got_opcode, got.len()), (opcode, payload.len()));
    assert!(got == payload, "the echo differs");
}

/// The end-entity certificate the server presented.
fn served(tls: &Tls) -> Vec<u8> {
    tls.conn.peer_certificates().unwrap()[0].as_ref().to_vec()
}

#[test]
fn echoes_text_binary_and_a_mebibyte_then_closes_with_close_notify() {
    let pki = Pki::new("echo");
    let (cert, key, _) = pki.leaf("leaf", &["localhost"]);
    let (server, addr) = start(TlsConfig::new(cert, key), WAIT);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client = Arc::new(pki.client(&[version]));
        let mut tls = connect(addr, &client, "localhost");
        assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(tls.conn.protocol_version(), Some(version.version));
        assert_echoes(&mut tls, 1, "hello wss ✓".as_bytes());
        assert_echoes(&mut tls, 2, &[0, 1, 0xfe, 0xff]);
        let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 31 + 7) as u8).collect();
        assert_echoes(&mut tls, 2, &big);
        send(&mut tls, 8, &1000u16.to_be_bytes());
        let (opcode, payload) = recv(&mut tls).unwrap();
        assert_eq!((opcode, &payload[..2]), (8, &1000u16.to_be_bytes()[..]));
        // The server ends TLS cleanly: close_notify, which reads as the end of the stream
        // (without it rustls reports an unexpected EOF).
        let mut rest = Vec::new();
        assert_eq!(tls.read_to_end(&mut rest).unwrap(), 0);
    }
    server.shutdown(WAIT);
}

/// The server's Close is the last thing it sends, so its `close_notify` goes in the same
/// write: the client's first read after its own Close holds both records, the Close first,
/// and then only the end of the stream comes. TLS 1.3 and 1.2.
#[test]
fn the_servers_close_and_close_notify_come_in_one_read_in_that_order() {
    let pki = Pki::new("close-notify");
    let (cert, key, _) = pki.leaf("leaf", &["localhost"]);
    let (server, addr) = start(TlsConfig::new(cert, key), WAIT);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client = Arc::new(pki.client(&[version]));
        let mut tls = connect(addr, &client, "localhost");
        assert_echoes(&mut tls, 1, b"one echo first");
        send(&mut tls, 8, &1000u16.to_be_bytes());
        tls.flush().unwrap();
        // Raw ciphertext from here on, read past rustls.
        let mut first = vec![0; 1 << 16];
        let n = tls.sock.read(&mut first).unwrap();
        first.truncate(n);
        let mut records = 0;
        let mut at = 0;
        while at + 5 <= first.len() {
            at += 5 + usize::from(u16::from_be_bytes([first[at + 3], first[at + 4]]));
            records += 1;
        }
        assert_eq!((records, at), (2, first.len()), "one read: the Close's record and the alert");
        let mut rest = Vec::new();
        tls.sock.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{} bytes after close_notify", rest.len());

        tls.conn.read_tls(&mut &first[..]).unwrap();
        let state = tls.conn.process_new_packets().unwrap();
        assert!(state.peer_has_closed(), "close_notify came ({version:?})");
        let mut plaintext = vec![0; state.plaintext_bytes_to_read()];
        tls.conn.reader().read_exact(&mut plaintext).unwrap();
        assert_eq!(plaintext, [0x88, 0x02, 0x03, 0xe8], "the Close, before the alert");
    }
    server.shutdown(WAIT);
}

/// Two messages larger than the read buffer, sent back to back: the second must not wait for
/// an event that never comes (records or plaintext held in rustls).
#[test]
fn pipelined_messages_larger_than_the_read_buffer_are_all_echoed() {
    let pki = Pki::new("pipelined");
    let (cert, key, _) = pki.leaf("leaf", &["localhost"]);
    let (server, addr) = start(TlsConfig::new(cert, key), WAIT);
    let client = Arc::new(pki.client(&[&rustls::version::TLS13]));
    let mut tls = connect(addr, &client, "localhost");
    for size in [70_000, 140_000, 300_000] {
        let payload: Vec<u8> = (0..size).map(|i: u32| (i % 251) as u8).collect();
        for _ in 0..3 {
            send(&mut tls, 2, &payload);
        }
        for _ in 0..3 {
            let (opcode, got) = recv(&mut tls).unwrap();
            assert_eq!((opcode, got.len()), (2, payload.len()));
        }
    }
    server.shutdown(WAIT);
}

/// An echo larger than the sockets between hold, read only after a pause: the server's
/// socket fills, and the rest must go out as it drains, with no input to prompt it (on
/// io_uring: the poll for writability; on epoll: WRITABLE interest).
#[test]
fn a_reply_larger_than_the_socket_takes_goes_out_as_it_drains() {
    let pki = Pki::new("drains");
    let (cert, key, _) = pki.leaf("leaf", &["localhost"]);
    let (server, addr) = start(TlsConfig::new(cert, key), WAIT);
    let client = Arc::new(pki.client(&[&rustls::version::TLS13]));
    let mut tls = connect(addr, &client, "localhost");
    let payload: Vec<u8> = (0..12 << 20).map(|i: u32| (i % 253) as u8).collect();
    send(&mut tls, 2, &payload);
    std::thread::sleep(Duration::from_millis(300));
    let (opcode, got) = recv(&mut tls).unwrap();
    assert_eq!((opcode, got.len()), (2, payload.len()));
    assert!(got == payload, "the echo differs");
    assert_echoes(&mut tls, 1, b"and the connection goes on");
    server.shutdown(WAIT);
}

#[test]
fn sni_picks_the_certificate_and_unknown_names_get_the_default() {
    let pki = Pki::new("sni");
    let (cert, key, default_der) = pki.leaf("default", &["localhost", "other.test"]);
    let (api_cert, api_key, api_der) = pki.leaf("api", &["api.test"]);
    let (server, addr) = start(TlsConfig::new(cert, key).sni("API.test", api_cert, api_key), WAIT);
    let client = Arc::new(pki.client(&[&rustls::version::TLS13]));
    assert_eq!(served(&connect(addr, &client, "api.test")), api_der);
    assert_eq!(served(&connect(addr, &client, "localhost")), default_der);
    assert_eq!(served(&connect(addr, &client, "other.test")), default_der);
    server.shutdown(WAIT);
}

#[test]
fn sessions_resume_by_ticket_and_by_session_id() {
    let pki = Pki::new("resume");
    let (cert, key, _) = pki.leaf("leaf", &["localhost"]);
    let (server, addr) = start(TlsConfig::new(cert, key), WAIT);
    let tls13 = pki.client(&[&rustls::version::TLS13]);
    let mut tls12_ids = pki.client(&[&rustls::version::TLS12]);
    tls12_ids.resumption =
        Resumption::in_memory_sessions(8).tls12_resumption(Tls12Resumption::SessionIdOnly);
    let tls12_tickets = pki.client(&[&rustls::version::TLS12]);
    for client in [tls13, tls12_ids, tls12_tickets] {
        let client = Arc::new(client);
        let mut first = connect(addr, &client, "localhost");
        assert_eq!(first.conn.handshake_kind(), Some(HandshakeKind::Full));
        // TLS 1.3 tickets come after the handshake: an echo makes sure they arrived.
        assert_echoes(&mut first, 1, b"first");
        let mut second = connect(addr, &client, "localhost");
        assert_eq!(second.conn.handshake_kind(), Some(HandshakeKind::Resumed));
        assert_echoes(&mut second, 1, b"resumed");
    }
    server.shutdown(WAIT);
}

/// Waits until the server's metrics hold every one of `lines`; panics with the text past
/// [`WAIT`].
fn await_metrics(server: &Server, lines: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = server.handle().metrics_text();
        if lines.iter().all(|line| text.contains(line)) {
            return;
        }
        assert!(Instant::now() < deadline, "not all of {lines:?} in\n{text}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn handshakes_are_counted_by_kind_and_failures_by_reason() {
    let pki = Pki::new("counted");
    let (cert, key, _) = pki.leaf("leaf", &["localhost"]);
    let (server, addr) = start(TlsConfig::new(cert, key), WAIT);
    let client = Arc::new(pki.client(&[&rustls::version::TLS13]));
    let mut first = connect(addr, &client, "localhost");
    // The session ticket comes after the handshake: an echo makes sure it arrived.
    assert_echoes(&mut first, 1, b"first");
    let mut second = connect(addr, &client, "localhost");
    assert_eq!(second.conn.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_echoes(&mut second, 1, b"second");
    // Garbage instead of a ClientHello, then a connection closed before saying anything.
    let (answer, _) = attack(addr, &[0x42; 64], false, WAIT);
    assert!(alert_of(&answer).is_some(), "{answer:?}");
    drop(TcpStream::connect(addr).unwrap());
    await_metrics(
        &server,
        &[
            "surge_tls_handshakes_total{loop=\"0\",kind=\"full\"} 1\n",
            "surge_tls_handshakes_total{loop=\"0\",kind=\"resumed\"} 1\n",
            "surge_tls_handshakes_failed_total{loop=\"0\",reason=\"malformed\"} 1\n",
            "surge_tls_handshakes_failed_total{loop=\"0\",reason=\"abandoned\"} 1\n",
            "surge_tls_handshakes_failed_total{loop=\"0\",reason=\"alert_received\"} 0\n",
        ],
    );
    server.shutdown(WAIT);
}

#[test]
fn reload_serves_new_chains_to_new_handshakes_and_refuses_a_bad_file() {
    let pki = Pki::new("reload");
    let (cert, key, old_der) = pki.leaf("leaf", &["localhost"]);
    let (server, addr) = start(TlsConfig::new(&cert, &key), WAIT);
    let client = Arc::new(pki.client(&[&rustls::version::TLS13]));
    let mut open = connect(addr, &client, "localhost");
    assert_eq!(served(&open), old_der);

    // New files under the same names.
    let (new_cert, new_key, new_der) = pki.leaf("next", &["localhost"]);
    std::fs::rename(&new_cert, &cert).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    server.handle().reload_tls().unwrap();
    // A resumed session keeps the identity it was made with: a new client, a full handshake.
    let fresh = || Arc::new(pki.client(&[&rustls::version::TLS13]));
    assert_eq!(served(&connect(addr, &fresh(), "localhost")), new_der);
    assert_echoes(&mut open, 1, b"the open connection is untouched");

    // A broken key: refused, naming the file; the chain served stays.
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
        .unwrap();
    let error = server.handle().reload_tls().unwrap_err();
    assert!(matches!(&error, TlsError::Pem { path } if *path == key), "{error:?}");
    std::fs::remove_file(&cert).unwrap();
    let error = server.handle().reload_tls().unwrap_err();
    assert!(matches!(&error, TlsError::Read { path, .. } if *path == cert), "{error:?}");
    assert_eq!(served(&connect(addr, &fresh(), "localhost")), new_der);
    server.shutdown(WAIT);
}

#[test]
fn a_bad_key_is_refused_when_the_config_is_built() {
    let pki = Pki::new("bad");
    let (cert, _, _) = pki.leaf("leaf", &["localhost"]);
    let (_, other_key, _) = pki.leaf("other", &["localhost"]);
    let built = Config::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .tls(TlsConfig::new(&cert, &other_key))
        .build();
    let error = built.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the key in {} does not match the certificate in {}",
            other_key.display(),
            cert.display()
        )
    );
}

#[test]
fn tls_is_served_on_either_backend_and_auto_prefers_io_uring() {
    let pki = Pki::new("backend");
    let (cert, key, _) = pki.leaf("leaf", &["localhost"]);
    let client = Arc::new(pki.client(&[&rustls::version::TLS13]));
    let config = |backend| config(TlsConfig::new(&cert, &key)).backend(backend).build().unwrap();
    // `None` on a system that refuses io_uring; the fall-back itself is tested in `engine`.
    let uring =
        under_test::start_unless_io_uring_refused(config(Backend::IoUring), |_| EchoHandler);
    let auto = Server::start(config(Backend::Auto), |_| EchoHandler).unwrap();
    let expected = if uring.is_some() { Backend::IoUring } else { Backend::Epoll };
    assert_eq!(auto.backend(), expected);
    let epoll = Server::start(config(Backend::Epoll), |_| EchoHandler).unwrap();
    for server in [Some(&auto), Some(&epoll), uring.as_ref()].into_iter().flatten() {
        let mut tls = connect(server.local_addrs()[0], &client, "localhost");
        assert_echoes(&mut tls, 1, format!("on {:?}", server.backend()).as_bytes());
    }
    for server in [Some(auto), Some(epoll), uring].into_iter().flatten() {
        server.shutdown(WAIT);
    }
}

/// A message's records written in pieces with pauses between (each its own receive, or its
/// own readiness edge): the pieces of a record wait for the rest, and the message comes back
/// whole, also when a piece ends inside a record's header.
#[test]
fn records_split_across_receives_wait_for_their_rest_and_echo_whole() {
    let pki = Pki::new("split");
    let (cert, key, _) = pki.leaf("leaf", &["localhost"]);
    let (server, addr) = start(TlsConfig::new(cert, key), WAIT);
    let client = Arc::new(pki.client(&[&rustls::version::TLS13]));
    let mut tls = connect(addr, &client, "localhost");
    tls.sock.set_nodelay(true).unwrap();
    for size in [5, 1000, 40_000] {
        let payload: Vec<u8> = (0..size).map(|i: u32| (i * 13 % 251) as u8).collect();
        send(&mut tls.conn.writer(), 2, &payload);
        let mut records = Vec::new();
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut records).unwrap();
        }
        // 1 byte (inside the first header), 3 more (still inside it), then odd-sized pieces.
        let mut at = 0;
        for piece in [1, 3, 7, 500, 4093, 16_411].iter().cycle() {
            let end = (at + piece).min(records.len());
            tls.sock.write_all(&records[at..end]).unwrap();
            at = end;
            if at == records.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(15));
        }
        let (opcode, got) = recv(&mut tls).unwrap();
        assert_eq!((opcode, got.len()), (2, payload.len()));
        assert!(got == payload, "the echo of {size} B differs");
    }
    server.shutdown(WAIT);
}

/// The io_uring backend's receive ring, far too small for what many wss connections send at
/// once (4 buffers of 64 bytes: every record comes in dozens of pieces, and receives find the
/// ring empty): nothing lost, nothing out of order, every connection served to its end.
/// Skipped where the system refuses io_uring.
#[test]
fn a_buffer_ring_far_smaller_than_the_demand_loses_nothing_over_tls_on_io_uring() {
    let pki = Pki::new("tiny-ring");
    let (cert, key, _) = pki.leaf("leaf", &["localhost"]);
    let config = config(TlsConfig::new(cert, key))
        .backend(Backend::IoUring)
        .io_uring_buffers(4, 64)
        .build()
        .unwrap();
    let Some(server) = under_test::start_unless_io_uring_refused(config, |_| EchoHandler) else {
        return;
    };
    let addr = server.local_addrs()[0];
    let client = Arc::new(pki.client(&[&rustls::version::TLS13]));
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || {
                let mut tls = connect(addr, &client, "localhost");
                for round in 0..4 {
                    let batch: Vec<Vec<u8>> = (0..40)
                        .map(|i| format!("{c}/{round}/{i} ").repeat((i * 37 + c) % 90 + 1).into())
                        .collect();
                    for text in &batch {
                        send(&mut tls, 1, text);
                    }
                    for text in &batch {
                        let (opcode, got) = recv(&mut tls).unwrap();
                        assert_eq!((opcode, &got), (1, text));
                    }
                }
                let big: Vec<u8> = (0..200_000).map(|i: u32| (i * 7 + c as u32) as u8).collect();
                assert_echoes(&mut tls, 2, &big);
                send(&mut tls, 8, &1000u16.to_be_bytes());
                let (opcode, _) = recv(&mut tls).unwrap();
                assert_eq!(opcode, 8);
                let mut rest = Vec::new();
                assert_eq!(tls.read_to_end(&mut rest).unwrap(), 0, "close_notify, then the end");
            })
        })
        .collect();
    for client in clients {
        client.join().expect("every client got every echo");
    }
    under_test::assert_the_ring_ran_dry(&server);
    server.shutdown(WAIT);
}

// ---- hostile input ------------------------------------------------------------------------

/// Sends `bytes` on a raw socket to the TLS port and returns what the server answered before
/// it closed, and how long closing took; panics past `bound`.
fn attack(
    addr: SocketAddr,
    bytes: &[u8],
    then_close: bool,
    bound: Duration,
) -> (Vec<u8>, Duration) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(bound)).unwrap();
    let started = Instant::now();
    tcp.write_all(bytes).unwrap();
    if then_close {
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut answer = Vec::new();
    match tcp.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close within {bound:?}: {e}"),
    }
    (answer, started.elapsed())
}

/// A TLS alert record (plaintext, before keys): type 21, then level and description.
fn alert_of(answer: &[u8]) -> Option<u8> {
    (answer.len() >= 7 && answer[0] == 21).then(|| answer[6])
}

/// A ClientHello from a real client, as the first flight on the wire.
fn client_hello(pki: &Pki) -> Vec<u8> {
    let config = Arc::new(pki.client(&[&rustls::version::TLS13]));
    let mut conn =
        ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

#[test]
fn hostile_tls_input_ends_that_connection_and_the_witness_keeps_echoing() {
    let pki = Pki::new("hostile");
    let (cert, key, _) = pki.leaf("leaf", &["localhost"]);
    let (server, addr) = start(TlsConfig::new(cert, key), Duration::from_millis(600));
    let client = Arc::new(pki.client(&[&rustls::version::TLS13]));
    let mut witness = connect(addr, &client, "localhost");
    let bound = Duration::from_secs(3);
    const DECODE_ERROR: u8 = 50;
    const RECORD_OVERFLOW: u8 = 22;
    const PROTOCOL_VERSION: u8 = 70;

    // Garbage instead of a ClientHello.
    let (answer, _) = attack(addr, &[0x42; 64], false, bound);
    assert!(alert_of(&answer).is_some(), "an alert for garbage, got {answer:?}");
    assert_echoes(&mut witness, 1, b"after garbage");

    // Plaintext HTTP to the TLS port.
    let http = b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n";
    let (answer, _) = attack(addr, http, false, bound);
    assert!(
        matches!(alert_of(&answer), Some(DECODE_ERROR | PROTOCOL_VERSION)),
        "an alert for HTTP, got {answer:?}"
    );
    assert_echoes(&mut witness, 1, b"after plaintext http");

    // A handshake record declaring more than 2^14 + 2048 bytes.
    let (answer, _) = attack(addr, &[22, 3, 1, 0xff, 0xff, 1, 0, 0], false, bound);
    assert!(
        matches!(alert_of(&answer), Some(RECORD_OVERFLOW | DECODE_ERROR)),
        "an alert for a record too long, got {answer:?}"
    );
    assert_echoes(&mut witness, 1, b"after a record too long");

    // A truncated record: half a ClientHello, then the end of the stream.
    let hello = client_hello(&pki);
    let (answer, _) = attack(addr, &hello[..hello.len() / 2], true, bound);
    assert!(answer.is_empty() || alert_of(&answer).is_some(), "{answer:?}");
    assert_echoes(&mut witness, 1, b"after a truncated record");

    // A ClientHello, then silence: cut at the handshake timeout (600 ms).
    let (_, took) = attack(addr, &hello, false, bound);
    assert!(took >= Duration::from_millis(500), "closed after {took:?}, before the timeout");
    // Half a ClientHello, one byte at a time, never finished: the same timeout, whatever
    // it sends.
    let mut tcp = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    let mut cut = false;
    for byte in &hello[..hello.len() - 1] {
        if tcp.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        if started.elapsed() > bound {
            break;
        }
    }
    let took = started.elapsed();
    assert!(cut && took < bound, "a trickled ClientHello was not cut (after {took:?})");
    assert_echoes(&mut witness, 1, b"after silence");

    // A flood of key updates (each asking for ours in return) on an open connection:
    // rustls cuts a peer past its allowance of updates without data between them.
    let mut flooder = connect(addr, &client, "localhost");
    let mut cut = false;
    for _ in 0..5000 {
        flooder.conn.refresh_traffic_keys().unwrap();
        while flooder.conn.wants_write() && !cut {
            cut = flooder.conn.write_tls(&mut flooder.sock).is_err();
        }
    }
    assert_echoes(&mut witness, 1, b"during a key-update flood");
    if !cut {
        // The server's alert (an error here) or its end of stream, not a read timeout.
        let mut rest = Vec::new();
        cut = match flooder.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
        };
    }
    assert!(cut, "the key-update flooder is still served");
    assert_echoes(&mut witness, 1, b"after a key-update flood");
    server.shutdown(WAIT);
}
