//! `surge-loadgen autobahn-client`: Surge's client side graded by Autobahn|Testsuite.
//!
//! Autobahn's `wstest -m fuzzingserver` grades a client. Its protocol:
//!
//! 1. `GET /getCaseCount`: the server sends the number of cases as a text message and closes.
//! 2. For each case `N` in `1..=count`, `GET /runCase?case=N&agent=AGENT`: the client echoes
//!    every message (text as text, binary as binary) until the server closes; the server
//!    judges what the client sent, how it answered pings and how it closed.
//! 3. `GET /updateReports?agent=AGENT`: the server writes its report (`index.json` per agent).
//!
//! Every connection offers permessage-deflate (`permessage-deflate; client_max_window_bits`,
//! what browsers send); the server's answer decides.
//!
//! Every byte of protocol work is the shared client endpoint's ([`ClientEndpoint`], over
//! surge-proto), exactly as the load generator's workers use it: its blocking opening
//! handshake, then frames, pongs and the close handshake. The I/O around it is a small
//! blocking loop over a [`std::net::TcpStream`], one connection at a time, with a deadline per
//! case so that a stuck case cannot hang the run.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::Args;
use surge_client::blocking::{self, is_timeout, read_until, write_until, ConnectError};
use surge_client::ClientEndpoint;
use surge_proto::connection::{Event, Limits};
use surge_proto::deflate::ClientOffer;
use surge_proto::error::ProtocolError;
use surge_proto::handshake::ClientRequest;
use surge_proto::message::Message;

pub use crate::error::AutobahnError;
use crate::error::Error;
use crate::platform;
use crate::target::Target;
use crate::units::parse_duration;

/// Options of `autobahn-client`.
#[derive(Debug, Clone, Args)]
pub struct AutobahnArgs {
    /// The fuzzingserver: ws://HOST:PORT (the spec's "url").
    pub url: String,
    /// The agent name the report files the results under.
    #[arg(long, default_value = "surge-loadgen")]
    pub agent: String,
    /// Longest time one case (one connection) may take; past it the case is abandoned.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub case_timeout: Duration,
    /// Run only case number N (1-based, as the server counts; repeatable). Default: all.
    #[arg(long, value_name = "N")]
    pub case: Vec<u32>,
}

const READ_BUF: usize = 64 * 1024;
/// After the close handshake, how long to wait for the server to end TCP (it closes first,
/// RFC 6455 §7.1.1) before the client closes it.
const TCP_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How one WebSocket connection ended.
#[derive(Debug)]
pub enum Ending {
    /// The close handshake completed; the code the server's Close carried (None: no code).
    Closed(Option<u16>),
    /// The server broke the protocol; the client sent a Close with this error's code.
    Failed(ProtocolError),
    /// TCP ended (EOF or reset) without a completed close handshake.
    Dropped,
    /// The connection outlived its time limit.
    TimedOut,
    /// A socket error after the handshake.
    Io(io::Error),
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Closed(Some(code)) => write!(f, "closed {code}"),
            Ending::Closed(None) => write!(f, "closed (no code)"),
            Ending::Failed(e) => write!(f, "failed: {e} (sent {})", e.close_code().as_u16()),
            Ending::Dropped => write!(f, "TCP ended without a close handshake"),
            Ending::TimedOut => write!(f, "TIMED OUT"),
            Ending::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

/// What a connection did: how it ended, what it echoed, the first text message it received.
#[derive(Debug)]
pub struct Session {
    /// How it ended.
    pub ending: Ending,
    /// Messages echoed.
    pub echoed: u64,
    /// The first text message received (the case count, on `/getCaseCount`).
    pub first_text: Option<String>,
}

/// Where the fuzzingserver is and how long a connection may take.
#[derive(Debug, Clone)]
pub struct Server {
    addr: SocketAddr,
    host: String,
    limit: Duration,
}

impl Server {
    /// The fuzzingserver at `url` (`ws://HOST:PORT`); each connection gets at most `limit`.
    pub fn new(url: &str, limit: Duration) -> Result<Self, AutobahnError> {
        match Target::parse(Some(url))? {
            Target::Ws { addr, host, path, secure: false }
                if path == "/" && url.starts_with("ws://") =>
            {
                Ok(Server { addr, host, limit })
            }
            _ => Err(AutobahnError::InvalidUrl(url.to_owned())),
        }
    }

