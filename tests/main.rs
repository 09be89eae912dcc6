//! The integration tests: one binary, shared strategies (tests/common).

mod common;
mod cli_check;
mod golden;
mod tolerance_teeth;
