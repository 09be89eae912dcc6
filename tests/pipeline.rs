//! The pipeline's fast paths against its f64 reference under the tolerance model, the
//! reference against finite differences, and the random-initialization estimate against
//! measured synthetic losses (SPEC.md §8).

use crate::common;
use combined_margin::gradcheck::{self, FdOptions, Scheme};
use combined_margin::kinks;
use combined_margin::pipeline::budget;
use combined_margin::pipeline::fused::{self, Real};
use combined_margin::pipeline::reference;
use combined_margin::pipeline::sharded;
use combined_margin::pipeline::synthetic::{self, SplitMix64};
use combined_margin::pipeline::unfused;
use combined_margin::pipeline::{estimate, LossConfig, WeightGrad};
use combined_margin::tolerance::{error_fraction, pipeline::EXP_ULP};
use combined_margin::{Dtype, Params, Profile};
use ndarray::{Array2, ArrayView2};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// exp

fn ulps32(a: f32, exact: f64) -> f64 {
    (a as f64 - exact).abs() / Dtype::F32.ulp(exact)
}

/// |exp_fast(x) − exp(x)| in f32 ulps of the true value, against f64 exp (error ≤ 1 ulp of
/// f64, i.e. 2^-29 f32 ulps: exact for this purpose); overflow must give +inf.
fn exp_fast_error_ulps(x: f32) -> f64 {
    let e = (x as f64).exp();
    let got = x.exp_fast();
    if e > f32::MAX as f64 {
        if got == f32::INFINITY {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        ulps32(got, e)
    }
}

#[test]
fn exp_fast_f32_is_within_budget_everywhere() {
    // Every 97th float in [-104, 89] plus the special values; the reference is f64 exp
    // (error ≤ 1 ulp of f64, i.e. 2^-29 f32 ulps: exact for this purpose).
    let mut worst = (0.0f64, 0.0f32);
    let lo = (-104.0f32).to_bits();
    let mut x = -104.0f32;
    let mut bits = lo;
    while x < 89.0 {
        x = f32::from_bits(bits);
        let u = exp_fast_error_ulps(x);
        if u > worst.0 {
            worst = (u, x);
        }
        bits = if x <= 0.0 && bits >= 0x8000_0000 {
            if bits - 0x8000_0000 < 97 {
                0
            } else {
                bits - 97
            }
        } else {
            bits + 97
        };
    }
    println!(
        "exp_fast f32: worst {:.3} ulp at x = {:e}",
        worst.0, worst.1
    );
    assert!(worst.0 <= EXP_ULP, "worst {} ulp at {}", worst.0, worst.1);
    assert!(f32::NAN.exp_fast().is_nan());
    assert_eq!((-200.0f32).exp_fast(), 0.0);
    assert_eq!(f32::NEG_INFINITY.exp_fast(), 0.0);
    assert_eq!(100.0f32.exp_fast(), f32::INFINITY);
    assert_eq!(0.0f32.exp_fast(), 1.0);
}

/// The dense sweep quoted in SPEC.md §8.5: every one of the 2,239,889,410 floats in
/// [−104, 89] against f64 exp (52 s in release on this 2-core machine, too long for the suite):
/// `cargo test --release --test it exp_fast_f32_every_float -- --ignored --nocapture`.
#[test]
#[ignore]
fn exp_fast_f32_every_float() {
    use rayon::prelude::*;
    let pos = 0u32..=89.0f32.to_bits();
    let neg = 0x8000_0000u32..=(-104.0f32).to_bits();
    let sweep = |r: std::ops::RangeInclusive<u32>| {
        r.into_par_iter()
            .map(|b| {
                let x = f32::from_bits(b);
                let u = exp_fast_error_ulps(x);
                (u, x, u64::from(u > 1.0), 1u64)
            })
            .reduce(
                || (0.0, 0.0, 0, 0),
                |a, b| {
                    let w = if b.0 > a.0 { (b.0, b.1) } else { (a.0, a.1) };
                    (w.0, w.1, a.2 + b.2, a.3 + b.3)
                },
            )
    };
    let (p, n) = (sweep(pos), sweep(neg));
    let (worst, at) = if p.0 > n.0 { (p.0, p.1) } else { (n.0, n.1) };
    println!(
        "exp_fast f32 over {} floats: worst {worst:.4} ulp at x = {at:e}; {} above 1 ulp",
        p.3 + n.3,
        p.2 + n.2
    );
    assert_eq!(p.3 + n.3, 2_239_889_410);
    assert!(worst <= EXP_ULP, "worst {worst} ulp at {at}");
}

#[test]
fn exp_fast_f64_agrees_with_libm() {
    // No higher-precision exp is at hand for f64; glibc's exp is documented < 1 ulp, so a
    // distance ≤ EXP_ULP − 1 ulp from it bounds ours at EXP_ULP.
    let mut rng = SplitMix64::new(7);
    let mut worst: f64 = 0.0;
    for i in 0..400_000 {
        let x = if i % 2 == 0 {
            -745.0 + 1454.0 * rng.uniform()
        } else {
            -2.0 + 4.0 * rng.uniform()
        };
        let e = x.exp();
        if e == 0.0 || !e.is_finite() {
            continue;
        }
        let u = (x.exp_fast() - e).abs() / Dtype::F64.ulp(e);
        worst = worst.max(u);
    }
    println!("exp_fast f64: worst {worst:.3} ulp from libm");
    assert!(worst <= EXP_ULP - 1.0, "{worst}");
    assert!(f64::NAN.exp_fast().is_nan());
    assert_eq!((-800.0f64).exp_fast(), 0.0);
    assert_eq!(800.0f64.exp_fast(), f64::INFINITY);
}

// ---------------------------------------------------------------------------------------
// fused / unfused / sharded against the reference

/// Checks a fast path's loss and d loss / d cos against the reference head in f64, fed the
/// same T-rounded cos. Returns the worst fractions (loss, gradient).
// `!(f <= 1.0)` is meant: a NaN fraction must fail too.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn check_head<T: Real>(
    cos: &Array2<T>,
    labels: &[i64],
    cfg: &LossConfig,
    loss: f64,
    grad: ArrayView2<T>,
) -> Result<(f64, f64), String> {
    let t = T::DTYPE;
    let cos64 = cos.mapv(|v| v.f64());
    let h = reference::head_forward(cos64.view(), labels, cfg).map_err(|e| e.to_string())?;
    let hb = reference::head_backward(&h, labels, cfg).map_err(|e| e.to_string())?;
    let zero = Array2::zeros(cos.dim());
    let b = budget::head(&h, &hb, zero.view(), cfg, t);
    // The fast paths sum the T row losses in f64; the budget's batch term covers T too.
    let lf = error_fraction(loss, h.loss, b.loss);
    if !(lf <= 1.0) {
        return Err(format!(
            "loss {loss:e} vs reference {:e}: {lf:.3e} of budget {:.3e}",
            h.loss, b.loss
        ));
    }
    let mut gworst: f64 = 0.0;
    for ((idx, &r), &bu) in hb.d_cos.indexed_iter().zip(b.d_cos.iter()) {
        let a = grad[idx].f64();
        if !r.is_finite() {
            // A pole factor: ±inf·(p − 1), whose sign and NaN-ness hinge on p − 1 rounding to 0.
            if a.is_finite() {
                return Err(format!("d_cos{idx:?}: reference {r}, got finite {a:e}"));
            }
            continue;
        }
        let f = error_fraction(a, r, bu);
        if !(f <= 1.0) {
            return Err(format!(
                "d_cos{idx:?} at cos {:e}: got {a:e}, reference {r:e}, {f:.3e} of budget {bu:.3e}",
                cos64[idx]
            ));
        }
        gworst = gworst.max(f);
    }
    Ok((lf, gworst))
}

