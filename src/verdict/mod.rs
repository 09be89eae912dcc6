//! The verdict engine as an estimator (SPEC.md §3.8, §6), one file per job:
//!
//! - [`search`]: the `--profile auto` search over the policy space's structure (presets,
//!   coordinate moves, multi-start, pair sweeps), scoring every candidate;
//! - [`rank`]: the one scale candidates are ranked on (bits of disagreement on the dtype's
//!   grid plus the description length), so a looser budget never wins a tie;
//! - [`fit`]: the stated parameters (m1, m2, m3, s) fitted in closed form or by a robust 1-D
//!   solve, with their uncertainty; [`form_fit`]: the constants of the forms nobody states
//!   (fallback κ, sine-guard ε, output clip b);
//! - [`family_fit`]: a margin family's own constants (CurricularFace's t, inter-top-k's k
//!   and m′, A-Softmax's λ), fitted the same way (SPEC.md §11.5);
//! - [`residual`]: what the out-of-budget elements no cause names have in common.
//!
//! The causes are [`crate::deviation`]'s detectors (a fitted stated parameter that differs is
//! `parameter-differs`); the report is [`crate::report`]'s.

pub mod family_fit;
pub mod fit;
pub mod form_fit;
pub mod rank;
pub mod residual;
pub mod search;
