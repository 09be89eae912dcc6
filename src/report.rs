//! The text of `cmargin check`'s per-file report and of its `--profile auto` ranking.
//!
//! One formatter, so that the CLI and the Python package (`python/`, `Report.__str__`) print
//! the same words for the same check. Pure formatting: every number comes from
//! [`crate::deviation`] and [`crate::verdict::search`].

use crate::compare::{fraction_text, CaseReport, Side};
use crate::deviation::{CaseCheck, Kind, Verdict};
use crate::dtype::Dtype;
use crate::fixture::LayerCase;
use crate::profile::Profile;
use crate::scope::Outcome;
use crate::verdict::search::{self as fingerprint, Fit};
use std::fmt::Write;

/// The worst element of a comparison as one line, or "no elements".
pub fn worst_line(r: &CaseReport) -> String {
    match r.worst() {
        Some(e) => r.describe(e),
        None => "no elements".into(),
    }
}

/// How the per-case reports are judged and printed.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Deviations accepted (`--allow`).
    pub allowed: Vec<Kind>,
    /// Sides every case must have outputs for (`--require`).
    pub require: Vec<Side>,
    /// Every deviation's evidence and the unexplained elements.
    pub verbose: bool,
    /// With `verbose`: how many unexplained elements to list per case.
    pub max_elements: usize,
    /// How the caller raises `max_elements`, for the "… and k more" line: the CLI's
    /// `--max-elements N`; the Python package's `max_elements=N`.
    pub more_hint: &'static str,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            allowed: Vec::new(),
            require: Vec::new(),
            verbose: false,
            max_elements: 5,
            more_hint: "--max-elements N",
        }
    }
}

/// The word printed for a case; PASS and ALLOWED are the accepted ones, and the exit code
/// says the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word {
    Pass,
    /// Not a pass, but every deviation is accepted by `--allow` and nothing is unexplained.
    Allowed,
    Deviates,
    Fail,
    /// A side required by `--require` has no outputs.
    Missing,
}

impl Word {
    pub fn of(ck: &CaseCheck, o: &ReportOptions, missing: bool) -> Word {
        if missing {
            return Word::Missing;
        }
        match (ck.verdict(), ck.accepted_with(&o.allowed)) {
            (Verdict::Pass, _) => Word::Pass,
            (Verdict::Deviates | Verdict::Fail, true) => Word::Allowed,
            (Verdict::Deviates, false) => Word::Deviates,
            (Verdict::Fail, false) => Word::Fail,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Word::Pass => "PASS",
            Word::Allowed => "ALLOWED",
            Word::Deviates => "DEVIATES",
            Word::Fail => "FAIL",
            Word::Missing => "MISSING",
        }
    }

    pub fn accepted(self) -> bool {
        match self {
            Word::Pass | Word::Allowed => true,
            Word::Deviates | Word::Fail | Word::Missing => false,
        }
    }
}

pub(crate) fn side_name(s: Side) -> &'static str {
    match s {
        Side::Forward => "forward",
        Side::Backward => "backward",
    }
}

/// One file's per-case report (verdict word, count within budget, worst element, predicted
/// non-finite outputs, deviations, unchecked sides) and whether every case is accepted (its
/// word is PASS or ALLOWED).
pub fn file_report(
    file: &str,
    implementation: &str,
    dtype: Dtype,
    checks: &[CaseCheck],
    o: &ReportOptions,
) -> (String, bool) {
    let outcomes: Vec<Outcome> = checks
        .iter()
        .map(|ck| Outcome::Checked(Box::new(ck.clone())))
        .collect();
    outcomes_report(file, implementation, dtype, &outcomes, o)
}