fn run_fused<T: Real>(cos: &Array2<T>, labels: &[i64], cfg: &LossConfig) -> (f64, Array2<T>) {
    let mut g = Array2::from_elem(cos.dim(), T::nan());
    let out = fused::forward_backward(cos.view(), labels, cfg, g.view_mut()).unwrap();
    let fwd = fused::forward(cos.view(), labels, cfg).unwrap();
    assert_eq!(
        out.loss.to_bits(),
        fwd.loss.to_bits(),
        "forward alone and forward+backward agree"
    );
    (out.loss, g)
}

fn random_cos(n: usize, c: usize, seed: u64) -> (Array2<f64>, Vec<i64>) {
    let mut r = SplitMix64::new(seed);
    let cos = Array2::from_shape_fn((n, c), |_| 2.0 * r.uniform() - 1.0);
    let labels = (0..n)
        .map(|i| {
            if i % 5 == 3 {
                -1
            } else {
                r.below(c as u64) as i64
            }
        })
        .collect();
    (cos, labels)
}

fn seed_cfg(s: f64) -> LossConfig {
    LossConfig::exact(
        Params::new(1.0, 0.3, 0.2).with_scale(s),
        Profile::preset("recommended").unwrap(),
        Dtype::F32,
        0.0,
    )
}

#[test]
fn fused_and_unfused_match_the_reference_on_random_inputs() {
    for &(n, c, s) in &[
        (7usize, 1usize, 64.0),
        (5, 3, 1.0),
        (16, 1000, 64.0),
        (9, 4099, 30.0),
    ] {
        let (cos, labels) = random_cos(n, c, 11 + c as u64);
        for profile in Profile::presets().into_iter().filter(fused::supports) {
            let cfg = LossConfig {
                profile: profile.clone(),
                ..seed_cfg(s)
            };
            let c32 = cos.mapv(|v| v as f32);
            let cfg32 = LossConfig {
                dtype: Dtype::F32,
                ..cfg.clone()
            };
            let (l, g) = run_fused(&c32, &labels, &cfg32);
            let f = check_head(&c32, &labels, &cfg32, l, g.view())
                .unwrap_or_else(|e| panic!("fused f32 {profile} {n}x{c}: {e}"));
            let (l, g) = unfused::forward_backward(c32.view(), &labels, &cfg32).unwrap();
            check_head(&c32, &labels, &cfg32, l, g.view())
                .unwrap_or_else(|e| panic!("unfused f32 {profile} {n}x{c}: {e}"));
            let cfg64 = LossConfig {
                dtype: Dtype::F64,
                ..cfg
            };
            let (l, g) = run_fused(&cos, &labels, &cfg64);
            let f64w = check_head(&cos, &labels, &cfg64, l, g.view())
                .unwrap_or_else(|e| panic!("fused f64 {profile} {n}x{c}: {e}"));
            if profile.name == "recommended" {
                println!(
                    "{n}x{c} s={s}: fused f32 loss {:.2e} grad {:.2e} of budget; f64 {:.2e} {:.2e}",
                    f.0, f.1, f64w.0, f64w.1
                );
            }
        }
    }
}

