//! The integration tests: one binary, shared strategies (tests/common).

mod cli_check;
mod common;
mod golden;
mod mutants;
mod tolerance_teeth;
