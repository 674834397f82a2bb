//! `surge-loadgen`: a load generator for WebSocket (RFC 6455) servers, and raw TCP echo servers.
//!
//! It opens many connections from a few client threads, sends echo traffic in closed loop (N
//! messages in flight per connection) or open loop (a fixed total rate, each message timed
//! from when it was *scheduled*, correcting coordinated omission as wrk2 does), checks every
//! echo against what was sent, and records latency in HdrHistograms. Results go to the
//! terminal, to JSON (for `compare`), and to HdrHistogram's `.hgrm` and interval-log formats.
//!
//! ```text
//!                       coordinator (run::run, on the main thread)
//!          probe the target, start the threads, say "go", merge their seconds,
//!          write the interval log, build the RunResult (report) and summary
//!              |  Shared (go time, phases, stop)        ^ Report over an mpsc channel:
//!              v                                        | Ramped, Interval (1 s), Done, Failed
//!   +-------------------+  +-------------------+        |
//!   | client thread 0   |  | client thread 1   |  ...  -+
//!   | one mio loop over |  | one mio loop over |
//!   | its connections;  |  | its connections;  |
//!   | timerfd for the   |  | timerfd for the   |
//!   | open-loop slots   |  | open-loop slots   |
//!   +-------------------+  +-------------------+
//!              |                      |
//!              v                      v
//!        target: ws[s]://HOST:PORT, tcp://HOST:PORT, or an embedded Surge / TCP echo server
//! ```
//!
//! What it is not: a scripting tool (k6) or a browser; it sends echo traffic and measures the
//! echoes, nothing else. It speaks wss ([`tls`]: a CA file or `--insecure`, with or without
//! session resumption) and permessage-deflate (`--deflate`), and it does not
//! check a server's protocol conformance (Autobahn|Testsuite does; `autobahn-client` lets
//! Autobahn grade Surge's client side).
//!
//! Modules, bottom up: [`platform`] (checked system calls), [`units`], [`target`], [`tls`],
//! [`workload`], [`stats`], [`config`], [`error`], [`machine`]; the engine: [`client`] (one
//! thread's loop), [`run`] (the coordinator), [`report`], [`health`], [`threshold`], [`failure`]; the commands, each with its own
//! options: [`measure`] (with [`find_rate`]), [`merge`], [`compare`], [`sweep`], [`floor`], [`autobahn`], [`fanout`] (pub/sub rooms: delivery latency, reach, loss, order); and [`cli`] over them.

pub mod autobahn;
pub mod cli;
pub mod client;
pub mod compare;
pub mod config;
pub mod embedded;
pub mod error;
pub mod failure;
pub mod fanout;
pub mod fanout_lean;
pub mod find_rate;
pub mod floor;
pub mod health;
pub mod machine;
pub mod measure;
pub mod merge;
pub mod platform;
pub mod plot;
pub mod report;
pub mod run;
pub mod scrape;
pub mod stats;
pub mod sweep;
pub mod target;
pub mod threshold;
pub mod tls;
pub mod units;
pub mod workload;

pub use error::Error;
