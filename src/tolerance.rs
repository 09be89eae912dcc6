//! The tolerance model: a per-element error budget for an implementation that ran in
//! dtype T (f32 or f64), compared with the f64 reference under a profile. SPEC.md §5
//! derives every term; the constants live in [`consts`], each with its justification.
//!
//! A budget is absolute, in the units of the compared value (scaled by s where the
//! implementation scales). An element passes when `|actual − reference| ≤ budget`, and
//! non-finite references must be matched exactly (NaN by NaN, ±inf by the same infinity).

use crate::dtype::Dtype;
use crate::margin::{self, Branch, Constants, Entry};
use crate::params::Params;
use crate::profile::{
    AnglePolicy, EvalForm, ExactForm, Fallback, GradientMode, OpMath, Profile, SineGuard,
    ThetaPrecision,
};

/// Every constant of the model, in one place. "ulp" is the spacing of T at the value.
pub mod consts {
    /// acos/acosf: glibc documents ≤ 1 ulp; the CUDA Math API documents acosf ≤ 2 ulp
    /// (full range) and acos ≤ 2 ulp. The budget takes the worse, so one model covers both.
    pub const ACOS_ULP: f64 = 2.0;
    /// cos/cosf: glibc ≤ 1 ulp; CUDA cosf ≤ 2 ulp, cos ≤ 2 ulp (outside fast-math).
    pub const COS_ULP: f64 = 2.0;
    /// sin/sinf: as cos.
    pub const SIN_ULP: f64 = 2.0;
    /// powf: CUDA documents ≤ 4 ulp (glibc ≤ 1); the Caffe GPU backward's `powf(·, −0.5)`.
    /// Also covers rsqrt/sqrt-then-divide formulations (≤ 2 ulp together).
    pub const POW_ULP: f64 = 4.0;
    /// One correctly rounded IEEE operation: half an ulp of its result.
    pub const ROUNDING_ULP: f64 = 0.5;
    /// θ rounded to f32 after acos (Caffe's `float theta`): the implementation's and the
    /// reference's roundings of two acos results that differ by ≤ ACOS_ULP can land on
    /// adjacent floats, so one f32 ulp of θ on top of the acos error.
    pub const THETA_F32_ULP: f64 = 1.0;
    /// Roundings in φ = m1·θ + m2: a multiply and an add (or one FMA); ½ ulp each.
    pub const PHI_ROUNDINGS: f64 = 2.0;
    /// Roundings in the backward product m1 · r · sin φ and in top_diff · factor · s:
    /// three multiplies, ½ ulp each, as a relative error in units of u = ulp(1)/2.
    pub const BACKWARD_MULS: f64 = 3.0;
    /// Non-target entries: copied (exact) or scaled once by s (one rounding).
    pub const PASSTHROUGH_ULP: f64 = 0.5;
    /// The autograd chain `(−sin φ)·m1·(−1/sqrt(1 − c²))` rounds the sqrt, the reciprocal and
    /// one more product than the fused `m1·sin φ·r`: three more roundings, ½ ulp each, as a
    /// relative error in units of u (a correct f64 chain measured 1.33 of the fused budget).
    pub const CHAIN_ROUNDINGS: f64 = 3.0;
    /// A parameter (m1, m2, m3) given as an f64 (a Python float) and used in T arithmetic is
    /// rounded to T first: ½ ulp_T of the parameter. Caffe's `params_effective` are already
    /// T-exact, so this costs them nothing.
    pub const PARAM_ULP: f64 = 0.5;
}

use consts::*;

/// Absolute error of one library function documented at `k` ulp, with result v, as an
/// implementation in `t` carries it. In f32/f64 that is k ulp_T(v). The half types are
/// storage types (SPEC.md §5.6, PyTorch's "opmath"): the function runs in f32 (k ulp of f32)
/// and its result is rounded once to the storage type (½ ulp_T), so the half budget is about
/// ½ ulp_T, not k ulp_T: a budget k = 2 half-ulps wide would hide a missing rounding.
pub fn libm_abs(k: f64, t: Dtype, v: f64) -> f64 {
    match t {
        Dtype::F32 | Dtype::F64 => k * t.ulp(v),
        Dtype::F16 | Dtype::BF16 => k * Dtype::F32.ulp(v) + ROUNDING_ULP * t.ulp(v),
    }
}

