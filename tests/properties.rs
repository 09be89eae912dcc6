//! Property tests of the f64 reference (SPEC.md §2–§3), with the shared strategies.
//! Every expected value is a closed form or an identity, never the code under test.

use crate::common::{self, batch, cos_for, dtypes, entry, params, profiles, profiles_where};
use combined_margin::gradcheck::{self, FdOptions, Scheme};
use combined_margin::margin::{self, Branch};
use combined_margin::profile::{BoundGradient, GradientMode, InputDomain, ThetaPrecision};
use combined_margin::{kinks, layer, tolerance, Dtype, Params, Profile};
use ndarray::Array2;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::f64::consts::PI;

/// Cases per property: thousands, as SPEC.md §2.6 asks; the whole file runs in seconds in release.
pub const CASES: u32 = 4096;

/// The shared configuration (fixed seed; PROPTEST_RNG_SEED explores others).
pub fn config() -> ProptestConfig {
    common::config(CASES)
}

proptest! {
    #![proptest_config(config())]

    /// (m1, m2, m3) = (1, 0, 0) is the identity: exactly where the profile takes the algebraic
    /// shortcut, within the tolerance model where it evaluates cos(acos(c)).
    #[test]
    fn identity_at_1_0_0((prof, _p, dt, c) in entry()) {
        let p = Params::new(1.0, 0.0, 0.0);
        prop_assume!((-1.0..=1.0).contains(&c));
        let e = margin::eval(c, &p, &prof, dt);
        if prof.shortcut {
            prop_assert_eq!(e.out.to_bits(), c.to_bits(), "shortcut must be exact");
        } else {
            // Where a domain clamp moved c, the identity holds for the clamped value.
            let b = tolerance::target_budget(c, 1.0, &p, &prof, dt);
            let frac = tolerance::error_fraction(e.out, e.c_eff, b.forward);
            prop_assert!(frac <= 1.0, "{}: out {:e} vs c {:e}: {} budgets", prof.name, e.out, e.c_eff, frac);
        }
    }

    /// CosFace (1, 0, m3) is c − m3: exactly with the shortcut, within the model otherwise.
    #[test]
    fn cosface_is_c_minus_m3((prof, _p, dt, c) in entry(), m3 in 0.0f64..0.6) {
        let p = Params::new(1.0, 0.0, m3);
        prop_assume!((-1.0..=1.0).contains(&c));
        let e = margin::eval(c, &p, &prof, dt);
        // m3 as the profile holds it (f32 parameters round it).
        let want = e.c_eff - prof.params.apply(&p).m3;
        if prof.shortcut {
            prop_assert_eq!(e.out.to_bits(), want.to_bits());
        } else {
            let b = tolerance::target_budget(c, 1.0, &p, &prof, dt);
            prop_assert!(tolerance::within(e.out, want, b.forward), "{}: {:e} vs {:e}", prof.name, e.out, want);
        }
    }

    /// Non-target entries and ignored rows are bit-identical in forward and backward, for
    /// every profile that does not transform non-targets; a profile that clamps every entry
    /// gives the clamped input (gradient 0 outside the bounds).
    #[test]
    fn non_targets_and_ignored_rows_untouched(
        (prof, p, dt, (n, c, cos, labels, top)) in (profiles(), params(), dtypes())
            .prop_flat_map(|(prof, p, dt)| (Just(prof.clone()), Just(p), Just(dt), batch(prof, p, dt)))
    ) {
        let cos = Array2::from_shape_vec((n, c), cos).unwrap();
        let top = Array2::from_shape_vec((n, c), top).unwrap();
        let fwd = layer::forward(cos.view(), &labels, &p, &prof, dt).unwrap();
        let bwd = layer::backward(cos.view(), &labels, top.view(), &p, &prof, dt).unwrap();
        for i in 0..n {
            for j in 0..c {
                if labels[i] == j as i64 {
                    continue;
                }
                let x = cos[[i, j]];
                let (want_f, want_b) = match (prof.transforms_non_targets(), prof.domain) {
                    (false, _) => (x, top[[i, j]]),
                    (true, InputDomain::Clamp { eps, at_bound, .. }) if !prof.round_trip.non_targets => {
                        let (lo, hi) = (dt.round(-1.0 + eps), dt.round(1.0 - eps));
                        // The gradient at a bound: passes, 0, or ½ (JAX's clip).
                        let at = match at_bound {
                            BoundGradient::Pass => 1.0,
                            BoundGradient::Zero => 0.0,
                            BoundGradient::Half => 0.5,
                        };
                        let mul = if lo < x && x < hi { 1.0 } else if x == lo || x == hi { at } else { 0.0 };
                        (x.clamp(lo, hi), mul * top[[i, j]])
                    }
                    (true, _) => continue,
                };
                prop_assert_eq!(fwd[[i, j]].to_bits(), want_f.to_bits(), "forward ({}, {})", i, j);
                prop_assert_eq!(bwd[[i, j]].to_bits(), want_b.to_bits(), "backward ({}, {})", i, j);
            }
        }
    }

    /// Profiles that promise finiteness give finite forward and backward for every finite
    /// input, however far outside [−1, 1], and any valid parameters.
    #[test]
    fn clamped_profiles_are_finite(
        prof in profiles_where(Profile::promises_finite),
        p in params(),
        dt in dtypes(),
        c in prop_oneof![any::<f64>().prop_filter("finite", |x| x.is_finite()), -1.5f64..1.5],
    ) {
        let e = margin::eval(c, &p, &prof, dt);
        prop_assert!(e.out.is_finite() && e.factor.is_finite(), "{} at c = {:e}: {:e} / {:e}", prof.name, c, e.out, e.factor);
    }

    /// The factor clip bounds the backward: caffe-gpu in [0, 2], recommended in [0, 16].
    #[test]
    fn gradient_bounds_hold((prof, p, dt, c) in entry()) {
        if let Some((lo, hi)) = prof.factor_clip {
            let g = margin::eval(c, &p, &prof, dt).factor;
            prop_assert!(g >= lo && g <= hi, "{}: factor {:e} at c = {:e} outside [{}, {}]", prof.name, g, c, lo, hi);
        }
    }

    /// Straight-through profiles return exactly 1.
    #[test]
    fn detached_gradient_is_one((prof, p, dt, c) in entry()) {
        if matches!(prof.gradient, GradientMode::Detached) {
            prop_assert_eq!(margin::eval(c, &p, &prof, dt).factor, 1.0);
        }
    }

    /// Where the profile promises it, the forward is monotone non-increasing in θ on [0, π]
    /// (non-decreasing in c), with no tolerance, as a T implementation returns it (rounded to
    /// T). Half the angles are drawn within 1e-6 rad of where φ reaches π, where a clamp that
    /// lets the curve turn back up would show.
    #[test]
    fn monotone_where_promised(
        (prof, p, dt, a, b) in (profiles_where(Profile::promises_monotone), params(), dtypes()).prop_flat_map(|(prof, p, dt)| {
            let t_pi = ((PI - p.m2) / p.m1).clamp(0.0, PI);
            let theta = prop_oneof![0.0f64..=PI, (-1e-6f64..1e-6).prop_map(move |d| (t_pi + d).clamp(0.0, PI))];
            (Just(prof), Just(p), Just(dt), theta.clone(), theta)
        })
    ) {
        let (t1, t2) = if a <= b { (a, b) } else { (b, a) };
        let (c1, c2) = (dt.round(t1.cos()), dt.round(t2.cos()));
        let y1 = dt.round(margin::forward(c1, &p, &prof, dt));
        let y2 = dt.round(margin::forward(c2, &p, &prof, dt));
        prop_assert!(c1 < c2 || y1 >= y2, "{}: θ {} → {:e}, θ {} → {:e}", prof.name, t1, y1, t2, y2);
    }

    /// For every profile whose gradient mode is exact, backward agrees with finite
    /// differences of the forward outside the kinks' windows and where no clip is active.
    #[test]
    fn exact_gradients_match_finite_differences(
        prof in profiles_where(|p| matches!(p.gradient, GradientMode::Exact { .. })),
        p in params(),
        c in -1.0f64..=1.0,
    ) {
        let dt = Dtype::F64;
        let e = margin::eval(c, &p, &prof, dt);
        prop_assume!(e.factor == e.factor_unclipped);
        let (opts, _) = fd_setup(&prof, &p, c);
        let ks = kinks::kinks(&prof, &p, dt);
        let r = gradcheck::check_scalar(
            |x| margin::forward(x, &p, &prof, dt),
            |x| margin::backward_factor(x, &p, &prof, dt),
            |x| fd_setup(&prof, &p, x).1,
            &[c],
            &ks,
            &opts,
        );
        prop_assert!(r.passed(), "{} {}: {}", prof.name, p, r.failures[0]);
    }
}

