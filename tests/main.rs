//! The integration tests: one binary, shared strategies (tests/common).

mod common;
mod cuda_gpu;
mod cuda_host;
mod cuda_nvrtc;
