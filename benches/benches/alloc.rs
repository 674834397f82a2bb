//! Heap allocations on the server's event-loop thread per million echoed messages, after
//! warm-up. The target is zero: the steady-state echo path reads into the loop's buffer,
//! hands the message over borrowed, encodes the reply into a pooled buffer and writes it.
//!
//! A counting global allocator counts only on threads that opted in; the handler factory
//! runs on the loop's thread, so it opts the loop in. Clients (same process, other
//! threads) pipeline 20-byte text messages over loopback; then, with permessage-deflate
//! negotiated, a 137-byte JSON-like text under each memory policy (the shared per-loop
//! codecs, and a stream per connection at window 12, memLevel 4): inflated into the loop's
//! spare buffer, compressed into the pooled output buffer, zero allocations as well. Last,
//! the publish path: a room of 16 (`surge broadcast`'s handler: one topic, the sender
//! included), each message published, encoded once into a pooled shared frame and queued to
//! every member; and the same room publishing each message to two topics every member has and
//! one nobody here has (the topic list kept from the first such publish). And the echo over
//! wss (TLS 1.3, AES-256-GCM; on both backends): reported, not held to zero, because rustls 0.23 itself allocates for every record it decrypts (the
//! plaintext is copied into a fresh `Vec`, even by its unbuffered API) and every record it
//! encrypts; Surge's own part of that path (the loop's read buffer for ciphertext, pooled
//! buffers for what waits) allocates nothing.
//!
//! ```text
//! cargo bench -p surge-benches --bench alloc            # report
//! cargo bench -p surge-benches --bench alloc -- --strict # exit non-zero unless zero
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use surge::broadcast::RoomHandler;
use surge::echo::EchoHandler;
use surge::tls::TlsConfig;
use surge::{
    Audience, Backend, Config, Conn, DeflateConfig, DeflateMemory, Handler, Request, Server,
    Upgrade,
};
use surge_client::blocking::{self, Received};
use surge_client::Keys;
use surge_proto::deflate::ClientOffer;
use surge_proto::handshake::ClientRequest;
use surge_proto::message::Message;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // `try_with`: allocations during thread teardown must not panic.
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// The system allocator, counting allocations (not frees) on opted-in threads.
struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are ours; counting touches only an atomic and a const thread-local.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CLIENT_THREADS: usize = 2;
const CONNECTIONS_PER_THREAD: usize = 8;
/// Messages each connection has in flight (sent in one write, then read back).
const WINDOW: usize = 16;
/// Longest wait for a connection or an echo.
const PATIENCE: Duration = Duration::from_secs(20);

/// A 137-byte JSON-like text, what a feed sends.
const JSON: &str = r#"{"type":"trade","symbol":"BTC-USD","price":43251.75,"size":0.0125,"side":"buy","ts":1733050000123,"id":"7f3a9c2e-41d8-4b6a-9e1f-0c5d123"}"#;

/// One measured setup.
struct Case {
    name: &'static str,
    deflate: Option<DeflateConfig>,
    text: &'static str,
    warm_up: u64,
    measured: u64,
    /// Over wss: reported, not held to zero (see the module documentation).
    tls: bool,
}

/// A throwaway certificate for the wss case: the server's PEM files, and a client trusting it.
struct Wss {
    dir: PathBuf,
    client: Arc<ClientConfig>,
}

impl Wss {
    fn new() -> Wss {
        let dir = std::env::temp_dir().join(format!("surge-alloc-wss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("names");
        let cert = params.self_signed(&key).expect("certificate");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert.pem");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key.pem");
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).expect("root");
        let client =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("TLS 1.3")
                .with_root_certificates(roots)
                .with_no_client_auth();
        Wss { dir, client: Arc::new(client) }
    }

    fn server(&self) -> TlsConfig {
        TlsConfig::new(self.dir.join("cert.pem"), self.dir.join("key.pem"))
    }
}

impl Drop for Wss {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type TlsSocket = tungstenite::WebSocket<StreamOwned<ClientConnection, TcpStream>>;

/// One client connection: the workspace's blocking client, or tungstenite over rustls.
enum Client {
    Ws(Box<blocking::Client>),
    Wss(Box<TlsSocket>),
}

impl Client {
    fn connect(
        addr: SocketAddr,
        seed: u64,
        deflate: bool,
        tls: Option<&Arc<ClientConfig>>,
    ) -> Client {
        if let Some(config) = tls {
            let name = ServerName::try_from("localhost").expect("name");
            let conn = ClientConnection::new(Arc::clone(config), name).expect("client");
            let tcp = TcpStream::connect(addr).expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            let stream = StreamOwned::new(conn, tcp);
            let (ws, _) =
                tungstenite::client::client("ws://localhost/", stream).expect("handshake");
            return Client::Wss(Box::new(ws));
        }
        let host = addr.to_string();
        let nonce = (u128::from(seed) * 0x9E37_79B9_7F4A_7C15).to_le_bytes();
        let keys = Keys { nonce, mask_seed: seed };
        let request = ClientRequest::new(&host, "/");
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        let offer = deflate.then(ClientOffer::default);
        let client = blocking::Client::over_with(stream, &request, keys, offer, PATIENCE);
        let client = client.expect("handshake");
        assert_eq!(client.deflate().is_some(), deflate, "deflate negotiated as asked");
        Client::Ws(Box::new(client))
    }

