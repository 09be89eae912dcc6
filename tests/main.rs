//! The integration tests: one binary, shared strategies (tests/common).

mod common;
mod gradcheck;
mod layer;
mod properties;
mod spec;
