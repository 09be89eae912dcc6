//! The integration tests: one binary, shared strategies (tests/common).

mod common;
mod pipeline_golden;
mod pipeline;
