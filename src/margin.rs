//! The spec in code: forward and backward of one target entry under a profile, in f64.
//!
//! For a target entry with input c = cos θ (dimensionless, nominally in [−1, 1]):
//!
//! ```text
//! c̃ = domain(c)                      InputDomain: identity, or clamp to [−1+ε, 1−ε]
//! θ = acos(c̃)                        radians in [0, π]; ThetaPrecision may round it to f32
//! φ = angle(m1·θ + m2)               AnglePolicy: raw, clamp, or the th/mm fallback branch
//! out = cos φ − m3                   (fallback branch: c̃ − m2·sin m2 − m3, or c̃ if easy)
//! d out / d c = m1·sin φ / sqrt(1 − c̃²)   on the margin branch (GradientMode decides)
//! ```
//!
//! Non-target entries and ignored rows are not this module's business: they pass through
//! unchanged ([`crate::layer`]). The scale s is applied outside, by the layer or the loss.

use crate::dtype::Dtype;
use crate::params::Params;
use crate::profile::{AnglePolicy, GradientMode, InputDomain, PoleRule, Profile, ThetaPrecision};
use std::f64::consts::PI;

/// Which formula produced the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Branch {
    /// `cos(φ) − m3`.
    Margin,
    /// The th/mm fallback `c̃ − m2·sin m2 − m3` (or `c̃` with easy_margin).
    Fallback,
    /// The (1, 0) algebraic shortcut `c̃ − m3`.
    Shortcut,
}

/// One target entry, evaluated: the output, the backward factor, and the intermediate state
/// the tolerance model and the reports need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    /// The margin-adjusted (unscaled) logit.
    pub out: f64,
    /// d out / d c as the profile's gradient mode defines it, after the factor clip.
    pub factor: f64,
    /// The factor before the clip (for bounds and kink reports).
    pub factor_unclipped: f64,
    /// c after the domain policy.
    pub c_eff: f64,
    /// θ = acos(c̃), after the θ-precision policy (radians).
    pub theta: f64,
    /// m1·θ + m2 before the angle clamp (radians).
    pub phi_raw: f64,
    /// The angle the output used (radians), after the angle clamp.
    pub phi: f64,
    pub branch: Branch,
    pub domain_clamped: bool,
    pub angle_clamped: bool,
}

/// The comparison constants of a profile as an implementation in `dtype` holds them.
/// Implementations compare against dtype-rounded constants (Caffe's `Dtype(1 - 1e-4)`,
/// PyTorch's python-float `th` converted to the tensor dtype), so the reference does too:
/// then every branch decision on an exact input agrees exactly (SPEC.md §2.4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Constants {
    pub c_lo: f64,
    pub c_hi: f64,
    pub phi_lo: f64,
    pub phi_hi: f64,
    /// The th/mm threshold (margin branch iff c̃ > th), if the policy has one.
    pub threshold: Option<f64>,
}

impl Constants {
    pub fn new(profile: &Profile, p: &Params, dtype: Dtype) -> Constants {
        let (c_lo, c_hi) = match profile.domain {
            InputDomain::Raw => (f64::NEG_INFINITY, f64::INFINITY),
            InputDomain::Clamp { eps } => (dtype.round(-1.0 + eps), dtype.round(1.0 - eps)),
        };
        let (phi_lo, phi_hi) = match profile.angle {
            AnglePolicy::Clamp { lo, hi } => (dtype.round(lo), dtype.round(hi)),
            _ => (f64::NEG_INFINITY, f64::INFINITY),
        };
        let threshold = match profile.angle {
            AnglePolicy::ThresholdFallback { easy_margin: true } => Some(0.0),
            AnglePolicy::ThresholdFallback { easy_margin: false } => {
                // θ where φ reaches π; beyond [0, π] there is nothing to fall back from.
                let theta_pi = (PI - p.m2) / p.m1;
                if (0.0..=PI).contains(&theta_pi) {
                    Some(dtype.round(theta_pi.cos()))
                } else {
                    None
                }
            }
            _ => None,
        };
        Constants {
            c_lo,
            c_hi,
            phi_lo,
            phi_hi,
            threshold,
        }
    }
}

/// `(1 − c²)^(−1/2)` as the profile computes it. The f64 form uses (1 − c)(1 + c), which
/// loses nothing to cancellation near ±1; the f32 form mirrors Caffe's
/// `powf(1 - powf(c, 2), -0.5)` operation by operation (c rounded to float, square rounded
/// to float, 1 − sq exact by Sterbenz for sq ≥ 1/2, then f32 powf).
pub fn inv_sin_theta(c: f64, rsqrt_f32: bool) -> f64 {
    if rsqrt_f32 {
        let c32 = c as f32;
        let sq = ((c32 as f64) * (c32 as f64)) as f32;
        (1.0f32 - sq).powf(-0.5) as f64
    } else {
        let one_minus = (1.0 - c) * (1.0 + c);
        1.0 / one_minus.sqrt()
    }
}