/// Step and noise floor for a finite-difference check of `prof`. With θ rounded to f32 the
/// forward is a staircase of height ≈ |∂out/∂θ|·ulp_f32(θ)/2, so the step must be large
/// (1e-3) and the noise is that height; with native θ the noise is the f64 forward budget.
pub fn fd_setup(prof: &Profile, p: &Params, c: f64) -> (FdOptions, f64) {
    let b = tolerance::target_budget(c, 1.0, p, prof, Dtype::F64).forward;
    if prof.theta == ThetaPrecision::F32 {
        (
            FdOptions {
                step: 1e-3,
                scheme: Scheme::Richardson,
                rel_tol: 1e-5,
                abs_tol: 1e-9,
                adaptive_near_poles: true,
            },
            b,
        )
    } else {
        (
            FdOptions {
                step: 1e-5,
                scheme: Scheme::Richardson,
                rel_tol: 1e-6,
                abs_tol: 1e-9,
                adaptive_near_poles: true,
            },
            b,
        )
    }
}

/// The threshold fallback and the easy margin are exercised: without this, the strategies
/// could silently never reach the fallback branch and the properties above would be vacuous there.
#[test]
fn strategies_reach_every_branch() {
    let p = Params::new(1.0, 0.5, 0.0);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for prof in [
        Profile::preset("arcface-thmm").unwrap(),
        Profile::preset("arcface-thmm-easy").unwrap(),
    ] {
        let s = cos_for(&prof, &p, Dtype::F32);
        let mut seen = [false; 2];
        for _ in 0..2000 {
            let c = s.new_tree(&mut runner).unwrap().current();
            match margin::eval(c, &p, &prof, Dtype::F32).branch {
                Branch::Margin => seen[0] = true,
                Branch::Fallback => seen[1] = true,
                Branch::Shortcut => {}
            }
        }
        assert_eq!(seen, [true, true], "{}", prof.name);
    }
    let _ = common::profiles;
}

/// The monotonicity property has teeth: the raw angle (analytic) and a clamp set past π both
/// turn back up, and the same comparison the property makes catches it.
#[test]
fn monotonicity_check_has_teeth() {
    use combined_margin::profile::AnglePolicy;
    let p = Params::new(1.0, 0.5, 0.0);
    let past_pi = Profile {
        angle: AnglePolicy::Clamp {
            lo: 0.0,
            hi: PI + 0.1,
        },
        ..Profile::preset("recommended").unwrap()
    };
    for prof in [Profile::preset("analytic").unwrap(), past_pi] {
        let violated = (0..1000).any(|i| {
            let (t1, t2) = (PI * i as f64 / 1000.0, PI * (i + 1) as f64 / 1000.0);
            margin::forward(t1.cos(), &p, &prof, Dtype::F64)
                < margin::forward(t2.cos(), &p, &prof, Dtype::F64)
        });
        assert!(violated, "{} should turn back up past π", prof.name);
    }
}
