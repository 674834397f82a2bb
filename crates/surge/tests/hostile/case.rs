//! One attack (or a few) against one server, with a well-behaved witness beside it.
//!
//! Before the attack the witness connection echoes a message and leaves a second one
//! queued; the server's descriptors and resident memory are measured. After it the server
//! must still run, the queued message and a new one must come back, the descriptors must
//! return to their count, and the memory peak must stay within the attack's budget.

use std::net::SocketAddr;

use crate::client::{Client, Got};
use crate::server::Surge;

/// The peak memory an ordinary attack may add: a few pooled buffers.
pub const SMALL: u64 = 4 << 20;
/// The peak memory a flood may add.
pub const FLOOD: u64 = 32 << 20;

/// What a witness talks through: a text message out, a text message back.
pub trait Channel {
    fn send_text(&mut self, text: &str);
    /// The next message, which must be text.
    fn recv_text(&mut self) -> String;
}

impl Channel for Client {
    fn send_text(&mut self, text: &str) {
        Client::send_text(self, text);
    }

    fn recv_text(&mut self) -> String {
        match self.recv() {
            Got::Text(text) => text,
            other => panic!("the witness got {other:?}, not text"),
        }
    }
}

/// A well-behaved client that must keep echoing through every attack.
pub struct Witness {
    client: Box<dyn Channel>,
    sent: u32,
    queued: Option<String>,
}

impl Witness {
    /// A cleartext WebSocket witness.
    pub fn open(addr: SocketAddr) -> Witness {
        Witness::over(Box::new(Client::connect(addr)))
    }

    /// A witness over an open connection (wss: `tls.rs`).
    pub fn over(client: Box<dyn Channel>) -> Witness {
        let mut witness = Witness { client, sent: 0, queued: None };
        witness.roundtrip();
        witness
    }

    fn next(&mut self, what: &str) -> String {
        self.sent += 1;
        format!("witness {what} {}", self.sent)
    }

    /// Sends a message and reads its echo (after the queued one's, if any).
    pub fn roundtrip(&mut self) {
        self.expect_queued();
        let text = self.next("echo");
        self.client.send_text(&text);
        assert_eq!(self.client.recv_text(), text, "the witness's echo");
    }

    /// Sends a message whose echo is read by [`Witness::expect_queued`].
    pub fn queue(&mut self) {
        let text = self.next("queued");
        self.client.send_text(&text);
        self.queued = Some(text);
    }

    /// Reads the echo of the message queued before the attack.
    pub fn expect_queued(&mut self) {
        if let Some(text) = self.queued.take() {
            assert_eq!(self.client.recv_text(), text, "the echo queued before the attack");
        }
    }
}

/// A server, its witness, and the measurements taken before the current attack.
pub struct Case {
    pub server: Surge,
    witness: Witness,
    fds: usize,
    rss_kib: u64,
}

impl Case {
    /// A server with the default test flags.
    pub fn start() -> Case {
        Case::on(Surge::start())
    }

    /// A server with some flags replaced.
    pub fn with(flags: &[(&str, &str)]) -> Case {
        Case::on(Surge::with(flags))
    }

    pub fn on(server: Surge) -> Case {
        let witness = Witness::open(server.addr);
        Case::watched_by(server, witness)
    }

    /// A server and a witness of the test's own (wss: `tls.rs`).
    pub fn watched_by(server: Surge, witness: Witness) -> Case {
        let mut case = Case { server, witness, fds: 0, rss_kib: 0 };
        case.begin();
        case
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn witness(&mut self) -> &mut Witness {
        &mut self.witness
    }

    /// Descriptors open before the attack.
    pub fn fds_before(&self) -> usize {
        self.fds
    }

    /// Resident memory added since the attack began, in bytes (negative if it shrank).
    pub fn rss_growth(&self) -> i64 {
        (self.server.rss_kib() as i64 - self.rss_kib as i64) * 1024
    }

    fn begin(&mut self) {
        self.witness.roundtrip();
        self.fds = self.server.fds();
        self.server.reset_peak();
        self.rss_kib = self.server.rss_kib();
        self.witness.queue();
    }

    /// The checks after an attack that may add at most [`SMALL`] to the memory peak; then
    /// the measurements for the next attack.
    pub fn check(&mut self, attack: &str) {
        self.check_within(attack, SMALL);
    }

    /// The checks after an attack that may add at most `peak_budget` bytes to the memory
    /// peak; then the measurements for the next attack.
    pub fn check_within(&mut self, attack: &str, peak_budget: u64) {
        self.server.assert_alive(attack);
        self.witness.expect_queued();
        self.witness.roundtrip();
        self.server.settle_fds(self.fds, attack);
        let peak = self.server.peak_kib() * 1024;
        let before = self.rss_kib * 1024;
        let added = peak.saturating_sub(before);
        assert!(
            added <= peak_budget,
            "{attack}: memory peaked {} KiB over the {} KiB before (budget {} KiB)",
            added >> 10,
            before >> 10,
            peak_budget >> 10
        );
        self.server.assert_alive(attack);
        self.begin();
    }
}
