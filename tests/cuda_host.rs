//! The kernels' per-entry math (kernels/combined_margin.cuh), compiled for the host by build.rs,
//! against the f64 reference (`margin::eval`) under the tolerance model: every preset, float
//! and double. No GPU needed: this is the text the device compiles.

use crate::common::{cos_for, params};
use combined_margin::catalogue::{edge_cases, next_float};
use combined_margin::compare::Reference;
use combined_margin::cuda::host::{self, HostEntry, HostEval};
use combined_margin::cuda::{
    code, params_as, KernelInterTopK, KernelProfile, KernelRows, RowTable,
};
use combined_margin::layer;
use combined_margin::margin;
use combined_margin::modulation::{
    Curricular, CurricularGradient, CurricularMask, InterTopK, Modulation, Treatment,
};
use combined_margin::params::PAPER_CONFIGS;
use combined_margin::profile::{
    AnglePolicy, BoundGradient, ClampScope, EvalForm, Fallback, InputDomain, SineGuard,
    ThresholdTest,
};
use combined_margin::tolerance::{error_fraction, target_budget, Budget};
use combined_margin::{Dtype, Params, Profile};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::cell::RefCell;
use std::io::Write;

/// Property cases per preset and dtype.
const CASES: u32 = 3000;

/// How the host kernel math compares with the reference at one input.
#[derive(Clone, Copy, Debug)]
struct Cmp {
    c: f64,
    p: Params,
    fwd: f64,
    bwd: f64,
    branch_ok: bool,
    /// Output and factor bit-identical to the reference's (any NaN equals any NaN).
    exact: bool,
}

impl Cmp {
    fn passes(&self) -> bool {
        self.fwd <= 1.0 && self.bwd <= 1.0 && self.branch_ok
    }
}

/// Equal values, counting any two NaNs as equal (their sign and payload bits are not
/// specified by IEEE 754 arithmetic).
fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Kernel math in T at `c` (already a T value) with the argument `kp`, against the reference at
/// `p` (already rounded to T). The backward is the factor (top_diff = 1, s = 1).
fn compare<T: HostEval>(profile: &Profile, p: Params, kp: &KernelProfile, c: f64) -> Cmp {
    compare_entry(profile, p, c, T::host_eval(T::of(c), kp))
}

/// An entry the kernel math computed at `c`, against the reference at `p`.
fn compare_entry<T: HostEval>(profile: &Profile, p: Params, c: f64, got: HostEntry<T>) -> Cmp {
    let reference = margin::eval(c, &p, profile, T::DTYPE);
    let budget = target_budget(c, 1.0, &p, profile, T::DTYPE);
    Cmp {
        c,
        p,
        fwd: error_fraction(got.out.f64(), reference.out, budget.forward),
        bwd: error_fraction(got.factor.f64(), reference.factor, budget.backward),
        branch_ok: got.branch == reference.branch,
        exact: same_value(got.out.f64(), reference.out)
            && same_value(got.factor.f64(), reference.factor),
    }
}

/// Cases run and the worst forward and backward fractions with their inputs.
struct Stats {
    cases: u64,
    exact: u64,
    worst_fwd: Option<Cmp>,
    worst_bwd: Option<Cmp>,
}

impl Stats {
    fn add(&mut self, m: Cmp) {
        self.cases += 1;
        self.exact += m.exact as u64;
        if self.worst_fwd.is_none_or(|w| m.fwd > w.fwd) {
            self.worst_fwd = Some(m);
        }
        if self.worst_bwd.is_none_or(|w| m.bwd > w.bwd) {
            self.worst_bwd = Some(m);
        }
    }
}

/// Runs the property for one preset in T; Err names the (shrunk) failing case.
fn property<T: HostEval>(profile: &Profile) -> Result<Stats, String> {
    let dt = T::DTYPE;
    let stats = RefCell::new(Stats {
        cases: 0,
        exact: 0,
        worst_fwd: None,
        worst_bwd: None,
    });
    // The suite's configuration: fixed seed (PROPTEST_RNG_SEED explores others).
    let mut runner = TestRunner::new(crate::common::config(CASES));
    let prof = profile.clone();
    let strategy = params().prop_flat_map(move |p| {
        let pt = params_as(&p, dt);
        (Just(pt), cos_for(&prof, &pt, dt))
    });
    let result = runner.run(&strategy, |(p, c)| {
        let kp = KernelProfile::new(profile, &p, dt);
        let m = compare::<T>(profile, p, &kp, c);
        stats.borrow_mut().add(m);
        if m.passes() {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "c = {c:e}, {p}: forward {:.3} x budget, backward {:.3} x budget, branch agrees: {}",
                m.fwd, m.bwd, m.branch_ok
            )))
        }
    });
    match result {
        Ok(()) => Ok(stats.into_inner()),
        Err(e) => Err(format!("{profile} {dt}: {e}")),
    }
}