/// The margin-branch derivative `m1·sin φ / sqrt(1 − c²)` at c = ±1 under the pole rule.
fn pole_factor(theta: f64, phi: f64, m1: f64, rule: PoleRule) -> f64 {
    let s = phi.sin();
    match rule {
        PoleRule::Ieee => m1 * s * f64::INFINITY,
        PoleRule::Limit => {
            // sin φ / sin θ with both → 0: l'Hôpital gives m1·cos φ / cos θ (m1² at c = 1, m2 = 0).
            if s.abs() <= 4.0 * f64::EPSILON * phi.abs().max(1.0) {
                m1 * m1 * phi.cos() / theta.cos()
            } else {
                s.signum() * f64::INFINITY
            }
        }
    }
}

/// Forward and backward factor of one target entry with input `c`.
///
/// `dtype` is the precision of the implementation being modelled; it only rounds the
/// profile's comparison constants (see [`Constants`]). All arithmetic is f64.
pub fn eval(c: f64, p: &Params, profile: &Profile, dtype: Dtype) -> Entry {
    let k = Constants::new(profile, p, dtype);
    eval_with(c, p, profile, &k)
}

/// [`eval`] with precomputed constants (the batch forms hoist them out of the loop).
pub fn eval_with(c: f64, p: &Params, profile: &Profile, k: &Constants) -> Entry {
    // Domain. NaN compares false both ways and passes through as NaN.
    let (c_eff, domain_clamped) = if c < k.c_lo {
        (k.c_lo, true)
    } else if c > k.c_hi {
        (k.c_hi, true)
    } else {
        (c, false)
    };

    let clip = |g: f64| match profile.factor_clip {
        // Comparisons, as Caffe's `d > 2 ? 2 : d; d < 0 ? 0 : d`: NaN stays NaN.
        Some((lo, hi)) => {
            if g > hi {
                hi
            } else if g < lo {
                lo
            } else {
                g
            }
        }
        None => g,
    };
    let finish =
        |out: f64, g: f64, theta: f64, phi_raw: f64, phi: f64, branch, angle_clamped| Entry {
            out,
            factor: clip(g),
            factor_unclipped: g,
            c_eff,
            theta,
            phi_raw,
            phi,
            branch,
            domain_clamped,
            angle_clamped,
        };

    if profile.shortcut && p.is_angle_identity() {
        let g = match profile.gradient {
            GradientMode::Exact { .. } if domain_clamped => 0.0,
            _ => 1.0,
        };
        let theta = c_eff.acos();
        return finish(
            c_eff - p.m3,
            g,
            theta,
            theta,
            theta,
            Branch::Shortcut,
            false,
        );
    }

    let theta = match profile.theta {
        ThetaPrecision::Native => c_eff.acos(),
        ThetaPrecision::F32 => c_eff.acos() as f32 as f64,
    };
    let phi_raw = p.m1 * theta + p.m2;

    if let Some(th) = k.threshold {
        // Margin branch iff c̃ > th (strict, as `torch.where(cos > th, ...)` and MXNet's relu).
        if c_eff <= th {
            let easy = matches!(
                profile.angle,
                AnglePolicy::ThresholdFallback { easy_margin: true }
            );
            let out = if easy {
                c_eff
            } else {
                c_eff - p.m2 * p.m2.sin() - p.m3
            };
            let g = match profile.gradient {
                GradientMode::Exact { .. } if domain_clamped => 0.0,
                _ => 1.0,
            };
            return finish(out, g, theta, phi_raw, phi_raw, Branch::Fallback, false);
        }
    }

    let phi = phi_raw.max(k.phi_lo).min(k.phi_hi);
    let phi = if phi_raw.is_nan() { phi_raw } else { phi };
    let angle_clamped = phi != phi_raw && !phi_raw.is_nan();
    let out = phi.cos() - p.m3;

    let formula = |rsqrt_f32: bool, rule: PoleRule| {
        let r = inv_sin_theta(c_eff, rsqrt_f32);
        if r.is_infinite() {
            pole_factor(theta, phi, p.m1, rule)
        } else {
            p.m1 * phi.sin() * r
        }
    };
    let g = match profile.gradient {
        GradientMode::Detached => 1.0,
        GradientMode::Exact { .. } if domain_clamped || angle_clamped => 0.0,
        GradientMode::Exact { pole } => formula(false, pole),
        GradientMode::FormulaAtClamped { rsqrt_f32 } => formula(rsqrt_f32, PoleRule::Ieee),
    };
    finish(out, g, theta, phi_raw, phi, Branch::Margin, angle_clamped)
}

/// Forward only: the margin-adjusted (unscaled) target logit.
pub fn forward(c: f64, p: &Params, profile: &Profile, dtype: Dtype) -> f64 {
    eval(c, p, profile, dtype).out
}

/// Backward factor d out / d c (unscaled) under the profile's gradient mode.
pub fn backward_factor(c: f64, p: &Params, profile: &Profile, dtype: Dtype) -> f64 {
    eval(c, p, profile, dtype).factor
}
