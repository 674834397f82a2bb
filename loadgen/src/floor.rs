//! "The floor": a minimal raw-TCP echo server (no WebSocket framing), the lower bound any
//! WebSocket server's numbers are measured against, and the target of the raw-mode tests.
//!
//! Each thread runs its own mio loop and its own `SO_REUSEPORT` listener on the shared port, so
//! the kernel spreads connections over the threads. A connection echoes what it reads; when the
//! peer does not read its echoes, it stops reading until they drain (no unbounded buffering).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use clap::Args;

use crate::error::Error;
use crate::platform;

/// Options of `floor`.
#[derive(Debug, Clone, Args)]
pub struct FloorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9002")]
    pub listen: SocketAddr,
    /// Threads.
    #[arg(short, long, default_value_t = 1)]
    pub threads: usize,
    /// Pin thread i to core i.
    #[arg(long)]
    pub pin: bool,
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
const READ_BUF: usize = 64 * 1024;

/// A running echo server; stops its threads when shut down or dropped.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServer {
    /// Starts `threads` echo threads listening on `bind` (port 0: an ephemeral port), thread `i`
    /// pinned to `cores[i % cores.len()]` when `cores` is not empty.
    pub fn start(bind: SocketAddr, threads: usize, cores: &[usize]) -> Result<Self, Error> {
        let os = |what| move |source| Error::Os { what, source };
        let threads = threads.max(1);
        let mut addr = bind;
        let mut listeners = Vec::with_capacity(threads);
        for _ in 0..threads {
            let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
                .map_err(os("echo server socket"))?;
            sock.set_reuse_address(true).map_err(os("SO_REUSEADDR"))?;
            sock.set_reuse_port(true).map_err(os("SO_REUSEPORT"))?;
            sock.set_nonblocking(true).map_err(os("O_NONBLOCK"))?;
            sock.bind(&addr.into()).map_err(os("echo server bind"))?;
            sock.listen(4096).map_err(os("echo server listen"))?;
            // Later threads share the port the first one got.
            addr = sock
                .local_addr()
                .map_err(os("echo server address"))?
                .as_socket()
                .expect("an inet socket");
            listeners.push(TcpListener::from_std(sock.into()));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut wakers = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for (i, mut listener) in listeners.into_iter().enumerate() {
            let poll = Poll::new().map_err(os("echo server poll"))?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(os("echo waker"))?);
            poll.registry()
                .register(&mut listener, LISTENER, Interest::READABLE)
                .map_err(os("echo server register"))?;
            wakers.push(waker);
            let stop = Arc::clone(&stop);
            let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
            let handle = std::thread::Builder::new()
                .name(format!("floor-{i}"))
                .spawn(move || {
                    if let Some(core) = core {
                        // The floor serves unpinned rather than not at all; it says so.
                        if let Err(e) = platform::pin_current_thread(core) {
                            eprintln!(
                                "surge-loadgen: floor thread {i}: cannot pin to core {core}: {e}"
                            );
                        }
                    }
                    serve(poll, listener, &stop);
                })
                .map_err(os("echo server thread"))?;
            handles.push(handle);
        }
        Ok(EchoServer { addr, stop, wakers, threads: handles })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the threads and waits for them.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            let _ = w.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

struct EchoConn {
    stream: TcpStream,
    out: Vec<u8>,
    out_pos: usize,
}

/// Echoes until the peer is gone (false) or would block (true).
fn pump(c: &mut EchoConn, buf: &mut [u8]) -> bool {
    loop {
        while c.out_pos < c.out.len() {
            match c.stream.write(&c.out[c.out_pos..]) {
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        c.out.clear();
        c.out_pos = 0;
        let n = match c.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let mut done = 0;
        while done < n {
            match c.stream.write(&buf[done..n]) {
                Ok(w) => done += w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        // Keep what the socket would not take; the loop flushes it before reading more.
        c.out.extend_from_slice(&buf[done..n]);
        // A short read drained the socket: the next data raises a new edge.
        if c.out.is_empty() && n < buf.len() {
            return true;
        }
    }
}

fn serve(mut poll: Poll, listener: TcpListener, stop: &AtomicBool) {
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Option<EchoConn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    // Set when accept ran out of descriptors: retry on a timer instead of an edge.
    let mut accept_pending = false;
    while !stop.load(Ordering::Relaxed) {
        let timeout = accept_pending.then_some(Duration::from_millis(10));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let mut accept = accept_pending;
        for ev in events.iter() {
            match ev.token() {
                LISTENER => accept = true,
                WAKER => {}
                Token(i) => {
                    let alive = conns[i].as_mut().is_some_and(|c| pump(c, &mut buf));
                    if !alive {
                        if let Some(mut c) = conns[i].take() {
                            let _ = poll.registry().deregister(&mut c.stream);
                            free.push(i);
                        }
                    }
                }
            }
        }
        if accept {
            accept_pending = false;
            loop {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let i = free.pop().unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        if poll.registry().register(&mut stream, Token(i), interest).is_err() {
                            free.push(i);
                            continue;
                        }
                        conns[i] = Some(EchoConn { stream, out: Vec::new(), out_pos: 0 });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                    Err(_) => {
                        accept_pending = true;
                        break;
                    }
                }
            }
        }
    }
}

/// `surge-loadgen floor`: serves until Ctrl-C.
pub fn main(args: &FloorArgs) -> Result<(), Error> {
    let cores: Vec<usize> = if args.pin { (0..args.threads).collect() } else { Vec::new() };
    platform::raise_fd_limit().map_err(Error::os("descriptor limit"))?;
    let server = EchoServer::start(args.listen, args.threads, &cores)?;
    eprintln!(
        "TCP echo floor on tcp://{} ({} threads); Ctrl-C stops it",
        server.addr(),
        args.threads
    );
    platform::install_interrupt_handler().map_err(Error::os("SIGINT handler"))?;
    while !platform::interrupted() {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.shutdown();
    Ok(())
}