fn report(dt: Dtype, rows: &[(String, Stats)]) {
    let mut out = std::io::stderr().lock();
    let _ = writeln!(
        out,
        "\nhost kernel math vs reference ({dt}): cases, cases bit-identical (out and factor; NaN = NaN), worst fraction of the tolerance budget (≤ 1 passes)"
    );
    let _ = writeln!(
        out,
        "{:<18} {:>6} {:>6}  {:>9} {:>14} {:>26}  {:>9} {:>14} {:>26}",
        "preset",
        "cases",
        "exact",
        "worst fwd",
        "at c",
        "(m1, m2, m3)",
        "worst bwd",
        "at c",
        "(m1, m2, m3)"
    );
    for (name, s) in rows {
        let f = s.worst_fwd.expect("cases ran");
        let b = s.worst_bwd.expect("cases ran");
        let pm = |p: Params| format!("({:.6}, {:.6}, {:.6})", p.m1, p.m2, p.m3);
        // Small fractions in e-notation, so that "0.0000" never hides a nonzero error.
        let fr = |x: f64| {
            if x == 0.0 || x >= 1e-3 {
                format!("{x:.4}")
            } else {
                format!("{x:.2e}")
            }
        };
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>6}  {:>9} {:>14.7e} {:>26}  {:>9} {:>14.7e} {:>26}",
            name,
            s.cases,
            s.exact,
            fr(f.fwd),
            f.c,
            pm(f.p),
            fr(b.bwd),
            b.c,
            pm(b.p)
        );
    }
}

