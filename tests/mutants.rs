//! Harness power: mutants of the reference, each a plausible porting bug, must be rejected by
//! `check` (comparison + deviation detectors) from their outputs alone, with the cause named;
//! a mutant whose outputs stay within budget everywhere cannot fail a case (SPEC.md §6.5) and
//! must be named as a note instead.
//!
//! Inputs: the edge catalogue of the base profile mixed with uniform draws (fixed seed), labels
//! with ignored rows, uniform upstream gradients. The faithful implementation (the reference
//! rounded to the dtype) is the control: it must pass with no deviation.

use combined_margin::catalogue::edge_cases;
use combined_margin::deviation::{self, Declared, Kind, Verdict};
use combined_margin::fixture::LayerCase;
use combined_margin::profile::{
    AnglePolicy, BoundGradient, ClampScope, GradientMode, InputDomain, ThetaPrecision,
};
use combined_margin::rng::SplitMix64;
use combined_margin::{layer, Dtype, Params, Profile};
use ndarray::Array2;

const N: usize = 64;
const C: usize = 8;

/// Inputs for `profile` at `p` in `dtype`: cos, labels (every 8th row ignored), top_diff.
fn inputs(
    profile: &Profile,
    p: &Params,
    dtype: Dtype,
    seed: u64,
) -> (Vec<f64>, Vec<i64>, Vec<f64>) {
    let edges = edge_cases(profile, p, dtype);
    let mut rng = SplitMix64::new(seed);
    let cos = (0..N * C)
        .map(|_| {
            if rng.below(2) == 0 {
                edges[rng.below(edges.len() as u64) as usize]
            } else {
                dtype.round(rng.uniform_in(-1.0, 1.0))
            }
        })
        .collect();
    let labels = (0..N)
        .map(|i| {
            if i % 8 == 3 {
                -1
            } else {
                rng.below(C as u64) as i64
            }
        })
        .collect();
    let top = (0..N * C)
        .map(|_| dtype.round(rng.uniform_in(-1.0, 1.0)))
        .collect();
    (cos, labels, top)
}

/// What an implementation following `profile` at `p` outputs, scaled by s and rounded to dtype.
fn outputs(
    cos: &[f64],
    labels: &[i64],
    top: &[f64],
    p: &Params,
    profile: &Profile,
    dtype: Dtype,
) -> (Vec<f64>, Vec<f64>) {
    let x = Array2::from_shape_vec((N, C), cos.to_vec()).unwrap();
    let t = Array2::from_shape_vec((N, C), top.to_vec()).unwrap();
    let unscaled = Params { s: 1.0, ..*p };
    let f = layer::forward(x.view(), labels, &unscaled, profile, dtype).unwrap();
    let b = layer::backward(x.view(), labels, t.view(), &unscaled, profile, dtype).unwrap();
    let fin = |a: Array2<f64>| a.iter().map(|v| dtype.round(v * p.s)).collect();
    (fin(f), fin(b))
}

fn case(
    cos: &[f64],
    labels: &[i64],
    top: &[f64],
    p: &Params,
    fwd: Vec<f64>,
    bwd: Vec<f64>,
) -> LayerCase {
    LayerCase {
        name: "mutant".into(),
        params: *p,
        params_effective: *p,
        scaled: true,
        easy_margin: None,
        n: N,
        c: C,
        cos: cos.to_vec(),
        labels: labels.to_vec(),
        top_diff: Some(top.to_vec()),
        forward: Some(fwd),
        backward: Some(bwd),
        row_params: None,
        modulation: combined_margin::modulation::Modulation::None,
        lambda: None,
        subcenters: None,
    }
}

/// Rewrites faithful (forward, backward) given (cos, labels, dtype, base profile).
type PostProcess = fn(&mut Vec<f64>, &mut Vec<f64>, &[f64], &[i64], Dtype, &Profile);

struct Outcome {
    name: String,
    killed: bool,
    verdict: Verdict,
    kinds: Vec<Kind>,
    max_fraction: f64,
}

