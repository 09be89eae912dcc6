//! `cmargin`: the command-line front of the combined-margin harness.
//! Thin by design: it parses arguments, calls the library, formats reports.
//! Exit codes: 0 pass, 1 fail, 2 bad input.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod check;
mod generate;
mod kinks;
mod loss;
mod plot;
mod sweep;

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
    /// Check an implementation's outputs against the reference; no file: the golden conformance matrix.
    Check(check::Args),
    /// Print where each profile's forward or backward is not smooth (SPEC.md §4).
    Kinks(kinks::Args),
    /// Write fixture files (JSON, .npz) with the reference forward and backward (SPEC.md §7).
    Generate(generate::Args),
    /// Draw the target logit and the backward factor of chosen profiles, kinks marked (SVG).
    Plot(plot::Args),
    /// The loss and its breakdown for given or synthetic random-initialization inputs (SPEC.md §8).
    Loss(loss::Args),
    /// An implementation's worst error over every float input of a dtype (SPEC.md §10).
    Sweep(sweep::Args),
}

fn main() -> ExitCode {
    // Behave like a Unix filter when the reader goes away (`cmargin check | head`): end
    // quietly on SIGPIPE instead of panicking on the failed write.
    // SAFETY: setting a signal disposition to its default before any thread is spawned.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => check::run(a),
        Command::Kinks(a) => kinks::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Loss(a) => loss::run(a),
        Command::Sweep(a) => sweep::run(a),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("cmargin: {msg}");
            ExitCode::from(2)
        }
    }
}
