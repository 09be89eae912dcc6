//! The tolerance model has teeth: every golden output that agrees with the reference, pushed
//! away from it by twice its budget, must be rejected, and no deviation detector may excuse it.

use crate::golden::golden_dir;
use combined_margin::catalogue::next_float;
use combined_margin::compare::Side;
use combined_margin::deviation::{self, Declared};
use combined_margin::fixture::{read_dump, Limits};
use combined_margin::Dtype;
use std::collections::HashSet;

/// `actual` moved by 2·budget away from `reference`, as a value of `dtype`: rounding may not
/// bring it back, so it is stepped one float further out where it did.
fn push_away(actual: f64, reference: f64, budget: f64, dtype: Dtype) -> f64 {
    let dir = if actual >= reference { 1.0 } else { -1.0 };
    let mut x = dtype.round(actual + dir * 2.0 * budget);
    while (x - reference).abs() <= 2.0 * budget.max(0.0) && (x - reference).abs() <= budget * 2.0 {
        let next = next_float(x, dtype, if dir > 0.0 { 1 } else { -1 });
        if next == x {
            break;
        }
        x = next;
        if (x - reference).abs() > budget {
            break;
        }
    }
    x
}

#[test]
fn twice_the_budget_is_always_caught() {
    teeth(|_, _| true, 10_000);
}

/// The same in f16 and bf16 alone (the half budget is ½ ulp_T per op plus f32 library error,
/// SPEC.md §5.6, not the f32 model's 2 ulp_T): every agreeing half element pushed to 2× its
/// budget is rejected.
#[test]
fn twice_the_budget_is_always_caught_in_half() {
    teeth(|_, dt| dt.is_half(), 5_000);
}

/// Perturbs every agreeing element of the golden dumps `select` picks (by file and dtype).
fn teeth(select: fn(&str, Dtype) -> bool, min_perturbed: usize) {
    let dir = golden_dir();
    let mut perturbed_total = 0usize;
    let mut caught = 0usize;
    let mut case_level = 0usize;
    let mut absorbed = 0usize;
    let mut min_fraction = f64::INFINITY;
    let mut misses = Vec::new();
    for (rel, path) in combined_margin::conformance::golden_files(&dir).unwrap() {
        let dump = read_dump(&path, Limits::default()).unwrap();
        if !select(&rel, dump.dtype) {
            continue;
        }
        for raw in &dump.cases {
            // Only combined-margin cases of a mapped implementation: a fingerprinted profile
            // is the search's, and a loss-only or not-modelled case has no layer view.
            if combined_margin::scope::classify(dump.kind, &dump.implementation, raw).unwrap()
                != combined_margin::scope::Scope::CombinedMargin
            {
                continue;
            }
            let case = dump.layer_view(raw).unwrap();
            let declared = Declared {
                forward_rows_not_executed: raw
                    .indices_opt("forward_rows_not_executed", case.n)
                    .unwrap(),
            };
            let Some(profile) =
                combined_margin::profile::mapped_profile(&dump.implementation, case.easy_margin)
            else {
                continue;
            };
            let before = deviation::check(&case, &profile, dump.dtype, &declared).unwrap();
            let excused: HashSet<(Side, usize)> = before
                .deviations
                .iter()
                .flat_map(|d| d.explains.iter().copied())
                .collect();
            let mut bad = case.clone();
            let mut chosen = Vec::new();
            for e in &before.report.elements {
                let i = e.index(case.c);
                if !e.passed()
                    || excused.contains(&(e.side, i))
                    || !e.actual.is_finite()
                    || !e.reference.is_finite()
                {
                    continue;
                }
                let x = push_away(e.actual, e.reference, e.budget, dump.dtype);
                match e.side {
                    Side::Forward => bad.forward.as_mut().unwrap()[i] = x,
                    Side::Backward => bad.backward.as_mut().unwrap()[i] = x,
                }
                chosen.push((e.side, i));
            }
            let after = deviation::check(&bad, &profile, dump.dtype, &declared).unwrap();
            let unexplained: HashSet<(Side, usize)> = after
                .unexplained
                .iter()
                .map(|e| (e.side, e.index(case.c)))
                .collect();
            let new_kind = after.kinds() != before.kinds();
            for e in &after.report.elements {
                let k = (e.side, e.index(case.c));
                if !chosen.contains(&k) {
                    continue;
                }
                perturbed_total += 1;
                // The budget rejects it.
                if !e.passed() {
                    caught += 1;
                    min_fraction = min_fraction.min(e.fraction);
                } else if misses.len() < 10 {
                    misses.push(format!(
                        "{rel}: {}: within budget: {}",
                        case.name,
                        after.report.describe(e)
                    ));
                }
                // And the golden verdict changes: the element is unexplained, or a deviation
                // the case did not show before appears. Only a deviation the case already
                // carries (e.g. non-target-altered in a dump that alters non-targets) may absorb it.
                if unexplained.contains(&k) || new_kind {
                    case_level += 1;
                } else if before.kinds().is_empty() && misses.len() < 10 {
                    misses.push(format!(
                        "{rel}: {}: excused by {:?}: {}",
                        case.name,
                        after.kinds(),
                        after.report.describe(e)
                    ));
                } else {
                    absorbed += 1;
                }
            }
        }
    }
    println!(
        "teeth: {caught} of {perturbed_total} perturbed elements out of budget (smallest error fraction {min_fraction:.3}); \
         {case_level} change the golden verdict, {absorbed} are absorbed by a deviation their case already carries"
    );
    assert!(
        perturbed_total > min_perturbed,
        "the test must perturb many elements ({perturbed_total})"
    );
    assert!(
        misses.is_empty(),
        "perturbations not caught:\n{}",
        misses.join("\n")
    );
}
