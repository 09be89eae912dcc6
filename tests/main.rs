//! The integration tests: one binary, shared strategies (tests/common).

mod cli_args;
mod cli_check;
mod cli_loss;
mod cli_verdicts;
mod common;
mod cuda_gpu;
mod cuda_host;
mod cuda_nvrtc;
mod dump_scope;
mod embedded;
mod estimator;
mod families;
mod fingerprint;
mod fit_numpy;
mod forms;
mod generate;
mod golden;
mod gradcheck;
mod half_precision;
mod independent;
mod layer;
mod mutants;
mod npz;
mod numpy_example;
mod pipeline;
mod pipeline_golden;
mod plot;
mod properties;
mod reader_mutations;
mod space;
mod spec;
mod sweep;
mod sweep_gpu;
#[cfg(feature = "mpfr")]
mod sweep_mpfr;
mod tolerance_teeth;
