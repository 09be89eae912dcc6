//! The finite-difference checker: it must accept correct derivatives away from kinks, and
//! reject wrong ones (its teeth), reporting the element, its input, both values and the
//! nearest kink.

use crate::properties::fd_setup;
use combined_margin::gradcheck::{self, FdOptions, Scheme};
use combined_margin::kinks::{self, Kink, KinkKind};
use combined_margin::params::PAPER_CONFIGS;
use combined_margin::profile::GradientMode;
use combined_margin::{margin, Dtype, Params, Profile};
use std::f64::consts::PI;

/// Points uniform in θ on (0, π): dense near c = ±1, where the derivative is hardest.
fn grid(n: usize) -> Vec<f64> {
    (1..n).map(|i| (PI * i as f64 / n as f64).cos()).collect()
}

/// Every exact-gradient preset at every paper configuration: the checker accepts the
/// reference's own backward on a dense grid, and its windows exclude only a few percent.
#[test]
fn exact_presets_pass_on_a_dense_grid() {
    let xs = grid(2000);
    println!(
        "{:<18} {:<16} {:>8} {:>9} {:>9}",
        "profile", "(m1, m2, m3)", "checked", "excluded", "failures"
    );
    let (mut total_checked, mut total_excluded) = (0, 0);
    for prof in Profile::presets()
        .into_iter()
        .filter(|p| matches!(p.gradient, GradientMode::Exact { .. }))
    {
        for &(m1, m2, m3) in &PAPER_CONFIGS {
            let p = Params::new(m1, m2, m3);
            let ks = kinks::kinks(&prof, &p, Dtype::F64);
            // The clip makes the backward differ from the forward's derivative by design; check
            // only where it is inactive (SPEC.md §3.6).
            let pts: Vec<f64> = xs
                .iter()
                .copied()
                .filter(|&c| {
                    let e = margin::eval(c, &p, &prof, Dtype::F64);
                    e.factor == e.factor_unclipped
                })
                .collect();
            let (opts, _) = fd_setup(&prof, &p, 0.0);
            let r = gradcheck::check_scalar(
                |x| margin::forward(x, &p, &prof, Dtype::F64),
                |x| margin::backward_factor(x, &p, &prof, Dtype::F64),
                |x| fd_setup(&prof, &p, x).1,
                &pts,
                &ks,
                &opts,
            );
            println!(
                "{:<18} {:<16} {:>8} {:>9} {:>9}",
                prof.name,
                format!("({m1}, {m2}, {m3})"),
                r.checked,
                r.excluded,
                r.failures.len()
            );
            assert!(r.passed(), "{} {}: {}", prof.name, p, r.failures[0]);
            total_checked += r.checked;
            total_excluded += r.excluded;
        }
    }
    let frac = total_excluded as f64 / (total_checked + total_excluded) as f64;
    println!(
        "total: {total_checked} checked, {total_excluded} excluded ({:.1}%)",
        100.0 * frac
    );
    assert!(
        frac < 0.10,
        "windows exclude {:.1}% of the grid",
        100.0 * frac
    );
}

/// Teeth: a sign error in the backward is rejected at almost every point.
#[test]
fn sign_error_is_rejected() {
    let prof = Profile::preset("analytic").unwrap();
    let p = Params::new(1.0, 0.5, 0.0);
    let ks = kinks::kinks(&prof, &p, Dtype::F64);
    let xs = grid(500);
    let opts = FdOptions::default();
    let good = gradcheck::check_scalar(
        |x| margin::forward(x, &p, &prof, Dtype::F64),
        |x| margin::backward_factor(x, &p, &prof, Dtype::F64),
        |_| 1e-16,
        &xs,
        &ks,
        &opts,
    );
    assert!(good.passed(), "{}", good.failures[0]);
    let bad = gradcheck::check_scalar(
        |x| margin::forward(x, &p, &prof, Dtype::F64),
        |x| -margin::backward_factor(x, &p, &prof, Dtype::F64),
        |_| 1e-16,
        &xs,
        &ks,
        &opts,
    );
    assert!(
        bad.failures.len() as f64 > 0.95 * bad.checked as f64,
        "{} of {}",
        bad.failures.len(),
        bad.checked
    );
    // The report names the element, its input, both values and the nearest kink.
    let msg = bad.failures[0].to_string();
    for needle in ["element", "at x =", "analytic", "numeric", "nearest kink"] {
        assert!(msg.contains(needle), "{msg}");
    }
}

