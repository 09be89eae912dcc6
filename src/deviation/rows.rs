//! Detectors of row and column structure: ignored rows processed, the margin on the wrong
//! column, non-target entries altered.

use super::{example, key, Declared, Deviation, Key, Kind};
use crate::compare::{CaseReport, Element, Reference, Role, Side};
use crate::fixture::LayerCase;
use crate::params::Params;
use crate::profile::{InputDomain, Profile};
use crate::tolerance;
use std::collections::{BTreeMap, HashSet};

/// The reference of an element's input evaluated as if it were the row's target.
pub(super) fn as_target(reference: &Reference, e: &Element) -> (f64, f64) {
    let t = reference.target(e.input, e.top_diff);
    match e.side {
        Side::Forward => (t.forward, t.budget.forward),
        Side::Backward => (t.backward, t.budget.backward),
    }
}

/// Whether an out-of-budget pass-through element looks like the margin was applied to it,
/// and the margin differs from the pass-through (so the match is informative).
pub(super) fn matches_margin(reference: &Reference, e: &Element) -> bool {
    let (want, budget) = as_target(reference, e);
    let distinct = !tolerance::within(want, e.reference, budget + e.budget);
    distinct
        && want.is_finite()
        && e.actual.is_finite()
        && tolerance::within(e.actual, want, budget)
}

pub(super) fn elements_by_row(r: &CaseReport) -> BTreeMap<usize, Vec<&Element>> {
    let mut m: BTreeMap<usize, Vec<&Element>> = BTreeMap::new();
    for e in &r.elements {
        m.entry(e.row).or_default().push(e);
    }
    m
}

pub(super) fn ignore_label(
    case: &LayerCase,
    r: &CaseReport,
    declared: &Declared,
) -> Option<Deviation> {
    let reference = Reference::new(&r.profile, &r.params, r.dtype);
    let mut explains = HashSet::new();
    let mut notes = Vec::new();
    let rows = elements_by_row(r);
    for (row, els) in &rows {
        if r.targets[*row].is_some() {
            continue;
        }
        let leak: Vec<&&Element> = els
            .iter()
            .filter(|e| {
                !e.actual.is_finite()
                    && (-1.0..=1.0).contains(&e.input)
                    && (e.side == Side::Forward || e.top_diff.is_finite())
            })
            .collect();
        if !leak.is_empty() {
            notes.push(format!(
                "row {row}: {} non-finite outputs at inputs inside [-1, 1] (the margin was evaluated for this ignored row)",
                leak.len()
            ));
            explains.extend(els.iter().filter(|e| !e.passed()).map(|e| key(e, r.c)));
            continue;
        }
        let cols: Vec<&&Element> = els
            .iter()
            .filter(|e| !e.passed() && matches_margin(&reference, e))
            .collect();
        if !cols.is_empty() {
            let mut cs: Vec<usize> = cols.iter().map(|e| e.col).collect();
            cs.sort();
            cs.dedup();
            notes.push(format!(
                "row {row}: column(s) {cs:?} transformed as if labelled (label {})",
                case.labels[*row]
            ));
            explains.extend(cols.iter().map(|e| key(e, r.c)));
        }
    }
    let declared_rows: Vec<usize> = declared
        .forward_rows_not_executed
        .iter()
        .copied()
        .filter(|&i| i < r.n && r.targets[i].is_none())
        .collect();
    if !declared_rows.is_empty() {
        notes.push(format!(
            "the dump declares forward rows {declared_rows:?} (label -1) not executed by its recording: the original forward has no ignore check there"
        ));
    }
    if notes.is_empty() {
        return None;
    }
    Some(Deviation {
        kind: Kind::IgnoreLabelNotHonoured,
        detail: notes.join("; "),
        explains,
    })
}

