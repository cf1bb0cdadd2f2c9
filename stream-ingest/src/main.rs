//! `stream-ingest`: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use stream_ingest::cli::{Cli, execute, init_tracing};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    execute(cli)
}
