//! The policy space, enumerated: every profile of the target-touching axes (src/space.rs)
//! agrees with the host-compiled kernel math (kernels/combined_margin.cuh) on the edge
//! catalogue of several parameter sets, in f32 and f64, and with finite differences where
//! its gradient is exact. The kernel is an independent transcription of the formula in C++;
//! the finite differences need nothing but the forward.

use crate::properties::fd_setup;
use combined_margin::catalogue::edge_cases;
use combined_margin::cuda::host::HostEval;
use combined_margin::cuda::{params_as, KernelProfile};
use combined_margin::gradcheck;
use combined_margin::margin::{self, Constants};
use combined_margin::profile::{BoundGradient, ClampScope, GradientMode, InputDomain, RoundTrip};
use combined_margin::rng::SplitMix64;
use combined_margin::space::{self, Axis};
use combined_margin::tolerance::{error_fraction, non_target_budget, target_budget_for};
use combined_margin::{kinks, Dtype, Params, Profile};
use rayon::prelude::*;
use std::f64::consts::PI;

/// Enumerated exhaustively: the product of these axes' values around each base below.
const EXHAUSTIVE: [Axis; 4] = [Axis::Theta, Axis::Angle, Axis::Gradient, Axis::Shortcut];

/// Profiles drawn at random from the whole space (every axis; labels are integers, checked
/// under every policy by tests/cuda_host.rs).
const SAMPLED: usize = 1500;

/// The bases of the exhaustive product: three input domains (none; [−1, 1] on the target;
/// SpeechBrain's every-entry clamp with a zero gradient at the bound) × the fallback round
/// trip off / on × non-targets round-tripped off / on.
fn bases() -> Vec<Profile> {
    let analytic = Profile::preset("analytic").unwrap();
    let mut out = Vec::new();
    for domain in [
        InputDomain::Raw,
        InputDomain::Clamp {
            eps: 0.0,
            scope: ClampScope::Target,
            at_bound: BoundGradient::Pass,
        },
        InputDomain::Clamp {
            eps: 1e-7,
            scope: ClampScope::AllEntries,
            at_bound: BoundGradient::Zero,
        },
    ] {
        for fallback in [false, true] {
            for non_targets in [false, true] {
                out.push(Profile {
                    domain,
                    round_trip: RoundTrip {
                        fallback,
                        non_targets,
                    },
                    ..analytic.clone()
                });
            }
        }
    }
    out
}

/// A profile of the whole space at random: every axis set to one of its values.
fn sampled(rng: &mut SplitMix64) -> Profile {
    let mut p = Profile::preset("analytic").unwrap();
    for axis in Axis::ALL {
        let vals = axis.values(&p);
        p = vals[rng.below(vals.len() as u64) as usize].clone();
    }
    p
}

const CONFIGS: [(f64, f64, f64); 3] = [(1.0, 0.5, 0.0), (1.0, 0.0, 0.35), (1.35, 0.3, 0.2)];

/// The first disagreement of the kernel math with the reference for one profile, if any.
fn kernel_disagreement<T: HostEval>(
    profile: &Profile,
    mutate: impl Fn(&mut KernelProfile),
) -> Option<String> {
    for (m1, m2, m3) in CONFIGS {
        let p = params_as(&profile.params.apply(&Params::new(m1, m2, m3)), T::DTYPE);
        let mut kp = KernelProfile::new(profile, &p, T::DTYPE);
        mutate(&mut kp);
        let k = Constants::new(profile, &p, T::DTYPE);
        for c in edge_cases(profile, &p, T::DTYPE) {
            let e = margin::eval_with(c, &p, profile, &k);
            let b = target_budget_for(&e, 1.0, &p, profile, T::DTYPE);
            let got = T::host_eval(T::of(c), &kp);
            let fwd = error_fraction(got.out.f64(), e.out, b.forward);
            let bwd = error_fraction(got.factor.f64(), e.factor, b.backward);
            if fwd > 1.0 || bwd > 1.0 || got.branch != e.branch {
                return Some(format!(
                    "{} at {p}, c = {c:e}: target out {:e} vs {:e} ({fwd:.2}), factor {:e} vs {:e} ({bwd:.2}), branch {:?} vs {:?}",
                    T::DTYPE,
                    got.out.f64(),
                    e.out,
                    got.factor.f64(),
                    e.factor,
                    got.branch,
                    e.branch
                ));
            }
            let (out, factor, _) = margin::non_target(c, profile, &k);
            let b = non_target_budget(c, out, factor, 1.0, profile, T::DTYPE);
            let (gout, gfactor) = T::host_non_target(T::of(c), &kp);
            let fwd = error_fraction(gout.f64(), out, b.forward);
            let bwd = error_fraction(gfactor.f64(), factor, b.backward);
            if fwd > 1.0 || bwd > 1.0 {
                return Some(format!(
                    "{} at {p}, c = {c:e}: non-target out {:e} vs {out:e}, factor {:e} vs {factor:e}",
                    T::DTYPE,
                    gout.f64(),
                    gfactor.f64()
                ));
            }
        }
    }
    None
}