/// [`file_report`] over a file's outcomes ([`crate::filecheck`]): a case that is not checked
/// (a head that is not a combined margin, a family not modelled yet) gets one line, the word
/// `NOT CHECKED`, and is counted apart: it is never a pass, and it does not fail the file
/// (SPEC.md §6.6). The bool: every checked case is accepted.
pub fn outcomes_report(
    file: &str,
    implementation: &str,
    dtype: Dtype,
    outcomes: &[Outcome],
    o: &ReportOptions,
) -> (String, bool) {
    let mut out = String::new();
    let checks: Vec<&CaseCheck> = outcomes.iter().filter_map(Outcome::checked).collect();
    let not_checked = outcomes.len() - checks.len();
    // Writing into a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        out,
        "{file}  ({implementation}, {dtype}, {} cases)",
        outcomes.len()
    );
    let w = outcomes.iter().map(|c| c.name().len()).max().unwrap_or(4);
    let pw = checks
        .iter()
        .map(|c| c.report.profile.name.len())
        .max()
        .unwrap_or(7);
    let mut counts = [0usize; 5];
    let (mut accepted, mut no_backward, mut no_forward) = (0, 0, 0);
    for oc in outcomes {
        let ck = match oc {
            Outcome::Checked(ck) => ck,
            Outcome::NotChecked { name, scope } => {
                let _ = writeln!(out, "  {:<8} {name:<w$}  {}", "NOT CHECKED", scope.line());
                continue;
            }
        };
        let r = &ck.report;
        // A loss-only case's forward is its loss, a scalar (SPEC.md §8.7).
        let has = |side: Side| r.has_side(side) || (side == Side::Forward && !r.scalars.is_empty());
        let lacking: Vec<&str> = [Side::Forward, Side::Backward]
            .into_iter()
            .filter(|&s| !has(s))
            .map(side_name)
            .collect();
        let missing = o.require.iter().any(|&q| !has(q));
        let word = Word::of(ck, o, missing);
        // Indexed by the declaration order of Word: Pass, Allowed, Deviates, Fail, Missing.
        counts[word as usize] += 1;
        if word.accepted() {
            accepted += 1;
        }
        no_forward += usize::from(!has(Side::Forward));
        no_backward += usize::from(!has(Side::Backward));
        let unchecked = match lacking.as_slice() {
            [] => String::new(),
            sides => format!("; {} not checked (no outputs)", sides.join(", ")),
        };
        let _ = writeln!(
            out,
            "  {:<8} {:<w$}  {:<pw$}  {:>6}/{:<6} within budget, max {}{unchecked}",
            word.name(),
            r.name,
            r.profile.name,
            r.within(),
            r.count(),
            fraction_text(r.max_fraction()),
        );
        let _ = writeln!(out, "  {:<8} worst: {}", "", worst_line(r));
        let predicted = r.non_finite_within;
        if predicted > 0 {
            let _ = writeln!(
                out,
                "  {:<8} {predicted} non-finite output(s) exactly where {} predicts them (agreement)",
                "", r.profile.name
            );
        }
        for x in &r.scalars {
            let _ = writeln!(
                out,
                "  {:<8} {}: got {}, want {} (budget {:.2e}, {})",
                "",
                x.name,
                crate::compare::num(x.actual),
                crate::compare::num(x.reference),
                x.budget,
                fraction_text(x.fraction)
            );
        }
        for d in &ck.deviations {
            // A note moves no element out of budget (SPEC.md §6.5): listed, never failing.
            let (what, mark) = if ck.is_note(d) {
                ("note", " (moves no element out of budget)")
            } else if o.allowed.contains(&d.kind) {
                ("deviation", " (allowed)")
            } else {
                ("deviation", "")
            };
            if o.verbose {
                let _ = writeln!(out, "  {:<8} {what} {}{mark}: {}", "", d.kind, d.detail);
            } else {
                let _ = writeln!(out, "  {:<8} {what} {}{mark}", "", d.kind);
            }
        }
        if !ck.unexplained.is_empty() {
            let _ = writeln!(
                out,
                "  {:<8} {} out-of-budget element(s) with no named cause",
                "",
                ck.unexplained.len()
            );
            // The residual is described on the rows the detectors saw (all of them, or a
            // bounded check's subset, whose report holds every element of those rows).
            let lines = match &ck.subset {
                None => crate::verdict::residual::describe(r, &ck.unexplained),
                Some(sub) => {
                    let local: Vec<_> = ck
                        .unexplained
                        .iter()
                        .filter_map(|e| {
                            let row = sub.rows.binary_search(&e.row).ok()?;
                            Some(crate::compare::Element { row, ..*e })
                        })
                        .collect();
                    crate::verdict::residual::describe(&sub.report, &local)
                }
            };
            for line in lines {
                let _ = writeln!(out, "  {:<8}   residual: {line}", "");
            }
            if o.verbose {
                for e in ck.unexplained.iter().take(o.max_elements) {
                    let _ = writeln!(out, "  {:<8}   {}", "", r.describe(e));
                }
                let left = ck.unexplained.len().saturating_sub(o.max_elements);
                if left > 0 {
                    let _ = writeln!(
                        out,
                        "  {:<8}   … and {left} more ({} lists more)",
                        "", o.more_hint
                    );
                }
            }
        }
        if let Some((sub, Some(first), Some(last))) = ck
            .subset
            .as_ref()
            .map(|s| (s, s.rows.first(), s.rows.last()))
        {
            // Every element is tallied; the detectors saw only these rows (SPEC.md §8.5).
            let what = if r.passed() {
                "notes looked for"
            } else {
                "diagnosed"
            };
            let _ = writeln!(
                out,
                "  {:<8} bounded check ({} entries per side): every element tallied, {what} on {} of {} rows ({first}..={last}){}",
                "",
                r.n * r.c,
                sub.rows.len(),
                r.n,
                if sub.undiagnosed > 0 {
                    format!("; {} out-of-budget element(s) in other rows not diagnosed", sub.undiagnosed)
                } else {
                    String::new()
                }
            );
        }
    }
    let [pass, allowed, dev, fail, missing] = counts;
    let mut summary = format!("{pass} pass");
    if !o.allowed.is_empty() {
        summary.push_str(&format!(", {allowed} allowed"));
    }
    summary.push_str(&format!(", {dev} deviate, {fail} fail"));
    if !o.require.is_empty() {
        summary.push_str(&format!(", {missing} missing"));
    }
    let mut notes = Vec::new();
    if !o.allowed.is_empty() {
        notes.push(format!(
            "allowing {}",
            o.allowed
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (n, side) in [(no_forward, Side::Forward), (no_backward, Side::Backward)] {
        if n > 0 {
            notes.push(format!(
                "{} not checked in {n} of {} case{}: no outputs{}",
                side_name(side),
                checks.len(),
                if checks.len() == 1 { "" } else { "s" },
                if o.require.contains(&side) {
                    ""
                } else {
                    "; --require forward,backward refuses that"
                }
            ));
        }
    }
    if not_checked > 0 {
        summary.push_str(&format!(", {not_checked} not checked (not modelled)"));
    }
    let _ = writeln!(
        out,
        "  summary: {summary}; {accepted} of {} {}accepted{}",
        checks.len(),
        if not_checked > 0 { "checked " } else { "" },
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        }
    );
    (out, accepted == checks.len())
}

/// Searches the policy space ([`fingerprint::search`]) and returns the search's text (the
/// top five, the candidates these inputs cannot tell apart with an input that would, and the
/// verdict line), the best profile and the full ranking.
pub fn fingerprint_report(
    file: &str,
    cases: &[LayerCase],
    dtype: Dtype,
) -> Result<(String, Profile, Vec<Fit>), String> {
    let search = fingerprint::search(cases, dtype).map_err(|e| format!("{file}: {e}"))?;
    let text = search_text(file, &search);
    let best = search.best().profile.clone();
    Ok((text, best, search.ranked))
}

/// A share as a percentage with three decimals that never reads as all or none when it is
/// not: 46,298,698 of 46,298,880 is ">99.999%", not the "100.000%" rounding gives.
pub fn share_percent(share: f64) -> String {
    let pct = 100.0 * share;
    let shown = format!("{pct:.3}");
    if share < 1.0 && shown == "100.000" {
        ">99.999%".into()
    } else if share > 0.0 && shown == "0.000" {
        "<0.001%".into()
    } else {
        format!("{shown}%")
    }
}

/// A candidate's worst fraction in a ranking. A ranking keeps only the fraction, and +inf is
/// both a non-finite mismatch and a finite difference where the budget is zero (a bit-exact
/// copy), so it says "inf x budget", not which.
fn ranking_worst_text(f: f64) -> String {
    if f.is_infinite() {
        "inf x budget".into()
    } else {
        fraction_text(f)
    }
}

/// The top five rows of a ranking, (name, share within budget, worst fraction) each, in
/// aligned columns: `  <name>  <share>% <what>, worst <fraction>`.
pub fn ranking_rows<'a>(
    out: &mut String,
    rows: impl Iterator<Item = (&'a str, f64, f64)> + Clone,
    what: &str,
) {
    let w = rows.clone().take(5).map(|r| r.0.len()).max().unwrap_or(8);
    for (name, share, worst) in rows.take(5) {
        let _ = writeln!(
            out,
            "  {name:<w$}  {:>8} {what}, worst {}",
            share_percent(share),
            ranking_worst_text(worst)
        );
    }
}

/// The text of one search (see [`fingerprint_report`]): the top five in aligned columns
/// (share within the candidate's own budget, its cost on the common scale, its worst
/// fraction), the ties, the point found with its fitted constants, and the verdict line.
pub fn search_text(label: &str, search: &fingerprint::Search) -> String {
    let ranked = &search.ranked;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{label}: fingerprint over {} candidate profiles of the policy space (presets, then a search one axis at a time{})",
        ranked.len(),
        if search.searched_non_targets {
            ""
        } else {
            "; every non-target within budget, so the non-target axes were not searched"
        }
    );
    // A bounded case with out-of-budget non-targets is searched on a subset of its rows
    // (SPEC.md §8.5): the shares and costs below are of those rows.
    let cases = search.scored_rows.len();
    for (i, sr) in search.scored_rows.iter().enumerate() {
        let Some((sr, Some(first), Some(last))) =
            sr.as_ref().map(|sr| (sr, sr.rows.first(), sr.rows.last()))
        else {
            continue;
        };
        let _ = writeln!(
            out,
            "  searched on {} of {} rows ({first}..={last}){}: the rows with out-of-budget non-targets first; the shares below are of those rows, the check after tallies every element",
            sr.rows.len(),
            sr.n,
            if cases > 1 { format!(" of case {i}") } else { String::new() }
        );
    }
    let w = ranked
        .iter()
        .take(5)
        .map(|f| f.profile.name.len())
        .max()
        .unwrap_or(8)
        .max(9);
    let _ = writeln!(
        out,
        "  {:<w$}  {:>8}  {:>10}  {:>9}  worst",
        "candidate", "within", "cost/elem", "describe"
    );
    for f in ranked.iter().take(5) {
        let _ = writeln!(
            out,
            "  {:<w$}  {:>8}  {:>10.3}  {:>9.1}  {}",
            f.profile.name,
            share_percent(f.share),
            f.cost.residual / f.elements.max(1) as f64,
            f.cost.description,
            ranking_worst_text(f.worst)
        );
    }
    if ranked.len() > 5 {
        let _ = writeln!(out, "  … and {} more, ranked lower", ranked.len() - 5);
    }
    let _ = writeln!(
        out,
        "  (cost: bits of disagreement per element on the dtype's grid, the same scale for every candidate; describe: bits to state the candidate; worst: of the candidate's budget, inf where a non-finite value or a bit-exact copy differs)"
    );
    if !search.ties.is_empty() {
        let _ = writeln!(
            out,
            "  {} other candidate(s) fit every element as closely: these inputs cannot tell them apart",
            search.ties.len()
        );
        for t in search.ties.iter().take(8) {
            let why = match t.separating_input {
                Some(c) => format!(
                    "an input at c = {} (hex {}) would",
                    crate::compare::num(c),
                    hex(c)
                ),
                None => "no catalogue or kink input separates them".to_string(),
            };
            let _ = writeln!(out, "    {}: {why}", t.profile.name);
        }
        if search.ties.len() > 8 {
            let _ = writeln!(out, "    … and {} more", search.ties.len() - 8);
        }
    }
    let best = search.best();
    out.push_str(&point_text(best, &search.stated));
    let how = if best.fits_all() {
        format!(
            "every element within budget, worst {}",
            fraction_text(best.worst)
        )
    } else {
        format!("{} of elements within budget", share_percent(best.share))
    };
    let at = if best.overrides.is_empty() {
        String::new()
    } else {
        let o = best.overrides;
        let parts: Vec<String> = crate::verdict::fit::Param::ALL
            .into_iter()
            .filter_map(|w| {
                o.get(w)
                    .map(|v| format!("{} = {}", w.name(), crate::compare::num(v)))
            })
            .collect();
        format!(" at the fitted {}, not the stated value", parts.join(", "))
    };
    // The family constants (t, k, m′, λ: SPEC.md §11.5) whose fitted value explains elements
    // the stated one leaves out of budget. The candidates were scored at the stated values,
    // so these are named after the share, not as the point it was measured at.
    let family: Vec<String> = search
        .stated
        .fitted
        .iter()
        .filter(|f| {
            f.fails()
                && !crate::verdict::fit::Param::ALL
                    .into_iter()
                    .any(|w| w.name() == f.name)
        })
        .map(|f| {
            let v = format!("{:.6}", f.value);
            let v = v.trim_end_matches('0').trim_end_matches('.');
            format!("{} = {v}", f.name)
        })
        .collect();
    const SHOWN: usize = 3;
    let how = if family.is_empty() {
        how
    } else {
        let more = if family.len() > SHOWN {
            format!(", … ({} more)", family.len() - SHOWN)
        } else {
            String::new()
        };
        format!(
            "{how}; fitted where the stated value fails: {}{more}",
            family[..family.len().min(SHOWN)].join(", ")
        )
    };
    let _ = writeln!(out, "  => behaves like {}{at} ({how})\n", best.profile.name);
    out
}