/// Teeth: the Caffe GPU factor clip [0, 1] instead of [0, 2] is rejected wherever the true
/// factor lies in (1, 2], while the correct clip passes at the same points.
#[test]
fn wrong_factor_clip_is_rejected() {
    let good_prof = Profile::preset("caffe-gpu").unwrap();
    let bad_prof = Profile {
        factor_clip: Some((0.0, 1.0)),
        ..Profile::preset("caffe-gpu").unwrap()
    };
    let p = Params::new(1.0, 0.5, 0.0).as_f32_proto();
    let ks = kinks::kinks(&good_prof, &p, Dtype::F64);
    // Points where the correct backward is unclipped and no clamp is active.
    let xs: Vec<f64> = grid(2000)
        .into_iter()
        .filter(|&c| {
            let e = margin::eval(c, &p, &good_prof, Dtype::F64);
            e.factor == e.factor_unclipped && !e.domain_clamped && !e.angle_clamped
        })
        .collect();
    let (opts, _) = fd_setup(&good_prof, &p, 0.0);
    let noise = |x: f64| fd_setup(&good_prof, &p, x).1;
    let f = |x: f64| margin::forward(x, &p, &good_prof, Dtype::F64);
    let good = gradcheck::check_scalar(
        f,
        |x| margin::backward_factor(x, &p, &good_prof, Dtype::F64),
        noise,
        &xs,
        &ks,
        &opts,
    );
    assert!(good.passed(), "{}", good.failures[0]);
    let bad = gradcheck::check_scalar(
        f,
        |x| margin::backward_factor(x, &p, &bad_prof, Dtype::F64),
        noise,
        &xs,
        &ks,
        &opts,
    );
    let should_fail = xs
        .iter()
        .filter(|&&c| margin::backward_factor(c, &p, &good_prof, Dtype::F64) > 1.0 + 1e-3)
        .count();
    assert!(
        should_fail > 100,
        "the grid must reach the region where the clips differ"
    );
    assert!(
        bad.failures.len() >= should_fail - 10,
        "{} rejected, {} expected",
        bad.failures.len(),
        should_fail
    );
}

/// Windows are asymmetric where the function is: a pole at +1 excludes far more below it
/// (where f''' explodes) than a corner does, and everything above it.
#[test]
fn windows_are_asymmetric_at_poles() {
    let h = 1e-5;
    let pole = Kink {
        c: 1.0,
        kind: KinkKind::PoleHigh,
    };
    let w = gradcheck::window(&pole, h, Scheme::Central);
    assert!(w.below >= 500.0 * h && w.above.is_infinite(), "{w:?}");
    let corner = Kink {
        c: -0.8775,
        kind: KinkKind::AngleClampHigh,
    };
    let wc = gradcheck::window(&corner, h, Scheme::Central);
    assert_eq!(wc.below, wc.above);
    assert!(wc.below < 10.0 * h);
    // The domain clamp at 1 − 1e-4 sits 10h from the pole: its window reaches further below.
    let clamp = Kink {
        c: 1.0 - 1e-4,
        kind: KinkKind::DomainClampHigh,
    };
    let wd = gradcheck::window(&clamp, h, Scheme::Central);
    assert!(wd.below > 10.0 * wd.above, "{wd:?}");
    // Inside the windows the checker really would fail: a central difference 2h from the
    // analytic profile's pole at +1 is far off, which is why the window exists.
    let prof = Profile::preset("analytic").unwrap();
    let p = Params::new(1.0, 0.5, 0.0);
    let x = 1.0 - 2.0 * h;
    let num = gradcheck::derivative(
        |c| margin::forward(c, &p, &prof, Dtype::F64),
        x,
        h,
        Scheme::Central,
    );
    let ana = margin::backward_factor(x, &p, &prof, Dtype::F64);
    assert!((num - ana).abs() > 1e-3 * ana.abs(), "{num} vs {ana}");
}

/// Richardson extrapolation is an order more accurate than central differences.
#[test]
fn richardson_beats_central() {
    let p = Params::new(1.0, 0.5, 0.0);
    let prof = Profile::preset("analytic").unwrap();
    let x = 0.95;
    let exact = margin::backward_factor(x, &p, &prof, Dtype::F64);
    let f = |c: f64| margin::forward(c, &p, &prof, Dtype::F64);
    let ec = (gradcheck::derivative(f, x, 1e-3, Scheme::Central) - exact).abs();
    let er = (gradcheck::derivative(f, x, 1e-3, Scheme::Richardson) - exact).abs();
    assert!(er < ec / 100.0, "central {ec:e}, richardson {er:e}");
    let _ = PAPER_CONFIGS;
}
