//! Per-row margins assigned to the wrong rows (SPEC.md §11.1): the detector behind
//! [`Kind::RowMarginsDiffer`].

use super::{Deviation, Key, Kind};
use crate::compare::CaseReport;
use crate::fixture::LayerCase;
use crate::params::Params;
use std::collections::HashSet;

/// The assignments tried, in order: (rows' parameters, words).
fn assignments(rows: &[Params]) -> Vec<(Vec<Params>, String)> {
    let n = rows.len();
    let mut out = Vec::new();
    let mean = |f: fn(&Params) -> f64| rows.iter().map(f).sum::<f64>() / n as f64;
    let avg = Params {
        m1: mean(|p| p.m1),
        m2: mean(|p| p.m2),
        m3: mean(|p| p.m3),
        s: rows[0].s,
    };
    out.push((
        vec![avg; n],
        format!(
            "one margin for every row, the rows' mean ({}): the per-row margins are not applied per row",
            avg
        ),
    ));
    out.push((
        vec![rows[0]; n],
        "row 0's margins for every row: the per-row margins are not applied per row".into(),
    ));
    for k in 1..n {
        let shifted = (0..n).map(|i| rows[(i + k) % n]).collect();
        out.push((
            shifted,
            format!("row i got row i + {k}'s margins (mod N = {n}): the per-row margins are misaligned with the rows"),
        ));
    }
    out
}

/// The first assignment of [`assignments`] under which every failing element not in `taken`
/// passes, as a deviation explaining them.
pub(super) fn row_margins(
    case: &LayerCase,
    r: &CaseReport,
    taken: &HashSet<Key>,
) -> Option<Deviation> {
    let rows = case.row_params.as_ref()?;
    if rows.len() < 2 {
        return None;
    }
    let remaining = super::untaken_failures(r, taken);
    if remaining.is_empty() {
        return None;
    }
    let variants = assignments(rows)
        .into_iter()
        .filter(|(assigned, _)| assigned != rows)
        .map(|(assigned, words)| {
            (
                LayerCase {
                    row_params: Some(assigned),
                    ..case.clone()
                },
                words,
            )
        });
    let words = super::first_explaining(variants, r, &remaining, super::Keep::FailuresOnly)?;
    Some(Deviation {
        kind: Kind::RowMarginsDiffer,
        detail: format!(
            "the targets follow {words} ({} out-of-budget elements fit)",
            remaining.len()
        ),
        explains: remaining,
    })
}