/// [`libm_abs`] as a relative error bound: k·2u_T, or k·2u_f32 + u_T for the half types.
pub fn libm_rel(k: f64, t: Dtype) -> f64 {
    match t {
        Dtype::F32 | Dtype::F64 => k * 2.0 * t.unit_roundoff(),
        Dtype::F16 | Dtype::BF16 => k * 2.0 * Dtype::F32.unit_roundoff() + t.unit_roundoff(),
    }
}

/// [`libm_abs`] under the profile's op math: with all-half arithmetic ([`OpMath::Storage`])
/// the library functions round in the storage type, k ulp of it.
pub fn libm_abs_p(profile: &Profile, k: f64, t: Dtype, v: f64) -> f64 {
    match profile.op_math {
        OpMath::F32Storage => libm_abs(k, t, v),
        OpMath::Storage => k * t.ulp(v),
    }
}

/// [`libm_rel`] under the profile's op math (see [`libm_abs_p`]).
pub fn libm_rel_p(profile: &Profile, k: f64, t: Dtype) -> f64 {
    match profile.op_math {
        OpMath::F32Storage => libm_rel(k, t),
        OpMath::Storage => k * 2.0 * t.unit_roundoff(),
    }
}

/// Forward and backward budgets of one element, in the compared units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    pub forward: f64,
    pub backward: f64,
}

/// Error of sqrt(1 − c²) as T computes it, for formulations that use it (th/mm forward,
/// Caffe's `pow(1 − c², −0.5)`): c² = 1 − 2d + d² with d = 1 − |c| exact (Sterbenz) and 2d on
/// T's grid, so rounding c² loses at most min(d², ½ ulp(c²)); the subtraction is exact for
/// c² ≥ ½. Returns (δ(1 − c²), 1 − c²).
fn one_minus_c2_error(c: f64, t: Dtype) -> (f64, f64) {
    let d = 1.0 - c.abs();
    let v = (1.0 - c) * (1.0 + c);
    let err = (d * d).min(ROUNDING_ULP * t.ulp(c * c)) + ROUNDING_ULP * t.ulp(v);
    (err, v)
}

/// Error in θ (radians) that an implementation in T may carry relative to the reference.
fn theta_error(e: &Entry, profile: &Profile, t: Dtype) -> f64 {
    let mut d = libm_abs(ACOS_ULP, t, e.theta);
    if profile.theta == ThetaPrecision::F32 {
        d += THETA_F32_ULP * Dtype::F32.ulp(e.theta);
    }
    d
}

/// Budgets for a target entry with input `c` and upstream gradient `top_diff`, for an
/// implementation in `t` whose outputs are scaled by `p.s` (pass s = 1 for an unscaled layer).
pub fn target_budget(c: f64, top_diff: f64, p: &Params, profile: &Profile, t: Dtype) -> Budget {
    let k = Constants::new(profile, p, t);
    let e = margin::eval_with(c, p, profile, &k);
    target_budget_for(&e, top_diff, p, profile, t)
}

/// [`target_budget`] from an already evaluated entry.
pub fn target_budget_for(
    e: &Entry,
    top_diff: f64,
    p: &Params,
    profile: &Profile,
    t: Dtype,
) -> Budget {
    target_budget_pre(e, top_diff, p, profile, t, &BudgetPre::new(p))
}

/// What [`target_budget_for`] computes from the parameters alone, once for many entries at
/// the same parameters (the sweep): the same values, so the same budgets bit for bit.
#[derive(Clone, Copy, Debug)]
pub struct BudgetPre {
    /// The parameters it was made for (checked in debug builds).
    m2: f64,
    /// sin m2 of the raw (unprofiled) parameters.
    sin_m2: f64,
}

impl BudgetPre {
    pub fn new(p: &Params) -> BudgetPre {
        BudgetPre {
            m2: p.m2,
            sin_m2: p.m2.sin(),
        }
    }
}

