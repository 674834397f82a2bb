//! wss: the load generator's TLS client against the engine's TLS transport, in this process
//! over loopback. Messages from empty to several records long, pipelined, so that reads end
//! inside records and records span reads: every echo must come back whole and in order, and
//! every connection close cleanly.
//!
//! The certificate is made here by rcgen into a temporary directory; none is committed.

use std::path::PathBuf;
use std::time::Duration;

use surge::echo::EchoHandler;
use surge::tls::TlsConfig;
use surge::{Config, Server};
use surge_loadgen::config::{Mode, RunConfig};
use surge_loadgen::run::{run, RunOptions};
use surge_loadgen::target::Target;
use surge_loadgen::tls::TlsOptions;
use surge_loadgen::workload::PayloadKind;

/// A self-signed certificate for 127.0.0.1, written as PEM files into a directory removed
/// on drop.
struct Cert {
    dir: PathBuf,
}

impl Cert {
    fn new() -> Cert {
        let dir = std::env::temp_dir().join(format!("surge-loadgen-wss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        Cert { dir }
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn wss_echoes_come_back_whole_across_record_and_read_boundaries() {
    let cert = Cert::new();
    let config = Config::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .threads(1)
        .tls(TlsConfig::new(cert.dir.join("cert.pem"), cert.dir.join("key.pem")))
        .build()
        .unwrap();
    let server = Server::start(config, |_| EchoHandler).unwrap();
    let addr = server.local_addrs()[0];
    let target = Target::parse(Some(&format!("wss://{addr}/"))).unwrap();
    // One in flight of 1 KiB (a record a message), then up to four records a message with
    // four in flight (reads that end inside a record, records that span reads).
    for (size, in_flight) in [("1024", 1), ("0..70000", 4)] {
        let c = RunConfig {
            connections: 8,
            size: size.parse().unwrap(),
            payload: PayloadKind::Binary,
            in_flight,
            duration: Duration::from_millis(700),
            warmup: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(5),
            tls: TlsOptions { ca: None, insecure: true, resume: true },
            ..RunConfig::new("wss-test", Mode::Ws)
        };
        let r = run(&c, &target, RunOptions::default()).unwrap().result;
        assert!(r.messages > 50, "{size}: {} messages", r.messages);
        assert_eq!(r.mismatches, 0, "{size}");
        assert!(r.errors.is_empty(), "{size}: {:?}", r.errors);
        assert_eq!(r.connections.established, 8, "{size}");
        assert_eq!(r.close_codes.get("1000"), Some(&8), "{size}: {:?}", r.close_codes);
    }
    server.shutdown(Duration::from_secs(2));
}
