//! The f64 reference checked in arbitrary precision (cargo feature `mpfr`, SPEC.md §5.6).
//!
//! A sweep trusts `margin::eval_with` as the truth. This module measures how far that truth
//! is from the exact value of the same profile: every operation of `eval_with` redone in
//! 256-bit MPFR (rug), with the profile's decisions (domain clamp, th/mm threshold, pole
//! rule) taken on the same f64 values, so that the two evaluate the same piecewise function.
//! Quantities the profile itself defines in f32 are f32 on both sides: θ rounded to f32
//! (`ThetaPrecision::F32`: the exact θ rounded to f32 must equal the reference's, else the
//! input counts as a θ flip and the reference's θ is used downstream) and Caffe GPU's f32
//! `powf(1 − c², −½)` (taken from the reference: it is an f32 operation, not f64 accuracy).
//!
//! Per input the reference's error is measured two ways:
//!
//! ```text
//! ulp      = |ref − exact| / ulp_f64(exact)                (f64 ulps of the result)
//! fraction = |ref − exact| / budget_T(ref)                 (T = f32 and f64, SPEC.md §5.1)
//! ```
//!
//! The fraction is the share of an element's budget that the reference's own error takes:
//! the tolerance model treats the reference as exact, and this is what that costs.

use crate::catalogue::{edge_cases, next_float};
use crate::dtype::Dtype;
use crate::kinks::kinks;
use crate::margin::{self, Branch, Constants, Entry};
use crate::params::Params;
use crate::profile::{
    AnglePolicy, EvalForm, ExactForm, Fallback, GradientMode, ParamPrecision, PoleRule, Profile,
    SineGuard, ThetaPrecision,
};
use crate::tolerance::target_budget_for;
use rug::Float;

/// Bits of the exact evaluation.
pub const PREC: u32 = 256;

fn fl(x: f64) -> Float {
    Float::with_val(PREC, x)
}

/// The exact entry of a profile at one input, next to the reference's.
#[derive(Clone, Debug)]
pub struct Exact {
    pub out: Float,
    pub factor: Float,
    /// The exact θ rounds to a different f32 than the reference's `acos(c) as f32`.
    pub theta_flip: bool,
    /// The exact φ is clamped where the reference's is not, or the reverse.
    pub branch_flip: bool,
}