#[test]
fn a_wrong_fused_gradient_is_rejected() {
    // Teeth: the comparison rejects a gradient missing the margin factor, and a loss off by
    // a hair more than its budget.
    let (cos, labels) = random_cos(6, 50, 3);
    let cfg = LossConfig {
        profile: Profile::preset("analytic").unwrap(),
        ..seed_cfg(64.0)
    };
    let c32 = cos.mapv(|v| v as f32);
    let (l, mut g) = run_fused(&c32, &labels, &cfg);
    let y = labels[0] as usize;
    g[[0, y]] /= 0.9;
    assert!(check_head(&c32, &labels, &cfg, l, g.view()).is_err());
    let (_, g) = run_fused(&c32, &labels, &cfg);
    let h = reference::head_forward(c32.mapv(|v| v as f64).view(), &labels, &cfg).unwrap();
    let hb = reference::head_backward(&h, &labels, &cfg).unwrap();
    let bl = budget::head(&h, &hb, Array2::zeros(cos.dim()).view(), &cfg, Dtype::F32).loss;
    assert!(check_head(&c32, &labels, &cfg, h.loss + 1.01 * bl, g.view()).is_err());
}

#[test]
fn edge_inputs() {
    let cfg = seed_cfg(64.0);
    // All rows ignored: loss 0, gradient 0.
    let cos = Array2::from_elem((3, 4), 0.5f32);
    let (l, g) = run_fused(&cos, &[-1, -1, -1], &cfg);
    assert_eq!(l, 0.0);
    assert!(g.iter().all(|&v| v == 0.0));
    // One class: p = 1, loss = 0 up to rounding, gradient at the target 0.
    let cos = Array2::from_elem((2, 1), 0.3f32);
    let (l, g) = run_fused(&cos, &[0, 0], &cfg);
    check_head(&cos, &[0, 0], &cfg, l, g.view()).unwrap();
    // A NaN non-target poisons its row's loss (as in the reference), not the others'.
    let mut cos = Array2::from_elem((2, 5), 0.1f32);
    cos[[0, 3]] = f32::NAN;
    let out = fused::forward(cos.view(), &[1, 1], &cfg).unwrap();
    assert!(out.row_loss[0].unwrap().is_nan() && out.row_loss[1].unwrap().is_finite());
    // A row whose non-target columns are all NaN (a block with no finite max) is NaN too, and
    // its gradient row is NaN; the other row is untouched.
    let mut cos = Array2::from_elem((2, 600), 0.1f32);
    for j in 0..600 {
        if j != 5 {
            cos[[0, j]] = f32::NAN;
        }
    }
    let mut g = Array2::zeros(cos.dim());
    let out = fused::forward_backward(cos.view(), &[5, 5], &cfg, g.view_mut()).unwrap();
    assert!(out.row_loss[0].unwrap().is_nan() && out.row_loss[1].unwrap().is_finite());
    assert!(g.row(0).iter().all(|v| v.is_nan()) && g.row(1).iter().all(|v| v.is_finite()));
    // Target at ±1 and at the catalogue's edges, every preset the fused path takes, both dtypes.
    for profile in Profile::presets().into_iter().filter(fused::supports) {
        for p in [
            Params::new(1.0, 0.5, 0.0),
            Params::new(1.0, 0.0, 0.35),
            Params::new(4.0, 0.5, 0.35),
        ] {
            let cfg = LossConfig::exact(p.with_scale(30.0), profile.clone(), Dtype::F32, 0.0);
            let edges = combined_margin::catalogue::edge_cases(&profile, &p, Dtype::F32);
            let n = edges.len();
            let mut r = SplitMix64::new(5);
            let mut cos = Array2::from_shape_fn((n, 7), |_| (2.0 * r.uniform() - 1.0) as f32);
            let labels: Vec<i64> = (0..n).map(|i| (i % 7) as i64).collect();
            for (i, &e) in edges.iter().enumerate() {
                cos[[i, i % 7]] = e as f32;
            }
            let (l, g) = run_fused(&cos, &labels, &cfg);
            check_head(&cos, &labels, &cfg, l, g.view())
                .unwrap_or_else(|e| panic!("{profile} {p}: {e}"));
        }
    }
    // Bad input is a typed error.
    let cos = Array2::from_elem((2, 3), 0.1f32);
    assert!(fused::forward(cos.view(), &[0, 3], &cfg).is_err());
    assert!(fused::forward(cos.view(), &[0], &cfg).is_err());
    assert!(fused::forward(cos.t(), &[0, 1, 1], &cfg).is_err());
    assert!(fused::forward(Array2::<f32>::zeros((2, 0)).view(), &[-1, -1], &cfg).is_err());
}

#[test]
fn huge_scale_stays_finite() {
    // s = 1e4: logits up to 1e4 in magnitude; exp(1e4) overflows any float, the streaming
    // max-shift must not.
    let (cos, labels) = random_cos(8, 300, 21);
    for (profile, dt) in [
        (Profile::preset("recommended").unwrap(), Dtype::F32),
        (Profile::preset("caffe-gpu").unwrap(), Dtype::F64),
    ] {
        let cfg = LossConfig::exact(Params::new(1.0, 0.3, 0.2).with_scale(1e4), profile, dt, 0.0);
        let c32 = cos.mapv(|v| v as f32);
        let (l, g) = run_fused(&c32, &labels, &cfg);
        assert!(l.is_finite() && g.iter().all(|v| v.is_finite()), "loss {l}");
        check_head(&c32, &labels, &cfg, l, g.view()).unwrap();
        let (l, g) = run_fused(&cos, &labels, &cfg);
        assert!(l.is_finite() && g.iter().all(|v| v.is_finite()));
        check_head(&cos, &labels, &cfg, l, g.view()).unwrap();
    }
}

/// The fused path refuses a profile that transforms non-targets, naming why.
#[test]
fn fused_refuses_profiles_that_transform_non_targets() {
    let cfg = LossConfig {
        profile: Profile::preset("speechbrain-aam").unwrap(),
        ..seed_cfg(64.0)
    };
    let cos = Array2::<f64>::zeros((2, 3));
    let e = fused::forward(cos.view(), &[0, 1], &cfg).unwrap_err();
    assert!(e.to_string().contains("leave non-targets unchanged"), "{e}");
}