pub(super) fn wrong_target_column(_case: &LayerCase, r: &CaseReport) -> Option<Deviation> {
    let mut shifts: BTreeMap<usize, usize> = BTreeMap::new();
    let mut explains = HashSet::new();
    for (row, els) in elements_by_row(r) {
        let Some(t) = r.targets[row] else { continue };
        let reference = r.reference_of_row(row);
        // The labelled column: out of budget as a target, but a plain pass-through.
        let label_passed_through = els.iter().any(|e| {
            e.col == t && !e.passed() && {
                let (f, b, bud) = reference.passthrough(e.input, e.top_diff);
                let (want, budget) = match e.side {
                    Side::Forward => (f, bud.forward),
                    Side::Backward => (b, bud.backward),
                };
                tolerance::within(e.actual, want, budget)
            }
        });
        if !label_passed_through {
            continue;
        }
        let moved: Vec<&&Element> = els
            .iter()
            .filter(|e| e.col != t && !e.passed() && matches_margin(&reference, e))
            .collect();
        let Some(first) = moved.first() else { continue };
        let shift = (first.col + r.c - t) % r.c;
        *shifts.entry(shift).or_default() += 1;
        explains.extend(
            els.iter()
                .filter(|e| !e.passed() && (e.col == t || e.col == first.col))
                .map(|e| key(e, r.c)),
        );
    }
    let (&shift, &rows) = shifts.iter().max_by_key(|(_, &n)| n)?;
    let shift_text = if shift == 1 {
        "label + 1".to_string()
    } else if shift + 1 == r.c {
        "label - 1".to_string()
    } else {
        format!("label + {shift}")
    };
    Some(Deviation {
        kind: Kind::WrongTargetColumn,
        detail: format!(
            "in {rows} row(s) the labelled column is passed through and the margin sits at column {shift_text} (mod C = {})",
            r.c
        ),
        explains,
    })
}

pub(super) fn non_target_altered(
    case: &LayerCase,
    r: &CaseReport,
    taken: &HashSet<Key>,
) -> Option<Deviation> {
    let hits: Vec<&Element> = r
        .failing()
        .filter(|e| e.role == Role::PassThrough && !taken.contains(&key(e, r.c)))
        .collect();
    if hits.is_empty() {
        return None;
    }
    // Classify each alteration, to say what happened.
    let mut round_trip_profile = Profile::preset("analytic").expect("preset");
    round_trip_profile.shortcut = false;
    let unit = Params::new(1.0, 0.0, 0.0).with_scale(r.params.s);
    let round_trip = Reference::new(&round_trip_profile, &unit, r.dtype);
    let clamp = match r.profile.domain {
        InputDomain::Clamp { eps, .. } => {
            Some((r.dtype.round(-1.0 + eps), r.dtype.round(1.0 - eps)))
        }
        InputDomain::Raw => None,
    };
    // The (side, row) pairs whose target output is not finite: one pass, not one per hit.
    let nonfinite_targets: HashSet<(Side, usize)> = r
        .elements
        .iter()
        .filter(|o| r.targets[o.row] == Some(o.col) && !o.actual.is_finite())
        .map(|o| (o.side, o.row))
        .collect();
    let mut classes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for e in &hits {
        let target_nonfinite = nonfinite_targets.contains(&(e.side, e.row));
        let class = if !e.actual.is_finite() && e.input.abs() > 1.0 {
            "NaN for |x| > 1"
        } else if !e.actual.is_finite() && target_nonfinite {
            "non-finite spread from the row's target"
        } else if e.side == Side::Forward && {
            let t = round_trip.target(e.input, e.top_diff);
            tolerance::within(e.actual, t.forward, t.budget.forward)
        } {
            "round trip cos(acos x)"
        } else if e.side == Side::Forward
            && clamp.is_some_and(|(lo, hi)| {
                let want = r.params.s * e.input.clamp(lo, hi);
                tolerance::within(e.actual, want, e.budget + r.dtype.ulp(want))
            })
        {
            "clamped to the input domain"
        } else {
            "other"
        };
        *classes.entry(class).or_default() += 1;
    }
    let total = r
        .elements
        .iter()
        .filter(|e| e.role == Role::PassThrough)
        .count();
    let worst = hits
        .iter()
        .max_by(|a, b| a.fraction.total_cmp(&b.fraction))
        .expect("non-empty");
    let _ = case;
    Some(Deviation {
        kind: Kind::NonTargetAltered,
        detail: format!(
            "{} of {} pass-through entries altered ({}); worst: {}",
            hits.len(),
            total,
            classes
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            example(r, worst)
        ),
        explains: hits.iter().map(|e| key(e, r.c)).collect(),
    })
}