/// The point found: each fitted constant, its uncertainty, the stated value and the
/// difference, one aligned row each.
fn point_text(best: &Fit, stated: &crate::verdict::fit::StatedFit) -> String {
    let mut rows: Vec<&crate::verdict::fit::Fitted> = stated.fitted.iter().collect();
    rows.extend(best.constants.iter());
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let _ = writeln!(out, "  point found (fitted constants):");
    let nw = rows.iter().map(|f| f.name.len()).max().unwrap_or(2).max(8);
    let _ = writeln!(
        out,
        "    {:<nw$}  {:>18}  {:>9}  {:>14}  {:>10}  verdict",
        "constant", "fitted", "±", "stated", "difference"
    );
    for f in rows {
        let (st, diff, word) = match f.stated {
            Some(s) => (
                crate::verdict::fit::plain(s, 12),
                crate::verdict::fit::sci(f.value - s),
                if f.fails() {
                    "DIFFERS"
                } else if f.differs() {
                    "note"
                } else {
                    "agrees"
                },
            ),
            None => ("-".into(), "-".into(), "describes the point"),
        };
        let _ = writeln!(
            out,
            "    {:<nw$}  {:>18}  {:>9}  {:>14}  {:>10}  {word}",
            f.name,
            crate::verdict::fit::plain(
                f.value,
                crate::verdict::fit::digits_for(f.value, f.uncertainty)
            ),
            crate::verdict::fit::sci(f.uncertainty),
            st,
            diff
        );
    }
    for f in stated.fitted.iter().filter(|f| f.fails()) {
        let _ = writeln!(out, "    {}", f.describe());
    }
    out
}

