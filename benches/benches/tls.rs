//! TLS cost with each rustls crypto provider, to choose Surge's (it uses *ring*; see
//! `crates/surge/src/tls.rs`): a full TLS 1.3 handshake (ECDSA P-256, X25519), a resumed one
//! (session ticket), and application records (AES-256-GCM, the suite Surge's order puts
//! first) of 1 KiB and 16 KiB, encrypted by the server and decrypted by the client.
//!
//! Both ends run in this thread over in-memory buffers. `tls/handshake/{full,resumed}/*` is
//! the client's and the server's work together; `tls/handshake/{full,resumed}-server/*`
//! times only the server's calls (its `new`, reading and processing the client's flights,
//! writing its own and the tickets), which is the "rustls alone" baseline that Surge's server
//! CPU per handshake (a real server, measured end to end) is compared with. Those two count
//! the thread's CPU time, not the wall clock, as the end-to-end figure does: on a machine
//! shared with other work, time stolen by other processes is then not counted as rustls'.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_main, Criterion, Throughput};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, Connection, HandshakeKind, RootCertStore, ServerConfig,
    ServerConnection,
};

/// Each provider with its own ticketer (the tickets are part of what resumption costs).
type Ticketer = fn() -> Result<Arc<dyn rustls::server::ProducesTickets>, rustls::Error>;

fn providers() -> [(&'static str, CryptoProvider, Ticketer); 2] {
    [
        ("ring", rustls::crypto::ring::default_provider(), rustls::crypto::ring::Ticketer::new),
        (
            "aws-lc-rs",
            rustls::crypto::aws_lc_rs::default_provider(),
            rustls::crypto::aws_lc_rs::Ticketer::new,
        ),
    ]
}

struct Pair {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

/// A server with `ticketer` (None: rustls' default, a session cache) and a client that
/// offers to resume when `client_resumes`.
fn configs(provider: CryptoProvider, ticketer: Option<Ticketer>, client_resumes: bool) -> Pair {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(provider);
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    server.ignore_client_order = true;
    if let Some(ticketer) = ticketer {
        server.ticketer = ticketer().unwrap();
    }
    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !client_resumes {
        client.resumption = Resumption::disabled();
    }
    Pair { server: Arc::new(server), client: Arc::new(client) }
}

/// Moves every pending record from one end to the other.
fn pump(from: &mut Connection, to: &mut Connection, wire: &mut Vec<u8>) {
    take(from, wire);
    give(to, wire);
}

/// Every record `from` has to send, in `wire`.
fn take(from: &mut Connection, wire: &mut Vec<u8>) {
    wire.clear();
    while from.wants_write() {
        from.write_tls(wire).unwrap();
    }
}

/// The records in `wire`, read and processed by `to`.
fn give(to: &mut Connection, wire: &[u8]) {
    let mut rest = wire;
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets().unwrap();
    }
}

fn client(pair: &Pair) -> Connection {
    let name = ServerName::try_from("localhost").unwrap();
    Connection::from(ClientConnection::new(Arc::clone(&pair.client), name).unwrap())
}

/// A handshake between a new client and a new server: `(server, client)`.
fn handshake(pair: &Pair, wire: &mut Vec<u8>) -> (Connection, Connection) {
    let mut client = client(pair);
    let mut server = Connection::from(ServerConnection::new(Arc::clone(&pair.server)).unwrap());
    while client.is_handshaking() || server.is_handshaking() {
        pump(&mut client, &mut server, wire);
        pump(&mut server, &mut client, wire);
    }
    // The tickets (resumption) the server sends after its handshake.
    pump(&mut server, &mut client, wire);
    (server, client)
}

/// The CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on every
    // Linux this bench runs on (the return value is checked).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The same handshake, timing only the server's calls (in thread CPU time); returns that
/// time and the client.
fn server_side(pair: &Pair, wire: &mut Vec<u8>) -> (Duration, Connection) {
    let mut client = client(pair);
    let started = thread_cpu();
    let mut server = Connection::from(ServerConnection::new(Arc::clone(&pair.server)).unwrap());
    let mut spent = thread_cpu() - started;
    let mut timed = |f: &mut dyn FnMut()| {
        let started = thread_cpu();
        f();
        spent += thread_cpu() - started;
    };
    loop {
        take(&mut client, wire);
        timed(&mut || give(&mut server, wire));
        // The server's flight, or (after the client's Finished) its tickets.
        timed(&mut || take(&mut server, wire));
        give(&mut client, wire);
        if !client.is_handshaking() && !server.is_handshaking() && !server.wants_write() {
            break;
        }
    }
    (spent, client)
}

/// The server's time over `iters` handshakes of `pair`, each checked to be of `kind`.
fn server_time(pair: &Pair, kind: HandshakeKind, iters: u64, wire: &mut Vec<u8>) -> Duration {
    (0..iters)
        .map(|_| {
            let (spent, client) = server_side(pair, wire);
            assert_eq!(client.handshake_kind(), Some(kind));
            spent
        })
        .sum()
}

fn handshakes(c: &mut Criterion) {
    let mut group = c.benchmark_group("tls/handshake");
    group.throughput(Throughput::Elements(1));
    let mut wire = Vec::with_capacity(16 << 10);
    for (name, provider, ticketer) in providers() {
        let full = configs(provider.clone(), None, false);
        group.bench_function(format!("full/{name}"), |b| b.iter(|| handshake(&full, &mut wire)));
        group.bench_function(format!("full-server/{name}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| server_side(&full, &mut wire).0).sum())
        });
        // As Surge's server is set up: it makes stateless tickets (encrypted by the
        // ticketer) on a full handshake too, where `full-server` above keeps them in rustls'
        // session cache; the client does not resume (surge-loadgen `--no-resume`).
        let full_ticketed = configs(provider.clone(), Some(ticketer), false);
        group.bench_function(format!("full-server-ticketer/{name}"), |b| {
            b.iter_custom(|iters| {
                server_time(&full_ticketed, HandshakeKind::Full, iters, &mut wire)
            })
        });
        let resumed = configs(provider, Some(ticketer), true);
        let (_, first) = handshake(&resumed, &mut wire);
        drop(first);
        group.bench_function(format!("resumed/{name}"), |b| {
            b.iter(|| {
                let (_, client) = handshake(&resumed, &mut wire);
                debug_assert_eq!(client.handshake_kind(), Some(HandshakeKind::Resumed));
            })
        });
        group.bench_function(format!("resumed-server/{name}"), |b| {
            b.iter_custom(|iters| server_time(&resumed, HandshakeKind::Resumed, iters, &mut wire))
        });
    }
    group.finish();
}

fn records(c: &mut Criterion) {
    for size in [1024, 16 * 1024] {
        let mut group = c.benchmark_group(format!("tls/aes-256-gcm/{size}"));
        group.throughput(Throughput::Bytes(size as u64));
        let payload = vec![0x5a; size];
        let mut plain = vec![0; size];
        let mut wire = Vec::with_capacity(64 << 10);
        for (name, provider, _) in providers() {
            let pair = configs(provider, None, false);
            let (mut server, mut client) = handshake(&pair, &mut wire);
            group.bench_function(name, |b| {
                b.iter(|| {
                    server.writer().write_all(&payload).unwrap();
                    pump(&mut server, &mut client, &mut wire);
                    client.reader().read_exact(&mut plain).unwrap();
                })
            });
        }
        group.finish();
    }
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    handshakes(&mut c);
    records(&mut c);
}

criterion_main!(benches);
