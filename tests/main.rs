//! The integration tests: one binary, shared strategies (tests/common).

mod common;
mod golden;
mod tolerance_teeth;
