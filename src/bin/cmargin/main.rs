//! `cmargin`: the command-line front of the combined-margin harness.
//! Thin by design: it parses arguments, calls the library, formats reports.
//! Exit codes: 0 pass, 1 fail, 2 bad input.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod kinks;
mod loss;

#[derive(Parser)]
#[command(
    name = "cmargin",
    version,
    about = "Combined-margin loss: reference, fixtures and validation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print where each profile's forward or backward is not smooth (SPEC.md §4).
    Kinks(kinks::Args),
    /// The loss and its breakdown for given or synthetic random-initialization inputs (SPEC.md §8).
    Loss(loss::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Kinks(a) => kinks::run(a),
        Command::Loss(a) => loss::run(a),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("cmargin: {msg}");
            ExitCode::from(2)
        }
    }
}
