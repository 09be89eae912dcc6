//! The expected loss at random initialization, in closed form (SPEC.md §8.6).
//!
//! With x̂ and ŵ_j independent uniform unit vectors in D dimensions, cos_j = x̂·ŵ_j has mean 0
//! and variance 1/D, and is close to N(0, 1/D) for large D. Then E[e^{s·cos}] ≈ e^{s²/(2D)},
//! the C − 1 non-target terms of the softmax sum add to ≈ C·e^{s²/(2D)} (the target term,
//! e^{s·t} with t < 0, is negligible), and the target logit is the margin at cos = 0
//! (θ = π/2). Hence
//!
//! ```text
//! E[loss] ≈ ln C + s²/(2D) − s·t(π/2),   t(π/2) = margin at cos 0 = cos(m1·π/2 + m2) − m3
//! ```
//!
//! in nats. The margin value is taken from [`crate::margin::eval`] under the profile.

use crate::dtype::Dtype;
use crate::margin;
use crate::params::Params;
use crate::profile::Profile;

/// Terms of the estimate, nats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomInitEstimate {
    /// ln C.
    pub log_classes: f64,
    /// s²/(2D): ln E[e^{s·cos}] under cos ~ N(0, 1/D).
    pub spread: f64,
    /// The (unscaled) target margin logit at cos = 0.
    pub target_margin_logit: f64,
    /// ln C + s²/(2D) − s·t.
    pub loss: f64,
    /// Leading corrections the estimate leaves out (see SPEC.md §8.6), nats, signed:
    /// the fourth cumulant of cos on the sphere, −s⁴/(4D²(D+2)) …
    pub sphere_correction: f64,
    /// … and the curvature of the margin at cos = 0, −s·t''(0)/(2D) (by central difference).
    pub curvature_correction: f64,
}

/// The estimate for C classes, D dimensions, margin `p` (with s) under `profile`.
pub fn random_init(classes: usize, d: usize, p: &Params, profile: &Profile) -> RandomInitEstimate {
    let unscaled = Params { s: 1.0, ..*p };
    let t = |c: f64| margin::forward(c, &unscaled, profile, Dtype::F64);
    let t0 = t(0.0);
    let (s, df) = (p.s, d as f64);
    let log_classes = (classes as f64).ln();
    let spread = s * s / (2.0 * df);
    let h = 1e-3;
    let t2 = (t(h) - 2.0 * t0 + t(-h)) / (h * h);
    RandomInitEstimate {
        log_classes,
        spread,
        target_margin_logit: t0,
        loss: log_classes + spread - s * t0,
        sphere_correction: -s.powi(4) / (4.0 * df * df * (df + 2.0)),
        curvature_correction: -s * t2 / (2.0 * df),
    }
}
