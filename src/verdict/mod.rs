//! The verdict engine as an estimator (SPEC.md §3.8, §6): the `--profile auto` search
//! ([`crate::fingerprint`]) ranks candidates on one scale ([`rank`]) and fits the continuous
//! constants of the point it finds ([`fit`]); the deviation detectors name a fitted stated
//! parameter that differs ([`crate::deviation`], `parameter-differs`); where nothing is named,
//! [`residual`] describes what the unexplained elements have in common.

pub mod fit;
pub mod rank;
pub mod residual;