/// `margin::eval_with` in 256-bit arithmetic (see the module doc for what is shared with the
/// reference `r`, which must be `eval_with(c, p, profile, k)`).
pub fn eval_exact(c: f64, p: &Params, profile: &Profile, k: &Constants, r: &Entry) -> Exact {
    // The parameters as the profile holds them (f32 margins in OneFlow's f64 kernel).
    let p = &profile.params.apply(p);
    // The clamp's decisions are the reference's (including a zero gradient at the bound).
    let (c_eff, domain_clamped) = (r.c_eff, r.domain_clamped);
    // The exact gradient's multiplier at a bound (½ under JAX's clip), as the reference's.
    let bound_mul = match profile.gradient {
        GradientMode::Exact { .. } => k.clamp_input(c, profile.domain).1,
        GradientMode::FormulaAtClamped { .. } | GradientMode::Detached => 1.0,
    };
    let clip = |g: Float| match profile.factor_clip {
        Some((lo, hi)) => {
            if g > hi {
                fl(hi)
            } else if g < lo {
                fl(lo)
            } else {
                g
            }
        }
        None => g,
    };
    let linear_g = match profile.gradient {
        GradientMode::Exact { .. } if domain_clamped => 0.0,
        GradientMode::Exact { .. } => bound_mul,
        GradientMode::FormulaAtClamped { .. } | GradientMode::Detached => 1.0,
    };
    let (m1, m2, m3) = (fl(p.m1), fl(p.m2), fl(p.m3));
    // The output clip: the reference's decision (it clipped iff its output is ±b).
    let done = |out: Float, g: Float, theta_flip, branch_flip| {
        let (out, g) = if r.out_clipped {
            (fl(r.out), fl(0.0))
        } else {
            (out, g)
        };
        Exact {
            out,
            factor: clip(g),
            theta_flip,
            branch_flip,
        }
    };

    if profile.shortcut && p.is_angle_identity() {
        return done(fl(c_eff) - &m3, fl(linear_g), false, false);
    }

    let theta_exact = fl(c_eff).acos();
    let (theta, theta_flip) = match profile.theta {
        ThetaPrecision::Native => (theta_exact, false),
        ThetaPrecision::F32 => {
            let t32 = theta_exact.to_f32() as f64;
            let same = t32 == r.theta || (t32.is_nan() && r.theta.is_nan());
            (fl(r.theta), !same)
        }
    };
    let phi_raw = Float::with_val(PREC, &m1 * &theta) + &m2;

    // The branch decision is the reference's (taken on the same f64 values, SPEC.md §5.6).
    if r.branch == Branch::Fallback {
        let easy = profile.angle.is_easy_margin();
        // cos(acos c̃) = c̃ exactly: the fallback through the angle has the same exact value.
        let out = match profile.angle {
            AnglePolicy::Threshold { fallback, .. } if !easy => match fallback {
                Fallback::MSinM => {
                    // mm as the profile holds it: exact, or f32-rounded constants.
                    let mm = match profile.constants {
                        ParamPrecision::Dtype => Float::with_val(PREC, &m2 * m2.clone().sin()),
                        ParamPrecision::F32 => fl(k.fallback_offset),
                    };
                    fl(c_eff) - mm - &m3
                }
                // κ is the profile's constant as held.
                Fallback::Offset { .. } => fl(c_eff) - k.fallback_offset,
                Fallback::Plain => fl(c_eff),
            },
            AnglePolicy::Threshold { .. }
            | AnglePolicy::EasyMargin
            | AnglePolicy::Raw
            | AnglePolicy::Clamp { .. }
            | AnglePolicy::Monotone => fl(c_eff),
        };
        // Its derivative is 1 (0 where clamped); at |c̃| ≥ 1 through the angle it is the IEEE
        // value sin θ̂/0 the profile defines, taken from the reference.
        let g = if profile.round_trip.fallback && c_eff.abs() >= 1.0 && linear_g != 0.0 {
            fl(r.factor_unclipped)
        } else {
            fl(linear_g)
        };
        return done(out, g, theta_flip, false);
    }

    // The trig identity with the profile's held cos m2, sin m2 and ε (its constants).
    if let EvalForm::TrigIdentity { guard, .. } = profile.eval {
        if p.m1 == 1.0 {
            let x = (fl(1.0) - c_eff) * (fl(1.0) + c_eff);
            let x = match guard {
                SineGuard::Epsilon { .. } => x + k.sine_eps,
                SineGuard::Unguarded | SineGuard::Clamp | SineGuard::Safe => x,
            };
            let guarded_zero = match guard {
                SineGuard::Clamp => x.is_sign_negative() && !x.is_zero(),
                SineGuard::Safe => !(x > 0.0),
                SineGuard::Unguarded | SineGuard::Epsilon { .. } => false,
            };
            let (st, ds) = if guarded_zero {
                (fl(0.0), fl(0.0))
            } else {
                let st = x.sqrt();
                let ds = if st.is_zero() {
                    // −c/0: the reference's IEEE infinity.
                    fl(-c_eff * f64::INFINITY)
                } else {
                    Float::with_val(PREC, -c_eff) / &st
                };
                (st, ds)
            };
            let out = fl(c_eff) * k.cos_m - st * k.sin_m - &m3;
            let formula = fl(k.cos_m) - ds * k.sin_m;
            let g = match profile.gradient {
                GradientMode::Detached => fl(1.0),
                GradientMode::Exact { .. } if domain_clamped => fl(0.0),
                GradientMode::Exact { .. } => formula * bound_mul,
                GradientMode::FormulaAtClamped { .. } => formula,
            };
            return done(out, g, theta_flip, r.branch != Branch::Margin);
        }
    }

    let phi = if phi_raw.is_nan() {
        phi_raw.clone()
    } else if phi_raw < k.phi_lo {
        fl(k.phi_lo)
    } else if phi_raw > k.phi_hi {
        fl(k.phi_hi)
    } else {
        phi_raw.clone()
    };
    let angle_clamped = !phi_raw.is_nan() && phi != phi_raw;
    let branch_flip = angle_clamped != r.angle_clamped || r.branch != Branch::Margin;
    // The monotone extension's piece, decided as the reference decides it.
    let (sign, shift) = match profile.angle {
        AnglePolicy::Monotone if k.op_dtype.round(r.phi) > std::f64::consts::PI => {
            let kk = (k.op_dtype.round(r.phi) / std::f64::consts::PI).floor();
            (if kk % 2.0 == 0.0 { 1.0 } else { -1.0 }, 2.0 * kk)
        }
        AnglePolicy::Monotone
        | AnglePolicy::Raw
        | AnglePolicy::Clamp { .. }
        | AnglePolicy::Threshold { .. }
        | AnglePolicy::EasyMargin => (1.0, 0.0),
    };
    let out = Float::with_val(PREC, phi.clone().cos() * sign) - shift - &m3;

    let formula = |rsqrt_f32: bool, rule: PoleRule| -> Float {
        let s = phi.clone().sin();
        if rsqrt_f32 {
            // Caffe GPU's f32 powf, as the reference computes it (an inf at c~ = ±1 stays).
            return Float::with_val(PREC, &m1 * &s) * margin::inv_sin_theta(c_eff, true);
        }
        let one_minus = (fl(1.0) - c_eff) * (fl(1.0) + c_eff);
        if one_minus.is_zero() {
            // At c̃ = ±1 the profile takes sin φ at φ as the dtype holds it (its sign decides
            // ±inf): the reference's own value of φ, not the exact π.
            let s = fl(k.op_dtype.round(r.phi)).sin();
            return match rule {
                PoleRule::Ieee => Float::with_val(PREC, &m1 * &s) * f64::INFINITY,
                PoleRule::Limit => {
                    let phi_abs = phi.clone().abs().to_f64().max(1.0);
                    if s.clone().abs() <= 4.0 * f64::EPSILON * phi_abs {
                        Float::with_val(PREC, &m1 * &m1) * phi.clone().cos() / theta.clone().cos()
                    } else if s.is_sign_negative() {
                        fl(f64::NEG_INFINITY)
                    } else {
                        fl(f64::INFINITY)
                    }
                }
            };
        }
        Float::with_val(PREC, &m1 * &s) / one_minus.sqrt()
    };
    let g = match profile.gradient {
        GradientMode::Detached => fl(1.0),
        GradientMode::Exact { .. } if domain_clamped || angle_clamped => fl(0.0),
        GradientMode::Exact { pole, form } => {
            let g = match form {
                ExactForm::Fused | ExactForm::Chain => formula(false, pole) * sign,
                // Divided by sin of the saved θ, which the profile defines in the op dtype.
                ExactForm::SinTheta => {
                    let st = fl(k.op_dtype.round(r.theta)).sin();
                    if st.is_zero() {
                        formula(false, pole) * sign
                    } else {
                        Float::with_val(PREC, &m1 * phi.clone().sin()) / st * sign
                    }
                }
            };
            g * bound_mul
        }
        GradientMode::FormulaAtClamped { rsqrt_f32 } => formula(rsqrt_f32, PoleRule::Ieee),
    };
    done(out, g, theta_flip, branch_flip)
}

