//! Independent numpy implementations with one stated constant off, or a clamp no preset has
//! (tests/data/fit_impls.py, written from the published formula): the parameter fit
//! (SPEC.md §3.8) recognises each, with the fitted constant within 0.2% of the truth, and names
//! it under the claimed profile; the correct layers pass under --profile auto.

use combined_margin::deviation::{self, Declared, Kind, Verdict};
use combined_margin::fixture::LayerCase;
use combined_margin::verdict::search as fingerprint;
use combined_margin::{Dtype, Profile};

/// An edge + uniform fixture under `textbook` at (1, 0.5, 0), filled by implementation `name`.
fn filled(name: &str, dtype: &str, scale: Option<f64>) -> LayerCase {
    let scale = scale.map(|s| s.to_string());
    let mut generate = vec![
        "--profile",
        "textbook",
        "--params",
        "1,0.5,0",
        "--inputs",
        "edges",
        "--dtype",
        dtype,
    ];
    if let Some(s) = &scale {
        generate.extend_from_slice(&["--scale", s]);
    }
    crate::common::numpy_filled(&generate, "fit_impls.py", name, &[])
}

fn close(v: f64, truth: f64) -> bool {
    (v - truth).abs() <= 2e-3 * truth.abs()
}

/// Under `claimed`: FAIL with `kind` named, nothing unexplained; the constant `which` fitted
/// within 0.2% of `truth`, under the claimed profile and under --profile auto.
fn named(name: &str, dtype: Dtype, scale: Option<f64>, which: &str, truth: f64, kind: Kind) {
    let case = filled(name, dtype.name(), scale);
    let prof = Profile::preset("textbook").unwrap();
    let ck = deviation::check(&case, &prof, dtype, &Declared::default()).unwrap();
    let d = ck.deviations.iter().find(|d| d.kind == kind);
    println!(
        "{name:<16} {:<5} {:?}: {}",
        ck.verdict().name(),
        ck.kinds(),
        d.map_or("-".into(), |d| d.detail.clone())
    );
    assert!(
        d.is_some() && ck.unexplained.is_empty(),
        "{name}: {:?}",
        ck.deviations
    );
    assert_eq!(ck.verdict(), Verdict::Fail, "{name}");
    let search = fingerprint::search(std::slice::from_ref(&case), dtype).unwrap();
    let fitted = search
        .stated
        .fitted
        .iter()
        .chain(&search.best().constants)
        .find(|f| f.name == which)
        .unwrap_or_else(|| panic!("{name}: auto fitted no {which}"));
    println!(
        "{name:<16} auto: {} | {}",
        search.best().profile.name,
        fitted.describe()
    );
    assert!(
        close(fitted.value, truth),
        "{name}: {} vs {truth}",
        fitted.describe()
    );
}

#[test]
#[ignore = "needs python3 with numpy (CI installs it; run with --ignored)"]
#[allow(clippy::approx_constant)] // 3.14 is the bug under test (deg_rounded)
fn one_constant_off_is_fitted_and_named() {
    let pml = (28.6f64.to_radians() as f32) as f64;
    named(
        "pml_arcface_f32",
        Dtype::F32,
        None,
        "m2",
        pml,
        Kind::ParameterDiffers,
    );
    named(
        "m2_off",
        Dtype::F64,
        None,
        "m2",
        0.5 * 1.0016,
        Kind::ParameterDiffers,
    );
    named(
        "s_off",
        Dtype::F64,
        Some(64.0),
        "s",
        64.0 * 1.008,
        Kind::ParameterDiffers,
    );
    named(
        "deg_rounded",
        Dtype::F64,
        None,
        "m2",
        0.5 * 3.14 / 180.0,
        Kind::MarginUnits,
    );
    named(
        "clamp_3e5",
        Dtype::F64,
        None,
        "input clamp eps",
        3e-5,
        Kind::InputClampDiffers,
    );
}

/// Teeth on the other side: the correct layers pass under --profile auto (within budget
/// everywhere, the stated parameters agree with the fit, no deviation but predicted
/// non-finite outputs).
#[test]
#[ignore = "needs python3 with numpy (CI installs it; run with --ignored)"]
fn correct_layers_pass_under_auto() {
    for (name, dtype) in [("textbook", Dtype::F64), ("insightface_f32", Dtype::F32)] {
        let case = filled(name, dtype.name(), None);
        let search = fingerprint::search(std::slice::from_ref(&case), dtype).unwrap();
        let best = search.best();
        let ck = deviation::check(&case, &best.profile, dtype, &Declared::default()).unwrap();
        println!(
            "{name:<16} auto: {} {} {:?}",
            best.profile.name,
            ck.verdict().name(),
            ck.kinds()
        );
        assert!(ck.report.passed(), "{name}: {:?}", ck.report.worst());
        // constant-rounded-wrong-side on the f32 port explains nothing (every element is
        // within budget: the profile models the rounded th); issue 16 class 6 makes such a
        // fact a note, which is another branch's work.
        assert!(
            ck.kinds()
                .iter()
                .all(|k| matches!(k, Kind::NonFiniteOutput | Kind::ConstantRoundedWrongSide)),
            "{name}: {:?}",
            ck.deviations
        );
        assert!(search.stated.fitted.iter().all(|f| !f.fails()), "{name}");
    }
}