/// [`target_budget_for`] with the per-parameter values precomputed (`pre` from the same `p`).
pub fn target_budget_pre(
    e: &Entry,
    top_diff: f64,
    p: &Params,
    profile: &Profile,
    t: Dtype,
    pre: &BudgetPre,
) -> Budget {
    debug_assert_eq!(
        pre.m2.to_bits(),
        p.m2.to_bits(),
        "BudgetPre of other parameters"
    );
    let u = t.unit_roundoff();
    let (fwd, g_err) = match e.branch {
        // The (1, 0) shortcut c̃ − m3 rounds once. The th/mm fallback c̃ − mm − m3, with
        // mm = m2·sin m2 computed in T (a sin and a multiply), rounds twice and carries mm's
        // own error. The easy-margin fallback is c̃ itself: exact.
        Branch::Shortcut => (ROUNDING_ULP * t.ulp(e.out) + PARAM_ULP * t.ulp(p.m3), 0.0),
        Branch::Fallback => {
            let easy = profile.angle.is_easy_margin();
            // Through the angle the fallback's c̃ is cos(acos c̃): the acos error times sin θ,
            // and the cos rounding; its derivative sin θ / sqrt(1 − c̃²) carries the acos,
            // sin and sqrt errors (relative).
            let (rt_fwd, rt_grad) = if profile.round_trip.fallback {
                round_trip_error(e.c_eff, t)
            } else {
                (0.0, 0.0)
            };
            let rt_grad = if e.factor == 0.0 || !e.factor.is_finite() {
                0.0
            } else {
                rt_grad
            };
            let fallback = match profile.angle {
                AnglePolicy::Threshold { fallback, .. } => Some(fallback),
                AnglePolicy::EasyMargin
                | AnglePolicy::Raw
                | AnglePolicy::Clamp { .. }
                | AnglePolicy::Monotone => None,
            };
            match fallback {
                // c̃ itself: exact (up to the round trip).
                None | Some(Fallback::Plain) => (rt_fwd, rt_grad),
                _ if easy => (rt_fwd, rt_grad),
                Some(Fallback::MSinM) => {
                    let mm = p.m2 * pre.sin_m2;
                    let subs = ROUNDING_ULP * (t.ulp(e.c_eff - mm) + t.ulp(e.out));
                    let consts = libm_abs_p(profile, SIN_ULP, t, mm)
                        + ROUNDING_ULP * t.ulp(mm)
                        + PARAM_ULP * t.ulp(p.m3);
                    (subs + consts + rt_fwd, rt_grad)
                }
                // c̃ − κ: one subtraction, κ held in T (½ ulp). κ is a constant nobody
                // states: implementations compute it from m (1 + cos(π − m), 1 − cos m), so
                // its value is known only to that evaluation, one cos at |cos m| ≤ 1 and
                // one rounding of 1 ± it, as the m·sin m fallback's constant is.
                Some(Fallback::Offset { kappa }) => {
                    let cos_m = 1.0 - kappa;
                    let consts = libm_abs_p(profile, COS_ULP, t, cos_m)
                        + ROUNDING_ULP * (t.ulp(kappa) + t.ulp(cos_m));
                    (ROUNDING_ULP * t.ulp(e.out) + consts + rt_fwd, rt_grad)
                }
            }
        }
        Branch::Margin if trig_identity_applies(profile, p) => {
            trig_identity_error(e, p, profile, t)
        }
        Branch::Margin => {
            let dtheta = theta_error(e, profile, t);
            let dphi = p.m1 * dtheta
                + PHI_ROUNDINGS * ROUNDING_ULP * t.ulp(e.phi_raw)
                + PARAM_ULP * (t.ulp(p.m1) * e.theta + t.ulp(p.m2));
            // sin φ and cos φ once per element (the factor's error uses them again).
            let (sin, cos) = e.phi_trig.unwrap_or_else(|| (e.phi.sin(), e.phi.cos()));
            let trig = PhiTrig { sin, cos };
            let sin_phi = trig.sin.abs();
            let (d1mc2, one_mc2) = one_minus_c2_error(e.c_eff, t);
            let sin_theta = one_mc2.max(0.0).sqrt();
            // sqrt(1 − c²) formulations of cos(θ + m2) carry δ sinθ · sin m2.
            let dsin_theta = if sin_theta > 0.0 {
                d1mc2 / (2.0 * sin_theta) + ROUNDING_ULP * t.ulp(sin_theta)
            } else {
                0.0
            };
            let fwd = sin_phi * dphi
                + 0.5 * dphi * dphi
                + libm_abs_p(profile, COS_ULP, t, trig.cos)
                + ROUNDING_ULP * t.ulp(e.out)
                + PARAM_ULP * t.ulp(p.m3)
                + pre.sin_m2.abs() * dsin_theta
                + monotone_shift_rounding(e, p, profile, t);

            let g_err = match profile.gradient {
                GradientMode::Detached => 0.0,
                GradientMode::Exact { .. } if e.domain_clamped || e.angle_clamped => {
                    // Flat, unless φ is within its own error of the clamp bound: then the
                    // implementation may sit on the formula side of it.
                    let near = (e.phi_raw - e.phi).abs() <= dphi;
                    if near {
                        factor_error(e, p, profile, t, dphi, u, trig) + formula_at(e, p, trig).abs()
                    } else {
                        0.0
                    }
                }
                _ => factor_error(e, p, profile, t, dphi, u, trig),
            };
            (fwd, g_err)
        }
    };

    // The output clip is 1-Lipschitz too; within its forward error of ±b the implementation
    // may sit on either side, so the unclipped factor is budgeted there.
    let g_err = match profile.output_clip {
        Some(b) => {
            let bare = Profile {
                output_clip: None,
                ..profile.clone()
            };
            let u_e = margin::eval_with(e.c_eff, p, &bare, &Constants::new(&bare, p, t));
            let near = (u_e.out.abs() - b).abs() <= fwd;
            match (e.out_clipped, near) {
                (_, true) => g_err + u_e.factor.abs(),
                (true, false) => 0.0,
                (false, false) => g_err,
            }
        }
        None => g_err,
    };

    // The factor clip is 1-Lipschitz, and a value beyond a bound by more than its error stays there.
    let g_err = match profile.factor_clip {
        Some((lo, hi)) => {
            let g = e.factor_unclipped;
            let beyond = if g > hi {
                g - hi
            } else if g < lo {
                lo - g
            } else {
                0.0
            };
            if g_err.is_nan() {
                0.0
            } else {
                (g_err - beyond).max(0.0)
            }
        }
        None => g_err,
    };

    let s = p.s;
    let out_scaled = s * e.out;
    let bwd = s * top_diff * e.factor;
    Budget {
        forward: s * fwd
            + if s != 1.0 {
                ROUNDING_ULP * t.ulp(out_scaled)
            } else {
                0.0
            },
        backward: s * top_diff.abs() * g_err + BACKWARD_MULS * ROUNDING_ULP * t.ulp(bwd),
    }
}

