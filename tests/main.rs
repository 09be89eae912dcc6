//! The integration tests: one binary, shared strategies (tests/common).

mod common;
mod generate;
mod gradcheck;
mod layer;
mod npz;
mod plot;
mod properties;
mod spec;
