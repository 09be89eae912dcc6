//! Sub-centres reduced otherwise than by the max (SPEC.md §11.2): the detector behind
//! [`Kind::SubcenterReductionDiffers`].

use super::{Deviation, Key, Kind};
use crate::compare::CaseReport;
use crate::fixture::LayerCase;
use std::collections::HashSet;

/// The reductions of `sub` ([N·C·K], k fastest) tried, in order: each single sub-centre, then
/// the mean and the min over K, with words.
fn reductions(k: usize, sub: &[f64]) -> Vec<(Vec<f64>, String)> {
    let mut out: Vec<(Vec<f64>, String)> = (0..k)
        .map(|j| {
            (
                sub.chunks_exact(k).map(|cell| cell[j]).collect(),
                format!("sub-centre {j} alone, not the max over the K = {k} sub-centres"),
            )
        })
        .collect();
    out.push((
        sub.chunks_exact(k)
            .map(|cell| cell.iter().sum::<f64>() / k as f64)
            .collect(),
        format!("the mean over the K = {k} sub-centres, not their max"),
    ));
    out.push((
        sub.chunks_exact(k)
            .map(|cell| cell.iter().copied().fold(f64::INFINITY, f64::min))
            .collect(),
        format!("the min over the K = {k} sub-centres, not their max"),
    ));
    out
}

/// The first reduction of [`reductions`] under which every failing element not in `taken`
/// passes and every passing element still passes, as a deviation explaining them.
pub(super) fn subcenter_reduction(
    case: &LayerCase,
    r: &CaseReport,
    taken: &HashSet<Key>,
) -> Option<Deviation> {
    let (k, sub) = case.subcenters.as_ref()?;
    let remaining = super::untaken_failures(r, taken);
    if remaining.is_empty() || *k < 2 {
        return None;
    }
    let variants = reductions(*k, sub)
        .into_iter()
        .filter(|(cos, _)| *cos != case.cos)
        .map(|(cos, words)| {
            (
                LayerCase {
                    cos,
                    ..case.clone()
                },
                words,
            )
        });
    let words = super::first_explaining(variants, r, &remaining, super::Keep::Passing)?;
    Some(Deviation {
        kind: Kind::SubcenterReductionDiffers,
        detail: format!(
            "the outputs follow {words} ({} out-of-budget elements fit)",
            remaining.len()
        ),
        explains: remaining,
    })
}
