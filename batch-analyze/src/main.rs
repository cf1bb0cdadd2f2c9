//! `batch-analyze`: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

use batch_analyze::cli::{Cli, execute};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    shared::logging::init();
    execute(cli)
}