proptest! {
    #![proptest_config(common::config(48))]

    /// Random and catalogue cos under every preset: fused f32/f64 within the budget.
    #[test]
    fn fused_matches_reference_property(
        (prof, p, dt, (n, c, cos, labels, _)) in (common::profiles_where(|p| !p.transforms_non_targets()), common::params(), common::dtypes())
            .prop_flat_map(|(prof, p, dt)| (Just(prof.clone()), Just(p), Just(dt), common::batch(prof, p, dt))),
        s in prop::sample::select(vec![1.0, 30.0, 64.0]),
    ) {
        let cfg = LossConfig::exact(p.with_scale(s), prof.clone(), dt, 0.0);
        let cos = Array2::from_shape_vec((n, c), cos).unwrap();
        let res = match dt {
            Dtype::F32 => {
                let c32 = cos.mapv(|v| v as f32);
                let (l, g) = run_fused(&c32, &labels, &cfg);
                check_head(&c32, &labels, &cfg, l, g.view())
            }
            Dtype::F64 => {
                let (l, g) = run_fused(&cos, &labels, &cfg);
                check_head(&cos, &labels, &cfg, l, g.view())
            }
            // The fused CPU path is built for f32 and f64 only (SPEC.md §8.5).
            Dtype::F16 | Dtype::BF16 => unreachable!("common::dtypes() draws f32 and f64"),
        };
        prop_assert!(res.is_ok(), "{prof} {p} s={s} {dt}: {}", res.unwrap_err());
    }

    /// Sharding over any k and any boundaries (empty shards, shards without any target)
    /// gives the unsharded result within the tolerance model.
    #[test]
    fn sharded_equals_unsharded(
        n in 1usize..6,
        c in 1usize..40,
        cuts in prop::collection::vec(0.0f64..=1.0, 0..6),
        seed in 0u64..1000,
        f64_path in any::<bool>(),
    ) {
        let (cos, labels) = random_cos(n, c, seed);
        let mut bounds: Vec<usize> = cuts.iter().map(|x| (x * c as f64) as usize).collect();
        bounds.push(0);
        bounds.push(c);
        bounds.sort();
        let cfg = seed_cfg(64.0);
        let res = if f64_path {
            shard_and_check(&cos, &labels, &bounds, &cfg)
        } else {
            shard_and_check(&cos.mapv(|v| v as f32), &labels, &bounds, &cfg)
        };
        prop_assert!(res.is_ok(), "bounds {bounds:?}: {}", res.unwrap_err());
    }
}

fn shard_and_check<T: Real>(
    cos: &Array2<T>,
    labels: &[i64],
    bounds: &[usize],
    cfg: &LossConfig,
) -> Result<(), String> {
    let c = cos.ncols();
    let mut parts = Vec::new();
    let mut slabs = Vec::new();
    for w in bounds.windows(2) {
        let slab = cos.slice(ndarray::s![.., w[0]..w[1]]).to_owned();
        parts.push(
            sharded::shard_forward(slab.view(), w[0], c, labels, cfg).map_err(|e| e.to_string())?,
        );
        slabs.push((w[0], slab));
    }
    // Any order combines the same way up to rounding.
    parts.reverse();
    let comb = sharded::combine(&parts, c, labels, cfg).map_err(|e| e.to_string())?;
    let mut grad = Array2::from_elem(cos.dim(), T::nan());
    for (start, slab) in &slabs {
        let mut g = Array2::from_elem(slab.dim(), T::nan());
        sharded::shard_backward(slab.view(), *start, cfg, &comb, g.view_mut())
            .map_err(|e| e.to_string())?;
        grad.slice_mut(ndarray::s![.., *start..*start + slab.ncols()])
            .assign(&g);
    }
    check_head(cos, labels, cfg, comb.loss, grad.view())?;
    let (lu, gu) = run_fused(cos, labels, cfg);
    check_head(cos, labels, cfg, lu, gu.view())?;
    Ok(())
}

#[test]
fn shards_that_do_not_tile_are_rejected() {
    let (cos, labels) = random_cos(3, 10, 1);
    let cfg = seed_cfg(64.0);
    let a = sharded::shard_forward(
        cos.slice(ndarray::s![.., 0..4]).to_owned().view(),
        0,
        10,
        &labels,
        &cfg,
    )
    .unwrap();
    let b = sharded::shard_forward(
        cos.slice(ndarray::s![.., 5..10]).to_owned().view(),
        5,
        10,
        &labels,
        &cfg,
    )
    .unwrap();
    assert!(sharded::combine(&[a.clone(), b], 10, &labels, &cfg).is_err());
    assert!(sharded::combine(&[a.clone(), a], 10, &labels, &cfg).is_err());
    assert!(sharded::shard_forward(cos.view(), 3, 10, &labels, &cfg).is_err());
}

// ---------------------------------------------------------------------------------------
// finite differences of the whole pipeline

fn normal_matrix(rows: usize, d: usize, rng: &mut SplitMix64) -> Vec<f64> {
    (0..rows * d).map(|_| rng.normal()).collect()
}