fn every_preset<T: HostEval>() {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for profile in Profile::presets() {
        match property::<T>(&profile) {
            Ok(s) => rows.push((profile.name.clone(), s)),
            Err(e) => failures.push(e),
        }
    }
    report(T::DTYPE, &rows);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn host_math_f32_matches_reference_every_preset() {
    every_preset::<f32>();
}

#[test]
fn host_math_f64_matches_reference_every_preset() {
    every_preset::<f64>();
}

/// A fixed, deterministic input set: the edge catalogue and a uniform grid, at four paper
/// configurations.
fn fixed_inputs(profile: &Profile, dt: Dtype) -> Vec<(Params, f64)> {
    let mut v = Vec::new();
    for &(a, b, c) in &[
        PAPER_CONFIGS[0],
        PAPER_CONFIGS[3],
        PAPER_CONFIGS[6],
        PAPER_CONFIGS[7],
    ] {
        let p = params_as(&Params::new(a, b, c), dt);
        for x in edge_cases(profile, &p, dt) {
            v.push((p, x));
        }
        for k in 0..=400 {
            v.push((p, dt.round(-1.0 + k as f64 / 200.0)));
        }
    }
    v
}

/// Whether every fixed input passes with the argument `mutate` makes of the true one.
fn all_pass<T: HostEval>(profile: &Profile, mutate: impl Fn(&mut KernelProfile)) -> bool {
    fixed_inputs(profile, T::DTYPE).into_iter().all(|(p, c)| {
        let mut kp = KernelProfile::new(profile, &p, T::DTYPE);
        mutate(&mut kp);
        compare::<T>(profile, p, &kp, c).passes()
    })
}

/// The check has teeth: a kernel argument that deviates from the profile in one policy or one
/// value is rejected on the fixed inputs, while the true argument passes them.
#[test]
fn host_check_rejects_wrong_math() {
    let p = |name: &str| Profile::preset(name).unwrap();
    // θ rounded to f32 where the profile keeps it native (the reverse, skipping Caffe's
    // rounding, stays within the one f32 ulp of θ the model grants for it).
    assert!(!all_pass::<f64>(&p("analytic"), |k| k.theta = code::THETA_F32));

    assert!(all_pass::<f32>(&p("caffe-gpu"), |_| {}));
    assert!(!all_pass::<f32>(&p("caffe-gpu"), |k| k.gradient = code::GRAD_EXACT));
    // (Dropping Caffe's f32 powf is not a mutation the budget can see: the model grants the
    // f32 powf error, and the native form is more accurate than that.)
    assert!(all_pass::<f64>(&p("caffe-gpu"), |_| {}));
    assert!(!all_pass::<f64>(&p("caffe-gpu"), |k| k.has_clip = 0));
    assert!(!all_pass::<f64>(&p("caffe-gpu"), |k| k.clip_hi = 1.5));
    assert!(!all_pass::<f32>(&p("caffe-gpu"), |k| k.domain = code::DOMAIN_RAW));

    assert!(all_pass::<f64>(&p("recommended"), |_| {}));
    assert!(!all_pass::<f64>(&p("recommended"), |k| k.has_clip = 0));
    assert!(!all_pass::<f64>(&p("recommended"), |k| k.pole = code::POLE_IEEE));
    assert!(!all_pass::<f64>(&p("recommended"), |k| k.angle = code::ANGLE_RAW));

    assert!(all_pass::<f32>(&p("arcface-thmm"), |_| {}));
    // The threshold one float off: the catalogue's kink neighbours land on the wrong branch.
    assert!(!all_pass::<f32>(&p("arcface-thmm"), |k| {
        k.threshold = next_float(k.threshold, Dtype::F32, 1)
    }));
    // easy_margin ignored: the fallback subtracts insightface's mm (its value is data in the
    // argument, so the policy code alone no longer changes the math).
    assert!(!all_pass::<f32>(&p("arcface-thmm-easy"), |k| {
        k.angle = code::ANGLE_THRESHOLD_COS;
        k.fallback_mm = k.m2 * k.m2.sin();
    }));
    assert!(!all_pass::<f64>(&p("arcface-thmm"), |k| k.fallback_mm *= 1.0 + 1e-12));

    // The forms of SPEC.md §3.7: each field of the argument is seen.
    let trig_eps = Profile {
        eval: EvalForm::TrigIdentity {
            guard: SineGuard::Epsilon { eps: 1e-6 },
            whole_matrix: false,
        },
        ..p("arcface-thmm")
    };
    for (what, ok) in [
        ("true", all_pass::<f64>(&trig_eps, |_| {})),
        (
            "eps doubled",
            !all_pass::<f64>(&trig_eps, |k| k.sine_eps *= 2.0),
        ),
        (
            "acos/cos",
            !all_pass::<f64>(&trig_eps, |k| k.eval_form = code::EVAL_ACOS_COS),
        ),
        (
            "unguarded",
            !all_pass::<f32>(&trig_eps, |k| k.sine_guard = code::GUARD_UNGUARDED),
        ),
    ] {
        assert!(ok, "trig identity: {what}");
    }
    let clipped = Profile {
        output_clip: Some(0.75),
        ..p("analytic")
    };
    assert!(all_pass::<f32>(&clipped, |_| {}));
    assert!(!all_pass::<f32>(&clipped, |k| k.out_clip = f64::INFINITY));
    let jax = Profile {
        domain: InputDomain::Clamp {
            eps: 1e-7,
            scope: ClampScope::Target,
            at_bound: BoundGradient::Half,
        },
        ..p("analytic")
    };
    assert!(all_pass::<f64>(&jax, |_| {}));
    assert!(!all_pass::<f64>(&jax, |k| k.bound_gradient = code::BOUND_PASS));
    let offset = Profile {
        angle: AnglePolicy::Threshold {
            test: ThresholdTest::OnCos,
            fallback: Fallback::Offset { kappa: 0.1224 },
        },
        ..p("analytic")
    };
    assert!(all_pass::<f64>(&offset, |_| {}));
    assert!(!all_pass::<f64>(&offset, |k| k.fallback_mm += 1e-9));

    assert!(all_pass::<f64>(&p("analytic"), |_| {}));
    assert!(!all_pass::<f64>(&p("analytic"), |k| k.m3 += 1e-12));
    assert!(!all_pass::<f64>(&p("analytic"), |k| k.gradient = code::GRAD_DETACHED));
    assert!(!all_pass::<f64>(&p("detached"), |k| k.gradient = code::GRAD_EXACT));
}

/// `cm_profile` as the C++ compiler lays it out is `KernelProfile`, and the comparison notices
/// a swapped field or a wrong size.
#[test]
fn profile_struct_layout_matches_c() {
    let (size, offsets) = host::profile_layout();
    assert!(
        host::layout_matches(),
        "C: size {size}, offsets {offsets:?}"
    );
    let mut swapped = offsets.clone();
    swapped.swap(13, 14);
    assert!(!host::layout_equal(size, &swapped));
    assert!(!host::layout_equal(size + 8, &offsets));
}

/// The kernels classify labels as the reference does, under every label policy of the space.
#[test]
fn row_status_matches_reference_labels() {
    let base = Profile::preset("recommended").unwrap();
    for profile in combined_margin::space::Axis::Labels.values(&base) {
        let kp = combined_margin::cuda::KernelProfile::new(
            &profile,
            &Params::new(1.0, 0.5, 0.0),
            Dtype::F32,
        );
        for classes in [1usize, 5, 360_000] {
            let c = classes as i64;
            for label in [i64::MIN, -100, -2, -1, 0, 1, c - 1, c, c + 1, i64::MAX] {
                let want = match layer::rows(1, classes, &[label], &profile) {
                    Ok(r) => match r[0] {
                        layer::Row::Target(_) => code::ROW_TARGET,
                        layer::Row::NoTarget => code::ROW_NO_TARGET,
                        layer::Row::Untouched => code::ROW_IGNORED,
                    },
                    Err(_) => code::ROW_BAD_LABEL,
                };
                assert_eq!(
                    host::row_status(label, c, kp.labels),
                    want,
                    "label {label}, C = {classes}, {}",
                    profile.name
                );
            }
        }
    }
}

/// The parameters of a per-row case: AdaFace's norm-dependent angular margin (negative for
/// low-norm rows, so its kinks move to the other side) with a per-row additive margin,
/// ElasticFace's drawn margins, and a few m1 values (SphereFace-like rows).
pub(crate) fn per_row_params(dt: Dtype) -> Vec<Params> {
    let m1 = [1.0, 1.0, 1.35, 1.0, 2.0, 1.0];
    let m2 = [
        -0.016_700_321_7,
        -0.4,
        0.0,
        0.25,
        0.5,
        0.537,
        0.463,
        -0.1,
        0.0,
        0.3,
        0.9,
    ];
    let m3 = [0.0, 0.016_700_321_7, -0.05, 0.2, 0.0, 0.35, 0.1];
    (0..33)
        .map(|i| params_as(&Params::new(m1[i % 6], m2[i % 11], m3[i % 7]), dt))
        .collect()
}

/// The per-row case under the argument `mutate` makes of the true one: (entries checked,
/// failures).
fn per_row_case<T: HostEval>(mutate: impl Fn(&mut KernelRows)) -> (u64, Vec<String>) {
    let dt = T::DTYPE;
    let rows = per_row_params(dt);
    let mut failures = Vec::new();
    let mut checked = 0u64;
    for profile in Profile::presets() {
        let table = RowTable::new(&profile, &rows, dt);
        let mut kr = table.host_rows();
        mutate(&mut kr);
        // The scalar argument is another configuration: every row must override it.
        let base = params_as(&Params::new(1.0, 0.5, 0.0), dt);
        let kp = KernelProfile::new(&profile, &base, dt);
        for (i, p) in rows.iter().enumerate() {
            let alone = KernelProfile::new(&profile, p, dt);
            let mut inputs = edge_cases(&profile, p, dt);
            inputs.extend((0..=64).map(|k| dt.round(-1.0 + k as f64 / 32.0)));
            for c in inputs {
                // SAFETY: `table` lives and has rows.len() > i rows.
                let got = unsafe { T::host_eval_row(T::of(c), &kp, &kr, i) };
                // The per-row path is the scalar path at the row's parameters, bit for bit.
                let scalar = T::host_eval(T::of(c), &alone);
                let same = same_value(got.out.f64(), scalar.out.f64())
                    && same_value(got.factor.f64(), scalar.factor.f64())
                    && got.branch == scalar.branch;
                let m = compare_entry::<T>(&profile, *p, c, got);
                checked += 1;
                if !m.passes() || !same {
                    failures.push(format!(
                        "{} {dt} row {i} ({p}), c = {c:e}: forward {:.3} x budget, backward \
                         {:.3} x budget, branch agrees: {}, equals the scalar path: {same}",
                        profile.name, m.fwd, m.bwd, m.branch_ok
                    ));
                }
            }
        }
    }
    (checked, failures)
}

/// Per-row m1, m2, m3 (negative m2 included) agree with the reference row by row within the
/// budget, and each row equals the scalar argument at its parameters bit for bit. The check
/// has teeth: per-row parameters with the scalar's constants (threshold, fallback offset,
/// cos m2 and sin m2 not per row) are rejected.
#[test]
fn host_per_row_params_match_reference_row_by_row() {
    fn run<T: HostEval>() {
        let (checked, failures) = per_row_case::<T>(|_| {});
        assert!(checked > 1000);
        assert!(
            failures.is_empty(),
            "{} of {checked} per-row entries fail:\n{}",
            failures.len(),
            failures[..failures.len().min(20)].join("\n")
        );
        let (_, wrong) = per_row_case::<T>(|kr| {
            for q in [
                &mut kr.threshold,
                &mut kr.fallback_mm,
                &mut kr.cos_m,
                &mut kr.sin_m,
                &mut kr.has_threshold,
            ] {
                *q = Default::default();
            }
        });
        assert!(wrong.len() > 100, "scalar constants pass: {}", wrong.len());
    }
    run::<f32>();
    run::<f64>();
}

fn stride_zero_case<T: HostEval>() {
    for profile in Profile::presets() {
        for (p, c) in fixed_inputs(&profile, T::DTYPE) {
            let kp = KernelProfile::new(&profile, &p, T::DTYPE);
            let want = T::host_eval(T::of(c), &kp);
            let table = RowTable::broadcast(&kp);
            for rows in [KernelRows::scalar(), table.host_rows()] {
                for i in [0usize, 1, 7, 1 << 20] {
                    // SAFETY: null pointers or stride 0 into a live one-row table.
                    let got = unsafe { T::host_eval_row(T::of(c), &kp, &rows, i) };
                    assert!(
                        got.out.f64().to_bits() == want.out.f64().to_bits()
                            && got.factor.f64().to_bits() == want.factor.f64().to_bits()
                            && got.branch == want.branch,
                        "{} {} {p}, c = {c:e}, row {i}: {got:?} against the scalar {want:?}",
                        profile.name,
                        T::DTYPE
                    );
                }
            }
        }
    }
}

/// Stride 0 (one value for every row), and no per-row pointer at all, give the scalar path's
/// bits.
#[test]
fn host_stride_zero_is_the_scalar_path_bit_for_bit() {
    stride_zero_case::<f32>();
    stride_zero_case::<f64>();
}

/// `cm_rows` as the C++ compiler lays it out is `KernelRows`.
#[test]
fn rows_struct_layout_matches_c() {
    let (size, offsets) = host::rows_layout();
    assert!(
        host::rows_layout_matches(),
        "C: size {size}, offsets {offsets:?}"
    );
    assert_eq!(size, 8 * 16);
}

/// Values for sub-centre cells: ties, signed zeros, infinities, NaNs with distinct payloads
/// (so "the first NaN" is visible in the bits), and a few uniform draws.
fn subcenter_pool<T: HostEval>() -> Vec<T> {
    let nan = |payload: u64| match T::DTYPE {
        Dtype::F32 => T::of(f32::from_bits(0x7fc0_0000 | payload as u32) as f64),
        _ => T::of(f64::from_bits(0x7ff8_0000_0000_0000 | payload)),
    };
    let mut v: Vec<T> = [
        0.5,
        0.5,
        -0.0,
        0.0,
        1.0,
        -1.0,
        0.25,
        f64::INFINITY,
        -f64::INFINITY,
    ]
    .iter()
    .map(|&x| T::of(x))
    .collect();
    v.extend([nan(1), nan(2), nan(3)]);
    v
}

/// A deterministic [cells, K] input from the pool and uniform draws (xorshift).
pub(crate) fn subcenter_input<T: HostEval>(cells: usize, k: usize, seed: u64) -> Vec<T> {
    let pool = subcenter_pool::<T>();
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..cells * k)
        .map(|_| {
            let r = next();
            if r % 3 == 0 {
                T::of((r >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
            } else {
                pool[(r >> 8) as usize % pool.len()]
            }
        })
        .collect()
}

fn bits<T: HostEval>(v: &[T]) -> Vec<u64> {
    v.iter().map(|x| x.f64().to_bits()).collect()
}

fn subcenter_case<T: HostEval>() {
    let wide = |v: &[T]| v.iter().map(|x| x.f64()).collect::<Vec<f64>>();
    for k in [1usize, 2, 3, 5, 8] {
        for seed in 1..=20u64 {
            let cells = 64;
            let cos = subcenter_input::<T>(cells, k, seed * 7919 + k as u64);
            let (max, arg) = T::host_subcenter_max(&cos, k);
            let (want_max, want_arg) = layer::subcenter_max(&wide(&cos), 1, cells, k).unwrap();
            assert_eq!(arg, want_arg, "{} K = {k}, seed {seed}: arg-max", T::DTYPE);
            let want_bits: Vec<u64> = want_max.iter().map(|x| x.to_bits()).collect();
            assert_eq!(
                bits(&max),
                want_bits,
                "{} K = {k}, seed {seed}: max",
                T::DTYPE
            );
            let d = subcenter_input::<T>(cells, 1, seed * 104_729 + k as u64);
            let grad = T::host_subcenter_backward(&d, &arg, k);
            let want = layer::subcenter_backward(&wide(&d), &want_arg, k).unwrap();
            let want_bits: Vec<u64> = want.iter().map(|x| x.to_bits()).collect();
            assert_eq!(
                bits(&grad),
                want_bits,
                "{} K = {k}, seed {seed}: backward",
                T::DTYPE
            );
        }
    }
    // The tie rule, spelled out: the first index wins a tie (−0 and +0 tie), a NaN wins, the
    // first NaN on several; K = 1 is the identity.
    let pool = subcenter_pool::<T>();
    let (half, nz, pz, one, n1, n2) = (pool[0], pool[2], pool[3], pool[4], pool[9], pool[10]);
    let cells = [
        [half, half, half],
        [nz, pz, nz],
        [pz, nz, pz],
        [half, one, one],
        [one, n1, n2],
        [n2, n1, one],
    ];
    let flat: Vec<T> = cells.iter().flatten().copied().collect();
    let (max, arg) = T::host_subcenter_max(&flat, 3);
    assert_eq!(arg, vec![0, 0, 0, 1, 1, 0], "{}", T::DTYPE);
    let picked: Vec<T> = cells.iter().zip(&arg).map(|(c, &a)| c[a]).collect();
    assert_eq!(bits(&max), bits(&picked));
    assert_eq!(max[1].f64().to_bits(), (-0.0f64).to_bits());
    let grad = T::host_subcenter_backward(&[T::of(2.0), T::of(-0.0)], &[1, 2], 3);
    assert_eq!(
        bits(&grad),
        bits(&[0.0, 2.0, 0.0, 0.0, 0.0, -0.0].map(T::of))
    );
    // An arg that no max wrote (K, or −1): that cell is NaN, its neighbours are untouched.
    let d = [T::of(1.0), T::of(2.0), T::of(3.0)];
    let grad = T::host_subcenter_backward(&d, &[0, 3, usize::MAX], 3);
    assert_eq!(bits(&grad[..3]), bits(&[1.0, 0.0, 0.0].map(T::of)));
    assert!(grad[3..].iter().all(|g| g.f64().is_nan()), "{:?}", grad);
}

/// The header's sub-centre max and its backward are `layer::subcenter_max` and
/// `subcenter_backward` bit for bit (values, arg-max, gradient), float and double, K = 1 … 8.
#[test]
fn host_subcenter_max_matches_layer_bit_for_bit() {
    subcenter_case::<f32>();
    subcenter_case::<f64>();
}

/// CurricularFace's modulation in the header against the reference (`compare::Reference`'s
/// `row_plan` for the mask, `modulated` / `non_target` for the value and its budget): returns
/// (entries, modulated entries, failures under the reference's gradient `gradient`).
fn curricular_case<T: HostEval>(gradient: CurricularGradient) -> (u64, u64, Vec<String>) {
    let dt = T::DTYPE;
    let (mut entries, mut hard, mut failures) = (0u64, 0u64, Vec::new());
    for profile in Profile::presets() {
        for &(a, b, c) in &[PAPER_CONFIGS[0], PAPER_CONFIGS[3], PAPER_CONFIGS[7]] {
            let p = params_as(&Params::new(a, b, c), dt);
            let kp = KernelProfile::new(&profile, &p, dt);
            let r = Reference::new(&profile, &p, dt);
            let mut nts = edge_cases(&profile, &p, dt);
            nts.extend((0..=200).map(|k| dt.round(-1.0 + k as f64 / 100.0)));
            for t in [0.0, 0.1, 0.37, 0.8].map(|t| dt.round(t)) {
                let m = Modulation::Curricular(Curricular {
                    t,
                    t_other: None,
                    mask: CurricularMask::MarginBranch,
                    gradient,
                });
                for cy in [-0.9, -0.3, 0.2, 0.5, 0.85, 0.99].map(|x| dt.round(x)) {
                    let tau = T::host_curricular_tau(T::of(cy), &kp);
                    for &cj in &nts {
                        let plan = r
                            .row_plan(&m, layer::Row::Target(0), &[cy, cj])
                            .expect("an active modulation plans the row");
                        let (out, factor, is_hard) =
                            T::host_curricular(T::of(cj), T::of(t), tau, &kp);
                        let modulated = r.modulated(&m, cj, 1.0);
                        let plain = r.non_target(cj, 1.0);
                        let within = |(f, g, b): (f64, f64, Budget)| {
                            error_fraction(out.f64(), f, b.forward) <= 1.0
                                && error_fraction(factor.f64(), g, b.backward) <= 1.0
                        };
                        let ok = match plan[1] {
                            Treatment::Modulated => is_hard && within(modulated),
                            Treatment::Unchanged => !is_hard && within(plain),
                            Treatment::Either => {
                                if is_hard {
                                    within(modulated)
                                } else {
                                    within(plain)
                                }
                            }
                        };
                        entries += 1;
                        hard += is_hard as u64;
                        if !ok {
                            failures.push(format!(
                                "{} {dt} {p} t = {t}, c_y = {cy}, c = {cj:e}: plan {:?}, hard \
                                 {is_hard}, out {:e}, factor {:e}; modulated ref ({:e}, {:e})",
                                profile.name,
                                plan[1],
                                out.f64(),
                                factor.f64(),
                                modulated.0,
                                modulated.1
                            ));
                        }
                    }
                }
            }
        }
    }
    (entries, hard, failures)
}

/// The header's CurricularFace modulation: hard negatives (c̃ above the target's margin
/// branch) become c̃·(t + c̃) with gradient t + 2c̃, the others keep the profile's treatment,
/// within the budget of the reference, for every preset in float and double; the mask agrees
/// with the reference's outside its rounding band. The check has teeth: the gradient t + c
/// (one factor detached) is rejected.
#[test]
fn host_curricular_matches_reference() {
    fn run<T: HostEval>() {
        let (entries, hard, failures) = curricular_case::<T>(CurricularGradient::Full);
        assert!(
            entries > 50_000 && hard > 5_000,
            "{entries} entries, {hard} hard"
        );
        assert!(
            failures.is_empty(),
            "{} of {entries} fail:\n{}",
            failures.len(),
            failures[..failures.len().min(20)].join("\n")
        );
        let (_, _, wrong) = curricular_case::<T>(CurricularGradient::OneFactor);
        assert!(wrong.len() > 1000, "t + c passes: {} failures", wrong.len());
    }
    run::<f32>();
    run::<f64>();
}

/// The header's ranking key is the reference's order: `cm_order_key(a) < cm_order_key(b)`
/// exactly when `a.total_cmp(&b)` is `Less` (the IEEE total order the reference's sort
/// uses), on signed zeros, infinities, subnormals, NaNs of both signs and ordinary values,
/// float and double.
#[test]
fn host_order_key_is_the_total_order() {
    fn run<T: HostEval>() {
        let mut pool: Vec<f64> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            -0.5,
            1e-300,
            -1e-300,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            -f64::INFINITY,
            f64::MAX,
            f64::MIN,
            f64::from_bits(1),
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0001),
            f64::from_bits(0xfff8_0000_0000_0003),
        ];
        pool.extend((0..50).map(|k| (k as f64 * 0.731).sin()));
        let vals: Vec<T> = pool.iter().map(|&x| T::of(x)).collect();
        for &a in &vals {
            for &b in &vals {
                let want = a.f64().total_cmp(&b.f64());
                let got = T::host_order_key(a).cmp(&T::host_order_key(b));
                assert_eq!(got, want, "{} {:e} vs {:e}", T::DTYPE, a.f64(), b.f64());
            }
        }
    }
    run::<f32>();
    run::<f64>();
}