#[test]
fn every_mutant_is_rejected_and_named() {
    let p = Params::new(1.0, 0.3, 0.2).with_scale(64.0);
    let gpu = Profile::preset("caffe-gpu").unwrap();
    let mut results = Vec::new();

    // (name, base profile, dtype, expected cause, how the mutant is built)
    type Build = Box<dyn Fn(&[f64], &[i64], &[f64], &Profile, Dtype) -> (Vec<f64>, Vec<f64>)>;
    let policy = |f: fn(&mut Profile)| -> Build {
        Box::new(move |cos, labels, top, base, dt| {
            let mut q = base.clone();
            f(&mut q);
            outputs(cos, labels, top, &p, &q, dt)
        })
    };
    let post = |f: PostProcess| -> Build {
        Box::new(move |cos, labels, top, base, dt| {
            let (mut fw, mut bw) = outputs(cos, labels, top, &p, base, dt);
            f(&mut fw, &mut bw, cos, labels, dt, base);
            (fw, bw)
        })
    };
    let mutants: Vec<(&'static str, Profile, Dtype, Kind, Build)> = vec![
        (
            "eps = 1e-3 instead of 1e-4",
            gpu.clone(),
            Dtype::F32,
            Kind::InputClampDiffers,
            policy(|q| {
                q.domain = InputDomain::Clamp {
                    eps: 1e-3,
                    scope: ClampScope::Target,
                    at_bound: BoundGradient::Pass,
                }
            }),
        ),
        (
            "angle clamp missing",
            gpu.clone(),
            Dtype::F32,
            Kind::AnglePolicyDiffers,
            policy(|q| q.angle = AnglePolicy::Raw),
        ),
        (
            "factor clip [0, 1] instead of [0, 2]",
            gpu.clone(),
            Dtype::F32,
            Kind::FactorClipDiffers,
            policy(|q| q.factor_clip = Some((0.0, 1.0))),
        ),
        (
            "sign flip in the backward",
            gpu.clone(),
            Dtype::F32,
            Kind::GradientSignFlipped,
            post(|_, bw, _, labels, _, _| {
                for (i, &l) in labels.iter().enumerate() {
                    if l >= 0 {
                        bw[i * C + l as usize] = -bw[i * C + l as usize];
                    }
                }
            }),
        ),
        (
            "float theta removed",
            gpu.clone(),
            Dtype::F64,
            Kind::ThetaPrecisionDiffers,
            policy(|q| q.theta = ThetaPrecision::Native),
        ),
        (
            "float theta added (analytic base)",
            Profile::preset("analytic").unwrap(),
            Dtype::F64,
            Kind::ThetaPrecisionDiffers,
            policy(|q| q.theta = ThetaPrecision::F32),
        ),
        (
            "m2 ignored when m3 > 0",
            gpu.clone(),
            Dtype::F32,
            Kind::MarginTermIgnored,
            Box::new(move |cos, labels, top, base, dt| {
                outputs(cos, labels, top, &Params { m2: 0.0, ..p }, base, dt)
            }),
        ),
        (
            "ignore label not skipped (margin at column C-1)",
            gpu.clone(),
            Dtype::F32,
            Kind::IgnoreLabelNotHonoured,
            Box::new(move |cos, labels, top, base, dt| {
                let as_last: Vec<i64> = labels
                    .iter()
                    .map(|&l| if l < 0 { C as i64 - 1 } else { l })
                    .collect();
                outputs(cos, &as_last, top, &p, base, dt)
            }),
        ),
        (
            "straight-through gradient",
            gpu.clone(),
            Dtype::F32,
            Kind::GradientDetached,
            policy(|q| q.gradient = GradientMode::Detached),
        ),
        (
            "label off by one",
            gpu.clone(),
            Dtype::F32,
            Kind::WrongTargetColumn,
            Box::new(move |cos, labels, top, base, dt| {
                let shifted: Vec<i64> = labels
                    .iter()
                    .map(|&l| if l < 0 { l } else { (l + 1) % C as i64 })
                    .collect();
                outputs(cos, &shifted, top, &p, base, dt)
            }),
        ),
        (
            "scale applied twice",
            gpu.clone(),
            Dtype::F32,
            Kind::ScaleMismatch,
            post(|fw, bw, _, _, dt, _| {
                fw.iter_mut()
                    .chain(bw.iter_mut())
                    .for_each(|x| *x = dt.round(*x * 64.0));
            }),
        ),
        (
            "f16 rounding of the output",
            gpu.clone(),
            Dtype::F32,
            Kind::ReducedPrecision,
            post(|fw, bw, _, _, _, _| {
                fw.iter_mut()
                    .chain(bw.iter_mut())
                    .for_each(|x| *x = half::f16::from_f64(*x).to_f64());
            }),
        ),
        (
            "input clamp applied to non-target entries",
            gpu.clone(),
            Dtype::F32,
            Kind::NonTargetAltered,
            post(|fw, _, cos, labels, dt, _| {
                let (lo, hi) = (dt.round(-1.0 + 1e-4), dt.round(1.0 - 1e-4));
                for i in 0..N {
                    for j in 0..C {
                        if labels[i] != j as i64 {
                            fw[i * C + j] = dt.round(64.0 * cos[i * C + j].clamp(lo, hi));
                        }
                    }
                }
            }),
        ),
    ];

    for (k, (name, base, dt_given, cause, build)) in mutants.into_iter().enumerate() {
        // θ precision is a question about f64 only (see float_theta_is_equivalent_in_f32);
        // every other mutant must be caught in both precisions.
        let dts = if cause == Kind::ThetaPrecisionDiffers {
            vec![dt_given]
        } else {
            vec![Dtype::F32, Dtype::F64]
        };
        for dt in dts {
            let (cos, labels, top) = inputs(&base, &p, dt, 7000 + k as u64);
            // Control: the faithful implementation.
            let (fw, bw) = outputs(&cos, &labels, &top, &p, &base, dt);
            let control = deviation::check(
                &case(&cos, &labels, &top, &p, fw, bw),
                &base,
                dt,
                &Declared::default(),
            )
            .unwrap();
            assert!(
                control.report.passed(),
                "{name}: control must pass: {:?}",
                control.report.worst()
            );
            assert!(
                !control.kinds().contains(&cause),
                "{name}: control already shows {cause}"
            );
            // The mutant.
            let (fw, bw) = build(&cos, &labels, &top, &base, dt);
            let ck = deviation::check(
                &case(&cos, &labels, &top, &p, fw, bw),
                &base,
                dt,
                &Declared::default(),
            )
            .unwrap();
            let new: Vec<Kind> = ck
                .kinds()
                .into_iter()
                .filter(|k| !control.kinds().contains(k))
                .collect();
            results.push(Outcome {
                name: format!("{name} [{dt}]"),
                // Out of budget: rejected (FAIL) with the cause named. Within budget
                // everywhere (`float theta` removed in f64, 0.498 of budget): SPEC.md §6.5 makes
                // a fact that moves no element out of budget a note, so the case passes and
                // the mutant counts as detected when its cause is named as that note.
                killed: new.contains(&cause)
                    && if ck.report.passed() {
                        ck.verdict() == Verdict::Pass && ck.notes().any(|d| d.kind == cause)
                    } else {
                        ck.verdict() == Verdict::Fail
                    },
                verdict: ck.verdict(),
                kinds: new,
                max_fraction: ck.report.max_fraction(),
            });
        }
    }

    let killed = results.iter().filter(|r| r.killed).count();
    println!(
        "{:<56} {:<9} {:>16}  named causes",
        "mutant", "verdict", "max fraction"
    );
    for r in &results {
        println!(
            "{:<56} {:<9} {:>16}  {}{}",
            r.name,
            r.verdict.name(),
            combined_margin::compare::fraction_text(r.max_fraction),
            r.kinds
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", "),
            match (r.killed, r.verdict) {
                (false, _) => "   <- SURVIVED",
                (true, Verdict::Pass) => "   (within budget: named as a note, SPEC.md §6.5)",
                (true, _) => "",
            }
        );
    }
    println!("mutation score: {killed}/{} killed", results.len());
    assert_eq!(
        killed,
        results.len(),
        "every mutant must be rejected with its cause named (or, within budget, named as a note)"
    );
}