/// The search as JSON: the ranking (top ten), the ties, and the point found with every
/// fitted constant, its uncertainty, the stated value and the difference.
pub fn search_json(label: &str, search: &fingerprint::Search) -> serde_json::Value {
    let cand = |f: &Fit| {
        serde_json::json!({
            "profile": f.profile.name,
            "share_within_budget": f.share,
            "worst_fraction": if f.worst.is_finite() { serde_json::json!(f.worst) } else { serde_json::json!("inf") },
            "cost_bits": f.cost.residual,
            "description_bits": f.cost.description,
            "budget_bits": f.cost.budget,
            "elements": f.elements,
        })
    };
    let constant = |f: &crate::verdict::fit::Fitted| {
        serde_json::json!({
            "name": f.name,
            "fitted": f.value,
            "uncertainty": f.uncertainty,
            "stated": f.stated,
            "difference": f.stated.map(|s| f.value - s),
            "differs": f.differs(),
            "fails": f.fails(),
            "samples": f.samples,
            "text": f.describe(),
        })
    };
    let best = search.best();
    let mut constants: Vec<serde_json::Value> = search.stated.fitted.iter().map(constant).collect();
    constants.extend(best.constants.iter().map(constant));
    let mut v = serde_json::json!({
        "label": label,
        "candidates": search.ranked.len(),
        "ranking": search.ranked.iter().take(10).map(cand).collect::<Vec<_>>(),
        "ties": search.ties.iter().map(|t| t.profile.name.clone()).collect::<Vec<_>>(),
        "point": {
            "profile": best.profile.name,
            "fits_every_element": best.fits_all(),
            "constants": constants,
        },
    });
    // Only where a case was searched on a subset of its rows (SPEC.md §8.5): per case, the
    // rows scored (null: all of them).
    if search.scored_rows.iter().any(Option::is_some) {
        v["scored_rows"] = search
            .scored_rows
            .iter()
            .map(|sr| {
                sr.as_ref()
                    .map(|sr| serde_json::json!({"rows": sr.rows, "n": sr.n}))
            })
            .collect();
    }
    v
}