    /// Opens `target` and serves the connection until it ends: echoes every message when
    /// `echo`, keeps the first text message either way.
    pub fn session(&self, target: &str, echo: bool) -> Result<Session, AutobahnError> {
        let deadline = Instant::now() + self.limit;
        let mut stream = TcpStream::connect_timeout(&self.addr, self.limit)
            .map_err(|source| AutobahnError::Connect { target: target.to_owned(), source })?;
        let _ = stream.set_nodelay(true);
        let keys = platform::random_keys().map_err(AutobahnError::Random)?;
        let timed_out = Session { ending: Ending::TimedOut, echoed: 0, first_text: None };
        let request = ClientRequest::new(&self.host, target);
        // Offered on every connection, as browsers do: the fuzzingserver agrees in the
        // compression cases (12.*, 13.*) only, with the parameters each case names.
        let offer = Some(ClientOffer::default());
        let (endpoint, mut first) = match blocking::open_with(
            &mut stream,
            &request,
            keys,
            Limits::default(),
            offer,
            deadline,
        ) {
            Ok(open) => open,
            Err(e) if e.is_timeout() => return Ok(timed_out),
            Err(ConnectError::Handshake(source)) => {
                return Err(AutobahnError::Handshake { target: target.to_owned(), source })
            }
            Err(ConnectError::Eof) => {
                return Err(AutobahnError::HandshakeEof { target: target.to_owned() })
            }
            Err(ConnectError::Io(source) | ConnectError::Connect(source)) => {
                return Err(AutobahnError::HandshakeIo { target: target.to_owned(), source })
            }
        };
        let mut buf = vec![0u8; READ_BUF];
        let mut ws = Ws {
            endpoint,
            out: Vec::new(),
            echo,
            session: Session { ending: Ending::Dropped, echoed: 0, first_text: None },
            close_code: None,
            error: None,
        };
        // Bytes after the head are the server's first frames.
        ws.feed(&mut first);
        ws.session.ending = ws.serve(&mut stream, &mut buf, deadline);
        Ok(ws.session)
    }
}

/// One open WebSocket connection.
struct Ws {
    endpoint: ClientEndpoint,
    out: Vec<u8>,
    echo: bool,
    session: Session,
    close_code: Option<Option<u16>>,
    error: Option<ProtocolError>,
}

impl Ws {
    /// Feeds received bytes to the connection: echoes messages, and appends what the
    /// protocol owes (pongs, the Close reply or the Close reporting a violation) right after
    /// the event that caused it, so that frames go out in the order their causes came in.
    fn feed(&mut self, mut input: &mut [u8]) {
        loop {
            let (used, event, conn) = self.endpoint.read(input);
            let Some(event) = event else { break };
            match event {
                Event::Message(msg) => {
                    if let (None, Message::Text(text)) = (&self.session.first_text, msg) {
                        self.session.first_text = Some(text.to_owned());
                    }
                    if self.echo && conn.send(msg, &mut self.out).is_ok() {
                        self.session.echoed += 1;
                    }
                }
                Event::Ping(_) | Event::Pong(_) => {}
                Event::Close(frame) => self.close_code = Some(frame.code().map(|c| c.as_u16())),
                Event::Error(e) => self.error = Some(e),
            }
            conn.poll_transmit(&mut self.out);
            input = &mut input[used..];
        }
    }

