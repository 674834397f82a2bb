//! `surge`: the Surge WebSocket server from the command line.
//!
//! ```text
//! surge [echo] [--listen ADDR:PORT]... [--threads N] [--pin [CORES]] [--max-message SIZE]
//!       [--max-connections N] [--idle-timeout DUR] [--handshake-timeout DUR]
//!       [--close-timeout DUR] [--backpressure-limit SIZE] [--log LEVEL]
//!       [--tls-cert FILE --tls-key FILE [--tls-sni NAME=CERT,KEY]...]
//!       [--max-connections-per-address N] [--handshake-rate N] [--message-rate N]
//!       [--byte-rate SIZE] [--rate-policy pause|close]
//!       [--deflate[=shared|stream:WINDOW_BITS:MEM_LEVEL]] [--deflate-level N]
//!       [--deflate-threshold SIZE]
//! surge broadcast [the same options] [--cluster redis://HOST:PORT]
//!       [--cluster-sharding auto|on|off] [--backpressure-policy skip|close]
//! ```
//!
//! With `--tls-cert` and `--tls-key` every listener serves wss (TLS 1.2 and 1.3); SIGHUP
//! reads the certificate files again (a bad file is reported and the old chain kept).
//!
//! `echo` sends every message back; `broadcast` is a chat room per path: every message
//! received on path P goes to every connection on path P, the sender included, on every
//! node of the cluster.
//!
//! `--deflate` accepts permessage-deflate offers (RFC 7692): `shared` (the default policy)
//! keeps no compression state per connection, `stream:12:4` gives each connection its own
//! streams with a 12-bit window and memLevel 4 (context takeover).
//!
//! SIGINT or SIGTERM starts a graceful shutdown (Close 1001 to every connection, up to the
//! close timeout for the peers to answer); a second signal exits at once.
#![deny(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use surge::broadcast::RoomHandler;
use surge::echo::EchoHandler;
use surge::tls::TlsConfig;
use surge::{
    Backend, BackpressurePolicy, Config, ConfigBuilder, DeflateConfig, DeflateMemory, Handler,
    LoopIndex, Pinning, RateLimit, RatePolicy, Server, Sharding,
};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(name = "surge", version, about = "A WebSocket (RFC 6455) server.")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    echo: EchoArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send every message back to its sender (the default).
    Echo(EchoArgs),
    /// A room per path: every message goes to every connection on its path, sender included.
    Broadcast(BroadcastArgs),
}

#[derive(Args, Debug)]
struct BroadcastArgs {
    #[command(flatten)]
    server: EchoArgs,
    /// Share the rooms with other nodes through this Redis server.
    #[arg(long, value_name = "redis://HOST:PORT")]
    cluster: Option<String>,
    /// Redis' sharded pub/sub (SSUBSCRIBE/SPUBLISH): auto (where the server has it), on, off.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_sharding)]
    cluster_sharding: Sharding,
    /// A member over the backpressure limit: skip messages (counted) or close it with 1008.
    #[arg(long, value_name = "POLICY", default_value = "skip", value_parser = parse_policy)]
    backpressure_policy: BackpressurePolicy,
}

