//! Policy and parameter variants: the one-axis neighbours of the claimed profile in the
//! policy space (`crate::space`), dropped or mis-scaled parameters, and the nearest point of the
//! space where no single variant explains the targets.

use super::{key, median, Deviation, Key, Kind};
use crate::compare::{self, CaseReport, Element, Role, Side};
use crate::dtype::Dtype;
use crate::error::Result;
use crate::fixture::LayerCase;
use crate::params::Params;
use crate::profile::{AnglePolicy, GradientMode, Profile, ThetaPrecision};
use crate::space::Axis;
use crate::tolerance;
use std::collections::HashSet;

/// The out-of-budget target elements no deviation in `taken` accounts for.
fn remaining_targets(r: &CaseReport, taken: &HashSet<Key>) -> HashSet<Key> {
    r.failing()
        .filter(|e| e.role == Role::Target && !taken.contains(&key(e, r.c)))
        .map(|e| key(e, r.c))
        .collect()
}

/// Where out-of-budget targets remain unexplained: the nearest point of the policy space that
/// fits the whole case (the `--profile auto` search on this case), reported as "behaves like
/// <claimed> except: <axis values>".
pub(super) fn nearest_point(
    case: &LayerCase,
    r: &CaseReport,
    taken: &HashSet<Key>,
) -> Result<Option<Deviation>> {
    let remaining = remaining_targets(r, taken);
    if remaining.is_empty() {
        return Ok(None);
    }
    let Ok(search) = crate::verdict::search::search(std::slice::from_ref(case), r.dtype) else {
        return Ok(None);
    };
    let best = search.best();
    if best.share < 1.0 {
        return Ok(None);
    }
    Ok(Some(Deviation {
        kind: Kind::PolicyDiffers,
        detail: format!(
            "{} ({} out-of-budget targets fit; nearest preset: {})",
            crate::space::describe_as_neighbour(&r.profile, &best.profile),
            remaining.len(),
            best.profile.name
        ),
        explains: remaining,
    }))
}

/// A candidate explanation of the target failures: a variant of the profile or parameters.
pub(super) struct Variant {
    kind: Kind,
    what: String,
    profile: Profile,
    params: Params,
    /// Affects only the backward (then the forward must already pass).
    backward_only: bool,
}

/// The deviation kind that names a difference on `axis` (for a case that claims easy_margin,
/// an angle policy without it is the claim ignored).
pub(super) fn axis_kind(axis: Axis, case: &LayerCase, variant: &Profile) -> Kind {
    match axis {
        Axis::Domain => Kind::InputClampDiffers,
        Axis::Theta => Kind::ThetaPrecisionDiffers,
        Axis::Angle => {
            let easy = variant.angle.is_easy_margin();
            if case.easy_margin == Some(true) && !easy {
                Kind::EasyMarginIgnored
            } else {
                Kind::AnglePolicyDiffers
            }
        }
        Axis::Gradient => match variant.gradient {
            GradientMode::Detached => Kind::GradientDetached,
            GradientMode::Exact { .. } | GradientMode::FormulaAtClamped { .. } => {
                Kind::GradientModeDiffers
            }
        },
        Axis::FactorClip => Kind::FactorClipDiffers,
        Axis::Shortcut => Kind::IdentityShortcutDiffers,
        Axis::RoundTrip => Kind::RoundTripDiffers,
        Axis::Params => Kind::ParamPrecisionDiffers,
        Axis::OpMath => Kind::ReducedPrecision,
        Axis::Labels => Kind::LabelPolicyDiffers,
        Axis::Eval => Kind::EvalFormDiffers,
        Axis::OutputClip => Kind::OutputClipDiffers,
        Axis::Constants => Kind::ConstantPrecisionDiffers,
    }
}

/// Whether a difference on `axis` can change only the backward.
pub(super) fn backward_only(axis: Axis) -> bool {
    match axis {
        Axis::Gradient | Axis::FactorClip => true,
        Axis::Domain
        | Axis::Theta
        | Axis::Angle
        | Axis::Shortcut
        | Axis::RoundTrip
        | Axis::Params
        | Axis::OpMath
        | Axis::Labels
        | Axis::Eval
        | Axis::OutputClip
        | Axis::Constants => false,
    }
}

