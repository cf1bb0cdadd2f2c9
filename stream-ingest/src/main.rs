//! `stream-ingest`: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use stream_ingest::cli::{Cli, execute};

fn main() -> ExitCode {
    let cli = Cli::parse();
    shared::logging::init();
    execute(cli)
}