    /// Sends a window of messages in one write and reads their echoes back.
    fn round(&mut self, message: &str) {
        self.send_window(message);
        self.recv_window(message);
    }

    /// Sends a window of messages in one write.
    fn send_window(&mut self, message: &str) {
        match self {
            Client::Ws(client) => client
                .write_frames(|ws, out| {
                    for _ in 0..WINDOW {
                        ws.send(Message::Text(message), out).unwrap();
                    }
                })
                .unwrap(),
            Client::Wss(ws) => {
                for _ in 0..WINDOW {
                    ws.write(tungstenite::Message::text(message)).unwrap();
                }
                ws.flush().unwrap();
            }
        }
    }

    /// Reads a window of messages as long as `message`.
    fn recv_window(&mut self, message: &str) {
        for _ in 0..WINDOW {
            match self {
                Client::Ws(client) => match client.recv_within(PATIENCE).unwrap() {
                    Some(Received::Text(text)) => assert_eq!(text.len(), message.len()),
                    other => panic!("unexpected {other:?}"),
                },
                Client::Wss(ws) => match ws.read().unwrap() {
                    tungstenite::Message::Text(text) => assert_eq!(text.len(), message.len()),
                    other => panic!("unexpected {other:?}"),
                },
            }
        }
    }
}

fn main() -> ExitCode {
    let strict = std::env::args().any(|arg| arg == "--strict");
    let cases = [
        Case {
            name: "echo",
            deflate: None,
            text: "twenty bytes of text",
            warm_up: 200_000,
            measured: 1_000_000,
            tls: false,
        },
        Case {
            name: "echo/wss",
            deflate: None,
            text: "twenty bytes of text",
            warm_up: 50_000,
            measured: 200_000,
            tls: true,
        },
        Case {
            name: "echo/deflate-shared",
            deflate: Some(DeflateConfig::default()),
            text: JSON,
            warm_up: 20_000,
            measured: 100_000,
            tls: false,
        },
        Case {
            name: "echo/deflate-stream-12-4",
            deflate: Some(DeflateConfig {
                memory: DeflateMemory::PerConnection { window_bits: 12, mem_level: 4 },
                ..DeflateConfig::default()
            }),
            text: JSON,
            warm_up: 20_000,
            measured: 100_000,
            tls: false,
        },
    ];
    let mut clean = true;
    for backend in [Backend::Epoll, Backend::IoUring] {
        let probe = Config::builder().listen("127.0.0.1:0".parse().unwrap()).threads(1);
        match Server::start(probe.backend(backend).build().expect("config"), |_| EchoHandler) {
            Ok(server) => {
                server.shutdown(Duration::ZERO);
            }
            Err(error) => {
                println!("alloc: {backend:?} skipped: {error}");
                continue;
            }
        }
        for case in &cases {
            let allocated_nothing = run(case, backend);
            clean &= allocated_nothing || case.tls;
        }
        clean &= publish_case(backend, "publish", RoomHandler, 1);
        clean &= publish_case(backend, "publish-to-several", SeveralTopics, 2);
    }
    if strict && !clean {
        eprintln!("alloc: expected no allocation on the steady-state echo and publish paths");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Runs one case; whether it allocated nothing.
fn run(case: &Case, backend: Backend) -> bool {
    let mut builder =
        Config::builder().listen("127.0.0.1:0".parse().unwrap()).threads(1).backend(backend);
    if let Some(deflate) = case.deflate {
        builder = builder.deflate(deflate);
    }
    let wss = case.tls.then(Wss::new);
    if let Some(wss) = &wss {
        builder = builder.tls(wss.server());
    }
    let tls = wss.as_ref().map(|wss| Arc::clone(&wss.client));
    let config = builder.build().expect("config");
    let server = Server::start(config, |_| {
        // Runs on the loop's thread: count its allocations from here on.
        COUNTED.with(|counted| counted.set(true));
        EchoHandler
    })
    .expect("server");
    let addr = server.local_addrs()[0];

    let echoed = Arc::new(AtomicU64::new(0));
    let (warm_up, target) = (case.warm_up, case.warm_up + case.measured);
    let (deflate, text) = (case.deflate.is_some(), case.text);
    let start = Arc::new(Barrier::new(CLIENT_THREADS + 1));
    // Connections close only after the count is taken (closing allocates, e.g. the slab's
    // free list, and is not the echo path).
    let done = Arc::new(Barrier::new(CLIENT_THREADS + 1));
    let clients: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let echoed = Arc::clone(&echoed);
            let start = Arc::clone(&start);
            let done = Arc::clone(&done);
            let tls = tls.clone();
            std::thread::spawn(move || {
                let mut conns: Vec<Client> = (0..CONNECTIONS_PER_THREAD)
                    .map(|c| {
                        let seed = (t * CONNECTIONS_PER_THREAD + c) as u64 + 1;
                        Client::connect(addr, seed, deflate, tls.as_ref())
                    })
                    .collect();
                start.wait();
                while echoed.load(Ordering::Relaxed) < target {
                    for conn in &mut conns {
                        conn.round(text);
                    }
                    echoed.fetch_add((CONNECTIONS_PER_THREAD * WINDOW) as u64, Ordering::Relaxed);
                }
                done.wait();
                drop(conns);
            })
        })
        .collect();
    start.wait();
    let (allocations, messages, elapsed) = measure(&echoed, warm_up, target);
    done.wait();
    for client in clients {
        client.join().expect("client thread");
    }
    server.shutdown(Duration::from_secs(2));

    let per_million = allocations as f64 * 1e6 / messages as f64;
    println!(
        "alloc/{}/{backend:?}: {allocations} allocations on the loop thread over {messages} \
         echoed {}-byte messages = {per_million:.2} per million ({:.0} msg/s, {} connections, \
         1 loop)",
        case.name,
        text.len(),
        messages as f64 / elapsed.as_secs_f64(),
        CLIENT_THREADS * CONNECTIONS_PER_THREAD,
    );
    allocations == 0
}

/// Allocations and messages between `warm_up` and `target` messages, as the clients count
/// them in `messages`, and the time between.
fn measure(messages: &AtomicU64, warm_up: u64, target: u64) -> (u64, u64, Duration) {
    while messages.load(Ordering::Relaxed) < warm_up {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (allocs_before, before, started) =
        (ALLOCATIONS.load(Ordering::Relaxed), messages.load(Ordering::Relaxed), Instant::now());
    while messages.load(Ordering::Relaxed) < target {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (allocs_after, after, elapsed) =
        (ALLOCATIONS.load(Ordering::Relaxed), messages.load(Ordering::Relaxed), started.elapsed());
    (allocs_after - allocs_before, after - before, elapsed)
}

/// Members of the publish case's room.
const ROOM: usize = 16;

/// A room whose every message is published to two topics its members are subscribed to and
/// one nobody here is (another node's, in a cluster): each member gets it once.
#[derive(Clone, Copy)]
struct SeveralTopics;

impl Handler for SeveralTopics {
    type State = ();

    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::accept(())
    }

    fn on_open(&mut self, conn: &mut Conn<'_>, _: &mut ()) {
        conn.subscribe("prices");
        conn.subscribe("news");
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, _: &mut (), msg: Message<'_>) {
        conn.publish_to(&["prices", "news", "elsewhere"], msg, Audience::Everyone);
    }
}

/// The publish path, with `handler` as the room (each member subscribed to `topics` of its
/// topics); whether it allocated nothing.
fn publish_case<H: Handler + Clone + Send + Sync + 'static>(
    backend: Backend,
    name: &str,
    handler: H,
    topics: u64,
) -> bool {
    let config = Config::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .threads(1)
        .backend(backend)
        .build()
        .expect("config");
    let server = Server::start(config, move |_| {
        // Runs on the loop's thread: count its allocations from here on.
        COUNTED.with(|counted| counted.set(true));
        handler.clone()
    })
    .expect("server");
    let addr = server.local_addrs()[0];
    let (warm_up, target) = (200_000, 1_200_000);
    let text = "twenty bytes of text";
    let delivered = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Barrier::new(2));
    let client = {
        let (delivered, done) = (Arc::clone(&delivered), Arc::clone(&done));
        let handle = server.handle().clone();
        std::thread::spawn(move || {
            let mut members: Vec<Client> =
                (0..ROOM).map(|c| Client::connect(addr, c as u64 + 100, false, None)).collect();
            while handle.topic_stats().subscriptions < ROOM as u64 * topics {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut round = 0;
            while delivered.load(Ordering::Relaxed) < target {
                // One member publishes a window; every member, itself too, receives it.
                members[round % ROOM].send_window(text);
                for member in &mut members {
                    member.recv_window(text);
                }
                delivered.fetch_add((ROOM * WINDOW) as u64, Ordering::Relaxed);
                round += 1;
            }
            done.wait();
            drop(members);
        })
    };
    let (allocations, deliveries, elapsed) = measure(&delivered, warm_up, target);
    done.wait();
    client.join().expect("client thread");
    server.shutdown(Duration::from_secs(2));
    let per_million = allocations as f64 * 1e6 / deliveries as f64;
    println!(
        "alloc/{name}/{backend:?}: {allocations} allocations on the loop thread over {deliveries} \
         deliveries of {}-byte messages (a room of {ROOM}) = {per_million:.2} per million \
         ({:.0} deliveries/s, 1 loop)",
        text.len(),
        deliveries as f64 / elapsed.as_secs_f64(),
    );
    allocations == 0
}
