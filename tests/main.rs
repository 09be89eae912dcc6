//! The integration tests: one binary, shared strategies (tests/common).

mod common;
mod generate;
mod npz;
mod plot;
