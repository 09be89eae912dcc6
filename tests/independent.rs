//! Implementations the crate has never seen, written independently in numpy from the published
//! formulas (tests/data/independent_impls.py): each is recognised by `--profile auto`'s search
//! (or tied with a profile no edge input separates from it), and under the profile it claims
//! it conforms or its out-of-budget elements carry the right named cause.

use combined_margin::deviation::{self, Declared, Kind, Verdict};
use combined_margin::profile::{ExactForm, GradientMode};
use combined_margin::verdict::search as fingerprint;
use combined_margin::{Dtype, Profile};

/// Generates an f64 fixture (edges and uniform rows) under `claimed`, fills it with the numpy
/// implementation `name`, and returns the check under `claimed` and the search result.
fn run(
    name: &str,
    claimed: &str,
    params: (f64, f64, f64),
) -> (deviation::CaseCheck, fingerprint::Search) {
    run_on(name, claimed, params, &["--inputs", "edges"])
}

fn run_on(
    name: &str,
    claimed: &str,
    (m1, m2, m3): (f64, f64, f64),
    inputs: &[&str],
) -> (deviation::CaseCheck, fingerprint::Search) {
    let params = format!("{m1},{m2},{m3}");
    let mut generate = vec!["--profile", claimed, "--params", &params];
    generate.extend_from_slice(inputs);
    generate.extend_from_slice(&["--dtype", "f64"]);
    let case = crate::common::numpy_filled(
        &generate,
        "independent_impls.py",
        name,
        &[m1.to_string(), m2.to_string(), m3.to_string()],
    );
    let prof = Profile::preset(claimed).unwrap();
    let check = deviation::check(&case, &prof, Dtype::F64, &Declared::default()).unwrap();
    let search = fingerprint::search(std::slice::from_ref(&case), Dtype::F64).unwrap();
    println!(
        "{name:<15} claimed {claimed:<13} verdict {:<8} kinds {:?}; auto: {} ({:.4} within, {} ties)",
        check.verdict().name(),
        check.kinds(),
        search.best().profile.name,
        search.best().share,
        search.ties.len()
    );
    (check, search)
}

/// Every out-of-budget element is explained, and the named kinds are among `allowed`.
fn named_only(check: &deviation::CaseCheck, allowed: &[Kind]) -> bool {
    check.unexplained.is_empty() && check.kinds().iter().all(|k| allowed.contains(k))
}

#[test]
#[ignore = "needs python3 with numpy (CI installs it; run with --ignored)"]
fn independent_numpy_implementations_are_recognised_or_named() {
    assert!(
        crate::common::numpy_available(),
        "python3 with numpy is required for this test"
    );
    let arcface = (1.0, 0.5, 0.0);

    // The textbook layer: the `textbook` preset, exactly.
    let (c, s) = run("textbook", "textbook", arcface);
    // Within budget everywhere; the only kind is the ±inf at c = ±1 the profile predicts.
    assert!(
        c.report.passed() && named_only(&c, &[Kind::NonFiniteOutput]),
        "{:?}",
        c.kinds()
    );
    assert!(
        s.best()
            .profile
            .same_policies(&Profile::preset("textbook").unwrap())
            || s.best().share == 1.0
    );

    // The fallback through the angle: arcface-thmm with the round trip on the fallback.
    let (c, s) = run("fallback_angle", "arcface-thmm", arcface);
    assert!(
        c.verdict() == Verdict::Pass
            || named_only(
                &c,
                &[
                    Kind::RoundTripDiffers,
                    Kind::NonFiniteOutput,
                    Kind::PolicyDiffers
                ]
            ),
        "{:?} {:?}",
        c.kinds(),
        c.unexplained.first()
    );
    assert_eq!(s.best().share, 1.0, "{}", s.best().profile.name);
    assert!(
        s.best().profile.round_trip.fallback,
        "{}",
        s.best().profile.name
    );

    // The autograd chain in f64: within budget as the chain form, and found as such.
    let (c, s) = run("autograd_chain", "textbook", arcface);
    let chain_kinds = [
        Kind::NonFiniteOutput,
        Kind::GradientModeDiffers,
        Kind::PolicyDiffers,
    ];
    assert!(named_only(&c, &chain_kinds), "{:?}", c.kinds());
    assert_eq!(s.best().share, 1.0, "{}", s.best().profile.name);
    let uniform = ["--inputs", "uniform", "--shape", "256,100"];
    let (c, s) = run_on("autograd_chain", "textbook", arcface, &uniform);
    assert!(named_only(&c, &chain_kinds), "{:?}", c.kinds());
    assert_eq!(s.best().share, 1.0, "{}", s.best().profile.name);

    // Divided by sin(theta) of the saved theta: the sin-theta gradient form.
    let (c, s) = run("sin_theta", "analytic", arcface);
    assert!(
        named_only(
            &c,
            &[
                Kind::GradientModeDiffers,
                Kind::NonFiniteOutput,
                Kind::PolicyDiffers
            ]
        ) && !c.deviations.is_empty(),
        "{:?} {:?}",
        c.kinds(),
        c.unexplained.first()
    );
    assert_eq!(s.best().share, 1.0, "{}", s.best().profile.name);
    assert!(
        matches!(
            s.best().profile.gradient,
            GradientMode::Exact {
                form: ExactForm::SinTheta,
                ..
            }
        ),
        "{}",
        s.best().profile.name
    );

    // m2 read in degrees: named as such.
    let (c, _) = run("m2_degrees", "textbook", arcface);
    assert_eq!(c.verdict(), Verdict::Fail);
    assert!(
        c.kinds().contains(&Kind::MarginUnits)
            && named_only(&c, &[Kind::MarginUnits, Kind::NonFiniteOutput]),
        "{:?} {:?}",
        c.kinds(),
        c.unexplained.first()
    );

    // Teeth: the textbook layer checked under a profile it is not fails.
    let (c, _) = run("textbook", "caffe-gpu", arcface);
    assert_eq!(c.verdict(), Verdict::Fail);
}
