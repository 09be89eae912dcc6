//! The `constant-rounded-wrong-side` detector: what a profile's constants, rounded to the
//! dtype, cost this case. The degeneracies themselves are [`crate::degeneracy`]'s (a table of
//! the constants, which knows nothing of deviations); this file turns them into a deviation.

use super::{Deviation, Kind};
use crate::compare::{CaseReport, Element, Role, Side};
use crate::degeneracy::{degeneracies, Degeneracy, Effect};
use std::collections::HashSet;

/// The `constant-rounded-wrong-side` detector (SPEC.md §6): target inputs of the case that a
/// wrong-side threshold or a no-op clamp treats differently from the exact constant, where the
/// implementation's forward agrees with the rounded-constant reference (within budget), i.e.
/// where it demonstrably holds the constant rounded. Explains no element: the profile already
/// models the rounded constant; the deviation names what that costs.
pub(super) fn wrong_side_deviation(r: &CaseReport) -> Option<Deviation> {
    let found: Vec<Degeneracy> = degeneracies(&r.profile, &r.params, r.dtype, r.dtype)
        .into_iter()
        .filter(|d| matches!(d.effect, Effect::WrongSide | Effect::NoOp))
        .collect();
    let mut parts = Vec::new();
    for d in &found {
        let hits: Vec<&Element> = r
            .elements
            .iter()
            .filter(|e| e.side == Side::Forward && e.role == Role::Target)
            .filter(|e| d.affects(e.input) && e.passed())
            .collect();
        let Some(first) = hits.first() else {
            continue;
        };
        parts.push(format!(
            "{} {:.9} rounds to {:.9} in {} ({}); {} target input(s) between follow the rounded constant, e.g. ({}, {}) cos = {} -> {}",
            d.constant.name(),
            d.exact,
            d.rounded,
            r.dtype,
            d.effect.name(),
            hits.len(),
            first.row,
            first.col,
            first.input,
            first.actual
        ));
    }
    (!parts.is_empty()).then(|| Deviation {
        kind: Kind::ConstantRoundedWrongSide,
        detail: parts.join("; "),
        explains: HashSet::new(),
    })
}
