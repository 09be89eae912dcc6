//! The forms outside the acos/cos combined margin that real code uses (SPEC.md §3.7), each
//! written independently in numpy from the library's code (tests/data/form_impls.py): the
//! `--profile auto` search finds the form, and fits its constant (κ, ε, b) within 0.2%.

use combined_margin::profile::{
    AnglePolicy, BoundGradient, EvalForm, Fallback, InputDomain, ParamPrecision, Profile, SineGuard,
};
use combined_margin::verdict::search::{self as fingerprint, Search};
use combined_margin::Dtype;

const M2: f64 = 0.5;

/// Generates an f64 edge fixture at (1, M2, 0), fills it with the numpy form `name`, and
/// returns the search result.
fn search(name: &str, constant: Option<f64>) -> Search {
    let mut args = vec![M2.to_string(), "0".to_string()];
    if let Some(k) = constant {
        args.push(k.to_string());
    }
    let params = format!("1,{M2},0");
    let case = crate::common::numpy_filled(
        &[
            "--profile",
            "textbook",
            "--params",
            &params,
            "--inputs",
            "edges",
            "--dtype",
            "f64",
        ],
        "form_impls.py",
        name,
        &args,
    );
    let s = fingerprint::search(std::slice::from_ref(&case), Dtype::F64).unwrap();
    println!(
        "{name:<17} auto: {} ({:.4} within, worst {:.3})",
        s.best().profile.name,
        s.best().share,
        s.best().worst
    );
    s
}

fn within(fitted: f64, truth: f64) -> bool {
    ((fitted - truth) / truth).abs() <= 2e-3
}

fn best(s: &Search) -> &Profile {
    assert_eq!(
        s.best().share,
        1.0,
        "not every element fits: {}",
        s.best().profile.name
    );
    &s.best().profile
}

fn guard_of(p: &Profile) -> Option<(SineGuard, bool)> {
    match p.eval {
        EvalForm::AcosCos => None,
        EvalForm::TrigIdentity {
            guard,
            whole_matrix,
        } => Some((guard, whole_matrix)),
    }
}

#[test]
#[ignore = "needs python3 with numpy (CI installs it; run with --ignored)"]
fn trig_identity_forms_are_found_with_their_guard() {
    assert!(
        crate::common::numpy_available(),
        "python3 with numpy is required"
    );
    for (name, whole) in [("trig_unguarded", false), ("trig_unguarded_whole", true)] {
        let s = search(name, None);
        let g = guard_of(best(&s));
        assert!(
            matches!(g, Some((SineGuard::Unguarded, w)) if w == whole),
            "{name}: {}",
            s.best().profile.name
        );
    }
    // The clamp guard is singular at |c| = 1, so its whole-matrix form puts NaN on those
    // non-targets and is told apart; the safe guard's zero tangent leaves every non-target's
    // gradient 1 + 0·finite = 1, so on the target and over the whole matrix give the same
    // numbers and either is the point found (the other is listed as a tie).
    for (name, guard, whole) in [
        ("trig_clamp_whole", SineGuard::Clamp, Some(true)),
        ("trig_safe_whole", SineGuard::Safe, None),
    ] {
        let s = search(name, None);
        let g = guard_of(best(&s));
        assert!(
            matches!(g, Some((found, w)) if std::mem::discriminant(&found) == std::mem::discriminant(&guard) && whole.is_none_or(|x| x == w)),
            "{name}: {}",
            s.best().profile.name
        );
    }
    for name in ["trig_eps", "trig_eps_whole"] {
        let s = search(name, Some(1e-6));
        match guard_of(best(&s)) {
            Some((SineGuard::Epsilon { eps }, _)) => {
                assert!(within(eps, 1e-6), "{name}: eps fits {eps:e}")
            }
            other => panic!("{name}: {other:?} ({})", s.best().profile.name),
        }
    }
}

#[test]
#[ignore = "needs python3 with numpy (CI installs it; run with --ignored)"]
fn fallback_forms_are_found_and_kappa_fitted() {
    assert!(
        crate::common::numpy_available(),
        "python3 with numpy is required"
    );
    let s = search("fallback_offset", None);
    match best(&s).angle {
        AnglePolicy::Threshold {
            fallback: Fallback::Offset { kappa },
            ..
        } => {
            let truth = 1.0 - M2.cos();
            assert!(within(kappa, truth), "kappa fits {kappa}, truth {truth}")
        }
        other => panic!("{other:?} ({})", s.best().profile.name),
    }
    let s = search("fallback_plain", None);
    // Plain `c` is κ = 0: either the plain form or an offset fitted to 0 within rounding.
    match best(&s).angle {
        AnglePolicy::Threshold {
            fallback: Fallback::Plain,
            ..
        } => {}
        AnglePolicy::Threshold {
            fallback: Fallback::Offset { kappa },
            ..
        } => assert!(kappa.abs() < 1e-12, "kappa fits {kappa}"),
        other => panic!("{other:?} ({})", s.best().profile.name),
    }
}

#[test]
#[ignore = "needs python3 with numpy (CI installs it; run with --ignored)"]
fn output_clip_f32_constants_and_jax_bound_gradient_are_found() {
    assert!(
        crate::common::numpy_available(),
        "python3 with numpy is required"
    );
    let s = search("output_clip", Some(0.75));
    match best(&s).output_clip {
        Some(b) => assert!(within(b, 0.75), "b fits {b}"),
        None => panic!("no clip found ({})", s.best().profile.name),
    }
    let s = search("f32_constants", None);
    assert_eq!(
        best(&s).constants,
        ParamPrecision::F32,
        "{}",
        s.best().profile.name
    );
    let s = search("jax_clip", None);
    assert!(
        matches!(
            best(&s).domain,
            InputDomain::Clamp {
                at_bound: BoundGradient::Half,
                ..
            }
        ),
        "{}",
        s.best().profile.name
    );
}
