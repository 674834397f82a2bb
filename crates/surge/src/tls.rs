//! wss: what a TLS listener serves, set up once and reloadable. [`TlsConfig`] names the PEM
//! files (a default certificate and more chosen by SNI); the engine turns it into one
//! rustls `ServerConfig` shared by every loop: TLS 1.2 and 1.3 only, ALPN `http/1.1`,
//! session resumption by ticket and by session id, and a certificate resolver whose set of
//! chains [`ServerHandle::reload_tls`](crate::ServerHandle::reload_tls) swaps while the
//! server runs (new handshakes get the new chains; open connections keep theirs).
//!
//! The crypto provider is *ring*: `benches/benches/tls.rs` measures it beside aws-lc-rs
//! (handshakes per second and AES-GCM throughput; see the README's figures), with the
//! randomness rustls itself draws served from a per-thread buffer (`random`).
//!
//! What one connection's TLS costs on the per-message path is in `transport/tls.rs`.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;

mod random;

/// Sessions kept for resumption by session id (TLS 1.2) across the whole server.
const SESSION_CACHE: usize = 4096;

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What a TLS listener serves: a default certificate, and more for the SNI names they are
/// listed under. Read (and checked) when the [`Config`](crate::Config) is built and again at
/// each [`reload`](crate::ServerHandle::reload_tls).
///
/// ```no_run
/// use surge::tls::TlsConfig;
/// use surge::Config;
///
/// let tls = TlsConfig::new("site.pem", "site.key").sni("api.example.com", "api.pem", "api.key");
/// let config = Config::builder().listen("0.0.0.0:443".parse().unwrap()).tls(tls).build()?;
/// # Ok::<(), surge::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    default: CertFiles,
    by_name: Vec<(String, CertFiles)>,
}

impl TlsConfig {
    /// Serves the chain in `cert` with the key in `key` to every client (and to those whose
    /// SNI names no listed certificate).
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsConfig { default: CertFiles { cert: cert.into(), key: key.into() }, by_name: Vec::new() }
    }

    /// Serves `cert` and `key` to clients whose SNI is `name` (compared without case).
    pub fn sni(
        mut self,
        name: impl Into<String>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.by_name.push((name, CertFiles { cert: cert.into(), key: key.into() }));
        self
    }

    /// The default certificate's files.
    pub fn default_files(&self) -> &CertFiles {
        &self.default
    }

    /// The certificates chosen by SNI, by name.
    pub fn sni_files(&self) -> &[(String, CertFiles)] {
        &self.by_name
    }
}

/// A certificate or key that cannot be served. Each names the file at fault.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsError {
    /// A reload was asked of a server that does not serve TLS.
    #[error("the server does not serve TLS")]
    NotServed,
    /// The file cannot be read.
    #[error("cannot read {}: {kind}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        kind: io::ErrorKind,
    },
    /// The file is not PEM, or holds a broken section.
    #[error("{} is not valid PEM", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
    },
    /// No `CERTIFICATE` section in the certificate file.
    #[error("no certificate in {}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// No private key section in the key file.
    #[error("no private key in {}", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is of a kind the crypto provider cannot sign with.
    #[error("{}: unsupported private key", path.display())]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is not the certificate's.
    #[error("the key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate cannot be parsed.
    #[error("{}: the certificate cannot be parsed", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
    },
}

/// The chains served now: the default and those chosen by SNI.
#[derive(Debug)]
struct Chains {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

/// Picks the chain for a ClientHello from the current set; the set is swapped whole on a
/// reload, so a handshake sees either the old set or the new one.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<Chains>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chains = Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()));
        let named = hello.server_name().and_then(|name| {
            chains.by_name.get(name).or_else(|| {
                chains.by_name.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, c)| c)
            })
        });
        Some(Arc::clone(named.unwrap_or(&chains.default)))
    }
}

/// A TLS listener's live state: the files it reads, the resolver it swaps, the rustls
/// configuration every new connection starts from.
#[derive(Debug)]
pub(crate) struct TlsContext {
    files: TlsConfig,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Resolver>,
    pub(crate) server_config: Arc<ServerConfig>,
}

impl TlsContext {
    /// Reads every file of `files` and builds the configuration.
    pub(crate) fn new(files: TlsConfig) -> Result<Self, TlsError> {
        let provider = Arc::new(CryptoProvider {
            secure_random: &random::BUFFERED_RANDOM,
            ..rustls::crypto::ring::default_provider()
        });
        let chains = load(&files, &provider)?;
        let resolver = Arc::new(Resolver { current: RwLock::new(Arc::new(chains)) });
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        // The ring provider's defaults are all AEAD suites with ECDHE key exchange; building
        // with them cannot fail, and a failure would be a rustls regression worth a panic.
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .expect("ring's defaults support TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // The provider's order (AEAD, strongest first), not whatever a client prefers.
        config.ignore_client_order = true;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = rustls::crypto::ring::Ticketer::new().expect("ring's ticketer");
        Ok(TlsContext { files, provider, resolver, server_config: Arc::new(config) })
    }

    /// The files served.
    pub(crate) fn files(&self) -> &TlsConfig {
        &self.files
    }

    /// Reads the files again and, if all of them are good, serves them to new handshakes;
    /// otherwise keeps the chains served now.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let chains = Arc::new(load(&self.files, &self.provider)?);
        *self.resolver.current.write().unwrap_or_else(|p| p.into_inner()) = chains;
        Ok(())
    }
}

fn load(files: &TlsConfig, provider: &CryptoProvider) -> Result<Chains, TlsError> {
    let default = certified_key(&files.default, provider)?;
    let mut by_name = HashMap::with_capacity(files.by_name.len());
    for (name, pair) in &files.by_name {
        by_name.insert(name.clone(), certified_key(pair, provider)?);
    }
    Ok(Chains { default, by_name })
}

fn certified_key(
    files: &CertFiles,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_error = |error| pem_error(&files.cert, error, |path| TlsError::NoCertificate { path });
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(cert_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_error)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: files.cert.clone() });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|error| pem_error(&files.key, error, |path| TlsError::NoKey { path }))?;
    CertifiedKey::from_der(chain, key, provider).map(Arc::new).map_err(|error| match error {
        rustls::Error::InconsistentKeys(_) => {
            TlsError::KeyMismatch { cert: files.cert.clone(), key: files.key.clone() }
        }
        rustls::Error::General(_) => TlsError::UnsupportedKey { path: files.key.clone() },
        _ => TlsError::BadCertificate { path: files.cert.clone() },
    })
}

fn pem_error(path: &Path, error: pem::Error, missing: fn(PathBuf) -> TlsError) -> TlsError {
    let path = path.to_path_buf();
    match error {
        pem::Error::Io(error) => TlsError::Read { path, kind: error.kind() },
        pem::Error::NoItemsFound => missing(path),
        _ => TlsError::Pem { path },
    }
}