/// The first finite-difference failure of a profile with an exact gradient, if any (f64, on a
/// grid uniform in θ, where the factor clip is inactive).
fn fd_disagreement(profile: &Profile) -> Option<String> {
    match profile.gradient {
        GradientMode::Exact { .. } => {}
        GradientMode::FormulaAtClamped { .. } | GradientMode::Detached => return None,
    }
    let grid: Vec<f64> = (1..40).map(|i| (PI * i as f64 / 40.0).cos()).collect();
    for (m1, m2, m3) in CONFIGS {
        let p = Params::new(m1, m2, m3);
        let ks = kinks::kinks(profile, &p, Dtype::F64);
        let pts: Vec<f64> = grid
            .iter()
            .copied()
            .filter(|&c| {
                let e = margin::eval(c, &p, profile, Dtype::F64);
                e.factor == e.factor_unclipped
            })
            .collect();
        let (opts, _) = fd_setup(profile, &p, 0.0);
        let r = gradcheck::check_scalar(
            |x| margin::forward(x, &p, profile, Dtype::F64),
            |x| margin::backward_factor(x, &p, profile, Dtype::F64),
            |x| fd_setup(profile, &p, x).1,
            &pts,
            &ks,
            &opts,
        );
        if !r.passed() {
            return Some(format!("{p}: {}", r.failures[0]));
        }
    }
    None
}

#[test]
fn every_profile_of_the_space_agrees_with_the_kernel_and_finite_differences() {
    let mut profiles: Vec<Profile> = bases()
        .iter()
        .flat_map(|b| space::enumerate(b, &EXHAUSTIVE))
        .collect();
    let exhaustive = profiles.len();
    let mut rng = SplitMix64::new(0x05ace);
    profiles.extend((0..SAMPLED).map(|_| sampled(&mut rng)));
    let exact = profiles
        .iter()
        .filter(|p| matches!(p.gradient, GradientMode::Exact { .. }))
        .count();
    println!(
        "policy space: {} profiles in all ({} axes); checked here: {exhaustive} (every value of {:?} around {} bases) + {SAMPLED} drawn from the whole space; {exact} with an exact gradient",
        space::size(),
        Axis::ALL.len(),
        EXHAUSTIVE,
        bases().len()
    );
    let failures: Vec<String> = profiles
        .par_iter()
        .filter_map(|prof| {
            let why = kernel_disagreement::<f32>(prof, |_| {})
                .or_else(|| kernel_disagreement::<f64>(prof, |_| {}))
                .or_else(|| fd_disagreement(prof))?;
            Some(format!("{prof:?}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} profiles disagree; first: {}",
        failures.len(),
        profiles.len(),
        failures[0]
    );
}

/// Teeth: the same comparison rejects a kernel argument with one policy field changed.
#[test]
fn a_wrong_policy_code_is_rejected() {
    let prof = Profile::preset("speechbrain-aam").unwrap();
    assert_eq!(kernel_disagreement::<f32>(&prof, |_| {}), None);
    for (what, mutate) in [
        (
            "gradient passes at the clamp bound",
            (|k: &mut KernelProfile| k.bound_gradient = 0) as fn(&mut KernelProfile),
        ),
        ("non-targets not clamped", |k| k.clamp_all_entries = 0),
        ("threshold tested on the angle", |k| {
            k.angle = combined_margin::cuda::code::ANGLE_THRESHOLD_ANGLE
        }),
        ("fallback through the angle, IEEE poles", |k| {
            k.round_trip_fallback = 1
        }),
    ] {
        let caught = kernel_disagreement::<f32>(&prof, mutate)
            .or_else(|| kernel_disagreement::<f64>(&prof, mutate));
        assert!(caught.is_some(), "{what}: went unnoticed");
    }
}
