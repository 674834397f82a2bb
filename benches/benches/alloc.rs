//! Heap allocations on the server's event-loop thread per million messages, after warm-up,
//! on two paths. The target is zero for both.
//!
//! - echo: the loop reads into its buffer, hands the message over borrowed, encodes the
//!   reply into a pooled buffer and writes it.
//! - publish: a room of 16 (`surge broadcast`'s handler: one topic, the sender included);
//!   each message is published, encoded once into a pooled shared frame and queued to every
//!   member.
//!
//! A counting global allocator counts only on threads that opted in; the handler factory
//! runs on the loop's thread, so it opts the loop in. Clients (same process, other
//! threads) pipeline 20-byte text messages over loopback.
//!
//! ```text
//! cargo bench -p surge-benches --bench alloc            # report
//! cargo bench -p surge-benches --bench alloc -- --strict # exit non-zero unless both zero
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use surge::broadcast::RoomHandler;
use surge::echo::EchoHandler;
use surge::{Config, Handler, Server};
use surge_client::blocking::{self, Received};
use surge_client::Keys;
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
const WARM_UP: u64 = 200_000;
const MEASURED: u64 = 1_000_000;
/// Longest wait for a connection or an echo.
const PATIENCE: Duration = Duration::from_secs(20);

/// One client connection: the workspace's blocking client.
struct Client(blocking::Client);

impl Client {
    fn connect(addr: SocketAddr, seed: u64) -> Client {
        let host = addr.to_string();
        let nonce = (u128::from(seed) * 0x9E37_79B9_7F4A_7C15).to_le_bytes();
        let keys = Keys { nonce, mask_seed: seed };
        let request = ClientRequest::new(&host, "/");
        Client(blocking::Client::connect(addr, &request, keys, PATIENCE).expect("connect"))
    }

    /// Sends a window of messages in one write and reads their echoes back.
    fn round(&mut self) {
        self.send_window();
        self.recv_window();
    }

    /// Sends a window of messages in one write.
    fn send_window(&mut self) {
        self.0
            .write_frames(|ws, out| {
                for _ in 0..WINDOW {
                    ws.send(Message::Text("twenty bytes of text"), out).unwrap();
                }
            })
            .unwrap();
    }

    /// Reads a window of messages.
    fn recv_window(&mut self) {
        for _ in 0..WINDOW {
            match self.0.recv_within(PATIENCE).unwrap() {
                Some(Received::Text(text)) => assert_eq!(text.len(), 20),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// A one-loop server whose loop counts its allocations.
fn counted_server<H: Handler + 'static>(handler: fn() -> H) -> Server {
    let config = Config::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .threads(1)
        .build()
        .expect("config");
    Server::start(config, move |_| {
        // Runs on the loop's thread: count its allocations from here on.
        COUNTED.with(|counted| counted.set(true));
        handler()
    })
    .expect("server")
}

/// Allocations and messages between `WARM_UP` and `WARM_UP + MEASURED` messages, as the
/// clients count them in `messages`, and the time between.
fn measure(messages: &AtomicU64) -> (u64, u64, Duration) {
    while messages.load(Ordering::Relaxed) < WARM_UP {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (allocs_before, before, started) =
        (ALLOCATIONS.load(Ordering::Relaxed), messages.load(Ordering::Relaxed), Instant::now());
    while messages.load(Ordering::Relaxed) < WARM_UP + MEASURED {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (allocs_after, after, elapsed) =
        (ALLOCATIONS.load(Ordering::Relaxed), messages.load(Ordering::Relaxed), started.elapsed());
    (allocs_after - allocs_before, after - before, elapsed)
}

/// Prints one case's line; whether it allocated nothing.
fn report(case: &str, (allocations, messages, elapsed): (u64, u64, Duration), what: &str) -> bool {
    let per_million = allocations as f64 * 1e6 / messages as f64;
    println!(
        "alloc/{case}: {allocations} allocations on the loop thread over {messages} {what} \
         = {per_million:.2} per million ({:.0} msg/s, 1 loop)",
        messages as f64 / elapsed.as_secs_f64(),
    );
    allocations == 0
}

fn echo_case() -> bool {
    let server = counted_server(|| EchoHandler);
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
    let counted = measure(&echoed);
    done.wait();
    for client in clients {
        client.join().expect("client thread");
    }
    server.shutdown(Duration::from_secs(2));
    let what = format!("echoed messages ({} connections)", CLIENT_THREADS * CONNECTIONS_PER_THREAD);
    report("echo", counted, &what)
}

/// Members of the publish case's room.
const ROOM: usize = 16;

fn publish_case() -> bool {
    let server = counted_server(|| RoomHandler);
    let addr = server.local_addrs()[0];
    let delivered = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Barrier::new(2));
    let client = {
        let (delivered, done) = (Arc::clone(&delivered), Arc::clone(&done));
        let handle = server.handle().clone();
        std::thread::spawn(move || {
            let mut members: Vec<Client> =
                (0..ROOM).map(|c| Client::connect(addr, c as u64 + 100)).collect();
            while handle.topic_stats().subscriptions < ROOM as u64 {
                std::thread::sleep(Duration::from_millis(1));
            }
            for round in 0.. {
                if delivered.load(Ordering::Relaxed) >= WARM_UP + MEASURED {
                    break;
                }
                // One member publishes a window; every member, itself too, receives it.
                members[round % ROOM].send_window();
                for member in &mut members {
                    member.recv_window();
                }
                delivered.fetch_add((ROOM * WINDOW) as u64, Ordering::Relaxed);
            }
            done.wait();
            drop(members);
        })
    };
    let counted = measure(&delivered);
    done.wait();
    client.join().expect("client thread");
    server.shutdown(Duration::from_secs(2));
    report("publish", counted, &format!("deliveries (a room of {ROOM})"))
}

fn main() -> ExitCode {
    let strict = std::env::args().any(|arg| arg == "--strict");
    let echo = echo_case();
    let publish = publish_case();
    if strict && !(echo && publish) {
        eprintln!("alloc: expected no allocation on the steady-state echo and publish paths");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
