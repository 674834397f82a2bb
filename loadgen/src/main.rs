//! The `surge-loadgen` binary: parses the command line, runs, reports one clear line on error.

use std::process::ExitCode;

use clap::Parser as _;
use surge_loadgen::cli::Cli;

fn main() -> ExitCode {
    match Cli::parse().run() {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(failure)) => {
            eprintln!("surge-loadgen: {failure}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("surge-loadgen: error: {e}");
            ExitCode::from(2)
        }
    }
}
