//! The integration tests: one binary, shared strategies (tests/common).

mod common;
mod cuda_gpu;
mod cuda_host;
mod cuda_nvrtc;
mod generate;
mod gradcheck;
mod layer;
mod npz;
mod plot;
mod properties;
mod spec;
