//! The `surge-loadgen` binary: parses the command line, runs, reports one clear line on error.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use surge_loadgen::cli::{Cli, Command, FloorArgs, RunArgs};
use surge_loadgen::error::Error;
use surge_loadgen::floor::EchoServer;
use surge_loadgen::report::{self, write_hgrm};
use surge_loadgen::run::{self, RunOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => measure(&cli.run),
        Some(Command::Floor(args)) => floor(&args),
        Some(Command::Compare(args)) => surge_loadgen::compare::main(&args),
        Some(Command::Sweep(args)) => surge_loadgen::sweep::main(&args),
        Some(Command::AutobahnClient(args)) => surge_loadgen::autobahn::main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("surge-loadgen: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn measure(args: &RunArgs) -> Result<(), Error> {
    let (config, target) = args.config()?;
    run::install_interrupt_handler();
    let opts = RunOptions { hlog: args.hlog.clone(), progress: !args.quiet, verbose: true };
    let outcome = run::run(&config, &target, &opts)?;
    print!("{}", report::summary(&outcome.result));
    let _ = std::io::stdout().flush();
    if let Some(path) = &args.json {
        outcome.result.save(path)?;
    }
    if let Some(path) = &args.hgrm {
        let mut f = std::fs::File::create(path).map_err(|e| Error::file(path, e))?;
        write_hgrm(&outcome.latency, 1000.0, &mut f).map_err(|e| Error::file(path, e))?;
    }
    if outcome.result.messages == 0 && !outcome.result.interrupted {
        return Err(Error::Usage(format!(
            "no message was echoed ({} of {} connections up)",
            outcome.result.connections.established, outcome.result.connections.requested
        )));
    }
    Ok(())
}

fn floor(args: &FloorArgs) -> Result<(), Error> {
    let cores: Vec<usize> = if args.pin { (0..args.threads).collect() } else { Vec::new() };
    surge_loadgen::machine::raise_fd_limit();
    let server = EchoServer::start(args.listen, args.threads, &cores)?;
    eprintln!(
        "TCP echo floor on tcp://{} ({} threads); Ctrl-C stops it",
        server.addr(),
        args.threads
    );
    run::install_interrupt_handler();
    while !run::interrupted() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server.shutdown();
    Ok(())
}