/// Whether the margin branch is evaluated by the angle-addition identity (m1 = 1 only).
fn trig_identity_applies(profile: &Profile, p: &Params) -> bool {
    match profile.eval {
        EvalForm::AcosCos => false,
        EvalForm::TrigIdentity { .. } => profile.params.apply(p).m1 == 1.0,
    }
}

/// Forward and factor errors of `c̃·cos m2 − sinθ·sin m2 − m3` and of its derivative
/// `cos m2 + sin m2·c̃/sinθ`, sinθ = sqrt(1 − c̃² [+ ε]) as T computes it. The sqrt is
/// concave, so an error δx in its argument moves it by at most min(δx / (2 sinθ), sqrt(δx)).
fn trig_identity_error(e: &Entry, p: &Params, profile: &Profile, t: Dtype) -> (f64, f64) {
    let p = profile.params.apply(p);
    let (guard, eps) = match profile.eval {
        EvalForm::TrigIdentity { guard, .. } => match guard {
            SineGuard::Epsilon { eps } => (guard, eps),
            SineGuard::Unguarded | SineGuard::Clamp | SineGuard::Safe => (guard, 0.0),
        },
        EvalForm::AcosCos => (SineGuard::Unguarded, 0.0),
    };
    let (cos_m, sin_m) = (p.m2.cos(), p.m2.sin());
    let (s, ds, _) = margin::guarded_sine(e.c_eff, guard, eps);
    let c = e.c_eff;
    let (mut dx, x) = one_minus_c2_error(c, t);
    if eps != 0.0 {
        dx += ROUNDING_ULP * (t.ulp(x + eps) + t.ulp(eps));
    }
    let dsin = if s > 0.0 {
        (dx / (2.0 * s)).min(dx.sqrt()) + ROUNDING_ULP * t.ulp(s)
    } else {
        // A guard that returns 0: 0 in T too, unless T's argument lands within δx above 0.
        dx.sqrt()
    };
    // cos m2 and sin m2 held in T (computed in f64 and rounded, or by T's libm).
    let dcos_m = libm_abs_p(profile, COS_ULP, t, cos_m);
    let dsin_m = libm_abs_p(profile, SIN_ULP, t, sin_m);
    let fwd = c.abs() * dcos_m
        + ROUNDING_ULP * t.ulp(c * cos_m)
        + sin_m.abs() * dsin
        + s * dsin_m
        + ROUNDING_ULP * t.ulp(s * sin_m)
        + 2.0 * ROUNDING_ULP * t.ulp(e.out)
        + PARAM_ULP * t.ulp(p.m3);
    let g_err = match profile.gradient {
        GradientMode::Detached => 0.0,
        GradientMode::Exact { .. } if e.domain_clamped => 0.0,
        GradientMode::Exact { .. } | GradientMode::FormulaAtClamped { .. } => {
            if s > 0.0 && ds.is_finite() {
                let u = t.unit_roundoff();
                // c/s: the sqrt's error relative to s, and four roundings (the halving, the
                // product by 2c, the division, the product by sin m2).
                let q = ds.abs();
                dcos_m
                    + q * sin_m.abs() * ((dsin / s).min(1.0) + 8.0 * u)
                    + q * dsin_m
                    + ROUNDING_ULP * t.ulp(e.factor)
            } else {
                0.0
            }
        }
    };
    (fwd, g_err)
}