/// Draws (features, weights, labels) whose target cos are outside every kink window that a
/// step of h in any input coordinate could reach (|∂cos/∂x_k| ≤ 2/|x|), resampling otherwise.
fn fd_inputs(
    n: usize,
    c: usize,
    d: usize,
    cfg: &LossConfig,
    h: f64,
    seed: u64,
) -> (Vec<f64>, Vec<f64>, Vec<i64>, usize) {
    let ks = kinks::kinks(&cfg.profile, &cfg.params, Dtype::F64);
    let mut rng = SplitMix64::new(seed);
    for attempt in 0..100 {
        let x = normal_matrix(n, d, &mut rng);
        let w = normal_matrix(c, d, &mut rng);
        let labels: Vec<i64> = (0..n)
            .map(|i| {
                if i == 1 {
                    -1
                } else {
                    rng.below(c as u64) as i64
                }
            })
            .collect();
        let f = reference::forward(
            ArrayView2::from_shape((n, d), &x).unwrap(),
            ArrayView2::from_shape((c, d), &w).unwrap(),
            &labels,
            cfg,
        )
        .unwrap();
        let min_norm = f
            .feature_norms
            .iter()
            .chain(&f.weight_norms)
            .copied()
            .fold(f64::INFINITY, f64::min);
        let hc = 2.0 * h / min_norm;
        let clear = f.head.targets.iter().enumerate().all(|(i, t)| match t {
            None => true,
            Some(y) => {
                gradcheck::excluded_by(f.head.cos[[i, *y]], &ks, hc, Scheme::Richardson).is_none()
            }
        });
        if clear {
            return (x, w, labels, attempt);
        }
    }
    panic!("no kink-free draw in 100 attempts");
}

/// Checks the gradient of `grad_cfg`'s backward against differences of `cfg`'s loss, over
/// features then weights (flattened), skipping coordinates where `skip` says so.
fn fd_report(
    (x, w, labels): (&[f64], &[f64], &[i64]),
    (n, c, d): (usize, usize, usize),
    cfg: &LossConfig,
    grad_cfg: &LossConfig,
    opts: &FdOptions,
    skip: &dyn Fn(usize) -> bool,
) -> gradcheck::GradReport {
    let f = reference::forward(
        ArrayView2::from_shape((n, d), x).unwrap(),
        ArrayView2::from_shape((c, d), w).unwrap(),
        labels,
        cfg,
    )
    .unwrap();
    let b = reference::backward(&f, labels, grad_cfg).unwrap();
    let grad: Vec<f64> = b.d_features.iter().chain(&b.d_weights).copied().collect();
    let all: Vec<f64> = x.iter().chain(w).copied().collect();
    let loss = |v: &[f64]| reference::loss_of(&v[..n * d], &v[n * d..], d, labels, cfg).unwrap();
    // f64 evaluation noise of a loss of O(10): a few hundred ulps is generous.
    gradcheck::check_gradient(&loss, &all, &grad, 1e-12, opts, skip)
}

