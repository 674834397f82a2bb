//! What the peer echo servers share: the command line and the runtimes.
//!
//! ```text
//! fws-echo | tungstenite-echo | hyper-health [--listen 127.0.0.1:PORT] [--threads N] [--runtime current|multi]
//! ```
//!
//! `--runtime current --threads N`: N threads, each with its own current-thread tokio runtime
//! and its own `SO_REUSEPORT` listener on the same address (thread per core, as Surge runs).
//! `--runtime multi --threads N`: one multi-thread runtime with N workers and one listener.
//! Accepted sockets get `TCP_NODELAY`, as Surge's and Node `ws`'s do. Prints
//! `listening ADDR` once bound. The process ends on SIGTERM or SIGINT (the default action);
//! benches/compare.sh also runs it under `timeout`.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// Which tokio runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// One current-thread runtime per thread.
    Current,
    /// One multi-thread (work-stealing) runtime.
    Multi,
}

/// The command line of a peer.
#[derive(Debug, Clone)]
pub struct Args {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Threads (runtimes for `current`, workers for `multi`).
    pub threads: usize,
    /// The runtime.
    pub runtime: Runtime,
}

impl Args {
    /// Parses the process's arguments; exits with a usage line on a bad one.
    pub fn parse(name: &str) -> Args {
        let usage = || -> ! {
            eprintln!(
                "usage: {name} [--listen 127.0.0.1:PORT] [--threads N] [--runtime current|multi]"
            );
            std::process::exit(2)
        };
        let mut args = Args {
            listen: "127.0.0.1:9001".parse().unwrap(),
            threads: 1,
            runtime: Runtime::Current,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().unwrap_or_else(|| usage());
            match flag.as_str() {
                "--listen" => args.listen = value.parse().unwrap_or_else(|_| usage()),
                "--threads" => {
                    args.threads = value.parse().ok().filter(|&n| n > 0).unwrap_or_else(|| usage())
                }
                "--runtime" => {
                    args.runtime = match value.as_str() {
                        "current" => Runtime::Current,
                        "multi" => Runtime::Multi,
                        _ => usage(),
                    }
                }
                _ => usage(),
            }
        }
        args
    }
}

fn bind(addr: SocketAddr, reuseport: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuseport {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

async fn accept_loop<F, Fut>(listener: std::net::TcpListener, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::from_std(listener).expect("listener");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(handle(stream));
            }
            Err(e) => {
                // EMFILE and the like: say so and keep accepting.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Runs the server: `handle` is spawned for each accepted connection. Never returns.
pub fn serve<F, Fut>(args: &Args, handle: F) -> !
where
    F: Fn(TcpStream) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let reuseport = args.runtime == Runtime::Current && args.threads > 1;
    let first = bind(args.listen, reuseport).unwrap_or_else(|e| {
        eprintln!("cannot listen on {}: {e}", args.listen);
        std::process::exit(1)
    });
    let addr = first.local_addr().expect("local address");
    match args.runtime {
        Runtime::Multi => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.threads)
                .enable_all()
                .build()
                .expect("runtime");
            println!("listening {addr}");
            rt.block_on(accept_loop(first, handle));
        }
        Runtime::Current => {
            // The other listeners join the first one's port (SO_REUSEPORT), before any accept.
            let mut listeners = vec![first];
            for _ in 1..args.threads {
                listeners.push(bind(addr, true).expect("SO_REUSEPORT listener"));
            }
            println!("listening {addr}");
            let threads: Vec<_> = listeners
                .into_iter()
                .map(|listener| {
                    let handle = handle.clone();
                    std::thread::spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("runtime");
                        rt.block_on(accept_loop(listener, handle));
                    })
                })
                .collect();
            for t in threads {
                let _ = t.join();
            }
        }
    }
    std::process::exit(1)
}