#[derive(Args, Debug)]
struct EchoArgs {
    /// Address to listen on; repeat for several (IPv4 or IPv6, e.g. [::]:9001).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9001")]
    listen: Vec<SocketAddr>,
    /// Event loops (threads) [default: one per available core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Pin loops to cores: a list such as 0,2,4-7, or all cores when given alone.
    #[arg(long, value_name = "CORES", num_args = 0..=1, default_missing_value = "all")]
    pin: Option<String>,
    /// Largest message (and frame), e.g. 16MiB [default: 16MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_message: Option<u64>,
    /// Open connections; past it, handshakes get 503 [default: 100000].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Silence before a ping (at half) and a close with 1001, e.g. 120s, or "off" [default: 120s].
    #[arg(long, value_name = "DURATION", value_parser = parse_optional_duration)]
    idle_timeout: Option<Idle>,
    /// Time a client has to complete its handshake [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    handshake_timeout: Option<Duration>,
    /// Time a peer has to answer our Close; also the shutdown grace period [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    close_timeout: Option<Duration>,
    /// Unsent bytes per connection at which reading and sending pause [default: 1MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    backpressure_limit: Option<u64>,
    /// Open connections one client address may hold; past it, 503 [default: off].
    #[arg(long, value_name = "N")]
    max_connections_per_address: Option<usize>,
    /// Handshakes per second one client address may make; past it, 429 [default: off].
    #[arg(long, value_name = "N")]
    handshake_rate: Option<u32>,
    /// Messages per second each connection may send [default: off].
    #[arg(long, value_name = "N")]
    message_rate: Option<u32>,
    /// Message bytes per second each connection may send, e.g. 1MiB [default: off].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    byte_rate: Option<u64>,
    /// Past --message-rate or --byte-rate: pause reading, or close with 1008.
    #[arg(long, value_name = "POLICY", value_parser = parse_rate_policy, default_value = "pause")]
    rate_policy: RatePolicy,
    /// PEM certificate chain to serve over TLS (wss); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A further certificate for clients whose SNI is NAME; repeat for several.
    #[arg(long, value_name = "NAME=CERT,KEY", value_parser = parse_sni, requires = "tls_cert")]
    tls_sni: Vec<SniPair>,
    /// What waits for I/O: auto (io_uring where the system allows it, else epoll), epoll,
    /// or io-uring.
    #[arg(long, value_name = "BACKEND", default_value = "auto", value_parser = parse_backend)]
    backend: Backend,
    /// io_uring receive buffers per loop, COUNTxSIZE, e.g. 16x64KiB [default: 8x64KiB].
    #[arg(long, value_name = "COUNTxSIZE", value_parser = parse_buffers)]
    io_uring_buffers: Option<(u16, usize)>,
    /// Accept permessage-deflate: "shared" (no context takeover, per-loop codecs) or
    /// "stream:BITS:MEMLEVEL" (a stream per connection, e.g. stream:12:4).
    #[arg(long, value_name = "POLICY", num_args = 0..=1, default_missing_value = "shared",
          value_parser = parse_deflate)]
    deflate: Option<DeflateMemory>,
    /// Compression level 0-9 with --deflate [default: 6].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=9))]
    deflate_level: Option<u8>,
    /// Messages shorter than this go out uncompressed with --deflate [default: 64].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    deflate_threshold: Option<u64>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Echo(args)) => run(&args, Ok, |_| EchoHandler),
        None => run(&cli.echo, Ok, |_| EchoHandler),
        Some(Command::Broadcast(args)) => {
            let cluster = |mut builder: ConfigBuilder| {
                builder = builder.backpressure_policy(args.backpressure_policy);
                if let Some(url) = &args.cluster {
                    builder = builder.cluster(url.as_str()).cluster_sharding(args.cluster_sharding);
                }
                Ok(builder)
            };
            run(&args.server, cluster, |_| RoomHandler)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("surge: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run<H: Handler + 'static>(
    args: &EchoArgs,
    more: impl FnOnce(ConfigBuilder) -> Result<ConfigBuilder, String>,
    factory: impl Fn(LoopIndex) -> H + Send + Sync + 'static,
) -> Result<(), String> {
    let filter = EnvFilter::try_new(&args.log).map_err(|e| format!("bad --log filter: {e}"))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    raise_descriptor_limit();

    let config = more(server_config(args)?)?.build().map_err(|e| e.to_string())?;
    let grace = config.close_timeout();
    // Signals are caught before the loops start, so none is lost in between.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let scheme = if config.tls().is_some() { "wss" } else { "ws" };
    let server = Server::start(config, factory).map_err(|e| e.to_string())?;
    tracing::info!(backend = ?server.backend(), "loops started");
    for addr in server.local_addrs() {
        tracing::info!("listening on {scheme}://{addr}");
    }

    let signal = signals.forever().find(|&signal| {
        if signal != SIGHUP {
            return true;
        }
        match server.handle().reload_tls() {
            Ok(()) => tracing::info!("certificates reloaded"),
            Err(error) => eprintln!("surge: certificates not reloaded, the old ones stay: {error}"),
        }
        false
    });
    tracing::info!(?signal, ?grace, "shutting down");
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            eprintln!("surge: second signal, exiting now");
            std::process::exit(130);
        }
    });
    #[cfg(target_os = "linux")]
    if server.backend() == Backend::IoUring {
        tracing::info!(stats = ?server.io_uring_stats(), "io_uring");
    }
    let report = server.shutdown(grace);
    tracing::info!(closed_cleanly = report.closed_cleanly, forced = report.forced, "stopped");
    Ok(())
}