#[test]
fn whole_pipeline_gradient_matches_finite_differences() {
    let opts = FdOptions {
        step: 1e-4,
        scheme: Scheme::Richardson,
        rel_tol: 1e-6,
        abs_tol: 1e-9,
        adaptive_near_poles: false,
    };
    let dims = (4, 5, 3);
    let (n, c, d) = dims;
    let mut checked = 0;
    for (k, (profile, p, s)) in [
        (
            Profile::preset("analytic").unwrap(),
            Params::new(1.0, 0.3, 0.2),
            8.0,
        ),
        (
            Profile::preset("recommended").unwrap(),
            Params::new(1.0, 0.5, 0.0),
            4.0,
        ),
        (
            Profile::preset("arcface-thmm").unwrap(),
            Params::new(1.0, 0.5, 0.0),
            8.0,
        ),
        (
            Profile::preset("recommended").unwrap(),
            Params::new(1.35, 0.0, 0.0),
            2.0,
        ),
        (
            Profile::preset("analytic").unwrap(),
            Params::new(1.0, 0.0, 0.35),
            16.0,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        for eps in [0.0, 1e-6, 0.5] {
            let cfg = LossConfig::exact(p.with_scale(s), profile.clone(), Dtype::F64, eps);
            let (x, w, labels, resampled) = fd_inputs(n, c, d, &cfg, opts.step, 100 + k as u64);
            let inputs = (&x[..], &w[..], &labels[..]);
            let rep = fd_report(inputs, dims, &cfg, &cfg, &opts, &|_| false);
            println!(
                "FD {profile} {p} s={s} eps={eps}: {} checked, {} excluded, {} resampled draws, {} failures",
                rep.checked, rep.excluded, resampled, rep.failures.len()
            );
            assert!(rep.passed(), "{profile} {p} eps={eps}: {}", rep.failures[0]);
            checked += rep.checked;

            // Teeth: the Caffe weight gradient (d/dŵ) fails the same check on the weights.
            let wrong = LossConfig {
                weight_grad: WeightGrad::WrtNormalized,
                ..cfg.clone()
            };
            let rep = fd_report(inputs, dims, &cfg, &wrong, &opts, &|i| i < n * d);
            assert!(!rep.passed(), "d/dŵ passed as d/dw");
        }
    }
    println!("FD: {checked} coordinates checked in total");
    // Teeth: a detached margin's gradient is not the derivative of its forward.
    let cfg = LossConfig::exact(
        Params::new(1.0, 0.5, 0.0).with_scale(8.0),
        Profile::preset("detached").unwrap(),
        Dtype::F64,
        0.0,
    );
    let (x, w, labels, _) = fd_inputs(n, c, d, &cfg, opts.step, 7);
    let rep = fd_report((&x, &w, &labels), dims, &cfg, &cfg, &opts, &|_| false);
    assert!(!rep.passed());
}

// ---------------------------------------------------------------------------------------
// the random-initialization estimate

#[test]
fn closed_form_estimate_matches_synthetic_loss() {
    // N rows are independent given the weights (E[e^{s·cos} | W] does not depend on W), so the
    // mean loss has standard error sd(row loss)/sqrt(N); the estimate's neglected terms are
    // bounded by |sphere_correction| + |curvature_correction| + 0.05 (Jensen and the
    // variance of the softmax sum, SPEC.md §8.6). Tolerance: 4 standard errors plus that bias.
    let (n, c, d) = (256, 4096, 128);
    for &(p, s) in &[
        (Params::new(1.0, 0.3, 0.2), 16.0),
        (Params::new(1.0, 0.5, 0.0), 24.0),
        (Params::new(1.0, 0.0, 0.35), 8.0),
    ] {
        let profile = Profile::preset("recommended").unwrap();
        let cfg = LossConfig::exact(p.with_scale(s), profile.clone(), Dtype::F32, 0.0);
        let syn = synthetic::generate(n, c, d, 42).unwrap();
        let out = fused::forward(syn.cos.view(), &syn.labels, &cfg).unwrap();
        let rows: Vec<f64> = out.row_loss.iter().map(|l| l.unwrap() as f64).collect();
        let mean = rows.iter().sum::<f64>() / n as f64;
        let sd = (rows.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        let est = estimate::random_init(c, d, &p.with_scale(s), &profile);
        let tol = 4.0 * sd / (n as f64).sqrt()
            + est.sphere_correction.abs()
            + est.curvature_correction.abs()
            + 0.05;
        println!("{p} s={s}: measured {mean:.4} nats (sd of rows {sd:.3}), estimate {:.4}, |diff| {:.4} <= tol {tol:.4}", est.loss, (mean - est.loss).abs());
        assert!((mean - est.loss).abs() <= tol);
        // Teeth: the estimate without the s²/(2D) term is rejected.
        let without = est.loss - est.spread;
        assert!(
            (mean - without).abs() > tol,
            "the s^2/2D term ({}) is below the tolerance",
            est.spread
        );
    }
}

#[test]
fn synthetic_inputs_are_deterministic_and_isotropic() {
    let a = synthetic::generate(16, 5000, 64, 3).unwrap();
    let b = synthetic::generate(16, 5000, 64, 3).unwrap();
    assert_eq!(a.cos, b.cos);
    assert_eq!(a.labels, b.labels);
    assert_ne!(a.cos, synthetic::generate(16, 5000, 64, 4).unwrap().cos);
    // cos of independent unit vectors: mean 0, variance 1/D (standard errors from 80,000 draws).
    let m = a.cos.iter().map(|&v| v as f64).sum::<f64>() / a.cos.len() as f64;
    let v = a.cos.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / a.cos.len() as f64;
    let se_m = (1.0 / 64.0 / a.cos.len() as f64).sqrt();
    assert!(m.abs() < 5.0 * se_m, "mean {m}");
    assert!((v * 64.0 - 1.0).abs() < 0.05, "variance·D {}", v * 64.0);
    assert!(a.cos.iter().all(|x| x.abs() <= 1.0 + 1e-6));
    assert!(synthetic::generate(0, 5, 5, 1).is_err());
}

// ---------------------------------------------------------------------------------------
// `cmargin loss`

fn cmargin(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cmargin"))
        .args(args)
        .output()
        .expect("cmargin runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn printed(stdout: &str, label: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{stdout}"));
    line[label.len() + line.find(label).unwrap()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn cli_loss_of_an_npz_matches_the_reference() {
    let dir = crate::common::ScratchDir::new("loss");
    let path = dir.join("head.npz");
    let mut rng = SplitMix64::new(77);
    let (n, c, d) = (6, 40, 8);
    let x = Array2::from_shape_fn((n, d), |_| rng.normal());
    let w = Array2::from_shape_fn((c, d), |_| rng.normal());
    let labels = ndarray::Array1::from_iter((0..n).map(|i| {
        if i == 2 {
            -1i64
        } else {
            (7 * i as i64) % c as i64
        }
    }));
    {
        let mut npz = ndarray_npy::NpzWriter::new(std::fs::File::create(&path).unwrap());
        npz.add_array("features", &x).unwrap();
        npz.add_array("weights", &w).unwrap();
        npz.add_array("labels", &labels).unwrap();
        npz.finish().unwrap();
    }
    let p = path.to_str().unwrap();
    let (rc, out, err) = cmargin(&[
        "loss",
        "--input",
        p,
        "--scale",
        "30",
        "--params",
        "1,0.5,0",
        "--profile",
        "recommended",
    ]);
    assert_eq!(rc, 0, "{err}");
    let cfg = LossConfig::exact(
        Params::new(1.0, 0.5, 0.0).with_scale(30.0),
        Profile::preset("recommended").unwrap(),
        Dtype::F64,
        0.0,
    );
    let f = reference::forward(x.view(), w.view(), labels.as_slice().unwrap(), &cfg).unwrap();
    // Printed with 17 significant digits: the fused loss agrees with the f64 reference to
    // rounding (a few ulps of the mean), far below what 4 decimals could show.
    let shown = printed(&out, "loss (mean over valid rows)");
    assert!(
        (shown - f.head.loss).abs() <= 1e-13 * f.head.loss.abs(),
        "{shown} vs {}",
        f.head.loss
    );
    // A label out of range is bad input (exit 2) with the file and row named.
    let bad = dir.join("bad.npz");
    {
        let mut npz = ndarray_npy::NpzWriter::new(std::fs::File::create(&bad).unwrap());
        npz.add_array("cos", &Array2::<f64>::zeros((2, 3))).unwrap();
        npz.add_array("labels", &ndarray::arr1(&[0i64, 3])).unwrap();
        npz.finish().unwrap();
    }
    let (rc, _, err) = cmargin(&["loss", "--input", bad.to_str().unwrap()]);
    assert_eq!(rc, 2);
    assert!(err.contains("bad.npz") && err.contains("row 1"), "{err}");
    let (rc, _, _) = cmargin(&["loss"]);
    assert_eq!(rc, 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_synthetic_loss_prints_the_breakdown() {
    let (rc, out, err) = cmargin(&[
        "loss",
        "--synthetic",
        "--n",
        "32",
        "--c",
        "2000",
        "--d",
        "64",
        "--scale",
        "8",
    ]);
    assert_eq!(rc, 0, "{err}");
    let loss = printed(&out, "loss (mean over valid rows)");
    let lse = printed(&out, "mean log-sum-exp over the C logits");
    let after = printed(&out, "mean target logit after the margin, s*m(cos)");
    // loss = mean lse − mean target logit (4-decimal printing).
    assert!((loss - (lse - after)).abs() < 3e-4, "{loss} {lse} {after}");
    let est = printed(&out, "estimate = ln(C e^{s^2/2D}) - s*t(pi/2)");
    let e = estimate::random_init(
        2000,
        64,
        &Params::new(1.0, 0.3, 0.2).with_scale(8.0),
        &Profile::preset("recommended").unwrap(),
    );
    assert!((est - e.loss).abs() < 1e-4);
}

#[test]
fn probability_floor_is_detected_only_where_a_row_reaches_it() {
    use combined_margin::pipeline::deviation::{detect_prob_floor, PipelineDeviation};
    use combined_margin::pipeline::CAFFE_PROB_FLOOR;
    // Row 0: target cos −0.9 against a competitor at 0.9: ℓ ≈ 64·1.9 ≫ 87.34 nats.
    let cos = ndarray::arr2(&[[-0.9f64, 0.9, 0.0], [0.2, 0.1, 0.0]]);
    let labels = [0i64, 0];
    let plain = seed_cfg(64.0);
    let floored = LossConfig {
        prob_floor: Some(CAFFE_PROB_FLOOR),
        ..plain.clone()
    };
    let with = fused::forward(cos.view(), &labels, &floored).unwrap().loss;
    let without = fused::forward(cos.view(), &labels, &plain).unwrap().loss;
    assert!(without - with > 10.0, "{with} {without}");
    let found = |loss: f64| {
        detect_prob_floor(
            loss,
            cos.view(),
            &labels,
            &plain,
            CAFFE_PROB_FLOOR,
            Dtype::F32,
        )
        .unwrap()
    };
    assert_eq!(found(with), Some(PipelineDeviation::LossProbabilityFloor));
    assert_eq!(found(without), None);
    // Inputs where no row reaches the floor cannot tell.
    let easy = ndarray::arr2(&[[0.2f64, 0.1, 0.0]]);
    let l = fused::forward(easy.view(), &[0], &floored).unwrap().loss;
    assert_eq!(
        detect_prob_floor(l, easy.view(), &[0], &plain, CAFFE_PROB_FLOOR, Dtype::F32).unwrap(),
        None
    );
}

// ---------------------------------------------------------------------------------------
// +inf logits

/// Compares a fast path's batch loss, and its row losses and gradient rows where the
/// reference's lse is not finite, with the reference: a non-finite reference value must be
/// matched exactly (NaN by NaN, ±inf by itself); a finite one within 8u of it relative (what
/// is left there is s/N_valid·(0 − 1)·factor and zeros: a handful of roundings of T, or the
/// exact 0). Rows with a finite lse are the budget tests' business.
fn check_nonfinite<T: Real>(
    cos: &Array2<T>,
    labels: &[i64],
    cfg: &LossConfig,
    loss: f64,
    row_loss: &[Option<T>],
    grad: ArrayView2<T>,
) -> Result<(), String> {
    let cos64 = cos.mapv(|v| v.f64());
    let h = reference::head_forward(cos64.view(), labels, cfg).map_err(|e| e.to_string())?;
    let hb = reference::head_backward(&h, labels, cfg).map_err(|e| e.to_string())?;
    let u = T::DTYPE.unit_roundoff();
    let close = |a: f64, r: f64| {
        if !r.is_finite() || !a.is_finite() {
            (r.is_nan() && a.is_nan()) || r == a
        } else {
            (a - r).abs() <= 8.0 * u * r.abs()
        }
    };
    if !(close(loss, h.loss) || (h.loss.is_finite() && loss.is_finite())) {
        return Err(format!("loss {loss:e}, reference {:e}", h.loss));
    }
    for (i, (got, want)) in row_loss.iter().zip(&h.row_loss).enumerate() {
        if h.lse[i].is_finite() {
            continue;
        }
        let (a, r) = (got.map(|v| v.f64()), *want);
        let ok = match (a, r) {
            (Some(a), Some(r)) => close(a, r),
            (None, None) => true,
            _ => false,
        };
        if !ok {
            return Err(format!("row {i}: loss {a:?}, reference {r:?}"));
        }
    }
    for (idx, &r) in hb.d_cos.indexed_iter() {
        let a = grad[idx].f64();
        if h.lse[idx.0].is_finite() {
            continue;
        }
        if !close(a, r) {
            return Err(format!("d_cos{idx:?}: got {a:e}, reference {r:e}"));
        }
    }
    Ok(())
}

fn inf_inputs<T: Real>() -> (Array2<T>, Vec<i64>) {
    // Row 0: one +inf in block 0. Row 1: +inf in blocks 0 and 2 (two +inf block maxima
    // merged). Row 2: two +inf in one block. Row 3: +inf and a NaN (NaN wins, as in the
    // reference). Row 4: finite. Row 5: −inf, finite result. C = 1300: three blocks.
    let (cos, _) = random_cos(6, 1300, 31);
    let mut cos = cos.mapv(T::of);
    let inf = T::infinity();
    cos[[0, 17]] = inf;
    cos[[1, 3]] = inf;
    cos[[1, 1200]] = inf;
    cos[[2, 600]] = inf;
    cos[[2, 700]] = inf;
    cos[[3, 9]] = inf;
    cos[[3, 1000]] = T::nan();
    cos[[5, 40]] = T::neg_infinity();
    (cos, vec![5, 700, 3, 2, 1, 0])
}

fn plus_inf_matches_reference<T: Real>(cfg: &LossConfig) {
    let (cos, labels) = inf_inputs::<T>();
    let (n, c) = cos.dim();
    let mut g = Array2::from_elem((n, c), T::nan());
    let out = fused::forward_backward(cos.view(), &labels, cfg, g.view_mut()).unwrap();
    let fwd = fused::forward(cos.view(), &labels, cfg).unwrap();
    for i in 0..3 {
        assert_eq!(out.row_loss[i].unwrap(), T::infinity(), "row {i}");
        assert_eq!(out.lse[i], T::infinity(), "row {i}");
    }
    assert!(out.row_loss[3].unwrap().is_nan(), "NaN and +inf: NaN");
    check_nonfinite(&cos, &labels, cfg, out.loss, &out.row_loss, g.view()).unwrap();
    check_nonfinite(&cos, &labels, cfg, fwd.loss, &fwd.row_loss, g.view()).unwrap();
    // Sharded, cut so that the +inf columns of row 1 fall in different shards and one shard
    // holds none.
    let bounds = [0usize, 500, 1100, 1150, c];
    let mut parts = Vec::new();
    let mut grad = Array2::from_elem((n, c), T::nan());
    let mut slabs = Vec::new();
    for w in bounds.windows(2) {
        let slab = cos.slice(ndarray::s![.., w[0]..w[1]]).to_owned();
        parts.push(sharded::shard_forward(slab.view(), w[0], c, &labels, cfg).unwrap());
        slabs.push((w[0], slab));
    }
    let comb = sharded::combine(&parts, c, &labels, cfg).unwrap();
    for (start, slab) in &slabs {
        let mut gs = Array2::from_elem(slab.dim(), T::nan());
        sharded::shard_backward(slab.view(), *start, cfg, &comb, gs.view_mut()).unwrap();
        grad.slice_mut(ndarray::s![.., *start..*start + slab.ncols()])
            .assign(&gs);
    }
    assert_eq!(comb.row_loss[1].unwrap(), T::infinity());
    check_nonfinite(&cos, &labels, cfg, comb.loss, &comb.row_loss, grad.view()).unwrap();
}

#[test]
fn plus_inf_cos_gives_the_references_inf_loss() {
    let cfg = seed_cfg(64.0);
    plus_inf_matches_reference::<f32>(&cfg);
    let cfg64 = LossConfig {
        dtype: Dtype::F64,
        ..cfg.clone()
    };
    plus_inf_matches_reference::<f64>(&cfg64);
    // Teeth: the comparison rejects the former behaviour (a NaN row loss and a NaN gradient
    // row where the reference has +inf and finite entries), and a zero where it has NaN.
    let (cos, labels) = inf_inputs::<f32>();
    let mut g = Array2::from_elem(cos.dim(), f32::NAN);
    let out = fused::forward_backward(cos.view(), &labels, &cfg, g.view_mut()).unwrap();
    let l = out.loss;
    check_nonfinite(&cos, &labels, &cfg, l, &out.row_loss, g.view()).unwrap();
    let mut nan_loss = out.row_loss.clone();
    nan_loss[0] = Some(f32::NAN);
    assert!(check_nonfinite(&cos, &labels, &cfg, l, &nan_loss, g.view()).is_err());
    assert!(check_nonfinite(&cos, &labels, &cfg, f64::INFINITY, &out.row_loss, g.view()).is_err());
    let mut g_nan = g.clone();
    g_nan.row_mut(0).fill(f32::NAN);
    assert!(check_nonfinite(&cos, &labels, &cfg, l, &out.row_loss, g_nan.view()).is_err());
    let mut g_zero = g.clone();
    g_zero[[0, 17]] = 0.0;
    assert!(check_nonfinite(&cos, &labels, &cfg, l, &out.row_loss, g_zero.view()).is_err());
    let mut g_target = g;
    g_target[[0, 5]] *= 1.0 + 1e-5;
    assert!(check_nonfinite(&cos, &labels, &cfg, l, &out.row_loss, g_target.view()).is_err());
}

#[test]
fn a_gradient_large_enough_to_stream_matches_the_reference() {
    // Above fused::STREAM_MIN_BYTES the rows go through per-thread scratch rows and
    // non-temporal stores (on AVX-512 CPUs); the result must be the same as below it.
    let (n, c) = (24, 180_000);
    assert!(n * c * 4 >= fused::STREAM_MIN_BYTES);
    let (cos, labels) = random_cos(n, c, 41);
    let c32 = cos.mapv(|v| v as f32);
    let cfg = seed_cfg(64.0);
    let (l, g) = run_fused(&c32, &labels, &cfg);
    let (lf, gf) = check_head(&c32, &labels, &cfg, l, g.view()).unwrap();
    println!("streamed {n}x{c}: loss {lf:.2e}, gradient {gf:.2e} of budget");
    // Teeth: one element of one row off by a relative 5e-2 is rejected (the budget of a
    // probability carries γ_C = C·u ≈ 1.1e-2 relative at this C).
    let mut bad = g;
    bad[[1, c - 1]] *= 1.05;
    assert!(check_head(&c32, &labels, &cfg, l, bad.view()).is_err());
}
