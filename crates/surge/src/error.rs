//! Errors of starting and driving a server.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use surge_proto::close::CloseCode;

use crate::config::ConfigError;

/// The server could not start.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listening socket could not be set up.
    #[error("cannot listen on {addr}: {}", Described(source))]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
    /// The readiness poller (epoll, kqueue) could not be set up.
    #[error("cannot create the event poller: {}", Described(source))]
    Poll {
        /// What the system said.
        source: io::Error,
    },
    /// The io_uring backend was asked for and the system refused it (or a loop's ring
    /// could not be set up).
    #[error("cannot set up io_uring: {}", Described(source))]
    IoUring {
        /// What the system said.
        source: io::Error,
    },
    /// A loop thread could not be started.
    #[error("cannot start a loop thread: {}", Described(source))]
    Spawn {
        /// What the system said.
        source: io::Error,
    },
    /// The handler factory panicked for a loop.
    #[error("the handler factory panicked for loop {0}")]
    FactoryPanicked(usize),
}

/// An operation through a [`ServerHandle`](crate::ServerHandle) that cannot be carried out.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleError {
    /// The server has stopped (its loops are gone).
    #[error("the server has stopped")]
    Stopped,
    /// The id names a loop this server does not have.
    #[error("no such loop")]
    NoSuchLoop,
    /// The close code may not be sent (1005, 1006, 1015, or unregistered).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(CloseCode),
}

/// An `io::Error` in words without the `(os error N)` suffix, e.g. "address in use".
struct Described<'a>(&'a io::Error);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = match self.0.kind() {
            io::ErrorKind::AddrInUse => "address in use",
            io::ErrorKind::AddrNotAvailable => "address not available on this host",
            io::ErrorKind::PermissionDenied => "permission denied",
            io::ErrorKind::Unsupported => "not supported on this system",
            _ => return write!(f, "{}", self.0),
        };
        f.write_str(words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_errors_read_as_one_clear_line() {
        let err = ServerError::Listen {
            addr: "127.0.0.1:9001".parse().unwrap(),
            source: io::ErrorKind::AddrInUse.into(),
        };
        assert_eq!(err.to_string(), "cannot listen on 127.0.0.1:9001: address in use");
    }
}
