//! The text of `cmargin check`'s per-file report and of its `--profile auto` ranking.
//!
//! One formatter, so that the CLI and the Python package (`python/`, `Report.__str__`) print
//! the same words for the same check. Pure formatting: every number comes from
//! [`crate::deviation`] and [`crate::fingerprint`].

use crate::compare::{fraction_text, CaseReport};
use crate::deviation::{CaseCheck, Kind, Verdict};
use crate::dtype::Dtype;
use crate::fingerprint::{self, Fit};
use crate::fixture::LayerCase;
use crate::profile::Profile;
use std::fmt::Write;

/// The worst element of a comparison as one line, or "no elements".
pub fn worst_line(r: &CaseReport) -> String {
    match r.worst() {
        Some(e) => r.describe(e),
        None => "no elements".into(),
    }
}

/// One file's per-case report (verdict, count within budget, worst element, deviations) and
/// whether every case is accepted: within budget with every deviation in `allowed`.
pub fn file_report(
    file: &str,
    implementation: &str,
    dtype: Dtype,
    checks: &[CaseCheck],
    allowed: &[Kind],
    verbose: bool,
) -> (String, bool) {
    let mut out = String::new();
    // Writing into a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        out,
        "{file}  ({implementation}, {dtype}, {} cases)",
        checks.len()
    );
    let w = checks
        .iter()
        .map(|c| c.report.name.len())
        .max()
        .unwrap_or(4);
    let pw = checks
        .iter()
        .map(|c| c.report.profile.name.len())
        .max()
        .unwrap_or(7);
    let (mut pass, mut dev, mut fail, mut accepted) = (0, 0, 0, 0);
    for ck in checks {
        let r = &ck.report;
        let v = ck.verdict();
        match v {
            Verdict::Pass => pass += 1,
            Verdict::Deviates => dev += 1,
            Verdict::Fail => fail += 1,
        }
        let ok = v == Verdict::Pass || ck.accepted_with(allowed);
        if ok {
            accepted += 1;
        }
        let _ = writeln!(
            out,
            "  {:<8} {:<w$}  {:<pw$}  {:>6}/{:<6} within budget, max {}",
            v.name(),
            r.name,
            r.profile.name,
            r.within(),
            r.count(),
            fraction_text(r.max_fraction()),
        );
        let _ = writeln!(out, "  {:<8} worst: {}", "", worst_line(r));
        for d in &ck.deviations {
            let mark = if allowed.contains(&d.kind) {
                " (allowed)"
            } else {
                ""
            };
            if verbose {
                let _ = writeln!(out, "  {:<8} deviation {}{mark}: {}", "", d.kind, d.detail);
            } else {
                let _ = writeln!(out, "  {:<8} deviation {}{mark}", "", d.kind);
            }
        }
        if !ck.unexplained.is_empty() {
            let _ = writeln!(
                out,
                "  {:<8} {} out-of-budget element(s) with no named cause",
                "",
                ck.unexplained.len()
            );
            if verbose {
                for e in ck.unexplained.iter().take(5) {
                    let _ = writeln!(out, "  {:<8}   {}", "", r.describe(e));
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "  summary: {pass} pass, {dev} deviate, {fail} fail; {accepted} of {} accepted{}",
        checks.len(),
        if allowed.is_empty() {
            String::new()
        } else {
            format!(
                " (allowing {})",
                allowed
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
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

/// The text of one search (see [`fingerprint_report`]).
fn search_text(label: &str, search: &fingerprint::Search) -> String {
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
    let w = ranked
        .iter()
        .take(5)
        .map(|f| f.profile.name.len())
        .max()
        .unwrap_or(8);
    for f in ranked.iter().take(5) {
        let _ = writeln!(
            out,
            "  {:<w$}  {:>7.3}% of elements within budget, worst {}",
            f.profile.name,
            100.0 * f.share,
            fraction_text(f.worst)
        );
    }
    if !search.ties.is_empty() {
        let _ = writeln!(
            out,
            "  {} other candidate(s) fit every element: these inputs cannot tell them apart",
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
    let how = if best.share == 1.0 {
        format!(
            "every element within budget, worst {}",
            fraction_text(best.worst)
        )
    } else {
        format!("{:.3}% of elements within budget", 100.0 * best.share)
    };
    let _ = writeln!(out, "  => behaves like {} ({how})\n", best.profile.name);
    out
}

/// An f64's bits in hex, as `0x3fe0000000000000`.
fn hex(x: f64) -> String {
    format!("{:#018x}", x.to_bits())
}

/// `--profile auto` for a file that may mix code paths: the cases are grouped by parameter
/// set and each group is searched on its own. Returns the text and a profile per case.
pub fn fingerprint_groups_report(
    file: &str,
    cases: &[LayerCase],
    dtype: Dtype,
) -> Result<(String, Vec<Profile>), String> {
    let groups = fingerprint::groups(cases);
    let mut text = String::new();
    let mut per_group = Vec::new();
    for (p, group) in &groups {
        let label = if groups.len() == 1 {
            file.to_string()
        } else {
            format!("{file} [{p}, {} case(s)]", group.len())
        };
        let search = fingerprint::search(group, dtype).map_err(|e| format!("{label}: {e}"))?;
        text.push_str(&search_text(&label, &search));
        per_group.push((*p, search.best().profile.clone()));
    }
    let per_case = cases
        .iter()
        .map(|c| {
            let p = crate::compare::output_params(c);
            per_group
                .iter()
                .find(|(q, _)| *q == p)
                .map(|(_, prof)| prof.clone())
                .expect("every case is in a group")
        })
        .collect();
    Ok((text, per_case))
}
