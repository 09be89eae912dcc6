//! # combined-margin
//!
//! The numerical specification and verification harness of the Combined Margin loss
//! (SphereFace / CosFace / ArcFace unified): for the target class of each sample,
//! `cos θ` becomes `cos(m1·θ + m2) − m3`, then every logit is scaled by `s` and fed to
//! softmax cross-entropy. SPEC.md is normative; this crate is its executable form.
//!
//! Data flow: [`profile`] (policies as data) → [`margin`] (one entry) → [`layer`] (N×C batch)
//! → checks ([`tolerance`], [`gradcheck`], [`kinks`]) → consumers (fixtures, CLI, kernels).

pub mod catalogue;
pub mod compare;
pub mod conformance;
pub mod cuda;
pub mod degeneracy;
pub mod deviation;
pub mod dtype;
pub mod embedded;
pub mod error;
pub mod filecheck;
pub mod fixture;
pub mod gradcheck;
pub mod kinks;
pub mod layer;
pub mod loss_only;
pub mod margin;
pub mod memory;
pub mod modulation;
pub mod params;
pub mod pipeline;
pub mod plot;
pub mod profile;
pub mod report;
pub mod rng;
pub mod scope;
pub mod space;
pub mod sweep;
pub mod tolerance;
pub mod verdict;

pub use dtype::Dtype;
pub use error::{Error, Result};
pub use params::Params;
pub use profile::Profile;
