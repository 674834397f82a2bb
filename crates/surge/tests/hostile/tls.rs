//! Hostile TLS input against `surge echo --tls-*` (hostile-inputs.md, "TLS"), held to a
//! memory budget: each attack is repeated, one connection after another, so that what one
//! failed connection left behind (its rustls state, a record buffer, its socket) would add
//! up past the budget; stalled ClientHellos are held open at once, and each may cost only so
//! much. A wss witness keeps echoing through all of it and the descriptors come back.
//! (`tests/tls.rs` checks each attack's answer in detail; this is about what they cost.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::case::{Case, Channel, Witness};
use crate::server::Surge;
use crate::wire::{frame, read_to_eof, tcp, Request, FIN, TEXT, WAIT};

/// Rounds of every attack, one connection after another.
const ROUNDS: usize = 100;

/// What all the rounds together may add to the server's memory peak (about 100 KiB was
/// measured): one KiB kept per failed connection (a record buffer not given back, a stream
/// not dropped) is 500 KiB over the 500 connections, a page each 2 MiB.
const ROUNDS_BUDGET: u64 = 512 << 10;

/// Stalled ClientHellos held open at once (half of them then end their stream, half stay
/// silent), and what each may add to the memory peak: the pooled buffer that holds the half
/// record, rustls' state before a ClientHello is whole, and the connection record (about
/// 6 KiB was measured).
const STALLED: usize = 200;
const PER_STALLED: u64 = 12 << 10;

/// The alert record's content type (RFC 8446 5.1).
const ALERT: u8 = 21;

/// A self-signed certificate for `localhost` in files of a directory of its own, and a
/// client configuration that trusts it.
struct Pki {
    dir: PathBuf,
    client: Arc<ClientConfig>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a cert");
        let dir =
            std::env::temp_dir().join(format!("surge-hostile-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the certificate");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write the certificate");
        std::fs::write(dir.join("key.pem"), key_pair.serialize_pem()).expect("write the key");
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).expect("trust the certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Pki { dir, client: Arc::new(client) }
    }

    /// `surge echo` serving the certificate, with `flags` besides.
    fn serve(&self, flags: &[(&str, &str)]) -> Surge {
        let file = |name: &str| self.dir.join(name).to_str().expect("a UTF-8 path").to_owned();
        let (cert, key) = (file("cert.pem"), file("key.pem"));
        let mut all = vec![("--tls-cert", cert.as_str()), ("--tls-key", key.as_str())];
        all.extend_from_slice(flags);
        // On the backend under test (SURGE_TEST_BACKEND), as every server of the suite.
        Surge::with(&all)
    }

    /// A wss connection through the TLS handshake and the upgrade.
    fn connect(&self, addr: SocketAddr) -> StreamOwned<ClientConnection, TcpStream> {
        let name = ServerName::try_from("localhost").expect("a server name");
        let conn = ClientConnection::new(Arc::clone(&self.client), name).expect("a client");
        let mut wss = StreamOwned::new(conn, tcp(addr));
        wss.write_all(&Request::valid(addr).bytes()).expect("send the upgrade");
        let mut head = Vec::new();
        let mut byte = [0];
        while !head.ends_with(b"\r\n\r\n") {
            wss.read_exact(&mut byte).expect("the upgrade's answer");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101 "), "{}", String::from_utf8_lossy(&head));
        wss
    }

    /// The first flight of a real client: its ClientHello record.
    fn client_hello(&self) -> Vec<u8> {
        let name = ServerName::try_from("localhost").expect("a server name");
        let mut conn = ClientConnection::new(Arc::clone(&self.client), name).expect("a client");
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).expect("a ClientHello");
        hello
    }

