//! Stated parameters checked by fitting them ([`crate::verdict::fit`]): where the targets
//! (and, for s, the pass-through entries) follow the profile at a fitted m1, m2, m3 or s
//! instead of the stated one, the difference is named with the fitted value, its
//! uncertainty and the stated value. A fitted m2 at radians(stated) or degrees(stated), to
//! within a rounded conversion factor, is `margin-units`; a fitted term at its neutral value
//! is `margin-term-ignored`; any other value is `parameter-differs`.

use super::{key, Deviation, Key, Kind};
use crate::compare::{self, CaseReport};
use crate::fixture::LayerCase;
use crate::verdict::fit::{self, plain, Fitted, Param};
use std::collections::HashSet;

/// Relative tolerance of a degrees/radians conversion factor: π/180 written with π rounded
/// to 3.14 is 5.1e-4 off, 22/7 4.0e-4; 1e-2 takes every such rounding and nothing else.
pub const UNITS_FACTOR_TOLERANCE: f64 = 1e-2;

/// The kind and the words for one fitted parameter that differs from the stated one.
fn name_fit(f: &Fitted, which: Param) -> (Kind, String) {
    let stated = f.stated.unwrap_or(f.value);
    let what = f.describe();
    if (f.value - which.neutral()).abs() <= f.uncertainty {
        return (
            Kind::MarginTermIgnored,
            format!(
                "{what}: the implementation ignores {} (it acts as {} = {})",
                which.name(),
                which.name(),
                which.neutral()
            ),
        );
    }
    if which == Param::M2 && stated != 0.0 {
        for (target, how) in [
            (
                stated.to_radians(),
                "given in degrees and converted to radians",
            ),
            (
                stated.to_degrees(),
                "given in radians and converted to degrees",
            ),
        ] {
            let rel = f.value / target - 1.0;
            if rel.abs() <= UNITS_FACTOR_TOLERANCE {
                let factor = f.value / stated;
                let exact = (f.value - target).abs() <= f.uncertainty;
                return (
                    Kind::MarginUnits,
                    format!(
                        "{what}: the margin was {how} (factor {}{})",
                        plain(factor, 9),
                        if exact {
                            String::new()
                        } else {
                            format!(
                                ", {}% from the exact one: a rounded pi",
                                plain(100.0 * rel, 4)
                            )
                        }
                    ),
                );
            }
        }
    }
    (Kind::ParameterDiffers, what)
}

/// The failing elements that the profile at the fitted parameters explains, named by the
/// parameter that differs. Asked only when some failing element is not in `taken`, and
/// reported only when the fitted point explains every such element.
pub(super) fn stated_parameters(
    case: &LayerCase,
    r: &CaseReport,
    taken: &HashSet<Key>,
) -> Vec<Deviation> {
    let remaining: HashSet<Key> = r
        .failing()
        .map(|e| key(e, r.c))
        .filter(|k| !taken.contains(k))
        .collect();
    if remaining.is_empty() {
        return Vec::new();
    }
    // Terms dropped outright (a pair of them is no single fitted constant) are
    // `margin-term-ignored`, which the variants name: leave those to them.
    if dropped_terms_explain(case, r, &remaining) {
        return Vec::new();
    }
    let sf = fit::fit_stated(std::slice::from_ref(case), &r.profile, r.dtype);
    if sf.overrides.is_empty() {
        return Vec::new();
    }
    let q = sf.overrides.apply(&r.params);
    let Ok(vr) = compare::compare_with_params(case, &r.profile, &q, r.dtype) else {
        return Vec::new();
    };
    let explained = vr
        .elements
        .iter()
        .filter(|e| remaining.contains(&key(e, r.c)))
        .all(|e| e.passed());
    if !explained {
        return Vec::new();
    }
    let mut out = Vec::new();
    for which in Param::ALL {
        if sf.overrides.get(which).is_none() {
            continue;
        }
        let Some(f) = sf.fitted.iter().find(|f| f.name == which.name()) else {
            continue;
        };
        let (kind, detail) = name_fit(f, which);
        out.push(Deviation {
            kind,
            detail: format!(
                "{detail} ({} out-of-budget elements fit at the fitted value)",
                remaining.len()
            ),
            // The first named parameter accounts for the elements; the others are listed.
            explains: if out.is_empty() {
                remaining.clone()
            } else {
                HashSet::new()
            },
        });
    }
    out
}

/// Whether the profile at the stated parameters with some of m1, m2, m3 set to their neutral
/// values (one term or a pair) explains every element in `remaining`.
fn dropped_terms_explain(case: &LayerCase, r: &CaseReport, remaining: &HashSet<Key>) -> bool {
    let p = r.params;
    let subsets = [
        (true, false, false),
        (false, true, false),
        (false, false, true),
        (true, true, false),
        (true, false, true),
        (false, true, true),
    ];
    subsets.into_iter().any(|(d1, d2, d3)| {
        let changes = (!d1 || p.m1 != 1.0) && (!d2 || p.m2 != 0.0) && (!d3 || p.m3 != 0.0);
        if !changes {
            return false;
        }
        let mut q = p;
        if d1 {
            q.m1 = 1.0;
        }
        if d2 {
            q.m2 = 0.0;
        }
        if d3 {
            q.m3 = 0.0;
        }
        compare::compare_with_params(case, &r.profile, &q, r.dtype).is_ok_and(|vr| {
            vr.elements
                .iter()
                .filter(|e| remaining.contains(&key(e, r.c)))
                .all(|e| e.passed())
        })
    })
}
