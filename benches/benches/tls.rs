//! TLS cost with each rustls crypto provider, to choose Surge's (it uses *ring*; see
//! `crates/surge/src/tls.rs`): a full TLS 1.3 handshake (ECDSA P-256, X25519), a resumed one
//! (session ticket), and application records (AES-256-GCM, the suite Surge's order puts
//! first) of 1 KiB and 16 KiB, encrypted by the server and decrypted by the client.
//!
//! Both ends run in this thread over in-memory buffers: a handshake figure is the client's
//! and the server's work together, and is the "rustls alone" baseline that Surge's
//! handshakes per second (a real server, measured end to end) is compared with.

use std::io::{Read, Write};
use std::sync::Arc;

use criterion::{criterion_main, Criterion, Throughput};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn providers() -> [(&'static str, CryptoProvider); 2] {
    [
        ("ring", rustls::crypto::ring::default_provider()),
        ("aws-lc-rs", rustls::crypto::aws_lc_rs::default_provider()),
    ]
}

struct Pair {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn configs(provider: CryptoProvider, resume: bool) -> Pair {
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
    if resume {
        server.ticketer = provider_ticketer(&provider);
    }
    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        client.resumption = Resumption::disabled();
    }
    Pair { server: Arc::new(server), client: Arc::new(client) }
}

fn provider_ticketer(provider: &CryptoProvider) -> Arc<dyn rustls::server::ProducesTickets> {
    // Each provider's own ticketer: the tickets are part of what a resumed handshake costs.
    if provider.cipher_suites == rustls::crypto::ring::default_provider().cipher_suites {
        rustls::crypto::ring::Ticketer::new().unwrap()
    } else {
        rustls::crypto::aws_lc_rs::Ticketer::new().unwrap()
    }
}

/// Moves every pending record from one end to the other.
fn pump(from: &mut dyn rustls_conn::Conn, to: &mut dyn rustls_conn::Conn, wire: &mut Vec<u8>) {
    wire.clear();
    while from.wants_write() {
        from.write_tls(wire);
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest);
        to.process();
    }
}

mod rustls_conn {
    //! The few calls the pump needs, for both connection types.
    pub trait Conn {
        fn wants_write(&self) -> bool;
        fn write_tls(&mut self, wire: &mut Vec<u8>);
        fn read_tls(&mut self, wire: &mut &[u8]);
        fn process(&mut self);
    }

    macro_rules! conn {
        ($t:ty) => {
            impl Conn for $t {
                fn wants_write(&self) -> bool {
                    <$t>::wants_write(self)
                }
                fn write_tls(&mut self, wire: &mut Vec<u8>) {
                    <$t>::write_tls(self, wire).unwrap();
                }
                fn read_tls(&mut self, wire: &mut &[u8]) {
                    <$t>::read_tls(self, wire).unwrap();
                }
                fn process(&mut self) {
                    <$t>::process_new_packets(self).unwrap();
                }
            }
        };
    }
    conn!(rustls::ServerConnection);
    conn!(rustls::ClientConnection);
}

fn handshake(pair: &Pair, wire: &mut Vec<u8>) -> (ServerConnection, ClientConnection) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(Arc::clone(&pair.client), name).unwrap();
    let mut server = ServerConnection::new(Arc::clone(&pair.server)).unwrap();
    while client.is_handshaking() || server.is_handshaking() {
        pump(&mut client, &mut server, wire);
        pump(&mut server, &mut client, wire);
    }
    // The tickets (resumption) the server sends after its handshake.
    pump(&mut server, &mut client, wire);
    (server, client)
}

fn handshakes(c: &mut Criterion) {
    let mut group = c.benchmark_group("tls/handshake");
    group.throughput(Throughput::Elements(1));
    let mut wire = Vec::with_capacity(16 << 10);
    for (name, provider) in providers() {
        let full = configs(provider.clone(), false);
        group.bench_function(format!("full/{name}"), |b| b.iter(|| handshake(&full, &mut wire)));
        let resumed = configs(provider, true);
        let (_, first) = handshake(&resumed, &mut wire);
        drop(first);
        group.bench_function(format!("resumed/{name}"), |b| {
            b.iter(|| {
                let (_, client) = handshake(&resumed, &mut wire);
                debug_assert_eq!(client.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
            })
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
        for (name, provider) in providers() {
            let pair = configs(provider, false);
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
