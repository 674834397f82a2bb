//! The wss peer: the tokio-tungstenite echo of `tungstenite-echo` over tokio-rustls (ring,
//! TLS 1.2 and 1.3, ALPN http/1.1, session tickets and ids, as Surge serves). The PEM
//! certificate chain and key come from `$PEER_TLS_CERT` and `$PEER_TLS_KEY`. See
//! `surge_peers` (src/lib.rs) for the command line.

use std::sync::{Arc, OnceLock};

use futures_util::{SinkExt, StreamExt};
use surge_peers::{serve, Args};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

static ACCEPTOR: OnceLock<TlsAcceptor> = OnceLock::new();

fn acceptor() -> TlsAcceptor {
    let path = |var: &str| std::env::var(var).unwrap_or_else(|_| panic!("${var} names a PEM file"));
    let certs = CertificateDer::pem_file_iter(path("PEER_TLS_CERT"))
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .expect("a PEM certificate chain");
    let key = PrivateKeyDer::from_pem_file(path("PEER_TLS_KEY")).expect("a PEM private key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the key matches the certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new().expect("a ticketer");
    TlsAcceptor::from(Arc::new(config))
}

async fn connection(stream: TcpStream) {
    let Ok(tls) = ACCEPTOR.get_or_init(acceptor).accept(stream).await else { return };
    let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else { return };
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_text() || msg.is_binary() {
            if ws.send(msg).await.is_err() {
                return;
            }
        } else if msg.is_close() {
            break;
        }
    }
    let _ = ws.close(None).await;
}

fn main() {
    let args = Args::parse("tungstenite-rustls-echo");
    ACCEPTOR.get_or_init(acceptor);
    serve(&args, connection)
}
