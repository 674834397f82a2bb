//! The errors that end a run; each displays as one clear line.

use std::io;
use std::path::PathBuf;

/// Why a run, a comparison or a sweep could not go on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asked for something impossible.
    #[error("{0}")]
    Usage(String),
    /// The target did not accept a TCP connection.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The target as given.
        target: String,
        /// What connect(2) reported.
        source: io::Error,
    },
    /// The target refused or botched the WebSocket opening handshake.
    #[error("{target} refused the WebSocket handshake: {reason}")]
    Handshake {
        /// The target as given.
        target: String,
        /// The status line or the defect found.
        reason: String,
    },
    /// More connections were asked for than the process may hold descriptors.
    #[error(
        "{needed} descriptors needed but this process may hold only {limit} (ulimit -Hn); \
         use --connections {max_connections} or fewer, or raise the hard limit"
    )]
    FdLimit {
        /// Descriptors the run needs.
        needed: u64,
        /// The hard limit.
        limit: u64,
        /// The most connections that fit.
        max_connections: u64,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A JSON result file could not be parsed.
    #[error("{}: not a surge-loadgen result: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse failure.
        source: serde_json::Error,
    },
    /// A histogram could not be encoded or decoded.
    #[error("histogram: {0}")]
    Histogram(String),
    /// The in-process Surge server could not start.
    #[error("embedded server: {0}")]
    Embedded(#[from] surge::ServerError),
    /// `autobahn-client` could not carry out Autobahn's fuzzingserver protocol.
    #[error("autobahn-client: {0}")]
    Autobahn(#[from] crate::autobahn::AutobahnError),
    /// A thread or a poll instance could not be created.
    #[error("{what}: {source}")]
    Os {
        /// What was being set up.
        what: &'static str,
        /// The failure.
        source: io::Error,
    },
}

impl Error {
    /// Wraps an I/O failure on `path`.
    pub fn file(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::File { path: path.into(), source }
    }
}