/// In f32, "float theta" is not a mutant the harness can or should kill: an f32
/// implementation's acos already returns an f32 θ, so the cast is a no-op there. Modelled in
/// f64 arithmetic, toggling it changes a few outputs by one rounding (22 of 1024 on these
/// inputs), all within budget: numerically equivalent, argued here rather than excused.
#[test]
fn float_theta_is_equivalent_in_f32() {
    let p = Params::new(1.0, 0.3, 0.2).with_scale(64.0);
    let base = Profile::preset("caffe-gpu").unwrap();
    let mut native = base.clone();
    native.theta = ThetaPrecision::Native;
    let (cos, labels, top) = inputs(&base, &p, Dtype::F32, 42);
    let a = outputs(&cos, &labels, &top, &p, &base, Dtype::F32);
    let b = outputs(&cos, &labels, &top, &p, &native, Dtype::F32);
    let differ =
        a.0.iter()
            .zip(&b.0)
            .chain(a.1.iter().zip(&b.1))
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count();
    // The reference computes in f64 and rounds once; θ rounded to f32 before cos can move a
    // result by a rounding, so a handful may differ; every one must be within budget.
    let ck = deviation::check(
        &case(&cos, &labels, &top, &p, b.0, b.1),
        &base,
        Dtype::F32,
        &Declared::default(),
    )
    .unwrap();
    println!(
        "f32 float-theta toggle: {differ} of {} outputs differ, max {:.3} of budget",
        2 * N * C,
        ck.report.max_fraction()
    );
    assert!(ck.report.passed());
}
