//! The crate's typed errors. Bad input is an error value, never a panic.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    #[error("shape mismatch: {what} has {got} elements, expected {expected}")]
    ShapeMismatch {
        what: String,
        expected: usize,
        got: usize,
    },

    #[error("label out of range: row {row} has label {label}, expected an integer in [0, {classes}) or the ignore value {ignore}")]
    LabelOutOfRange {
        row: usize,
        label: i64,
        classes: usize,
        ignore: i64,
    },

    #[error("invalid parameter {field} = {value}: {why}")]
    InvalidParam {
        field: &'static str,
        value: f64,
        why: &'static str,
    },

    #[error("unknown profile {0:?} (known: analytic, caffe-cpu, caffe-gpu, detached, arcface-thmm, arcface-thmm-easy, recommended)")]
    UnknownProfile(String),

    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