/// The candidate explanations: parameter variants (terms dropped, m2 in degrees) and every
/// one-axis neighbour of the profile in the policy space ([`crate::space`]).
pub(super) fn variants(case: &LayerCase, r: &CaseReport) -> Vec<Variant> {
    let prof = &r.profile;
    let p = r.params;
    let mut v = Vec::new();
    // Parameters dropped: single terms, then pairs.
    let subsets: [(&str, bool, bool, bool); 6] = [
        ("m2", false, true, false),
        ("m1", true, false, false),
        ("m3", false, false, true),
        ("m1 and m2", true, true, false),
        ("m1 and m3", true, false, true),
        ("m2 and m3", false, true, true),
    ];
    for (names, d1, d2, d3) in subsets {
        let q = Params {
            m1: if d1 { 1.0 } else { p.m1 },
            m2: if d2 { 0.0 } else { p.m2 },
            m3: if d3 { 0.0 } else { p.m3 },
            s: p.s,
        };
        // Every dropped term must really change: otherwise a smaller subset says the same.
        let changes = (!d1 || p.m1 != 1.0) && (!d2 || p.m2 != 0.0) && (!d3 || p.m3 != 0.0);
        if changes {
            v.push(Variant {
                kind: Kind::MarginTermIgnored,
                what: format!("matches the reference with {names} dropped ({q}): the implementation ignores {names}"),
                profile: prof.clone(),
                params: q,
                backward_only: false,
            });
        }
    }
    // m2 in degrees or radians is found by the parameter fit (`super::fitted`).
    for axis in Axis::ALL {
        if axis == Axis::Shortcut && !p.is_angle_identity() {
            continue;
        }
        if axis == Axis::OpMath && matches!(r.dtype, Dtype::F32 | Dtype::F64) {
            continue;
        }
        for q in axis.values(prof).into_iter().skip(1) {
            // A form's continuous constants at the values the outputs imply.
            let q = crate::verdict::form_fit::refine(&q, std::slice::from_ref(case), r.dtype);
            v.push(Variant {
                kind: axis_kind(axis, case, &q),
                what: format!(
                    "behaves like {} with {} (profile: {})",
                    prof.name,
                    axis.describe(&q),
                    axis.describe(prof)
                ),
                profile: q,
                params: p,
                backward_only: backward_only(axis),
            });
        }
    }
    v
}