fn server_config(args: &EchoArgs) -> Result<ConfigBuilder, String> {
    let mut builder = Config::builder().backend(args.backend);
    for &addr in &args.listen {
        builder = builder.listen(addr);
    }
    if let Some(threads) = args.threads {
        builder = builder.threads(threads);
    }
    if let Some(pin) = &args.pin {
        builder = builder.pinning(parse_pinning(pin)?);
    }
    if let Some(bytes) = args.max_message {
        builder = builder.max_message_size(bytes);
    }
    if let Some(max) = args.max_connections {
        builder = builder.max_connections(max);
    }
    if let Some(Idle(idle)) = args.idle_timeout {
        builder = builder.idle_timeout(idle);
    }
    if let Some(timeout) = args.handshake_timeout {
        builder = builder.handshake_timeout(timeout);
    }
    if let Some(timeout) = args.close_timeout {
        builder = builder.close_timeout(timeout);
    }
    if let Some((count, size)) = args.io_uring_buffers {
        builder = builder.io_uring_buffers(count, size);
    }
    if let Some(limit) = args.backpressure_limit {
        let limit = usize::try_from(limit).map_err(|_| "backpressure limit too large")?;
        builder = builder.backpressure_limit(limit);
    }
    if let Some(max) = args.max_connections_per_address {
        builder = builder.max_connections_per_address(max);
    }
    if let Some(rate) = args.handshake_rate {
        builder = builder.handshakes_per_second_per_address(rate);
    }
    builder = builder.rate_limit(RateLimit {
        messages_per_second: args.message_rate,
        bytes_per_second: args.byte_rate,
        policy: args.rate_policy,
    });
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let mut tls = TlsConfig::new(cert, key);
        for SniPair { name, cert, key } in &args.tls_sni {
            tls = tls.sni(name, cert, key);
        }
        builder = builder.tls(tls);
    }
    if let Some(memory) = args.deflate {
        let default = DeflateConfig::default();
        let threshold = match args.deflate_threshold {
            Some(size) => usize::try_from(size).map_err(|_| "deflate threshold too large")?,
            None => default.threshold,
        };
        let level = args.deflate_level.unwrap_or(default.level);
        builder = builder.deflate(DeflateConfig { memory, level, threshold });
    } else if args.deflate_level.is_some() || args.deflate_threshold.is_some() {
        return Err("--deflate-level and --deflate-threshold need --deflate".into());
    }
    Ok(builder)
}

/// `auto`, `on` or `off`.
fn parse_sharding(text: &str) -> Result<Sharding, String> {
    match text {
        "auto" => Ok(Sharding::Auto),
        "on" => Ok(Sharding::On),
        "off" => Ok(Sharding::Off),
        _ => Err(format!("bad sharding {text:?} (expected auto, on or off)")),
    }
}

/// `skip` or `close`.
fn parse_policy(text: &str) -> Result<BackpressurePolicy, String> {
    match text {
        "skip" => Ok(BackpressurePolicy::HandBack),
        "close" => Ok(BackpressurePolicy::Close1008),
        _ => Err(format!("bad backpressure policy {text:?} (expected skip or close)")),
    }
}

/// `pause` or `close`.
fn parse_rate_policy(text: &str) -> Result<RatePolicy, String> {
    match text {
        "pause" => Ok(RatePolicy::Pause),
        "close" => Ok(RatePolicy::Close1008),
        _ => Err(format!("bad rate policy {text:?} (expected pause or close)")),
    }
}

/// A certificate for one SNI name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SniPair {
    name: String,
    cert: PathBuf,
    key: PathBuf,
}

/// `NAME=CERT,KEY`.
fn parse_sni(text: &str) -> Result<SniPair, String> {
    let bad = || format!("bad SNI pair {text:?} (expected NAME=CERT,KEY)");
    let (name, files) = text.split_once('=').ok_or_else(bad)?;
    let (cert, key) = files.split_once(',').ok_or_else(bad)?;
    if name.is_empty() || cert.is_empty() || key.is_empty() {
        return Err(bad());
    }
    Ok(SniPair { name: name.into(), cert: cert.into(), key: key.into() })
}

/// `shared`, or `stream:BITS:MEMLEVEL` (e.g. `stream:12:4`).
fn parse_deflate(text: &str) -> Result<DeflateMemory, String> {
    if text == "shared" {
        return Ok(DeflateMemory::Shared);
    }
    let bad = || format!("bad deflate policy {text:?} (expected shared or stream:BITS:MEMLEVEL)");
    let rest = text.strip_prefix("stream:").ok_or_else(bad)?;
    let (bits, level) = rest.split_once(':').ok_or_else(bad)?;
    let window_bits: u8 = bits.parse().map_err(|_| bad())?;
    let mem_level: u8 = level.parse().map_err(|_| bad())?;
    if !(9..=15).contains(&window_bits) || !(1..=9).contains(&mem_level) {
        return Err(format!("{}: window bits 9-15, memLevel 1-9", bad()));
    }
    Ok(DeflateMemory::PerConnection { window_bits, mem_level })
}

fn parse_buffers(text: &str) -> Result<(u16, usize), String> {
    let bad = || format!("bad buffers {text:?} (expected COUNTxSIZE, e.g. 16x64KiB)");
    let (count, size) = text.split_once('x').ok_or_else(bad)?;
    let size = usize::try_from(parse_size(size)?).map_err(|_| bad())?;
    Ok((count.parse().map_err(|_| bad())?, size))
}

