//! One dump, checked end to end (SPEC.md §6.6): each case classified ([`crate::scope`]), its
//! profile chosen (given, mapped, or fingerprinted), and checked: a combined-margin case on its
//! layer view ([`deviation::check_raw`]), a loss-only case on its loss and `d_cos`
//! ([`loss_only`]); the others are listed as not checked.
//!
//! With no profile given, a file whose implementation maps to no preset (SPEC.md §6.1) is
//! fingerprinted exactly as `--profile auto` does, and the text says so: never a refusal.
//! `cmargin check FILE` and the conformance matrix both go through [`check_file`].

use crate::compare::fraction_text;
use crate::deviation::{self, CaseCheck};
use crate::fixture::{Dump, FixtureError, RawCase};
use crate::loss_only::{self, LossOnlyCase};
use crate::params::Params;
use crate::profile::{mapped_profile, Profile};
use crate::report;
use crate::scope::{self, Outcome, Scope};
use std::fmt::Write as _;

/// How the profile of each case is chosen.
#[derive(Clone, Debug)]
pub enum Choice {
    /// The profile SPEC.md §6.1 maps the implementation to; fingerprinted where none is.
    Mapped,
    /// `--profile auto`: fingerprinted.
    Auto,
    /// One profile for every case.
    Named(Profile),
}

/// A checked file.
#[derive(Clone, Debug)]
pub struct FileCheck {
    /// One outcome per case, in file order.
    pub outcomes: Vec<Outcome>,
    /// What to print before the per-case report: the mapping notice and the fingerprint
    /// searches (empty for a mapped or named profile).
    pub text: String,
    /// Whether the profiles came from a fingerprint (auto, or no mapping).
    pub fingerprinted: bool,
    /// Every combined-margin search as JSON ([`report::search_json`]: the ranking and the
    /// point found with its fitted constants), for `check --fit-json`.
    pub searches: Vec<serde_json::Value>,
}

impl FileCheck {
    /// The checked cases, in file order.
    pub fn checks(&self) -> impl Iterator<Item = &CaseCheck> {
        self.outcomes.iter().filter_map(Outcome::checked)
    }
}

/// The notice printed when no profile is mapped (SPEC.md §6.1).
pub fn unmapped_notice(file: &str, implementation: &str) -> String {
    format!(
        "{file}: no profile is mapped to implementation {implementation:?} (SPEC.md §6.1): fingerprinted as --profile auto does (pass --profile NAME to check against a preset)\n"
    )
}

/// Checks every case of `dump` (see the module doc). Errors are bad input, located by file,
/// case and field.
pub fn check_file(dump: &Dump, choice: &Choice) -> Result<FileCheck, String> {
    let mut scopes: Vec<Scope> = dump
        .cases
        .iter()
        .map(|raw| scope::classify(dump.kind, &dump.implementation, raw))
        .collect::<Result<_, FixtureError>>()
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    let mut fingerprinted = false;
    let mut searches = Vec::new();
    let mut profiles: Vec<Option<Profile>> = vec![None; dump.cases.len()];
    match choice {
        Choice::Named(p) => {
            for (slot, sc) in profiles.iter_mut().zip(&scopes) {
                if sc.modelled() {
                    *slot = Some(p.clone());
                }
            }
        }
        Choice::Mapped | Choice::Auto => {
            let mut all_mapped = matches!(choice, Choice::Mapped);
            if all_mapped {
                for (i, (raw, sc)) in dump.cases.iter().zip(&scopes).enumerate() {
                    let easy = match sc {
                        Scope::CombinedMargin => {
                            dump.layer_view(raw).map_err(|e| e.to_string())?.easy_margin
                        }
                        Scope::LossOnly => None,
                        Scope::NotModelledYet(_) | Scope::NotCombinedMargin(_) => continue,
                    };
                    profiles[i] = mapped_profile(&dump.implementation, easy);
                    all_mapped &= profiles[i].is_some();
                }
                if !all_mapped {
                    text.push_str(&unmapped_notice(&dump.file, &dump.implementation));
                }
            }
            if !all_mapped {
                fingerprinted = true;
                // The fingerprint fits one (m1, m2, m3) per case: a case with per-row margins
                // is checked under the mapped profile, or not at all (SPEC.md §11.1).
                for (i, raw) in dump.cases.iter().enumerate() {
                    if scopes[i] == Scope::CombinedMargin && has_per_row_margins(raw) {
                        profiles[i] = mapped_profile(&dump.implementation, None);
                        let line = match &profiles[i] {
                            Some(p) => format!(
                                "{}: case {:?}: per-row margins: checked under the mapped profile {} (the fingerprint fits one (m1, m2, m3) per case)\n",
                                dump.file, raw.name, p.name
                            ),
                            None => {
                                scopes[i] = Scope::NotModelledYet(
                                    "per-row margins under the fingerprint (it fits one (m1, m2, m3) per case; pass --profile NAME)".into(),
                                );
                                String::new()
                            }
                        };
                        text.push_str(&line);
                    }
                }
                text.push_str(&fingerprint(dump, &scopes, &mut profiles, &mut searches)?);
            }
        }
    }
    // Per-row margins that follow a law (SPEC.md §11.7): what the rows say about the head's
    // own constants, one line per case; the verdict is the check's alone.
    for (raw, sc) in dump.cases.iter().zip(&scopes) {
        if *sc == Scope::CombinedMargin && has_per_row_margins(raw) {
            text.push_str(&row_law_line(dump, raw)?);
        }
    }
    let mut outcomes = Vec::with_capacity(dump.cases.len());
    for ((raw, sc), prof) in dump.cases.iter().zip(scopes).zip(profiles) {
        let outcome = match (&sc, prof) {
            (Scope::CombinedMargin, Some(p)) => Outcome::Checked(Box::new(
                deviation::check_raw(dump, raw, Some(&p)).map_err(|e| e.to_string())?,
            )),
            (Scope::LossOnly, Some(p)) => {
                let case = loss_only::read(raw, dump.dtype).map_err(|e| e.to_string())?;
                Outcome::Checked(Box::new(check_loss_only(dump, raw, &case, &p)?))
            }
            _ => Outcome::NotChecked {
                name: raw.name.clone(),
                scope: sc,
            },
        };
        outcomes.push(outcome);
    }
    Ok(FileCheck {
        outcomes,
        text,
        fingerprinted,
        searches,
    })
}

