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

    #[error("label out of range: row {row} has label {label}, expected an integer in [0, {classes}){}", ignore_text(*.allows_ignore))]
    LabelOutOfRange {
        row: usize,
        label: i64,
        classes: usize,
        /// Whether the label policy accepts −1 as "no target".
        allows_ignore: bool,
    },

    #[error("invalid parameter {field} = {value}: {why}")]
    InvalidParam {
        field: &'static str,
        value: f64,
        why: &'static str,
    },

    #[error("unknown profile {name:?} (known: {})", crate::profile::preset_names().chain(crate::profile::FAMILY_PRESETS.iter().map(|p| p.name)).collect::<Vec<_>>().join(", "), name = .0)]
    UnknownProfile(String),

    #[error("{0}")]
    Invalid(String),
}

fn ignore_text(allows_ignore: bool) -> &'static str {
    if allows_ignore {
        " or the ignore value -1"
    } else {
        ""
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
