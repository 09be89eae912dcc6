//! The integration tests: one binary, shared strategies (tests/common).

mod common;
mod pipeline;
mod pipeline_golden;
