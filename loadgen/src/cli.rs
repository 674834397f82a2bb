//! The command line: the default measurement and the subcommands, each defined with its
//! options in its own module.

use clap::{Parser, Subcommand};

pub use crate::failure::Failure;

pub use crate::autobahn::AutobahnArgs;
pub use crate::compare::CompareArgs;
pub use crate::fanout::FanoutArgs;
pub use crate::floor::FloorArgs;
pub use crate::measure::RunArgs;
pub use crate::merge::MergeArgs;
pub use crate::sweep::SweepArgs;

/// Load generator for WebSocket (and raw TCP echo) servers: many connections, open and closed
/// loop, coordinated-omission-corrected HdrHistograms, comparisons across releases.
///
/// With no target, starts Surge's echo server in-process, splits the cores between it and the
/// clients, and measures it.
#[derive(Debug, Parser)]
#[command(name = "surge-loadgen", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Compare, sweep, serve or run Autobahn's client cases instead of measuring.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The measurement (default).
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compare result files (from --json) side by side, the first as the baseline.
    Compare(CompareArgs),
    /// Merge several agents' results (.json) and interval logs (.hlog) into one report and
    /// one histogram, on absolute time; thresholds apply to the merged data.
    Merge(MergeArgs),
    /// Measure the embedded server over server threads, client threads and pinning.
    Sweep(SweepArgs),
    /// Run the raw TCP echo server ("the floor") until interrupted.
    Floor(FloorArgs),
    /// Be graded by Autobahn|Testsuite's fuzzingserver (`wstest -m fuzzingserver`): run its
    /// cases as an echo client, then have it write its report.
    AutobahnClient(AutobahnArgs),
    /// Pub/sub load on room servers (`surge broadcast`): publishers stamp each message,
    /// subscribers report delivery latency, reach, loss, duplicates and reordering.
    Fanout(FanoutArgs),
}

impl Cli {
    /// Runs what the command line asked for: `Ok(None)` when it passed.
    pub fn run(self) -> Result<Option<Failure>, crate::Error> {
        let none = |()| None;
        match self.command {
            None => crate::measure::main(&self.run),
            Some(Command::Merge(args)) => Ok(crate::merge::main(&args)?.map(Failure::Thresholds)),
            Some(Command::Floor(args)) => crate::floor::main(&args).map(none),
            Some(Command::Compare(args)) => Ok(crate::compare::main(&args)?.map(Failure::Slower)),
            Some(Command::Sweep(args)) => crate::sweep::main(&args).map(none),
            Some(Command::AutobahnClient(args)) => crate::autobahn::main(&args).map(none),
            Some(Command::Fanout(args)) => crate::fanout::main(&args).map(none),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Mode, Pacing};
    use crate::workload::PayloadKind;

    #[test]
    fn flags_people_script_against() {
        let cli = Cli::try_parse_from([
            "surge-loadgen",
            "tcp://127.0.0.1:9",
            "--connections",
            "100",
            "--size",
            "16,64",
            "--in-flight",
            "4",
            "--rate",
            "10k",
            "--duration",
            "3s",
            "--warmup",
            "0s",
            "--threads",
            "2",
            "--pin",
            "--json",
            "a.json",
            "--hgrm",
            "a.hgrm",
            "--hlog",
            "a.hlog",
            "--text",
        ])
        .unwrap();
        let (c, _) = cli.run.config().unwrap();
        assert_eq!(c.mode, Mode::Raw);
        assert_eq!(c.connections, 100);
        assert_eq!(c.in_flight, 4);
        assert_eq!(c.pacing, Pacing::Open { rate: 10_000.0 });
        assert_eq!(c.threads, 2);
        assert_eq!(c.payload, PayloadKind::Text);
        assert!(Cli::try_parse_from(["surge-loadgen", "--text", "--binary"]).is_err());
        let cli = Cli::try_parse_from([
            "surge-loadgen",
            "tcp://127.0.0.1:9",
            "--connect-rate",
            "500/s",
            "--churn",
            "20/s",
        ])
        .unwrap();
        let (c, _) = cli.run.config().unwrap();
        assert_eq!((c.connect_rate, c.churn), (Some(500.0), Some(20.0)));
        let cli = Cli::try_parse_from(["surge-loadgen", "--ramp", "1k"]).unwrap();
        assert_eq!(cli.run.config().unwrap().0.connect_rate, Some(1000.0), "the older name");
        let deflate = |args: &[&str]| {
            let argv = ["surge-loadgen", "ws://127.0.0.1:9/"].iter().chain(args).copied();
            Cli::try_parse_from(argv)
                .map_err(|e| e.to_string())?
                .run
                .config()
                .map(|c| c.0.deflate)
                .map_err(|e| e.to_string())
        };
        assert_eq!(deflate(&[]), Ok(None));
        assert_eq!(deflate(&["--deflate"]), Ok(Some(surge_proto::deflate::ClientOffer::default())));
        let offer = deflate(&["--deflate=server_no_context_takeover; client_max_window_bits=12"])
            .unwrap()
            .unwrap();
        assert!(offer.server_no_context_takeover && !offer.client_no_context_takeover);
        assert_eq!(offer.client_max_window_bits, Some(Some(12)));
        assert!(deflate(&["--deflate=server_max_window_bits=7"]).is_err());
        assert!(deflate(&["--deflate=x-webkit-deflate-frame"]).is_err());
        assert!(deflate(&["--deflate", "--raw"]).is_err(), "no handshake in raw mode");
        let cli = Cli::try_parse_from(["surge-loadgen", "compare", "a.json", "b.json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Compare(_))));
        let cli = Cli::try_parse_from([
            "surge-loadgen",
            "autobahn-client",
            "ws://127.0.0.1:9001",
            "--agent",
            "surge",
            "--case",
            "3",
            "--case",
            "5",
        ])
        .unwrap();
        match cli.command {
            Some(Command::AutobahnClient(a)) => {
                assert_eq!((a.agent.as_str(), a.case), ("surge", vec![3, 5]));
                assert_eq!(a.case_timeout, Duration::from_secs(60));
            }
            other => panic!("{other:?}"),
        }
    }
}