/// |a − b|, 0 for equal non-finite values, +inf for a finite/non-finite pair.
pub(super) fn distance(a: f64, b: f64) -> f64 {
    if a.is_finite() && b.is_finite() {
        (a - b).abs()
    } else if (a.is_nan() && b.is_nan()) || a == b {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Whether every target element not in `taken` passes in `report`.
pub(super) fn targets_pass(report: &CaseReport, taken: &HashSet<Key>) -> bool {
    report
        .elements
        .iter()
        .filter(|e| e.role == Role::Target && !taken.contains(&key(e, report.c)))
        .all(Element::passed)
}

pub(super) fn target_variant(
    case: &LayerCase,
    r: &CaseReport,
    taken: &HashSet<Key>,
) -> Result<Option<Deviation>> {
    let remaining = remaining_targets(r, taken);
    if remaining.is_empty() {
        return Ok(None);
    }
    let forward_ok = !remaining.iter().any(|k| k.0 == Side::Forward);
    let mut cands = variants(case, r);
    // Where only the backward is off, ask the backward-only causes first.
    cands.sort_by_key(|v| {
        if forward_ok {
            !v.backward_only
        } else {
            v.backward_only
        }
    });
    // The sign flip is not a profile: test it on the report itself.
    let sign_flip = forward_ok
        && r.elements
            .iter()
            .filter(|e| {
                e.role == Role::Target && e.side == Side::Backward && !taken.contains(&key(e, r.c))
            })
            .all(|e| tolerance::within(e.actual, -e.reference, e.budget));
    if sign_flip {
        return Ok(Some(Deviation {
            kind: Kind::GradientSignFlipped,
            detail: format!(
                "{} backward targets match the negated reference",
                remaining.len()
            ),
            explains: remaining,
        }));
    }
    for v in cands {
        if v.backward_only && !forward_ok {
            continue;
        }
        // A variant whose label policy refuses a label of the case explains nothing.
        let Ok(vr) = compare::compare_with_params(case, &v.profile, &v.params, r.dtype) else {
            continue;
        };
        // Where the variant predicts a different value, the output must sit at least as close
        // to it as to the profile's: a variant with a looser budget (θ in f32 for an f64
        // implementation) must not absorb an unrelated small error. Where it predicts the
        // same value, only its budget differs (the acos/cos round trip), and that is the claim.
        let closer = r
            .elements
            .iter()
            .zip(&vr.elements)
            .filter(|(b, _)| remaining.contains(&key(b, r.c)))
            .all(|(b, v)| {
                // "Different" beyond the f64 noise of the references themselves: the round
                // trip cos(acos 0) is 6e-17, not 0, which no implementation can resolve.
                let d = distance(v.reference, b.reference);
                let distinct = d > b.budget && d > 1e-3 * v.budget;
                !distinct || distance(v.actual, v.reference) <= distance(b.actual, b.reference)
            });
        if closer && targets_pass(&vr, taken) {
            return Ok(Some(Deviation {
                kind: v.kind,
                detail: format!("{} ({} out-of-budget targets fit)", v.what, remaining.len()),
                explains: remaining,
            }));
        }
    }
    if forward_ok {
        return Ok(None);
    }
    Ok(fitted_clamp(case, r, taken)?.map(|what| Deviation {
        kind: Kind::InputClampDiffers,
        detail: format!("{what} ({} out-of-budget targets fit)", remaining.len()),
        explains: remaining,
    }))
}

/// The input clamp ε fitted as a continuous constant ([`crate::verdict::fit::fit_constant`])
/// where no width real code uses explains the targets: the words for it, or `None`.
fn fitted_clamp(case: &LayerCase, r: &CaseReport, taken: &HashSet<Key>) -> Result<Option<String>> {
    use crate::profile::{BoundGradient, ClampScope, InputDomain};
    let (scope, at_bound) = match r.profile.domain {
        InputDomain::Clamp {
            scope, at_bound, ..
        } => (scope, at_bound),
        InputDomain::Raw => (ClampScope::Target, BoundGradient::Pass),
    };
    let set = move |p: &mut Profile, eps: f64| {
        p.domain = InputDomain::Clamp {
            eps,
            scope,
            at_bound,
        }
    };
    let Some(f) = crate::verdict::fit::fit_constant(
        std::slice::from_ref(case),
        r.dtype,
        &r.profile,
        &set,
        crate::verdict::search::CLAMP_EPS_BRACKET,
        "input clamp eps",
    ) else {
        return Ok(None);
    };
    let mut q = r.profile.clone();
    set(&mut q, f.value);
    let Ok(vr) = compare::compare_with_params(case, &q, &r.params, r.dtype) else {
        return Ok(None);
    };
    if !targets_pass(&vr, taken) {
        return Ok(None);
    }
    Ok(Some(format!(
        "behaves like {} with {} ({}; profile: {})",
        r.profile.name,
        crate::space::describe_domain(q.domain),
        f.describe(),
        crate::space::describe_domain(r.profile.domain)
    )))
}

/// A case that claims easy_margin = true under a profile without it: the claim is honoured
/// only if the targets follow the easy-margin variant.
pub(super) fn easy_margin_claim(
    case: &LayerCase,
    r: &CaseReport,
    found: &[Deviation],
) -> Result<Option<Deviation>> {
    if case.easy_margin != Some(true)
        || r.profile.angle == AnglePolicy::EasyMargin
        || found.iter().any(|d| d.kind == Kind::EasyMarginIgnored)
    {
        return Ok(None);
    }
    let mut q = r.profile.clone();
    q.angle = AnglePolicy::EasyMargin;
    let vr = compare::compare_with_params(case, &q, &r.params, r.dtype)?;
    let contradicted: Vec<&Element> = vr
        .elements
        .iter()
        .zip(&r.elements)
        .filter(|(v, b)| v.role == Role::Target && !v.passed() && b.passed())
        .map(|(v, _)| v)
        .collect();
    if contradicted.is_empty() {
        return Ok(None);
    }
    Ok(Some(Deviation {
        kind: Kind::EasyMarginIgnored,
        detail: format!(
            "the case claims easy_margin = true, but {} target outputs contradict it and follow {} (e.g. with easy margin: {})",
            contradicted.len(),
            r.profile.name,
            vr.describe(contradicted[0])
        ),
        explains: HashSet::new(),
    }))
}

/// In f64, θ rounded to f32 moves a result by up to ½ f32 ulp of θ, which the budget must
/// allow (one implementation's acos may round to the other f32 neighbour). Per element that is
/// invisible; across a case it is not: a faithful implementation agrees to f64 rounding.
pub(super) fn theta_closer_fit(case: &LayerCase, r: &CaseReport) -> Result<Option<Deviation>> {
    // Only a case that is within budget at every target can be told apart this way.
    let targets_within = r
        .elements
        .iter()
        .filter(|e| e.role == Role::Target)
        .all(Element::passed);
    if r.dtype != Dtype::F64 || !targets_within {
        return Ok(None);
    }
    let mut q = r.profile.clone();
    q.theta = match q.theta {
        ThetaPrecision::Native => ThetaPrecision::F32,
        ThetaPrecision::F32 => ThetaPrecision::Native,
    };
    let vr = compare::compare_with_params(case, &q, &r.params, r.dtype)?;
    if !targets_pass(&vr, &HashSet::new()) {
        return Ok(None);
    }
    let fr = |rep: &CaseReport| -> Vec<f64> {
        rep.elements
            .iter()
            .filter(|e| {
                e.role == Role::Target
                    && e.side == Side::Forward
                    && e.fraction.is_finite()
                    && e.reference.is_finite()
            })
            .map(|e| e.fraction)
            .collect()
    };
    let (b, v) = (fr(r), fr(&vr));
    if b.len() < 8 {
        return Ok(None);
    }
    let (mb, mv) = (median(b).unwrap_or(0.0), median(v).unwrap_or(0.0));
    if mb >= 1e-2 && mv <= mb * 1e-3 {
        return Ok(Some(Deviation {
            kind: Kind::ThetaPrecisionDiffers,
            detail: format!(
                "within budget, but theta behaves as {:?} precision: median forward error {:.3} of budget under {} vs {:.1e} with theta {:?}",
                q.theta, mb, r.profile.name, mv, q.theta
            ),
            explains: HashSet::new(),
        }));
    }
    Ok(None)
}