/// One row of a modulated margin layer as an implementation computed it (unscaled, top_diff
/// = 1): the inputs, the target column, the outputs and factors d out / d c, and, where the
/// implementation reports it, which columns it modulated.
pub(crate) struct ModulatedRow<'a> {
    pub row: &'a [f64],
    pub y: usize,
    pub out: &'a [f64],
    pub factor: &'a [f64],
    pub top: Option<&'a [bool]>,
}

/// The failures of one modulated row against the reference: the target within its budget; each
/// non-target on a side the reference's plan allows (`Reference::row_plan`: either side inside
/// its tie band) and within that side's budget (`Reference::modulated` / `non_target`). Where
/// `top` is not reported, a non-target passes on any side the plan allows.
pub(crate) fn check_modulated_row(r: &Reference, m: &Modulation, x: &ModulatedRow) -> Vec<String> {
    let plan = r.row_plan(m, layer::Row::Target(x.y), x.row);
    let within = |j: usize, (f, g, b): (f64, f64, Budget)| {
        error_fraction(x.out[j], f, b.forward) <= 1.0
            && error_fraction(x.factor[j], g, b.backward) <= 1.0
    };
    let mut failures = Vec::new();
    for j in 0..x.row.len() {
        let ok = if j == x.y {
            let t = r.target(x.row[j], 1.0);
            x.top.is_none_or(|top| !top[j]) && within(j, (t.forward, t.backward, t.budget))
        } else {
            let tr = plan.as_ref().map_or(Treatment::Unchanged, |pl| pl[j]);
            let (may_modulate, may_keep) = match tr {
                Treatment::Modulated => (true, false),
                Treatment::Unchanged => (false, true),
                Treatment::Either => (true, true),
            };
            let modulated = || within(j, r.modulated(m, x.row[j], 1.0));
            let kept = || within(j, r.non_target(x.row[j], 1.0));
            match x.top.map(|top| top[j]) {
                Some(true) => may_modulate && modulated(),
                Some(false) => may_keep && kept(),
                None => (may_modulate && modulated()) || (may_keep && kept()),
            }
        };
        if !ok {
            failures.push(format!(
                "row {:?}, y = {}, column {j}: plan {:?}, top {:?}, out {:e}, factor {:e}",
                x.row,
                x.y,
                plan.as_ref().map(|pl| pl[j]),
                x.top.map(|top| top[j]),
                x.out[j],
                x.factor[j],
            ));
        }
    }
    failures
}

