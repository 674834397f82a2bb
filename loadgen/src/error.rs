//! The errors that end a command; each displays as one clear line.

use std::io;
use std::path::PathBuf;

use surge_client::blocking::ConnectError;
use surge_proto::handshake::ClientHandshakeError;

use crate::config::ConfigError;
use crate::stats::HistogramError;
use crate::target::TargetError;

/// Why a run, a comparison or a sweep could not go on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asked for something no run can do.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The target URL is unusable.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A wss run's TLS cannot be set up (no trust, a bad CA file, a bad server name).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsSetupError),
    /// The target did not accept a TCP connection.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The target as given.
        target: String,
        /// What connect(2) reported.
        source: io::Error,
    },
    /// The target refused or botched the WebSocket opening handshake.
    #[error("{target} refused the WebSocket handshake: {failure}")]
    Handshake {
        /// The target as given.
        target: String,
        /// What went wrong.
        failure: ConnectError,
    },
    /// The target's metrics could not be scraped (`--scrape-metrics`).
    #[error(transparent)]
    Scrape(#[from] crate::scrape::ScrapeError),
    /// The operating system's random source failed (handshake nonces, masking seeds).
    #[error("random source: {0}")]
    Random(getrandom::Error),
    /// The run ended without a single echo.
    #[error("no message was echoed ({established} of {requested} connections up)")]
    NothingEchoed {
        /// Connections that came up.
        established: u64,
        /// Connections asked for.
        requested: u64,
    },
    /// The start file holds no Unix time.
    #[error("{}: not a Unix time in seconds: {text:?}", path.display())]
    StartFile {
        /// The file.
        path: PathBuf,
        /// What it holds.
        text: String,
    },
    /// Ctrl-C before the run began.
    #[error("interrupted before the run began")]
    Interrupted,
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
    #[error(transparent)]
    Histogram(#[from] HistogramError),
    /// The in-process Surge server could not start.
    #[error("embedded server: {0}")]
    Embedded(#[from] surge::ServerError),
    /// `merge` could not line the agents up.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// `autobahn-client` could not carry out Autobahn's fuzzingserver protocol.
    #[error("autobahn-client: {0}")]
    Autobahn(#[from] AutobahnError),
    /// A system call failed (a thread, a poll instance, a timer, an accounting call).
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
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

    /// Wraps a failed system call made to do `what`.
    pub fn os(what: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Error::Os { what, source }
    }
}

/// Why the fuzzingserver protocol could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum AutobahnError {
    /// The fuzzingserver's URL is unusable.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The agent name would not survive a query string unescaped.
    #[error("agent name {0:?}: use letters, digits, '.', '_' and '-' only")]
    InvalidAgent(String),
    /// The URL is not `ws://HOST:PORT` (no path: the client adds the fuzzingserver's).
    #[error("{0:?}: give the fuzzingserver as ws://HOST:PORT")]
    InvalidUrl(String),
    /// No TCP connection to the fuzzingserver.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The request target being opened.
        target: String,
        /// What connect(2) reported.
        source: io::Error,
    },
    /// The socket failed before the opening handshake completed.
    #[error("{target}: I/O error during the opening handshake: {source}")]
    HandshakeIo {
        /// The request target being opened.
        target: String,
        /// The failure.
        source: io::Error,
    },
    /// The server refused or botched the opening handshake.
    #[error("{target}: opening handshake: {source}")]
    Handshake {
        /// The request target being opened.
        target: String,
        /// What surge-proto found wrong.
        source: ClientHandshakeError,
    },
    /// The server closed TCP before its handshake answer was complete.
    #[error("{target}: the server closed the connection before answering the handshake")]
    HandshakeEof {
        /// The request target being opened.
        target: String,
    },
    /// The operating system's random source failed (handshake nonce, masking seed).
    #[error("random source: {0}")]
    Random(getrandom::Error),
    /// `/getCaseCount` did not answer a number.
    #[error("/getCaseCount answered {0:?}, not a case count")]
    CaseCount(Option<String>),
    /// Cases did not finish within the per-case limit (their numbers).
    #[error("{} case(s) hit the per-case time limit: {}", .0.len(), case_list(.0))]
    CasesTimedOut(Vec<u32>),
}

fn case_list(cases: &[u32]) -> String {
    cases.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

/// Why several agents' files could not be merged into one report.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The agents' measurements began further apart than one interval: their clocks disagree
    /// (or they did not start together), and their seconds cannot be lined up.
    #[error(
        "{} began {apart_s:.3} s after {}, more than one {interval_s} s interval: the agents' \
         clocks disagree or they did not start together (sync their clocks, start them with \
         --start-at); refusing to merge",
        late.display(),
        early.display()
    )]
    ClocksDisagree {
        /// The file that began first.
        early: PathBuf,
        /// The file that began furthest after it.
        late: PathBuf,
        /// How far apart, seconds.
        apart_s: f64,
        /// The interval length, seconds.
        interval_s: f64,
    },
    /// A result without the absolute start of its measurement (an older surge-loadgen).
    #[error("{}: records no absolute start time (written by an older surge-loadgen)", .0.display())]
    NoStartTime(PathBuf),
    /// An interval log without intervals.
    #[error("{}: no intervals in this log", .0.display())]
    EmptyLog(PathBuf),
    /// A line of an interval log did not parse.
    #[error("{}: not an HdrHistogram interval log (at byte {offset})", path.display())]
    BadLog {
        /// The file.
        path: PathBuf,
        /// Where parsing failed.
        offset: usize,
    },
    /// Neither a `.json` result nor an `.hlog` interval log.
    #[error("{}: give .json results (from --json) or .hlog interval logs (from --hlog)", .0.display())]
    UnknownKind(PathBuf),
    /// A threshold on counts only the JSON results carry, over interval logs alone.
    #[error("threshold {0} needs the agents' .json results (interval logs carry only latencies)")]
    CountsUnknown(String),
}