/// An f64's bits in hex, as `0x3fe0000000000000`.
fn hex(x: f64) -> String {
    format!("{:#018x}", x.to_bits())
}

/// The fingerprint of `cases` per parameter group (per case where a group's cases take
/// different code paths): the searches' text, each case's profile, and every search's JSON.
pub fn fingerprint_groups(
    file: &str,
    cases: &[LayerCase],
    dtype: Dtype,
) -> Result<(String, Vec<Profile>, Vec<serde_json::Value>), String> {
    let groups = fingerprint::group_indices(cases);
    let mut text = String::new();
    let mut json = Vec::new();
    let mut per_case: Vec<Option<Profile>> = vec![None; cases.len()];
    for (p, ix) in &groups {
        let group: Vec<LayerCase> = ix.iter().map(|&i| cases[i].clone()).collect();
        let label = if groups.len() == 1 {
            file.to_string()
        } else {
            format!("{file} [{p}, {} case(s)]", group.len())
        };
        let search = fingerprint::search(&group, dtype).map_err(|e| format!("{label}: {e}"))?;
        let split = fingerprint::cases_disagree(&group, search.best(), dtype)
            .map_err(|e| format!("{label}: {e}"))?;
        match split {
            Some(per) => {
                let _ = writeln!(
                    text,
                    "{label}: no candidate fits these {} cases together, and each fits alone: the cases take different code paths under the same parameters; reported per case",
                    group.len()
                );
                for (k, s) in ix.iter().zip(per) {
                    let l = format!("{label} case {:?}", cases[*k].name);
                    text.push_str(&search_text(&l, &s));
                    json.push(search_json(&l, &s));
                    per_case[*k] = Some(s.best().profile.clone());
                }
            }
            None => {
                text.push_str(&search_text(&label, &search));
                json.push(search_json(&label, &search));
                for &k in ix {
                    per_case[k] = Some(search.best().profile.clone());
                }
            }
        }
    }
    let per_case = per_case
        .into_iter()
        .map(|p| p.expect("every case is in a group"))
        .collect();
    Ok((text, per_case, json))
}

#[cfg(test)]
mod tests {
    use super::share_percent;

    #[test]
    fn a_share_reads_as_all_or_none_only_when_it_is() {
        assert_eq!(share_percent(1.0), "100.000%");
        assert_eq!(share_percent(46_298_698.0 / 46_298_880.0), ">99.999%");
        assert_eq!(share_percent(0.999_99), "99.999%");
        assert_eq!(share_percent(0.5), "50.000%");
        assert_eq!(share_percent(1.0 / 46_298_880.0), "<0.001%");
        assert_eq!(share_percent(0.0), "0.000%");
    }
}