/// What one inter-top-k sweep saw: entries compared, entries the kernel modulated, failures.
struct TopkSweep {
    entries: u64,
    modulated: u64,
    failures: Vec<String>,
}

/// Rows of `c` columns from `pool`, with repeats (ties at the cut) drawn on purpose.
pub(crate) fn topk_rows(pool: &[f64], rows: usize, c: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..rows)
        .map(|_| {
            let mut row: Vec<f64> = Vec::with_capacity(c);
            for _ in 0..c {
                let r = next();
                let v = if !row.is_empty() && r % 4 == 0 {
                    row[(r >> 8) as usize % row.len()]
                } else {
                    pool[(r >> 16) as usize % pool.len()]
                };
                row.push(v);
            }
            row
        })
        .collect()
}

/// The header's inter-top-k (one row at a time, as the `cm_intertopk_*` kernels) against the
/// reference (`compare::Reference::row_plan` for which entries are modulated, `modulated` /
/// `non_target` / `target` for values and budgets: `check_modulated_row`), every preset, under
/// the kernel arguments `mutate` makes of the true ones. Per row: exactly min(k, C − 1) entries
/// taken, each planned entry on its side, every value within its budget.
fn intertopk_case<T: HostEval>(mutate: impl Fn(&mut KernelInterTopK<T>)) -> TopkSweep {
    let dt = T::DTYPE;
    let mut sw = TopkSweep {
        entries: 0,
        modulated: 0,
        failures: Vec::new(),
    };
    let c = 9usize;
    for profile in Profile::presets() {
        for &(a, b, m3) in &[PAPER_CONFIGS[0], PAPER_CONFIGS[3], PAPER_CONFIGS[7]] {
            let p = params_as(&Params::new(a, b, m3), dt);
            let kp = KernelProfile::new(&profile, &p, dt);
            let r = Reference::new(&profile, &p, dt);
            let mut pool = edge_cases(&profile, &p, dt);
            pool.retain(|x| x.is_finite());
            pool.extend((0..=100).map(|k| dt.round(-1.0 + k as f64 / 50.0)));
            let rows = topk_rows(&pool, 40, c, 0x9e37 + profile.name.len() as u64);
            for (k, mp, active) in [
                (0usize, 0.06, true),
                (1, 0.06, true),
                (2, 0.2, true),
                (3, 0.06, false),
                (5, 0.1, true),
                (c - 1, 0.06, true),
                (c + 2, 0.06, true),
            ] {
                let m = InterTopK { k, m: mp, active };
                let md = Modulation::InterTopK(m);
                let mut args = KernelInterTopK::<T>::new(&m).expect("k fits i64");
                mutate(&mut args);
                for (ri, row) in rows.iter().enumerate() {
                    let y = ri % c;
                    let x: Vec<T> = row.iter().map(|&v| T::of(v)).collect();
                    let got = T::host_intertopk_row(&x, y, &args, &kp);
                    let taken = got.top.iter().filter(|&&t| t).count();
                    if taken != k.min(c - 1) {
                        sw.failures.push(format!(
                            "{} {dt} {p} k = {k}: {taken} taken in row {row:?}",
                            profile.name
                        ));
                    }
                    let wide = |v: &[T]| v.iter().map(|x| x.f64()).collect::<Vec<f64>>();
                    let (out, factor) = (wide(&got.out), wide(&got.factor));
                    sw.entries += c as u64;
                    sw.modulated += taken as u64;
                    let seen = ModulatedRow {
                        row,
                        y,
                        out: &out,
                        factor: &factor,
                        top: Some(&got.top),
                    };
                    for e in check_modulated_row(&r, &md, &seen) {
                        sw.failures.push(format!(
                            "{} {dt} {p} k = {k}, m' = {mp} (active {active}): {e}",
                            profile.name
                        ));
                    }
                }
            }
        }
    }
    sw
}

