//! The spec in code: forward and backward of one target entry under a profile, in f64.
//!
//! For a target entry with input c = cos θ (dimensionless, nominally in [−1, 1]):
//!
//! ```text
//! c̃ = domain(c)                      InputDomain: identity, or clamp to [−1+ε, 1−ε]
//! θ = acos(c̃)                        radians in [0, π]; ThetaPrecision may round it to f32
//! φ = angle(m1·θ + m2)               AnglePolicy: raw, clamp, th/mm fallback, easy, monotone
//! out = cos φ − m3                   (fallback branch: c̃ − m2·sin m2 − m3, or c̃ if easy;
//!                                     monotone: (−1)^k cos φ − 2k − m3, k = ⌊φ/π⌋)
//! d out / d c = m1·sin φ / sqrt(1 − c̃²)   on the margin branch (GradientMode decides)
//! ```
//!
//! Non-target entries get [`non_target`]: unchanged, unless the profile clamps every entry or
//! round-trips them through acos/cos. The scale s is applied outside, by the layer or the loss.

use crate::dtype::Dtype;
use crate::params::Params;
use crate::profile::{
    AnglePolicy, ClampScope, EvalForm, ExactForm, Fallback, GradientMode, InputDomain, OpMath,
    ParamPrecision, PoleRule, Profile, SineGuard, ThetaPrecision, ThresholdTest,
};
use std::f64::consts::PI;

/// Which formula produced the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Branch {
    /// `cos(φ) − m3` (or the monotone extension of it).
    Margin,
    /// The th/mm fallback `c̃ − m2·sin m2 − m3`, or `c̃` with easy_margin.
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
    /// The input clamp blocks the gradient here (outside the bounds, or at a bound under
    /// [`crate::profile::BoundGradient::Zero`]).
    pub domain_clamped: bool,
    pub angle_clamped: bool,
    /// The output clip [−b, b] replaced the target logit (gradient 0).
    pub out_clipped: bool,
    /// (sin φ, cos φ) where the output was cos φ of [`Entry::phi`] (the margin branch of the
    /// acos–cos form), so that the budget does not evaluate them again; `None` elsewhere.
    pub phi_trig: Option<(f64, f64)>,
}

impl ParamPrecision {
    /// The margin parameters as an implementation holding them under this policy uses them
    /// (s is untouched: it is applied outside the margin).
    pub fn apply(self, p: &Params) -> Params {
        match self {
            ParamPrecision::Dtype => *p,
            ParamPrecision::F32 => Params {
                m1: p.m1 as f32 as f64,
                m2: p.m2 as f32 as f64,
                m3: p.m3 as f32 as f64,
                s: p.s,
            },
        }
    }
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
    /// The fallback test, if the policy has one: margin branch iff c̃ > threshold (on cos), or
    /// iff θ ≤ threshold (on the angle, radians).
    pub threshold: Option<f64>,
    /// The dtype the constants are rounded to (the storage type).
    pub dtype: Dtype,
    /// The precision intermediate values (θ, φ) are held in: the dtype, or f32 for a
    /// half-precision implementation with f32 op math ([`OpMath::F32Storage`]).
    pub op_dtype: Dtype,
    /// The fallback's subtrahend as held (`m2·sin m2`, κ, or 0 for a plain fallback; m3 apart).
    pub fallback_offset: f64,
    /// cos m2 and sin m2 as held, for the trig-identity form.
    pub cos_m: f64,
    pub sin_m: f64,
    /// The sine guard's ε as held (0 for the other guards).
    pub sine_eps: f64,
    /// The output clip bound b as held (+inf without a clip).
    pub out_clip: f64,
}