/// The monotone extension past π subtracts 2k before m3: one more rounding, of
/// (−1)^k cos φ − 2k (found by the 256-bit check, SPEC.md §5.6: 1.05 of budget without it).
fn monotone_shift_rounding(e: &Entry, p: &Params, profile: &Profile, t: Dtype) -> f64 {
    match profile.angle {
        AnglePolicy::Monotone if e.phi > std::f64::consts::PI => ROUNDING_ULP * t.ulp(e.out + p.m3),
        AnglePolicy::Monotone
        | AnglePolicy::Raw
        | AnglePolicy::Clamp { .. }
        | AnglePolicy::Threshold { .. }
        | AnglePolicy::EasyMargin => 0.0,
    }
}

/// sin φ and cos φ of an entry's φ, computed once for every term that uses them.
#[derive(Clone, Copy)]
struct PhiTrig {
    sin: f64,
    cos: f64,
}

/// The margin-branch formula m1·sin φ̃/sqrt(1 − c̃²) at the entry's values.
fn formula_at(e: &Entry, p: &Params, trig: PhiTrig) -> f64 {
    p.m1 * trig.sin * margin::inv_sin_theta(e.c_eff, false)
}

/// Error of the factor m1·sin φ·r, r = (1 − c²)^(−1/2), on the margin branch.
fn factor_error(
    e: &Entry,
    p: &Params,
    profile: &Profile,
    t: Dtype,
    dphi: f64,
    u: f64,
    trig: PhiTrig,
) -> f64 {
    let rsqrt_t = match profile.gradient {
        GradientMode::FormulaAtClamped { rsqrt_f32: true } => Dtype::F32,
        _ => t,
    };
    if let GradientMode::Exact {
        form: ExactForm::SinTheta,
        ..
    } = profile.gradient
    {
        return sin_theta_factor_error(e, p, profile, t, dphi, u, trig);
    }
    let (d1mc2, one_mc2) = one_minus_c2_error(e.c_eff, rsqrt_t);
    if one_mc2 <= 0.0 {
        // c̃ = ±1 exactly: 1 − c̃² = 0 in every implementation; the pole value is exact.
        return 0.0;
    }
    let r = one_mc2.powf(-0.5);
    let g = p.m1 * trig.sin * r;
    let rel_r = libm_rel_p(profile, POW_ULP, rsqrt_t) + 0.5 * d1mc2 / one_mc2;
    let extra = match profile.gradient {
        GradientMode::Exact {
            form: ExactForm::Chain,
            ..
        } => CHAIN_ROUNDINGS,
        GradientMode::Exact {
            form: ExactForm::Fused | ExactForm::SinTheta,
            ..
        }
        | GradientMode::FormulaAtClamped { .. }
        | GradientMode::Detached => 0.0,
    };
    p.m1 * trig.cos.abs() * r * dphi
        + g.abs() * (rel_r + libm_rel_p(profile, SIN_ULP, t) + (BACKWARD_MULS + extra) * 2.0 * u)
}