/// The header's inter-top-k against the reference, every preset, float and double: which
/// entries are modulated (outside the reference's tie band, exactly its plan), cos(θ − m′) and
/// d/dc = cos m′ − sin m′·c/sqrt(1 − c²) within the budget, ESPnet's inactive head (m′ = 0) the
/// identity on the forward, k = 0 nothing, k ≥ C − 1 every non-target. The check has teeth:
/// k + 1 entries modulated, m′ with its sign flipped, and an inactive head given its m′ are each
/// rejected.
#[test]
fn host_intertopk_matches_reference() {
    fn run<T: HostEval>() {
        let sw = intertopk_case::<T>(|_| {});
        assert!(
            sw.entries > 50_000 && sw.modulated > 10_000,
            "{} entries, {} modulated",
            sw.entries,
            sw.modulated
        );
        assert!(
            sw.failures.is_empty(),
            "{} of {} fail:\n{}",
            sw.failures.len(),
            sw.entries,
            sw.failures[..sw.failures.len().min(20)].join("\n")
        );
        let _ = writeln!(
            std::io::stderr().lock(),
            "host inter-top-k {}: {} entries, {} modulated, all within budget",
            T::DTYPE,
            sw.entries,
            sw.modulated
        );
        let one_more = intertopk_case::<T>(|a| a.k += 1);
        assert!(
            one_more.failures.len() > 1000,
            "k + 1 passes: {}",
            one_more.failures.len()
        );
        let flipped = intertopk_case::<T>(|a| a.sin_mp = -a.sin_mp);
        assert!(
            flipped.failures.len() > 1000,
            "m' sign flipped passes: {}",
            flipped.failures.len()
        );
        // The inactive sweep's rows (m′ = 0.06) given their m′: only that sweep can fail.
        let active = intertopk_case::<T>(|a| {
            if a.sin_mp == T::of(0.0) && a.k == 3 {
                a.cos_mp = T::of(0.06f64.cos());
                a.sin_mp = T::of(0.06f64.sin());
            }
        });
        assert!(
            active.failures.len() > 100,
            "inactive head given m' passes: {}",
            active.failures.len()
        );
    }
    run::<f32>();
    run::<f64>();
}

