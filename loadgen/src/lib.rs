//! `surge-loadgen`: a load generator for WebSocket (RFC 6455) servers, and raw TCP echo servers.
//!
//! A few client threads each run a mio loop over many connections, in closed loop (N messages
//! in flight per connection) or open loop (a fixed total rate, latency counted from each
//! message's scheduled send, correcting coordinated omission as wrk2 does). Every echo is
//! checked against what was sent. Results go to the terminal, to JSON (for `compare`), to
//! HdrHistogram's `.hgrm` and interval-log formats.

pub mod autobahn;
pub mod cli;
pub mod client;
pub mod compare;
pub mod embedded;
pub mod error;
pub mod floor;
pub mod machine;
pub mod plot;
pub mod report;
pub mod run;
pub mod stats;
pub mod sweep;
pub mod workload;

pub use error::Error;