    /// A server (with `flags` besides the certificate's) and a wss witness.
    fn case(&self, flags: &[(&str, &str)]) -> Case {
        let server = self.serve(flags);
        let witness = Witness::over(Box::new(Wss(self.connect(server.addr))));
        Case::watched_by(server, witness)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A wss witness's connection: masked text frames out, short text frames back.
struct Wss(StreamOwned<ClientConnection, TcpStream>);

impl Channel for Wss {
    fn send_text(&mut self, text: &str) {
        self.0.write_all(&frame(FIN | TEXT, text.as_bytes())).expect("the witness sends");
    }

    fn recv_text(&mut self) -> String {
        let mut head = [0; 2];
        self.0.read_exact(&mut head).expect("a frame for the witness");
        assert_eq!(head[0], FIN | TEXT, "the witness's frame");
        assert!(head[1] < 126, "an unmasked short frame, got length byte {}", head[1]);
        let mut payload = vec![0; usize::from(head[1])];
        self.0.read_exact(&mut payload).expect("the witness's payload");
        String::from_utf8(payload).expect("text")
    }
}

/// Sends `bytes` (as much as the server takes before it closes), optionally ends the
/// stream, and expects the server to close within [`WAIT`]; returns what it answered.
fn attack(addr: SocketAddr, bytes: &[u8], then_end: bool, what: &str) -> Vec<u8> {
    let mut socket = tcp(addr);
    // The server may close before it has read everything: what it answered counts.
    let _ = socket.write_all(bytes);
    if then_end {
        let _ = socket.shutdown(std::net::Shutdown::Write);
    }
    let (answer, closed) = read_to_eof(&mut socket, WAIT);
    assert!(closed, "{what}: the connection was not closed within {WAIT:?}");
    answer
}

fn assert_alert(answer: &[u8], what: &str) {
    assert!(answer.first() == Some(&ALERT), "{what}: an alert, got {answer:?}");
}

/// A ClientHello record whose handshake message declares 16 MiB, followed by `records`
/// more full records of it: rustls must refuse it at its header, not gather it.
fn oversized_hello(records: usize) -> Vec<u8> {
    let record = |first: bool| {
        let mut body = vec![0x5a; 1 << 14];
        if first {
            body[..4].copy_from_slice(&[1, 0xff, 0xff, 0xff]);
        }
        let mut out = vec![22, 3, 1, 0x40, 0];
        out.extend_from_slice(&body);
        out
    };
    (0..=records).flat_map(|i| record(i == 0)).collect()
}

#[test]
fn hostile_tls_connections_one_after_another_leave_no_memory_behind() {
    let pki = Pki::new("rounds");
    let mut case = pki.case(&[]);
    let addr = case.addr();
    let http = Request::valid(addr).bytes();
    let oversized = oversized_hello(15);
    for _ in 0..ROUNDS {
        assert_alert(&attack(addr, &[0x42; 64], false, "garbage"), "garbage");
        assert_alert(&attack(addr, &http, false, "plaintext HTTP"), "plaintext HTTP");
        let too_long = [22, 3, 1, 0xff, 0xff, 1, 0, 0];
        assert_alert(&attack(addr, &too_long, false, "a record too long"), "a record too long");
        attack(addr, &oversized, false, "a 16 MiB handshake message");
        // A whole handshake and upgrade, then a reset instead of a close.
        let wss = pki.connect(addr);
        socket2::SockRef::from(wss.get_ref()).set_linger(Some(Duration::ZERO)).expect("linger");
        drop(wss);
    }
    case.check_within("500 hostile TLS connections, one after another", ROUNDS_BUDGET);

    // A flood of key updates on an open connection: cut (rustls allows a few without data
    // between them), the flood's records not kept.
    let mut flooder = pki.connect(addr);
    let mut cut = false;
    for _ in 0..5000 {
        flooder.conn.refresh_traffic_keys().expect("a key update");
        while flooder.conn.wants_write() && !cut {
            cut = flooder.conn.write_tls(&mut flooder.sock).is_err();
        }
        if cut {
            break;
        }
    }
    let (_, closed) = read_to_eof(&mut flooder.sock, WAIT);
    assert!(cut || closed, "the key-update flooder is still served");
    case.check_within("a key-update flood", ROUNDS_BUDGET);
}

#[test]
fn stalled_client_hellos_cost_a_bounded_amount_each_and_are_cut_at_the_timeout() {
    let pki = Pki::new("stalled");
    let mut case = pki.case(&[]);
    let addr = case.addr();
    let hello = pki.client_hello();
    for batch in ["first", "second"] {
        let mut stalled: Vec<TcpStream> = (0..STALLED)
            .map(|i| {
                let mut socket = tcp(addr);
                socket.write_all(&hello[..hello.len() / 2]).expect("half a ClientHello");
                if i % 2 == 1 {
                    socket.shutdown(std::net::Shutdown::Write).expect("end the stream");
                }
                socket
            })
            .collect();
        // The loop has read them all by the time the witness's echo comes back.
        case.witness().roundtrip();
        // The silent ones cut at the handshake timeout (1 s), well within WAIT; those that
        // ended their stream closed at once (see the next test).
        for socket in &mut stalled {
            let (_, closed) = read_to_eof(socket, WAIT);
            assert!(closed, "a stalled ClientHello was not cut within {WAIT:?}");
        }
        drop(stalled);
        let what = format!("{STALLED} stalled ClientHellos at once ({batch} batch)");
        case.check_within(&what, STALLED as u64 * PER_STALLED);
    }
}

/// Half a ClientHello and the end of the stream in one go: the server closes at once, as in
/// cleartext, not at the handshake timeout (30 s here, six times the wait).
#[test]
fn half_a_client_hello_then_the_end_of_the_stream_is_closed_at_once() {
    let pki = Pki::new("half-then-end");
    let mut case = pki.case(&[("--handshake-timeout", "30s")]);
    let hello = pki.client_hello();
    for _ in 0..20 {
        attack(case.addr(), &hello[..hello.len() / 2], true, "half a ClientHello, then FIN");
    }
    case.check_within(
        "20 half ClientHellos, each followed by the end of the stream",
        ROUNDS_BUDGET,
    );
}