/// The tie rule, spelled out on a profile that leaves non-targets alone: the k largest by the
/// IEEE total order, ties of equal bits to the lower column, the target never taken; against
/// the closed form (a stable descending sort, as the reference's), not the kernel.
#[test]
fn host_intertopk_tie_rule() {
    fn run<T: HostEval>() {
        let profile = Profile::preset("analytic").unwrap();
        assert!(!profile.transforms_non_targets());
        let p = params_as(&Params::new(1.0, 0.5, 0.0), T::DTYPE);
        let kp = KernelProfile::new(&profile, &p, T::DTYPE);
        let rows: [&[f64]; 5] = [
            &[0.5, 0.5, 0.5, 0.5, 0.5],
            &[0.3, 0.7, 0.3, 0.9, 0.3, 0.7],
            &[0.0, -0.0, 0.0, -0.0, 0.2],
            &[f64::NAN, 0.9, -f64::NAN, 1.0, -1.0, 0.9],
            &[0.99, 0.1, 0.2, 0.2, 0.2, 0.2, 0.1],
        ];
        for (ri, row) in rows.iter().enumerate() {
            let x: Vec<T> = row.iter().map(|&v| T::of(v)).collect();
            for y in [0, row.len() - 1] {
                for k in 0..=row.len() {
                    let m = KernelInterTopK {
                        k: k as i64,
                        cos_mp: T::of(0.06f64.cos()),
                        sin_mp: T::of(0.06f64.sin()),
                    };
                    let got = T::host_intertopk_row(&x, y, &m, &kp);
                    let mut order: Vec<usize> = (0..row.len()).filter(|&j| j != y).collect();
                    order.sort_by(|&a, &b| x[b].f64().total_cmp(&x[a].f64()));
                    let mut want = vec![false; row.len()];
                    for &j in order.iter().take(k) {
                        want[j] = true;
                    }
                    assert_eq!(got.top, want, "{} row {ri} y = {y} k = {k}", T::DTYPE);
                }
            }
        }
    }
    run::<f32>();
    run::<f64>();
}