/// Error of an f64 `got` against an exact value, in ulps of f64 taken at max(|exact|, 1):
/// relative for |exact| ≥ 1, absolute in units of 2^−52 below. (Ulps of the result itself
/// are unbounded where the exact value is 0 while the reference returns 6e−17, which
/// cos(π/2 rounded) does: a condition number, not an accuracy.) Returns (that, absolute).
/// Equal non-finite values give 0; a non-finite mismatch gives +inf.
pub fn error(got: f64, exact: &Float) -> (f64, f64) {
    let e = exact.to_f64();
    if !got.is_finite() || !exact.is_finite() {
        let same = (got.is_nan() && exact.is_nan()) || got == e;
        return if same {
            (0.0, 0.0)
        } else {
            (f64::INFINITY, f64::INFINITY)
        };
    }
    let diff = (Float::with_val(PREC, exact - got)).abs().to_f64();
    (diff / Dtype::F64.ulp(e.abs().max(1.0)), diff)
}

/// The inputs of the check for one (profile, params, dtype): the edge catalogue in f32 and
/// f64, and around every kink the 256 nearest floats of the dtype on each side plus points
/// at distances 2^−k (k = 1 … 52) on each side; sorted, deduplicated.
pub fn inputs(profile: &Profile, p: &Params, dtype: Dtype) -> Vec<f64> {
    let mut v = edge_cases(profile, p, Dtype::F32);
    v.extend(edge_cases(profile, p, Dtype::F64));
    for kk in kinks(profile, p, dtype) {
        let c = dtype.round(kk.c);
        for dir in [-1, 1] {
            let mut x = c;
            for _ in 0..256 {
                x = next_float(x, dtype, dir);
                v.push(x);
            }
            for e in 1..=52 {
                v.push(dtype.round(c + dir as f64 * 2f64.powi(-e)));
            }
        }
        v.push(c);
    }
    v.retain(|x| x.is_finite());
    v.sort_by(|a, b| a.total_cmp(b));
    v.dedup_by(|a, b| a.to_bits() == b.to_bits());
    v
}