/// Error of the round trip cos(acos c) and of its derivative sin θ / sqrt(1 − c²) as T
/// computes them: (absolute forward error, absolute error of the derivative ≈ 1).
fn round_trip_error(c: f64, t: Dtype) -> (f64, f64) {
    let theta = c.acos();
    let sin_theta = theta.sin();
    let fwd = libm_abs(ACOS_ULP, t, theta) * sin_theta.abs() + libm_abs(COS_ULP, t, c);
    let (d1mc2, one_mc2) = one_minus_c2_error(c, t);
    let rel_sqrt = if one_mc2 > 0.0 {
        0.5 * d1mc2 / one_mc2
    } else {
        0.0
    };
    let cot = if sin_theta != 0.0 {
        (theta.cos() / sin_theta).abs()
    } else {
        0.0
    };
    let grad = cot * libm_abs(ACOS_ULP, t, theta) + rel_sqrt + libm_rel(SIN_ULP + POW_ULP, t);
    (fwd, grad)
}

/// Budget of a transformed non-target element (every entry clamped, or round-tripped through
/// acos/cos): forward `s·out`, backward `s·top_diff·factor` (`bwd_unscaled` = top_diff·factor).
pub fn non_target_budget(
    c: f64,
    out: f64,
    bwd_unscaled: f64,
    s: f64,
    profile: &Profile,
    t: Dtype,
) -> Budget {
    let (fwd, grad) = if profile.round_trip.non_targets && out.is_finite() {
        let (f, g) = round_trip_error(c.clamp(-1.0, 1.0), t);
        (f, g * bwd_unscaled.abs())
    } else {
        (0.0, 0.0)
    };
    let scale = |v: f64| {
        if s == 1.0 {
            0.0
        } else {
            PASSTHROUGH_ULP * t.ulp(v)
        }
    };
    Budget {
        forward: s * fwd + scale(s * out),
        backward: s * grad + scale(s * bwd_unscaled) + ROUNDING_ULP * t.ulp(s * bwd_unscaled),
    }
}

/// Error of the factor m1·sin φ / sin θ̂ with θ̂ the saved θ in T ([`ExactForm::SinTheta`]):
/// the acos error moves θ̂, which moves 1/sin θ̂ by cot θ̂·δθ (relative; large near θ = π,
/// where sin θ̂ is a few ulp of π and may even be negative), plus sin's own error.
fn sin_theta_factor_error(
    e: &Entry,
    p: &Params,
    profile: &Profile,
    t: Dtype,
    dphi: f64,
    u: f64,
    trig: PhiTrig,
) -> f64 {
    let st = margin::op_dtype(profile, t).round(e.theta).sin();
    if st == 0.0 {
        // θ̂ = 0 exactly (c = 1): sin 0 = 0 in every implementation; the pole value is exact.
        return 0.0;
    }
    let r = 1.0 / st.abs();
    let g = p.m1 * trig.sin * r;
    let rel = (e.theta.cos() / st).abs() * theta_error(e, profile, t) + libm_rel(SIN_ULP, t);
    p.m1 * trig.cos.abs() * r * dphi
        + g.abs() * (rel + libm_rel(SIN_ULP, t) + BACKWARD_MULS * 2.0 * u)
}