    /// Reads, answers and writes until the WebSocket is closed, then waits for the server to
    /// end TCP.
    fn serve(&mut self, stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Ending {
        loop {
            if !self.out.is_empty() {
                if let Err(e) = write_until(stream, &self.out, deadline) {
                    return self.ending_after(e);
                }
                self.out.clear();
            }
            if self.endpoint.protocol().is_closed() {
                // The server ends TCP first; wait for its FIN (bounded), discarding input.
                let wait = deadline.min(Instant::now() + TCP_CLOSE_WAIT);
                while let Ok(n) = read_until(stream, buf, wait) {
                    if n == 0 {
                        break;
                    }
                }
                return match (self.error, self.close_code) {
                    (Some(e), _) => Ending::Failed(e),
                    (None, Some(code)) => Ending::Closed(code),
                    // The close handshake timed out.
                    (None, None) => Ending::TimedOut,
                };
            }
            let wake =
                self.endpoint.protocol().poll_timeout().map_or(deadline, |t| t.min(deadline));
            match read_until(stream, buf, wake) {
                Ok(0) => return Ending::Dropped,
                Ok(n) => self.feed(&mut buf[..n]),
                Err(e) if is_timeout(&e) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ending::TimedOut;
                    }
                    self.endpoint.connection().handle_timeout(now);
                }
                Err(e) => return self.ending_after(e),
            }
        }
    }

    fn ending_after(&self, e: io::Error) -> Ending {
        match e.kind() {
            _ if is_timeout(&e) => Ending::TimedOut,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => Ending::Dropped,
            _ => Ending::Io(e),
        }
    }
}

/// Checks that `agent` can go into a query string as it is.
pub fn check_agent(agent: &str) -> Result<(), AutobahnError> {
    let ok = !agent.is_empty()
        && agent.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AutobahnError::InvalidAgent(agent.to_owned()))
    }
}

/// `surge-loadgen autobahn-client`: runs every case (or those asked for), then has the
/// server write its report. Fails when a case hit the per-case limit; the verdicts are the
/// report's.
pub fn main(args: &AutobahnArgs) -> Result<(), Error> {
    check_agent(&args.agent)?;
    let server = Server::new(&args.url, args.case_timeout)?;
    let started = Instant::now();
    let count = server.session("/getCaseCount", false)?;
    let count = count
        .first_text
        .as_deref()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .ok_or(AutobahnError::CaseCount(count.first_text))?;
    let cases: Vec<u32> = if args.case.is_empty() {
        (1..=count).collect()
    } else {
        args.case.iter().copied().filter(|&n| (1..=count).contains(&n)).collect()
    };
    println!(
        "autobahn-client: {} of {count} cases, agent {}, {}",
        cases.len(),
        args.agent,
        args.url
    );
    let mut timed_out = Vec::new();
    let (mut closed, mut failed, mut dropped) = (0, 0, 0);
    for &n in &cases {
        let target = format!("/runCase?case={n}&agent={}", args.agent);
        let t0 = Instant::now();
        let session = server.session(&target, true)?;
        match session.ending {
            Ending::Closed(_) => closed += 1,
            Ending::Failed(_) => failed += 1,
            Ending::TimedOut => timed_out.push(n),
            Ending::Dropped | Ending::Io(_) => dropped += 1,
        }
        println!(
            "case {n}: {} messages echoed, {} ({:.2}s)",
            session.echoed,
            session.ending,
            t0.elapsed().as_secs_f64()
        );
    }
    server.session(&format!("/updateReports?agent={}", args.agent), false)?;
    println!(
        "autobahn-client: {} cases in {:.1}s: {closed} closed, {failed} failed by the client \
         (protocol error), {dropped} ended by TCP, {} timed out; report updated",
        cases.len(),
        started.elapsed().as_secs_f64(),
        timed_out.len()
    );
    if timed_out.is_empty() {
        Ok(())
    } else {
        Err(AutobahnError::CasesTimedOut(timed_out).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names() {
        assert!(check_agent("surge-loadgen_0.1").is_ok());
        assert!(check_agent("").is_err());
        assert!(check_agent("a&b").is_err());
        assert!(check_agent("a b").is_err());
    }

    #[test]
    fn urls() {
        assert!(Server::new("ws://127.0.0.1:9001", Duration::from_secs(1)).is_ok());
        assert!(Server::new("ws://127.0.0.1:9001/runCase", Duration::from_secs(1)).is_err());
        assert!(Server::new("127.0.0.1:9001", Duration::from_secs(1)).is_err());
        assert!(Server::new("tcp://127.0.0.1:9001", Duration::from_secs(1)).is_err());
    }
}