/// The line of [`crate::verdict::family_fit::adaface_law`] for a case with per-row margins
/// (empty where the case states no law's constants).
fn row_law_line(dump: &Dump, raw: &RawCase) -> Result<String, String> {
    let case = dump.layer_view(raw).map_err(|e| e.to_string())?;
    let law = crate::verdict::family_fit::adaface_law(raw, &case, dump.dtype)
        .map_err(|e| e.to_string())?;
    let Some(law) = law else {
        return Ok(String::new());
    };
    let fits: Vec<String> = law.fits.iter().map(|f| f.describe()).collect();
    let outside = &law.outside;
    let outside = if outside.is_empty() {
        String::new()
    } else {
        format!("; rows {outside:?} have no ẑ in [−1, 1] (or m1 ≠ 1): outside the law")
    };
    Ok(format!(
        "{}: case {:?}: per-row margins against AdaFace's law (g_angle = −m·ẑ, g_add = m + m·ẑ, ẑ = clip(h·(‖x‖ − μ)/(σ + ε), −1, 1)): {}{outside}\n",
        dump.file,
        raw.name,
        fits.join("; ")
    ))
}

fn check_loss_only(
    dump: &Dump,
    raw: &RawCase,
    case: &LossOnlyCase,
    p: &Profile,
) -> Result<CaseCheck, String> {
    loss_only::check(case, p, dump.dtype).map_err(|e| {
        FixtureError::new(&dump.file, e.to_string())
            .in_case(&raw.name)
            .in_field("cases")
            .to_string()
    })
}

/// Fingerprints the modelled cases of `dump` and fills in their profiles: the combined-margin
/// cases by [`report::fingerprint_groups`], the loss-only ones per parameter set by
/// [`loss_only::rank`]. Returns the searches' text; the combined-margin searches' JSON goes
/// to `searches`.
fn fingerprint(
    dump: &Dump,
    scopes: &[Scope],
    profiles: &mut [Option<Profile>],
    searches: &mut Vec<serde_json::Value>,
) -> Result<String, String> {
    let mut text = String::new();
    let cm: Vec<usize> = (0..scopes.len())
        .filter(|&i| scopes[i] == Scope::CombinedMargin && !has_per_row_margins(&dump.cases[i]))
        .collect();
    if !cm.is_empty() {
        let cases = cm
            .iter()
            .map(|&i| dump.layer_view(&dump.cases[i]))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let (t, per_case, json) = report::fingerprint_groups(&dump.file, &cases, dump.dtype)?;
        text.push_str(&t);
        searches.extend(json);
        for (&i, p) in cm.iter().zip(per_case) {
            profiles[i] = Some(p);
        }
    }
    let lo: Vec<usize> = (0..scopes.len())
        .filter(|&i| scopes[i] == Scope::LossOnly)
        .collect();
    if !lo.is_empty() {
        let cases = lo
            .iter()
            .map(|&i| loss_only::read(&dump.cases[i], dump.dtype))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let mut groups: Vec<(Params, Vec<usize>)> = Vec::new();
        for (k, c) in cases.iter().enumerate() {
            match groups.iter_mut().find(|(p, _)| *p == c.params) {
                Some((_, v)) => v.push(k),
                None => groups.push((c.params, vec![k])),
            }
        }
        for (p, members) in &groups {
            let group: Vec<LossOnlyCase> = members.iter().map(|&k| cases[k].clone()).collect();
            let label = if groups.len() == 1 {
                dump.file.clone()
            } else {
                format!("{} [{p}, {} case(s)]", dump.file, group.len())
            };
            let ranked = loss_only::rank(&group, dump.dtype);
            text.push_str(&loss_only_search_text(&label, &ranked));
            if let Some(best) = ranked.first() {
                for &k in members {
                    profiles[lo[k]] = Some(best.profile.clone());
                }
            }
        }
    }
    Ok(text)
}

/// The text of a loss-only search: the top five and the verdict line.
fn loss_only_search_text(label: &str, ranked: &[loss_only::LossFit]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{label}: loss-only fingerprint over {} candidate profiles (the presets and their one-axis neighbours), on the loss and d_cos",
        ranked.len()
    );
    report::ranking_rows(
        &mut out,
        ranked
            .iter()
            .map(|f| (f.profile.name.as_str(), f.share, f.worst)),
        "within budget",
    );
    if let Some(best) = ranked.first() {
        let how = if best.share == 1.0 {
            format!(
                "every value within budget, worst {}",
                fraction_text(best.worst)
            )
        } else {
            format!(
                "{} of values within budget",
                crate::report::share_percent(best.share)
            )
        };
        let _ = writeln!(out, "  => behaves like {} ({how})\n", best.profile.name);
    }
    out
}

/// Whether any of the case's `params.m1`, `m2`, `m3` is an array (per-row margins).
pub fn has_per_row_margins(raw: &RawCase) -> bool {
    raw.obj
        .get("params")
        .and_then(serde_json::Value::as_object)
        .is_some_and(|p| {
            ["m1", "m2", "m3"]
                .iter()
                .any(|k| p.get(*k).is_some_and(serde_json::Value::is_array))
        })
}