/// Budget of a non-target (or ignored-row) element: forward `s·x`, backward `s·top_diff`.
pub fn passthrough_budget(x: f64, top_diff: f64, s: f64, t: Dtype) -> Budget {
    let b = |v: f64| {
        if s == 1.0 {
            0.0
        } else {
            PASSTHROUGH_ULP * t.ulp(v)
        }
    };
    Budget {
        forward: b(s * x),
        backward: b(s * top_diff),
    }
}

/// `|actual − reference| / budget`: ≤ 1 passes. Non-finite values must match exactly
/// (0 if they do, +inf if not); a zero budget demands bit equality.
pub fn error_fraction(actual: f64, reference: f64, budget: f64) -> f64 {
    if !reference.is_finite() || !actual.is_finite() {
        let same = (reference.is_nan() && actual.is_nan()) || reference == actual;
        return if same { 0.0 } else { f64::INFINITY };
    }
    let err = (actual - reference).abs();
    if err == 0.0 {
        0.0
    } else if budget > 0.0 {
        err / budget
    } else {
        f64::INFINITY
    }
}

/// Whether `actual` is within `budget` of `reference` under [`error_fraction`].
pub fn within(actual: f64, reference: f64, budget: f64) -> bool {
    error_fraction(actual, reference, budget) <= 1.0
}

/// The pipeline budget (SPEC.md §8.3): features → normalization → cos → margin → scale →
/// softmax cross-entropy, forward and backward, for an implementation in T compared with the
/// f64 reference run on the same (T-rounded) inputs. The constants live here; the composition
/// over arrays is `crate::pipeline::budget`.
///
/// Notation: u = unit roundoff of T; γ_n = n·u / (1 − n·u) ≈ n·u, the classical bound on the
/// relative error of a length-n dot product or sum of like-signed terms (Higham, *Accuracy and
/// Stability of Numerical Algorithms*, 2nd ed., §3.1), which covers recursive, blocked (BLAS)
/// and pairwise orders alike because each of those is a recursive sum of at most n terms.
pub mod pipeline {
    /// exp/expf: glibc documents ≤ 1 ulp, CUDA's expf ≤ 2 ulp, this crate's vectorizable exp
    /// is tested at ≤ 2 ulp (`tests/pipeline.rs`; its f32 version measured at 1.18 ulp over
    /// every float in [−104, 89], SPEC.md §8.5). The budget takes the worst.
    pub const EXP_ULP: f64 = 2.0;
    /// log/logf: glibc ≤ 1 ulp, CUDA logf ≤ 1 ulp, log ≤ 1 ulp; 2 leaves room for log1p/log2
    /// formulations (log2·ln 2 adds one rounding).
    pub const LOG_ULP: f64 = 2.0;
    /// Coefficient of n·u in the γ_n bound of a length-n dot product or positive sum. 1 is the
    /// worst case of any summation order; BLAS blocking only lowers it.
    pub const DOT_GAMMA: f64 = 1.0;
    /// Roundings in y = x / sqrt(Σx² + eps) after the sum of squares: the add of eps, the
    /// sqrt, and the divide (or a reciprocal then a multiply: one more, covered by the fourth).
    /// Each ½ ulp, counted as units of u on a relative error.
    pub const NORM_ROUNDINGS: f64 = 4.0;
    /// Roundings of one softmax element p = exp(z − max) / Σ: the subtractions are charged to
    /// the logit error, the exps to [`EXP_ULP`], and this counts the divide (or a reciprocal and
    /// a multiply) and the product of the two exps of an online-softmax rescale
    /// e^{z − m_b}·e^{m_b − lse}. In units of u, relative.
    pub const SOFTMAX_ROUNDINGS: f64 = 3.0;
    /// Roundings between p and the returned gradient: p − 1 at the target, the multiply by
    /// loss_weight / N_valid, the multiply by s, the multiply by the margin factor. ½ ulp each,
    /// in units of u relative to the gradient element (absolute ½ ulp for p − 1, see budget.rs).
    pub const GRAD_ROUNDINGS: f64 = 4.0;
    /// Roundings of one row's loss −log p_y (or lse − z_y): the log's own error is
    /// [`LOG_ULP`]; this counts the final subtraction/negation and the add into the batch sum.
    pub const LOSS_ROUNDINGS: f64 = 2.0;
}