impl Constants {
    pub fn new(profile: &Profile, p: &Params, dtype: Dtype) -> Constants {
        let p = profile.params.apply(p);
        let (c_lo, c_hi) = match profile.domain {
            InputDomain::Raw => (f64::NEG_INFINITY, f64::INFINITY),
            InputDomain::Clamp { eps, .. } => (dtype.round(-1.0 + eps), dtype.round(1.0 - eps)),
        };
        let (phi_lo, phi_hi) = match profile.angle {
            AnglePolicy::Clamp { lo, hi } => (dtype.round(lo), dtype.round(hi)),
            AnglePolicy::Raw
            | AnglePolicy::Threshold { .. }
            | AnglePolicy::EasyMargin
            | AnglePolicy::Monotone => (f64::NEG_INFINITY, f64::INFINITY),
        };
        // θ where φ reaches π; beyond [0, π] there is nothing to fall back from.
        let theta_pi = (PI - p.m2) / p.m1;
        let reachable = (0.0..=PI).contains(&theta_pi);
        // A derived constant as the implementation holds it: computed from the parameters,
        // rounded to f32 first where it keeps its constants in f32, then to the dtype.
        let held = |x: f64| match profile.constants {
            ParamPrecision::Dtype => dtype.round(x),
            ParamPrecision::F32 => dtype.round(x as f32 as f64),
        };
        let threshold = match profile.angle {
            AnglePolicy::EasyMargin => Some(0.0),
            AnglePolicy::Threshold {
                test: ThresholdTest::OnCos,
                ..
            } if reachable => Some(held(theta_pi.cos())),
            AnglePolicy::Threshold {
                test: ThresholdTest::OnAngle,
                ..
            } if reachable => Some(held(theta_pi)),
            AnglePolicy::Threshold { .. }
            | AnglePolicy::Raw
            | AnglePolicy::Clamp { .. }
            | AnglePolicy::Monotone => None,
        };
        let op_dtype = op_dtype(profile, dtype);
        // The fallback line c̃ − offset is evaluated in f64 with the offset as computed from
        // the parameters (one rounding to T at the end, SPEC.md §9), unless the profile
        // holds its constants in f32.
        let line = |x: f64| match profile.constants {
            ParamPrecision::Dtype => x,
            ParamPrecision::F32 => x as f32 as f64,
        };
        let fallback_offset = match profile.angle {
            AnglePolicy::Threshold { fallback, .. } => match fallback {
                Fallback::MSinM => line(p.m2 * p.m2.sin()),
                Fallback::Offset { kappa } => line(kappa),
                Fallback::Plain => 0.0,
            },
            AnglePolicy::Raw
            | AnglePolicy::Clamp { .. }
            | AnglePolicy::EasyMargin
            | AnglePolicy::Monotone => 0.0,
        };
        let sine_eps = match profile.eval {
            EvalForm::TrigIdentity {
                guard: SineGuard::Epsilon { eps },
                ..
            } => held(eps),
            EvalForm::TrigIdentity { .. } | EvalForm::AcosCos => 0.0,
        };
        Constants {
            c_lo,
            c_hi,
            phi_lo,
            phi_hi,
            threshold,
            dtype,
            op_dtype,
            fallback_offset,
            cos_m: held(p.m2.cos()),
            sin_m: held(p.m2.sin()),
            sine_eps,
            out_clip: profile
                .output_clip
                .map_or(f64::INFINITY, |b| dtype.round(b)),
        }
    }

    /// The input clamp applied to c: (c̃, gradient multiplier: 0 outside the bounds, the
    /// bound rule's 1, ½ or 0 exactly at a bound, 1 inside). NaN passes through as NaN.
    pub fn clamp_input(&self, c: f64, domain: InputDomain) -> (f64, f64) {
        let at_bound = match domain {
            InputDomain::Raw => 1.0,
            InputDomain::Clamp { at_bound, .. } => at_bound.at_bound(),
        };
        if c < self.c_lo {
            (self.c_lo, 0.0)
        } else if c > self.c_hi {
            (self.c_hi, 0.0)
        } else if c == self.c_lo || c == self.c_hi {
            (c, at_bound)
        } else {
            (c, 1.0)
        }
    }
}

