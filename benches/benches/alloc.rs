//! Heap allocations on the server's event-loop thread per million echoed messages, after
//! warm-up. The target is zero: the steady-state echo path reads into the loop's buffer,
//! hands the message over borrowed, encodes the reply into a pooled buffer and writes it.
//!
//! A counting global allocator counts only on threads that opted in; the handler factory
//! runs on the loop's thread, so it opts the loop in. Clients (same process, other
//! threads) pipeline 20-byte text messages over loopback.
//!
//! ```text
//! cargo bench -p surge-benches --bench alloc            # report
//! cargo bench -p surge-benches --bench alloc -- --strict # exit non-zero unless zero
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use surge::echo::EchoHandler;
use surge::{Config, Server};
use surge_proto::connection::{Connection, Event, Limits};
use surge_proto::handshake::{ClientHandshake, ClientRequest, EMPTY_HEADER};
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
const WARM_UP: u64 = 200_000;
const MEASURED: u64 = 1_000_000;

/// One client connection: a blocking socket and the client side of the protocol.
struct Client {
    stream: TcpStream,
    ws: Connection,
    buf: Vec<u8>,
    assembly: Vec<u8>,
    out: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr, seed: u64) -> Client {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut out = Vec::new();
        let host = addr.to_string();
        let nonce = (u128::from(seed) * 0x9E37_79B9_7F4A_7C15).to_le_bytes();
        let mut handshake =
            ClientHandshake::start(&ClientRequest::new(&host, "/"), nonce, &mut out).unwrap();
        stream.write_all(&out).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [EMPTY_HEADER; 16];
            if let Some(response) = handshake.parse_response(&buf, &mut headers).unwrap() {
                let head = response.head_len();
                assert_eq!(head, buf.len(), "no frames before the first message");
                break;
            }
        }
        let ws = Connection::client(Limits::default(), seed);
        Client { stream, ws, buf: vec![0; 64 * 1024], assembly: Vec::new(), out }
    }

    /// Sends a window of messages in one write and reads their echoes back.
    fn round(&mut self) {
        self.out.clear();
        for _ in 0..WINDOW {
            self.ws.send(Message::Text("twenty bytes of text"), &mut self.out).unwrap();
        }
        self.stream.write_all(&self.out).unwrap();
        let mut echoed = 0;
        while echoed < WINDOW {
            let n = self.stream.read(&mut self.buf).unwrap();
            assert!(n > 0, "server closed");
            let mut used = 0;
            while used < n {
                let (step, event) = self.ws.read(&mut self.buf[used..n], &mut self.assembly);
                used += step;
                match event {
                    Some(Event::Message(Message::Text(text))) => {
                        assert_eq!(text.len(), 20);
                        echoed += 1;
                    }
                    Some(other) => panic!("unexpected {other:?}"),
                    None => break,
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let strict = std::env::args().any(|arg| arg == "--strict");
    let config = Config::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .threads(1)
        .build()
        .expect("config");
    let server = Server::start(config, |_| {
        // Runs on the loop's thread: count its allocations from here on.
        COUNTED.with(|counted| counted.set(true));
        EchoHandler
    })
    .expect("server");
    let addr = server.local_addrs()[0];

    let echoed = Arc::new(AtomicU64::new(0));
    let target = WARM_UP + MEASURED;
    let start = Arc::new(Barrier::new(CLIENT_THREADS + 1));
    // Connections close only after the count is taken (closing allocates, e.g. the slab's
    // free list, and is not the echo path).
    let done = Arc::new(Barrier::new(CLIENT_THREADS + 1));
    let clients: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let echoed = Arc::clone(&echoed);
            let start = Arc::clone(&start);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut conns: Vec<Client> = (0..CONNECTIONS_PER_THREAD)
                    .map(|c| Client::connect(addr, (t * CONNECTIONS_PER_THREAD + c) as u64 + 1))
                    .collect();
                start.wait();
                while echoed.load(Ordering::Relaxed) < target {
                    for conn in &mut conns {
                        conn.round();
                    }
                    echoed.fetch_add((CONNECTIONS_PER_THREAD * WINDOW) as u64, Ordering::Relaxed);
                }
                done.wait();
                drop(conns);
            })
        })
        .collect();
    start.wait();

    while echoed.load(Ordering::Relaxed) < WARM_UP {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (allocs_before, echoed_before, started) =
        (ALLOCATIONS.load(Ordering::Relaxed), echoed.load(Ordering::Relaxed), Instant::now());
    while echoed.load(Ordering::Relaxed) < target {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (allocs_after, echoed_after, elapsed) =
        (ALLOCATIONS.load(Ordering::Relaxed), echoed.load(Ordering::Relaxed), started.elapsed());
    done.wait();
    for client in clients {
        client.join().expect("client thread");
    }
    server.shutdown(Duration::from_secs(2));

    let messages = echoed_after - echoed_before;
    let allocations = allocs_after - allocs_before;
    let per_million = allocations as f64 * 1e6 / messages as f64;
    println!(
        "alloc/echo: {allocations} allocations on the loop thread over {messages} echoed \
         messages = {per_million:.2} per million ({:.0} msg/s, {} connections, 1 loop)",
        messages as f64 / elapsed.as_secs_f64(),
        CLIENT_THREADS * CONNECTIONS_PER_THREAD,
    );
    if strict && allocations > 0 {
        eprintln!("alloc/echo: expected no allocation on the steady-state echo path");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
