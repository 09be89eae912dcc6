//! The integration tests: one binary, shared strategies (tests/common).

mod cli_check;
mod common;
mod cuda_gpu;
mod cuda_host;
mod cuda_nvrtc;
mod fingerprint;
mod generate;
mod golden;
mod gradcheck;
mod layer;
mod mutants;
mod npz;
mod numpy_example;
mod pipeline;
mod pipeline_golden;
mod plot;
mod properties;
mod spec;
mod sweep;
mod sweep_gpu;
#[cfg(feature = "mpfr")]
mod sweep_mpfr;
mod tolerance_teeth;