/// A maximum over inputs and where it is reached.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Worst {
    pub value: f64,
    pub c: f64,
    pub params: Option<Params>,
}

impl Worst {
    fn offer(&mut self, v: f64, c: f64, p: &Params) {
        if v > self.value || self.params.is_none() {
            *self = Worst {
                value: v,
                c,
                params: Some(*p),
            };
        }
    }
}

/// The worst error of the reference over a set of inputs, and where.
#[derive(Clone, Debug, Default)]
pub struct Bound {
    pub inputs: u64,
    /// [`error`]'s ulps, forward and backward, on inputs without a flip.
    pub fwd_ulp: Worst,
    pub bwd_ulp: Worst,
    /// Largest share of an f64 / f32 budget the reference's error takes (every input).
    pub fwd_share_f64: Worst,
    pub bwd_share_f64: Worst,
    pub fwd_share_f32: Worst,
    pub bwd_share_f32: Worst,
    /// Inputs where the exact θ rounds to another f32 than the reference's (θ-f32 profiles).
    pub theta_flips: u64,
    /// Inputs where the exact φ is clamped and the reference's is not, or the reverse.
    pub branch_flips: u64,
    /// Largest share of an f64 budget taken at a flip (included in the shares as well).
    pub flip_share_f64: f64,
}

/// Checks the reference of `profile` at `p` (its constants rounded to `dtype`) on
/// [`inputs`], folding the errors into `b`.
pub fn check(profile: &Profile, p: &Params, dtype: Dtype, b: &mut Bound) {
    let k = Constants::new(profile, p, dtype);
    for c in inputs(profile, p, dtype) {
        let r = margin::eval_with(c, p, profile, &k);
        let x = eval_exact(c, p, profile, &k, &r);
        b.inputs += 1;
        b.theta_flips += x.theta_flip as u64;
        b.branch_flips += x.branch_flip as u64;
        let (fu, fa) = error(r.out, &x.out);
        let (gu, ga) = error(r.factor, &x.factor);
        // The ulp maxima are the reference's arithmetic error on a shared branch. Where a
        // decision flips (a rounded θ or φ on the other side of an f32 boundary or a clamp
        // bound), the values differ by the flip itself; only its share of the budget counts.
        if !(x.theta_flip || x.branch_flip) {
            b.fwd_ulp.offer(fu, c, p);
            b.bwd_ulp.offer(gu, c, p);
        }
        let frac = |err: f64, budget: f64| {
            if err == 0.0 {
                0.0
            } else if budget > 0.0 {
                err / budget
            } else {
                f64::INFINITY
            }
        };
        let b64 = target_budget_for(&r, 1.0, p, profile, Dtype::F64);
        let b32 = target_budget_for(&r, 1.0, p, profile, Dtype::F32);
        b.fwd_share_f64.offer(frac(fa, b64.forward), c, p);
        b.bwd_share_f64.offer(frac(ga, b64.backward), c, p);
        b.fwd_share_f32.offer(frac(fa, b32.forward), c, p);
        b.bwd_share_f32.offer(frac(ga, b32.backward), c, p);
        if x.theta_flip || x.branch_flip {
            b.flip_share_f64 = b
                .flip_share_f64
                .max(frac(fa, b64.forward))
                .max(frac(ga, b64.backward));
        }
    }
}
