//! Listening sockets: one `SO_REUSEPORT` listener per loop and address, so the kernel spreads
//! new connections over the loops; where the system lacks it, one listener per address in
//! loop 0, which hands sockets round-robin to the others.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::error::ServerError;

/// The listeners of every loop.
#[derive(Debug)]
pub(crate) struct Listeners {
    /// `per_loop[i]`: loop `i`'s listeners (all empty but loop 0's without reuse-port).
    pub(crate) per_loop: Vec<Vec<mio::net::TcpListener>>,
    /// The bound address of each configured address (ports resolved).
    pub(crate) local_addrs: Vec<SocketAddr>,
    /// Whether loop 0 accepts for all loops and deals sockets round-robin.
    pub(crate) deal: bool,
}

/// Binds every configured address for every loop.
pub(crate) fn bind(config: &Config) -> Result<Listeners, ServerError> {
    let loops = config.threads();
    let mut reuse_port = config.reuse_port() && loops > 1;
    if reuse_port && !reuse_port_works() {
        tracing::info!("SO_REUSEPORT unavailable; loop 0 accepts for all loops");
        reuse_port = false;
    }
    let mut per_loop: Vec<Vec<mio::net::TcpListener>> = (0..loops).map(|_| Vec::new()).collect();
    let mut local_addrs = Vec::with_capacity(config.listen().len());
    for &addr in config.listen() {
        let fail = |source: io::Error| ServerError::Listen { addr, source };
        if reuse_port && addr.port() != 0 {
            // SO_REUSEPORT would let us share a port another process of this user already
            // listens on, silently splitting its traffic. Bind once without it to find out.
            drop(listener(addr, config, false).map_err(fail)?);
        }
        let first = listener(addr, config, reuse_port).map_err(fail)?;
        let local = first.local_addr().map_err(fail)?;
        per_loop[0].push(mio::net::TcpListener::from_std(first));
        if reuse_port {
            for listeners in per_loop.iter_mut().skip(1) {
                let next = listener(local, config, true).map_err(fail)?;
                listeners.push(mio::net::TcpListener::from_std(next));
            }
        }
        local_addrs.push(local);
    }
    Ok(Listeners { per_loop, local_addrs, deal: !reuse_port && loops > 1 })
}

/// A non-blocking listening socket on `addr`.
fn listener(
    addr: SocketAddr,
    config: &Config,
    reuse_port: bool,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // `[::]:p` and `0.0.0.0:p` can then be listed side by side.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    if reuse_port {
        set_reuse_port(&socket)?;
    }
    socket.set_nonblocking(true)?;
    if config.nodelay() {
        // Accepted sockets inherit it on Linux; each is also set on accept elsewhere.
        socket.set_tcp_nodelay(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(config.backlog())?;
    Ok(socket.into())
}

#[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))))]
fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
)))]
fn set_reuse_port(_: &Socket) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Whether this system balances connections over `SO_REUSEPORT` listeners.
fn reuse_port_works() -> bool {
    // Linux and the BSDs with load balancing (FreeBSD's SO_REUSEPORT_LB is not used here)
    // spread accepts; elsewhere the option only allows binding twice.
    cfg!(any(target_os = "linux", target_os = "android", target_os = "dragonfly"))
        && Socket::new(Domain::IPV4, Type::STREAM, None)
            .and_then(|socket| set_reuse_port(&socket))
            .is_ok()
}

/// One loop's listener on a loopback port of its own, with TCP_NODELAY as given, and its
/// address: what a backend's own tests accept from.
#[cfg(test)]
pub(crate) fn loopback_listener(nodelay: bool) -> (mio::net::TcpListener, SocketAddr) {
    let config = Config::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .threads(1)
        .nodelay(nodelay)
        .build()
        .unwrap();
    let mut listeners = bind(&config).unwrap();
    (listeners.per_loop[0].remove(0), listeners.local_addrs[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(addr: &str, threads: usize) -> Config {
        Config::builder().listen(addr.parse().unwrap()).threads(threads).build().unwrap()
    }

    #[test]
    fn port_zero_is_resolved_once_and_shared_by_every_loop() {
        let listeners = bind(&config("127.0.0.1:0", 3)).unwrap();
        let local = listeners.local_addrs[0];
        assert_ne!(local.port(), 0);
        for loop_listeners in listeners.per_loop.iter().filter(|l| !l.is_empty()) {
            assert_eq!(loop_listeners[0].local_addr().unwrap(), local);
        }
    }

    #[test]
    fn a_port_in_use_is_refused_even_with_reuse_port() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = bind(&config(&addr, 2)).unwrap_err();
        assert_eq!(err.to_string(), format!("cannot listen on {addr}: address in use"));
    }
}
