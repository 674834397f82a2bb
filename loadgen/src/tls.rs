//! wss: the client side of TLS for the load generator. A run's [`TlsOptions`] become one
//! rustls `ClientConfig` shared by every connection of every thread (so sessions saved by
//! one connection resume on the next, when resumption is on), and each connection's
//! [`Link`] carries its bytes: plain TCP, or rustls' sans-IO `ClientConnection` over it.
//! The TLS handshake happens inside the WebSocket handshake's time, so the handshake
//! histogram counts both.

use std::io::{self, IoSlice, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// How a wss run trusts the server and whether it resumes sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA(s) to trust (None with `insecure`: trust anything).
    pub ca: Option<PathBuf>,
    /// Accept any certificate (a self-signed test server).
    pub insecure: bool,
    /// Resume sessions (tickets, session ids) across connections.
    pub resume: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions { ca: None, insecure: false, resume: true }
    }
}

/// Why a wss run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// Neither a CA file nor `--insecure`.
    #[error("wss:// needs --ca FILE (the server's CA) or --insecure")]
    NoTrust,
    /// The CA file is unreadable or holds no certificate.
    #[error("{}: no usable CA certificate", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
    },
    /// The host is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// What each connection of a wss run starts from.
#[derive(Debug, Clone)]
pub struct TlsPlan {
    /// Shared by all connections (and its session store with them).
    pub config: Arc<ClientConfig>,
    /// SNI and the name the certificate must carry.
    pub server_name: ServerName<'static>,
}

impl TlsPlan {
    /// The configuration for `options` against `host` (a `HOST[:PORT]` authority).
    pub fn new(options: &TlsOptions, host: &str) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions");
        let mut config = match (&options.ca, options.insecure) {
            (Some(path), _) => {
                let mut roots = RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|_| TlsSetupError::Ca { path: path.clone() })?;
                for cert in certs {
                    let cert = cert.map_err(|_| TlsSetupError::Ca { path: path.clone() })?;
                    roots.add(cert).map_err(|_| TlsSetupError::Ca { path: path.clone() })?;
                }
                if roots.is_empty() {
                    return Err(TlsSetupError::Ca { path: path.clone() });
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            (None, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            (None, false) => return Err(TlsSetupError::NoTrust),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !options.resume {
            config.resumption = Resumption::disabled();
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => name,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| TlsSetupError::ServerName(name.to_owned()))?;
        Ok(TlsPlan { config: Arc::new(config), server_name })
    }
}

/// `--insecure`: any certificate is accepted; signatures are still checked, so the
/// handshake costs what a verified one does (less the chain walk).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One connection's byte stream: TCP, or TLS over it.
pub(crate) struct Link {
    pub(crate) tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
}

impl Link {
    /// Plain TCP, or the client side of a TLS handshake (started at the first write).
    pub(crate) fn new(tcp: TcpStream, tls: Option<&TlsPlan>) -> io::Result<Self> {
        let tls = match tls {
            Some(plan) => Some(Box::new(
                ClientConnection::new(Arc::clone(&plan.config), plan.server_name.clone())
                    .map_err(io::Error::other)?,
            )),
            None => None,
        };
        Ok(Link { tcp, tls })
    }

    /// Plaintext into `buf`; like a socket read, a short read means nothing more is there
    /// now (`WouldBlock` when nothing was), `Ok(0)` the end of the stream.
    ///
    /// The socket is read again only after a read that filled what rustls offered: a short
    /// one drained it, and (edge-triggered, as for a plain socket) new bytes raise a new
    /// event, so a second read would only return `WouldBlock`: one system call per message
    /// that cleartext does not make, on the path of every round trip.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else { return self.tcp.read(buf) };
        let mut filled = 0;
        let mut drained = false;
        loop {
            match tls.reader().read(&mut buf[filled..]) {
                Ok(0) => return Ok(filled),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            if filled == buf.len() {
                return Ok(filled);
            }
            if drained {
                return if filled > 0 { Ok(filled) } else { Err(io::ErrorKind::WouldBlock.into()) };
            }
            let mut socket = Drains { tcp: &mut self.tcp, short: false };
            match tls.read_tls(&mut socket) {
                Ok(0) => return Ok(filled),
                Ok(_) => drained = socket.short,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            let processed = tls.process_new_packets();
            write_records(tls, &mut self.tcp)?;
            if let Err(error) = processed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
    }

    /// Takes plaintext (all of it under TLS: records the socket does not take yet wait in
    /// rustls for [`flush`](Self::flush)).
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else { return self.tcp.write(buf) };
        if tls.wants_write() {
            write_records(tls, &mut self.tcp)?;
            if tls.wants_write() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        let n = tls.writer().write(buf)?;
        write_records(tls, &mut self.tcp)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Writes held TLS records; whether all went out.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        let Some(tls) = self.tls.as_mut() else { return Ok(true) };
        write_records(tls, &mut self.tcp)?;
        Ok(!tls.wants_write())
    }
}

/// The socket as rustls reads it, noting whether a read came back shorter than the room
/// offered (the socket is drained).
struct Drains<'a> {
    tcp: &'a mut TcpStream,
    short: bool,
}

impl Read for Drains<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tcp.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// The socket as rustls writes to it. rustls hands its records over as a vectored write;
/// where that is one record (a message, or a window of small ones: the usual case) it goes
/// out by send(2), as a cleartext write does, since writev(2) costs the kernel more per call
/// (its vfs path and iovec import: about 0.2 µs per message in a profile of the client at
/// 10 x 1 KiB). Several records still go in one writev.
struct Sends<'a>(&'a mut TcpStream);

impl Write for Sends<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut records = bufs.iter().filter(|b| !b.is_empty());
        match (records.next(), records.next()) {
            (None, _) => Ok(0),
            (Some(one), None) => self.0.write(one),
            _ => self.0.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_records(tls: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(&mut Sends(tcp)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