fn parse_backend(text: &str) -> Result<Backend, String> {
    match text {
        "auto" => Ok(Backend::Auto),
        "epoll" => Ok(Backend::Epoll),
        "io-uring" | "io_uring" | "uring" => Ok(Backend::IoUring),
        _ => Err(format!("unknown backend {text:?} (expected auto, epoll or io-uring)")),
    }
}

/// `all`, or a list of cores and ranges: `0,2,4-7`.
fn parse_pinning(text: &str) -> Result<Pinning, String> {
    if text == "all" {
        return Ok(Pinning::AllCores);
    }
    let mut cores = Vec::new();
    for part in text.split(',') {
        let bad = || format!("bad core list {text:?} (expected e.g. 0,2,4-7)");
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to): (usize, usize) = (
                    from.trim().parse().map_err(|_| bad())?,
                    to.trim().parse().map_err(|_| bad())?,
                );
                if from > to {
                    return Err(bad());
                }
                cores.extend(from..=to);
            }
            None => cores.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(Pinning::Cores(cores))
}

/// `1048576`, `64k`/`64KiB`, `16M`/`16MiB`, `1G`/`1GiB` (binary multiples).
fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("unknown size unit {unit:?}")),
    };
    let value: u64 = digits.trim().parse().map_err(|_| format!("bad size {text:?}"))?;
    value.checked_shl(shift).filter(|v| v >> shift == value).ok_or_else(|| "size too large".into())
}

/// `250ms`, `10s`, `2m`, `1h`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let value: u64 = digits.trim().parse().map_err(|_| format!("bad duration {text:?}"))?;
    match &lower[digits.len()..] {
        "ms" => Ok(Duration::from_millis(value)),
        "" | "s" => Ok(Duration::from_secs(value)),
        "m" | "min" => Ok(Duration::from_secs(value.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(value.saturating_mul(3600))),
        unit => Err(format!("unknown duration unit {unit:?}")),
    }
}

/// An idle timeout, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Idle(Option<Duration>);

/// A duration, or `off` (or `0`) for none.
fn parse_optional_duration(text: &str) -> Result<Idle, String> {
    match text.trim() {
        "off" | "none" | "0" => Ok(Idle(None)),
        _ => parse_duration(text).map(|d| Idle(Some(d))),
    }
}

/// Lifts the soft limit on open descriptors to the hard limit: each connection is one.
#[cfg(unix)]
#[allow(unsafe_code)]
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit only reads the valid `raised`; failure leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            tracing::debug!("could not raise the descriptor limit");
        }
    }
}

#[cfg(not(unix))]
fn raise_descriptor_limit() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_core_lists_parse() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1x").is_err());
        assert!(parse_size("99999999999G").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_optional_duration("off"), Ok(Idle(None)));
        assert_eq!(parse_pinning("0,2-4"), Ok(Pinning::Cores(vec![0, 2, 3, 4])));
        assert_eq!(parse_pinning("all"), Ok(Pinning::AllCores));
        assert!(parse_pinning("3-1").is_err());
        let pair = parse_sni("api.example=a.pem,a.key").unwrap();
        assert_eq!((pair.name.as_str(), pair.cert.to_str()), ("api.example", Some("a.pem")));
        assert!(parse_sni("api.example=a.pem").is_err());
        assert_eq!(parse_rate_policy("close"), Ok(RatePolicy::Close1008));
        assert!(parse_rate_policy("drop").is_err());
    }

    #[test]
    fn echo_is_the_default_subcommand() {
        let cli =
            Cli::try_parse_from(["surge", "--listen", "127.0.0.1:1", "--threads", "2"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.echo.threads, Some(2));
        let cli = Cli::try_parse_from(["surge", "echo", "--pin"]).unwrap();
        let Some(Command::Echo(args)) = cli.command else { panic!("echo") };
        assert_eq!(args.pin.as_deref(), Some("all"));
        assert_eq!(args.listen, ["127.0.0.1:9001".parse().unwrap()]);
        let cli = Cli::try_parse_from(["surge", "--idle-timeout", "off"]).unwrap();
        assert_eq!(cli.echo.idle_timeout, Some(Idle(None)));
    }

    #[test]
    fn broadcast_takes_the_server_options_and_a_cluster() {
        let cli = Cli::try_parse_from([
            "surge",
            "broadcast",
            "--threads",
            "1",
            "--cluster",
            "redis://127.0.0.1:6379",
            "--cluster-sharding",
            "off",
        ])
        .unwrap();
        let Some(Command::Broadcast(args)) = cli.command else { panic!("broadcast") };
        assert_eq!(args.server.threads, Some(1));
        assert_eq!(args.cluster.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(args.cluster_sharding, Sharding::Off);
        assert_eq!(args.backpressure_policy, BackpressurePolicy::HandBack);
        assert!(Cli::try_parse_from(["surge", "broadcast", "--cluster-sharding", "x"]).is_err());
    }
}
