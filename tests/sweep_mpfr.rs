//! The f64 reference against a 256-bit MPFR evaluation of the same profile (feature `mpfr`,
//! SPEC.md §5.6): every preset, the paper configurations, constants rounded to f32 and f64,
//! over the edge catalogue and a dense sample of each kink's neighbourhood. Prints the
//! measured bound per preset and asserts the bound SPEC.md §5.6 quotes.

use combined_margin::cuda::params_as;
use combined_margin::margin::{self, Constants};
use combined_margin::params::PAPER_CONFIGS;
use combined_margin::sweep::mpfr::{self, Bound};
use combined_margin::{Dtype, Params, Profile};
use rug::Float;

/// SPEC.md §5.6: the largest share of an f64 budget the reference's own error takes, over
/// every preset (see the printed table), and the f32 share.
const MAX_F64_BUDGET_SHARE: f64 = 0.81;
/// The f32 share is at most 1.5e-9 for every preset but `oneflow-cpu`, whose backward (divided
/// by sin θ̂ of the saved θ) reaches 0.097 of an f32 budget: measured, not yet explained (the
/// exact evaluation takes θ̂ rounded to f32 but φ from the exact θ; SPEC.md §5.6 says so).
const MAX_F32_BUDGET_SHARE: f64 = 0.1;

#[test]
fn mpfr_bound_of_the_f64_reference_per_preset() {
    let mut rows = Vec::new();
    let mut worst64: f64 = 0.0;
    let mut worst32: f64 = 0.0;
    for profile in Profile::presets() {
        let mut b = Bound::default();
        for &(m1, m2, m3) in &PAPER_CONFIGS {
            for dtype in [Dtype::F32, Dtype::F64] {
                let p = params_as(&Params::new(m1, m2, m3), dtype);
                mpfr::check(&profile, &p, dtype, &mut b);
            }
        }
        let w = |x: &mpfr::Worst| {
            let p = x
                .params
                .unwrap_or(Params::new(f64::NAN, f64::NAN, f64::NAN));
            format!(
                "{:.3} at c = {:e} ({}, {}, {})",
                x.value, x.c, p.m1, p.m2, p.m3
            )
        };
        rows.push(format!(
            "{:<18} {:>6} inputs\n  ulp fwd {}  bwd {}\n  share of f64 budget fwd {}  bwd {}\n  \
             share of f32 budget fwd {:.1e}  bwd {:.1e}\n  theta flips {}, branch flips {} \
             (largest f64 budget share at a flip {:.3})",
            profile.name,
            b.inputs,
            w(&b.fwd_ulp),
            w(&b.bwd_ulp),
            w(&b.fwd_share_f64),
            w(&b.bwd_share_f64),
            b.fwd_share_f32.value,
            b.bwd_share_f32.value,
            b.theta_flips,
            b.branch_flips,
            b.flip_share_f64
        ));
        worst64 = worst64
            .max(b.fwd_share_f64.value)
            .max(b.bwd_share_f64.value);
        worst32 = worst32
            .max(b.fwd_share_f32.value)
            .max(b.bwd_share_f32.value);
    }
    println!("{}", rows.join("\n"));
    assert!(worst64 <= MAX_F64_BUDGET_SHARE, "{}", rows.join("\n"));
    assert!(worst32 <= MAX_F32_BUDGET_SHARE, "{}", rows.join("\n"));
}

/// The exact evaluation against closed forms written as decimals (not computed by MPFR):
/// at c = 0, (1, 0.5, 0): out = cos(π/2 + 0.5) = −sin 0.5, factor = sin(π/2 + 0.5) = cos 0.5.
#[test]
fn mpfr_exact_evaluation_matches_closed_forms() {
    const SIN_HALF: &str = "0.479425538604203000273287935215571388081803367940600675188616613";
    const COS_HALF: &str = "0.877582561890372716116281582603829651991645197109744052997610868";
    let p = Params::new(1.0, 0.5, 0.0);
    let profile = Profile::preset("analytic").unwrap();
    let k = Constants::new(&profile, &p, Dtype::F64);
    let r = margin::eval_with(0.0, &p, &profile, &k);
    let x = mpfr::eval_exact(0.0, &p, &profile, &k, &r);
    let sin_half = Float::with_val(mpfr::PREC, Float::parse(SIN_HALF).unwrap());
    let cos_half = Float::with_val(mpfr::PREC, Float::parse(COS_HALF).unwrap());
    let d_out = Float::with_val(mpfr::PREC, &x.out + &sin_half)
        .abs()
        .to_f64();
    let d_g = Float::with_val(mpfr::PREC, &x.factor - &cos_half)
        .abs()
        .to_f64();
    assert!(d_out < 1e-60 && d_g < 1e-60, "{d_out:e} {d_g:e}");
}

/// Teeth: a reference off by 3 ulp is measured as 3 ulp, and a reference evaluated at a
/// slightly wrong m2 is caught as far outside the bound.
#[test]
fn mpfr_measure_has_teeth() {
    // The (1, 0) shortcut c − m3 rounds once: the honest reference is within ½ ulp. Its
    // output −1.1 has |out| ≥ 1, so the ulps of `error` are the result's own.
    let p = Params::new(1.0, 0.0, 0.35);
    let profile = Profile::preset("analytic").unwrap();
    let k = Constants::new(&profile, &p, Dtype::F64);
    let c = -0.75;
    let r = margin::eval_with(c, &p, &profile, &k);
    let x = mpfr::eval_exact(c, &p, &profile, &k, &r);
    let (u0, _) = mpfr::error(r.out, &x.out);
    assert!(u0 <= 0.5, "the honest reference: {u0} ulp");
    let off = f64::from_bits(r.out.to_bits() + 3);
    let (u3, _) = mpfr::error(off, &x.out);
    assert!((2.5..=3.5).contains(&u3), "3 ulp off measured as {u3}");
    // A reference at a slightly wrong m3 is far outside.
    let wrong = margin::eval_with(c, &Params::new(1.0, 0.0, 0.35 + 1e-12), &profile, &k);
    let (uw, _) = mpfr::error(wrong.out, &x.out);
    assert!(uw > 1000.0, "m3 off by 1e-12 measured as {uw} ulp");
    let (inf, _) = mpfr::error(f64::NAN, &x.out);
    assert!(inf.is_infinite(), "a NaN against a finite exact value");
}