/// The kernel arguments of a modulation: the one match over `Modulation` picks the kernel
/// family; the detector's CurricularFace variants (which no kernel implements) and an inactive
/// inter-top-k's m′ are handled there, without a GPU.
#[test]
fn kernel_modulation_arguments() {
    use combined_margin::cuda::device::KernelModulation;
    let cur = |mask, gradient| {
        Modulation::Curricular(Curricular {
            t: 0.3,
            t_other: None,
            mask,
            gradient,
        })
    };
    assert_eq!(
        KernelModulation::<f32>::new(&cur(CurricularMask::MarginBranch, CurricularGradient::Full))
            .unwrap(),
        KernelModulation::Curricular { t: 0.3f32 }
    );
    for bad in [
        cur(CurricularMask::AfterFallback, CurricularGradient::Full),
        cur(CurricularMask::MarginBranch, CurricularGradient::OneFactor),
    ] {
        let e = KernelModulation::<f64>::new(&bad).unwrap_err().to_string();
        assert!(e.contains("CurricularFace kernels"), "{e}");
    }
    let topk = |active| {
        Modulation::InterTopK(InterTopK {
            k: 5,
            m: 0.2,
            active,
        })
    };
    // Active: cos and sin of m′ in f64, rounded once to T (closed form).
    assert_eq!(
        KernelModulation::<f32>::new(&topk(true)).unwrap(),
        KernelModulation::InterTopK(KernelInterTopK {
            k: 5,
            cos_mp: 0.2f64.cos() as f32,
            sin_mp: 0.2f64.sin() as f32,
        })
    );
    // Inactive (ESPnet before update()): m′ = 0, so cos 1 and sin 0, whatever m′ was recorded.
    assert_eq!(
        KernelModulation::<f64>::new(&topk(false)).unwrap(),
        KernelModulation::InterTopK(KernelInterTopK {
            k: 5,
            cos_mp: 1.0,
            sin_mp: 0.0,
        })
    );
    assert_eq!(
        KernelModulation::<f64>::new(&Modulation::None).unwrap(),
        KernelModulation::None
    );
}
