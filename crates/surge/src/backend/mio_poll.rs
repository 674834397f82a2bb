//! The mio backend: edge-triggered readiness (epoll on Linux), `SO_REUSEPORT` listeners,
//! writes at once through the transport.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use super::{Backend, Ready};
use crate::key::ConnKey;
use crate::transport::Stream;

/// The waker's token.
pub(crate) const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE - i`; connection tokens are far below.
const LISTENER_BASE: usize = usize::MAX - 1;
/// Listeners a loop may have (tokens reserved for them).
const MAX_LISTENERS: usize = 1 << 16;

// Tokens carry a connection's generation in their upper half.
const _: () = assert!(usize::BITS >= 64, "surge needs a 64-bit target");

fn token(key: ConnKey) -> Token {
    Token(key.to_u64() as usize)
}

fn key_of(token: Token) -> ConnKey {
    ConnKey::from_u64(token.0 as u64)
}

/// One loop's poll, its events and its listeners.
pub(crate) struct MioBackend {
    poll: Poll,
    events: Events,
    listeners: Vec<TcpListener>,
    nodelay: bool,
}

impl MioBackend {
    /// Registers the listeners with `poll`; fails when the poller refuses them.
    pub(crate) fn new(
        poll: Poll,
        mut listeners: Vec<TcpListener>,
        nodelay: bool,
    ) -> io::Result<Self> {
        assert!(listeners.len() <= MAX_LISTENERS, "listeners past the token space");
        for (i, listener) in listeners.iter_mut().enumerate() {
            poll.registry().register(listener, Token(LISTENER_BASE - i), Interest::READABLE)?;
        }
        Ok(MioBackend { poll, events: Events::with_capacity(1024), listeners, nodelay })
    }
}

impl Backend for MioBackend {
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.poll.poll(&mut self.events, timeout)
    }

    fn drain(&mut self, mut f: impl FnMut(Ready<'_>)) {
        for event in self.events.iter() {
            match event.token() {
                WAKER => f(Ready::Wake),
                Token(t) if t > LISTENER_BASE - MAX_LISTENERS => {
                    f(Ready::Listener(LISTENER_BASE - t))
                }
                t => {
                    let key = key_of(t);
                    let peer_done = event.is_read_closed() || event.is_error();
                    if event.is_readable() || peer_done {
                        f(Ready::Input { key, peer_done });
                    }
                    if event.is_writable() {
                        f(Ready::Output(key));
                    }
                }
            }
        }
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn listeners(&self) -> usize {
        self.listeners.len()
    }

    fn accept(&mut self, index: usize) -> io::Result<Option<(Stream, SocketAddr)>> {
        let Some(listener) = self.listeners.get(index) else { return Ok(None) };
        match listener.accept() {
            Ok((stream, peer)) => {
                // Linux gives an accepted socket the listener's TCP_NODELAY (the acceptor
                // sets it there), which saves a setsockopt per connection; elsewhere it is
                // set here. Best effort: a socket that refuses still works.
                if self.nodelay && !cfg!(target_os = "linux") {
                    let _ = stream.set_nodelay(true);
                }
                Ok(Some((Stream::Tcp(stream), peer)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn stop_listening(&mut self) {
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
    }

    fn register(&mut self, key: ConnKey, stream: &mut Stream) -> io::Result<()> {
        self.poll.registry().register(stream, token(key), Interest::READABLE)
    }

    fn watch_writable(&mut self, key: ConnKey, stream: &mut Stream, on: bool) -> io::Result<()> {
        let interest =
            if on { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        self.poll.registry().reregister(stream, token(key), interest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_clear_of_reserved_ones() {
        for (slot, generation) in [(0, 0), (1, 2), (u32::MAX - MAX_LISTENERS as u32 - 2, u32::MAX)]
        {
            let key = ConnKey { slot, generation };
            let tok = token(key);
            assert_eq!(key_of(tok), key);
            assert!(tok.0 <= LISTENER_BASE - MAX_LISTENERS);
        }
    }

    /// Accepted sockets get TCP_NODELAY as configured, set on them or inherited from the
    /// listener (Linux), and not otherwise.
    #[test]
    fn accepted_sockets_have_nodelay_as_configured() {
        for nodelay in [true, false] {
            let (listener, addr) = crate::acceptor::loopback_listener(nodelay);
            let mut backend =
                MioBackend::new(Poll::new().unwrap(), vec![listener], nodelay).unwrap();
            let _client = std::net::TcpStream::connect(addr).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            let accepted = loop {
                if let Some((Stream::Tcp(stream), _)) = backend.accept(0).unwrap() {
                    break stream;
                }
                assert!(Instant::now() < deadline, "nothing to accept");
                std::thread::sleep(Duration::from_millis(1));
            };
            assert_eq!(accepted.nodelay().unwrap(), nodelay);
        }
    }
}