/// The precision an implementation in `dtype` holds intermediate values in under the
/// profile's op math: f32 for half storage with f32 op math, else the dtype itself.
pub fn op_dtype(profile: &Profile, dtype: Dtype) -> Dtype {
    match (dtype.is_half(), profile.op_math) {
        (true, OpMath::F32Storage) => Dtype::F32,
        (true, OpMath::Storage) | (false, _) => dtype,
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

/// The derivative of the round trip `cos(acos c̃)`, `sin θ / sqrt(1 − c̃²)`: 1 inside (−1, 1),
/// at ±1 `sin θ̂ / 0` under IEEE evaluation (NaN at +1, ±inf at −1 by the sign of sin of the
/// dtype's π), the limit 1 under [`PoleRule::Limit`]; NaN beyond.
fn round_trip_factor(c_eff: f64, gradient: GradientMode, dtype: Dtype) -> f64 {
    let at_pole = c_eff.abs() == 1.0;
    match gradient {
        // Outside [−1, 1] (unclamped) sin(acos c) is NaN.
        GradientMode::Exact { .. } if c_eff.abs() > 1.0 => f64::NAN,
        GradientMode::Exact { pole, .. } if at_pole => match pole {
            // sin(acos c) / 0 with acos c as the dtype holds it: 0/0 = NaN at c = 1; at
            // c = −1, sin of the dtype's π (+1.2e-16 in f64, −8.7e-8 in f32) / 0 = ±inf.
            PoleRule::Ieee => dtype.round(c_eff.acos()).sin() / 0.0,
            PoleRule::Limit => 1.0,
        },
        GradientMode::Exact { .. } | GradientMode::FormulaAtClamped { .. } => 1.0,
        GradientMode::Detached => 1.0,
    }
}

/// Forward and backward factor of one target entry with input `c`.
///
/// `dtype` is the precision of the implementation being modelled; it only rounds the
/// profile's comparison constants and parameters (see [`Constants`]). All arithmetic is f64.
pub fn eval(c: f64, p: &Params, profile: &Profile, dtype: Dtype) -> Entry {
    let k = Constants::new(profile, p, dtype);
    eval_with(c, p, profile, &k)
}

/// `sin θ` of the trig-identity form under its guard, and its derivative d sinθ / d c̃.
/// Returns (sinθ, derivative, whether a zero upstream gradient still gives NaN here: the
/// `0·inf` of a whole-matrix evaluation at the guard's singular points).
pub fn guarded_sine(c: f64, guard: SineGuard, eps: f64) -> (f64, f64, bool) {
    // (1 − c)(1 + c): 1 − c² without cancellation near |c| = 1 (the reference's value).
    let x = (1.0 - c) * (1.0 + c);
    let plain = |x: f64| {
        let s = x.sqrt();
        // d sqrt(x)/dc = −c / sqrt(x): ∓inf at x = 0, NaN for x < 0.
        (s, -c / s, x.is_nan() || x <= 0.0)
    };
    match guard {
        SineGuard::Unguarded => plain(x),
        SineGuard::Clamp => {
            if x < 0.0 {
                // clamp(x, 0, 1) is flat below 0: its backward masks the sqrt's NaN to 0.
                (0.0, 0.0, false)
            } else {
                plain(x)
            }
        }
        SineGuard::Epsilon { .. } => plain(x + eps),
        SineGuard::Safe => {
            if x > 0.0 {
                plain(x)
            } else {
                (0.0, 0.0, false)
            }
        }
    }
}

/// [`eval`] with precomputed constants (the batch forms hoist them out of the loop).
pub fn eval_with(c: f64, p: &Params, profile: &Profile, k: &Constants) -> Entry {
    let p = &profile.params.apply(p);
    let (c_eff, bound_mul) = k.clamp_input(c, profile.domain);
    let domain_clamped = bound_mul == 0.0;
    // The exact gradient's multiplier from the input clamp (½ at a bound under JAX's clip).
    let half_at_bound = bound_mul == 0.5 && matches!(profile.gradient, GradientMode::Exact { .. });
    let exact_mul = |g: f64| if half_at_bound { 0.5 * g } else { g };

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
        |out: f64, g: f64, theta: f64, phi_raw: f64, phi: f64, branch, angle_clamped, phi_trig| {
            // The output clip [−b, b] (b = +inf: none), flat outside. As `clamp`'s backward
            // (`where(lo <= x <= hi)`), a NaN logit stays NaN and gets gradient 0.
            let clipping = k.out_clip.is_finite();
            let (out, g, out_clipped) = if out > k.out_clip {
                (k.out_clip, 0.0, true)
            } else if out < -k.out_clip {
                (-k.out_clip, 0.0, true)
            } else if clipping && out.is_nan() {
                (out, 0.0, true)
            } else {
                (out, g, false)
            };
            Entry {
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
                out_clipped,
                phi_trig,
            }
        };
    // The gradient of a linear branch (shortcut, fallback): 1, or 0 where the clamp is flat.
    let linear_factor = match profile.gradient {
        GradientMode::Exact { .. } if domain_clamped => 0.0,
        GradientMode::Exact { .. } => exact_mul(1.0),
        GradientMode::FormulaAtClamped { .. } => 1.0,
        GradientMode::Detached => 1.0,
    };

    if profile.shortcut && p.is_angle_identity() {
        let theta = c_eff.acos();
        return finish(
            c_eff - p.m3,
            linear_factor,
            theta,
            theta,
            theta,
            Branch::Shortcut,
            false,
            None,
        );
    }

    let theta = match profile.theta {
        ThetaPrecision::Native => c_eff.acos(),
        ThetaPrecision::F32 => c_eff.acos() as f32 as f64,
    };
    let phi_raw = p.m1 * theta + p.m2;

    let falls_back = match (profile.angle, k.threshold) {
        // Margin branch iff c̃ > th (strict, as `torch.where(cos > th, ...)` and MXNet's relu).
        (
            AnglePolicy::Threshold {
                test: ThresholdTest::OnCos,
                ..
            }
            | AnglePolicy::EasyMargin,
            Some(th),
        ) => c_eff <= th,
        // Margin branch iff θ ≤ (π − m2)/m1, θ as the dtype holds it.
        (
            AnglePolicy::Threshold {
                test: ThresholdTest::OnAngle,
                ..
            },
            Some(th),
        ) => k.op_dtype.round(theta) > th,
        (
            AnglePolicy::Threshold { .. }
            | AnglePolicy::EasyMargin
            | AnglePolicy::Raw
            | AnglePolicy::Clamp { .. }
            | AnglePolicy::Monotone,
            _,
        ) => false,
    };
    if falls_back {
        // Through the angle, the fallback's c̃ is cos(acos c̃): its own rounding, and its
        // derivative sin θ / sqrt(1 − c̃²).
        let (base, g) = if profile.round_trip.fallback {
            let g = if linear_factor == 0.0 {
                0.0
            } else {
                exact_mul(round_trip_factor(c_eff, profile.gradient, k.op_dtype))
            };
            (c_eff.acos().cos(), g)
        } else {
            (c_eff, linear_factor)
        };
        let out = match profile.angle {
            AnglePolicy::Threshold { fallback, .. } => match fallback {
                Fallback::MSinM => base - k.fallback_offset - p.m3,
                Fallback::Offset { .. } => base - k.fallback_offset,
                Fallback::Plain => base,
            },
            AnglePolicy::EasyMargin => base,
            // No other policy falls back (falls_back is false for them).
            AnglePolicy::Raw | AnglePolicy::Clamp { .. } | AnglePolicy::Monotone => base,
        };
        return finish(
            out,
            g,
            theta,
            phi_raw,
            phi_raw,
            Branch::Fallback,
            false,
            None,
        );
    }

    // The angle-addition identity replaces cos φ where it applies (m1 = 1): no angle clamp
    // and no monotone extension exist in that form.
    if let EvalForm::TrigIdentity { guard, .. } = profile.eval {
        if p.m1 == 1.0 {
            let (sin_theta, dsin, _) = guarded_sine(c_eff, guard, k.sine_eps);
            let out = c_eff * k.cos_m - sin_theta * k.sin_m - p.m3;
            let formula = k.cos_m - k.sin_m * dsin;
            let g = match profile.gradient {
                GradientMode::Detached => 1.0,
                GradientMode::Exact { .. } if domain_clamped => 0.0,
                GradientMode::Exact { .. } => exact_mul(formula),
                GradientMode::FormulaAtClamped { .. } => formula,
            };
            return finish(out, g, theta, phi_raw, phi_raw, Branch::Margin, false, None);
        }
    }

    let phi = phi_raw.max(k.phi_lo).min(k.phi_hi);
    let phi = if phi_raw.is_nan() { phi_raw } else { phi };
    let angle_clamped = phi != phi_raw && !phi_raw.is_nan();
    // The monotone extension: on [kπ, (k+1)π), (−1)^k cos φ − 2k, with derivative sign (−1)^k.
    // k is decided on φ as the dtype holds it, as the kernel does (at c = −1 in f32, φ rounds
    // above π: k = 1 there, and the pole's sign follows).
    let phi_d = k.op_dtype.round(phi);
    let (sign, shift) = match profile.angle {
        AnglePolicy::Monotone if phi_d > PI => {
            let kk = (phi_d / PI).floor();
            let sign = if kk % 2.0 == 0.0 { 1.0 } else { -1.0 };
            (sign, 2.0 * kk)
        }
        AnglePolicy::Monotone
        | AnglePolicy::Raw
        | AnglePolicy::Clamp { .. }
        | AnglePolicy::Threshold { .. }
        | AnglePolicy::EasyMargin => (1.0, 0.0),
    };
    // sin φ and cos φ once: the factor and the budget (tolerance::target_budget_for) use them.
    let (sin_phi, cos_phi) = (phi.sin(), phi.cos());
    let out = sign * cos_phi - shift - p.m3;

    let formula = |r: f64, rule: PoleRule| {
        if r.is_infinite() {
            // At c = ±1 the sign of sin φ is the dtype's: φ = π rounds above π in f32
            // (acosf(−1) = 3.14159274) and below it in f64.
            sign * pole_factor(theta, k.op_dtype.round(phi), p.m1, rule)
        } else {
            sign * p.m1 * sin_phi * r
        }
    };
    let g = match profile.gradient {
        GradientMode::Detached => 1.0,
        GradientMode::Exact { .. } if domain_clamped || angle_clamped => 0.0,
        GradientMode::Exact { pole, form } => exact_mul(match form {
            ExactForm::Fused | ExactForm::Chain => formula(inv_sin_theta(c_eff, false), pole),
            // sin θ of the θ the implementation saved, in its dtype.
            ExactForm::SinTheta => formula(1.0 / k.op_dtype.round(theta).sin(), pole),
        }),
        GradientMode::FormulaAtClamped { rsqrt_f32 } => {
            formula(inv_sin_theta(c_eff, rsqrt_f32), PoleRule::Ieee)
        }
    };
    finish(
        out,
        g,
        theta,
        phi_raw,
        phi,
        Branch::Margin,
        angle_clamped,
        Some((sin_phi, cos_phi)),
    )
}

/// Forward and backward factor of a non-target entry (or any entry of a row without a
/// target, where the label policy gives such rows the non-target treatment): `c`, unless the
/// profile clamps every entry ([`ClampScope::AllEntries`]), round-trips non-targets
/// through acos/cos, or evaluates the margin form over the whole matrix (then the gradient
/// is `1 + 0·φ'`: NaN at the sine guard's singular points). Returns (out, factor, whether
/// the entry is transformed at all).
pub fn non_target(c: f64, profile: &Profile, k: &Constants) -> (f64, f64, bool) {
    if !profile.transforms_non_targets() {
        return (c, 1.0, false);
    }
    let all_entries = match profile.domain {
        InputDomain::Raw => false,
        InputDomain::Clamp { scope, .. } => match scope {
            ClampScope::Target => false,
            ClampScope::AllEntries => true,
        },
    };
    let round_trip = profile.round_trip.non_targets;
    let (c_eff, bound_mul) = if all_entries {
        k.clamp_input(c, profile.domain)
    } else {
        (c, 1.0)
    };
    let blocked = bound_mul == 0.0;
    let blocked_factor = match profile.gradient {
        GradientMode::Exact { .. } if blocked => 0.0,
        GradientMode::Exact { .. } => bound_mul,
        GradientMode::FormulaAtClamped { .. } => 1.0,
        GradientMode::Detached => 1.0,
    };
    // The whole-matrix form's zero-weighted margin gradient: 0·(±inf or NaN) = NaN where the
    // guard is singular, unless the margin is detached (then nothing flows through it).
    let margin_nan = match (profile.eval, profile.gradient) {
        (_, GradientMode::Detached) | (EvalForm::AcosCos, _) => false,
        (
            EvalForm::TrigIdentity {
                guard,
                whole_matrix,
            },
            GradientMode::Exact { .. } | GradientMode::FormulaAtClamped { .. },
        ) => whole_matrix && guarded_sine(c_eff, guard, k.sine_eps).2,
    };
    let (out, g) = if round_trip {
        let g = if blocked_factor == 0.0 {
            0.0
        } else {
            let exact = matches!(profile.gradient, GradientMode::Exact { .. });
            round_trip_factor(c_eff, profile.gradient, k.op_dtype)
                * if exact { bound_mul } else { 1.0 }
        };
        (c_eff.acos().cos(), g)
    } else {
        (c_eff, blocked_factor)
    };
    (out, if margin_nan { f64::NAN } else { g }, true)
}

/// Forward only: the margin-adjusted (unscaled) target logit.
pub fn forward(c: f64, p: &Params, profile: &Profile, dtype: Dtype) -> f64 {
    eval(c, p, profile, dtype).out
}

/// Backward factor d out / d c (unscaled) under the profile's gradient mode.
pub fn backward_factor(c: f64, p: &Params, profile: &Profile, dtype: Dtype) -> f64 {
    eval(c, p, profile, dtype).factor
}
