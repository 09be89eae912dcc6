//! The integration tests: one binary, shared strategies (tests/common).

mod common;
mod gradcheck;
mod properties;
mod spec;
