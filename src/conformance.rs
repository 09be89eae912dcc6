//! Conformance of the golden dumps: the expected-deviations table and the matrix.
//!
//! One implementation, used by `cmargin check` (no file: the matrix) and by `tests/golden.rs`:
//! every case of every dump is checked under the profile SPEC.md §6 maps its implementation to,
//! or fingerprinted where none is ([`filecheck::check_file`], which also sets aside the cases
//! that are not modelled, §6.6), the detected deviations are compared with the table
//! (`fixtures/golden/expected_deviations.json`), and each preset's pass count is tabulated.

use crate::compare;
use crate::deviation::{CaseCheck, Kind};
use crate::dtype::Dtype;
use crate::embedded;
use crate::filecheck::{self, Choice};
use crate::fixture::{read_dump, read_dump_str, Dump, FixtureError, Limits};
use crate::loss_only;
use crate::profile::{preset_names, Profile};
use crate::scope::{self, Outcome, Scope};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The format tag of the expected-deviations table.
pub const EXPECTED_FORMAT: &str = "expected-deviations/1";

/// The name of the expected-deviations table inside the golden directory.
pub const EXPECTED_FILE: &str = "expected_deviations.json";

/// The table of expected deviations of the shipped golden dumps.
#[derive(Clone, Debug, Deserialize)]
pub struct Expected {
    pub format: String,
    #[serde(rename = "expected")]
    pub entries: Vec<ExpectedEntry>,
    /// Cases whose out-of-budget elements no detector names yet, awaiting a form of the
    /// policy space (SPEC.md §6.3): exact counts, so that a new form that explains them makes
    /// the entry stale.
    #[serde(default)]
    pub unexplained: Vec<UnexplainedEntry>,
}

/// One row of the `unexplained` list: in `file`, every case matching one of `cases` has
/// exactly `elements` out-of-budget elements with no named cause, because `why`.
#[derive(Clone, Debug, Deserialize)]
pub struct UnexplainedEntry {
    pub file: String,
    pub cases: Vec<String>,
    pub elements: usize,
    pub why: String,
}

/// One row: in `file`, every case matching one of `cases` shows `deviation`, because `why`.
#[derive(Clone, Debug, Deserialize)]
pub struct ExpectedEntry {
    /// Path relative to `fixtures/golden/`, with `/` separators.
    pub file: String,
    /// Case-name patterns; `*` matches any run of characters.
    pub cases: Vec<String>,
    #[serde(deserialize_with = "kind_by_name")]
    pub deviation: Kind,
    pub why: String,
}

fn kind_by_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
    let name = String::deserialize(d)?;
    Kind::parse(&name)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown deviation {name:?}")))
}

impl Expected {
    pub fn load(path: &Path) -> Result<Expected, FixtureError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| FixtureError::new(&file, format!("cannot read: {e}")))?;
        Expected::parse(&file, &text)
    }

    /// Parses the table; an error names the field path (`expected[3].deviation`).
    pub fn parse(file: &str, text: &str) -> Result<Expected, FixtureError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let t: Expected = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            FixtureError::new(file, e.into_inner().to_string()).in_field(&field)
        })?;
        if t.format != EXPECTED_FORMAT {
            return Err(
                FixtureError::new(file, format!("expected {EXPECTED_FORMAT:?}")).in_field("format"),
            );
        }
        Ok(t)
    }

    /// The deviations expected for `case` of `file` (relative to `fixtures/golden/`).
    pub fn kinds_for(&self, file: &str, case: &str) -> Vec<Kind> {
        let set: BTreeSet<Kind> = self
            .entries
            .iter()
            .filter(|e| e.file == file && e.cases.iter().any(|p| glob_match(p, case)))
            .map(|e| e.deviation)
            .collect();
        set.into_iter().collect()
    }
}

/// `*`-only glob matching (no other metacharacters).
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Every golden dump under `dir` (`*.json` except the expected-deviations table), as
/// (path relative to `dir` with `/` separators, full path), sorted by relative path.
pub fn golden_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json")
                && path.file_name().is_some_and(|n| n != EXPECTED_FILE)
            {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The embedded golden dumps: every `*.json` of [`embedded::FILES`] except the
/// expected-deviations table, as (relative path, bytes), sorted by path (the order
/// [`golden_files`] gives).
pub fn embedded_dumps() -> Vec<(&'static str, &'static [u8])> {
    embedded::FILES
        .iter()
        .filter(|(rel, _)| rel.ends_with(".json") && rel.rsplit('/').next() != Some(EXPECTED_FILE))
        .copied()
        .collect()
}

/// The embedded expected-deviations table, if the golden directory had one at build time.
pub fn embedded_expected() -> Option<&'static [u8]> {
    embedded::FILES
        .iter()
        .find(|(rel, _)| *rel == EXPECTED_FILE)
        .map(|(_, b)| *b)
}

/// The golden dumps to tabulate and their expected-deviations table.
pub struct GoldenSet {
    /// Where they come from, for the heading.
    pub place: String,
    /// (path relative to the golden directory, dump), sorted by path.
    pub dumps: Vec<(String, Dump)>,
    pub expected: Expected,
}

/// The golden dumps in `dir`, or the ones embedded in the binary ([`embedded`]).
pub fn golden_set(dir: Option<&Path>) -> Result<GoldenSet, String> {
    let Some(dir) = dir else {
        let mut dumps = Vec::new();
        for (rel, bytes) in embedded_dumps() {
            let label = embedded::label(rel);
            let text =
                std::str::from_utf8(bytes).map_err(|_| format!("{label}: not UTF-8 text"))?;
            dumps.push((
                rel.to_string(),
                read_dump_str(&label, text, Limits::default()).map_err(|e| e.to_string())?,
            ));
        }
        let label = embedded::label(EXPECTED_FILE);
        let text = embedded_expected()
            .ok_or_else(|| format!("{label}: missing"))
            .and_then(|b| std::str::from_utf8(b).map_err(|_| format!("{label}: not UTF-8 text")))?;
        let expected = Expected::parse(&label, text).map_err(|e| e.to_string())?;
        return Ok(GoldenSet {
            place: "embedded in this binary (fixtures/golden at build time)".into(),
            dumps,
            expected,
        });
    };
    let files = golden_files(dir)
        .map_err(|e| format!("{}: cannot list the golden dumps: {e}", dir.display()))?;
    let mut dumps = Vec::new();
    for (rel, path) in files {
        dumps.push((
            rel,
            read_dump(&path, Limits::default()).map_err(|e| e.to_string())?,
        ));
    }
    let expected = Expected::load(&dir.join(EXPECTED_FILE)).map_err(|e| e.to_string())?;
    Ok(GoldenSet {
        place: format!("in {}", dir.display()),
        dumps,
        expected,
    })
}

/// One dump's row of the matrix.
pub struct FileConformance {
    pub rel: String,
    pub implementation: String,
    pub dtype: Dtype,
    /// Every checked case under its mapped (or, where none is mapped, fingerprinted) profile.
    pub checks: Vec<CaseCheck>,
    /// Cases not checked (SPEC.md §6.6): name and scope.
    pub not_checked: Vec<(String, Scope)>,
    /// No profile is mapped to the implementation: the profiles are the fingerprint's.
    pub fingerprinted: bool,
    /// Cases within budget under each preset, in preset order.
    pub preset_passes: Vec<usize>,
    /// Detected kinds and in how many cases.
    pub kinds: BTreeMap<Kind, usize>,
    /// Cases whose detected kinds differ from the table, or with unexplained elements.
    pub surprises: Vec<String>,
    /// Cases whose unexplained elements the table's `unexplained` list expects (a form the
    /// space does not have yet), one line each.
    pub awaiting: Vec<String>,
}

impl FileConformance {
    pub fn status(&self) -> String {
        let base = if !self.surprises.is_empty() {
            format!("UNEXPECTED ({})", self.surprises.len())
        } else if self.checks.is_empty() {
            // Nothing checked: say why (the first case's scope stands for the file's).
            return match self.not_checked.first().map(|(_, s)| s) {
                Some(Scope::NotCombinedMargin(_)) => "not modelled (not a combined margin)".into(),
                _ => "not modelled yet (issue 17)".into(),
            };
        } else if self.kinds.is_empty() && self.awaiting.is_empty() {
            "conforms".into()
        } else {
            "expected deviations".into()
        };
        let mut notes = Vec::new();
        if !self.awaiting.is_empty() {
            notes.push(format!("{} awaiting a form", self.awaiting.len()));
        }
        if self.fingerprinted {
            notes.push("fingerprinted".to_string());
        }
        if !self.not_checked.is_empty() {
            notes.push(format!("{} not checked", self.not_checked.len()));
        }
        if notes.is_empty() {
            base
        } else {
            format!("{base} ({})", notes.join(", "))
        }
    }
}

/// The conformance of a golden set.
pub struct Conformance {
    pub place: String,
    pub files: Vec<FileConformance>,
    /// Table entries that matched no detected deviation (stale rows).
    pub stale: Vec<String>,
}

impl Conformance {
    /// Every case agrees or shows exactly its expected, named deviations, and every table row
    /// is still detected.
    pub fn all_ok(&self) -> bool {
        self.stale.is_empty() && self.files.iter().all(|f| f.surprises.is_empty())
    }
}

/// Checks every dump of `set` (see the module doc).
pub fn run(set: &GoldenSet) -> Result<Conformance, String> {
    let presets = Profile::presets();
    let mut used = vec![false; set.expected.entries.len()];
    let mut used_unexplained = vec![false; set.expected.unexplained.len()];
    let mut files = Vec::new();
    for (rel, dump) in &set.dumps {
        let fc = filecheck::check_file(dump, &Choice::Mapped)?;
        let mut preset_passes = vec![0; presets.len()];
        for (raw, oc) in dump.cases.iter().zip(&fc.outcomes) {
            let Outcome::Checked(ck) = oc else { continue };
            let loss_only = !ck.report.scalars.is_empty()
                || scope::classify(dump.kind, &dump.implementation, raw)
                    .map_err(|e| e.to_string())?
                    == Scope::LossOnly;
            for (pass, prof) in preset_passes.iter_mut().zip(&presets) {
                // A preset whose label policy refuses a label of the case does not pass it.
                let passed = if loss_only {
                    let case = loss_only::read(raw, dump.dtype).map_err(|e| e.to_string())?;
                    loss_only::compare(&case, prof, dump.dtype).is_ok_and(|(_, r)| r.passed())
                } else {
                    let case = dump.layer_view(raw).map_err(|e| e.to_string())?;
                    compare::compare(&case, prof, dump.dtype).is_ok_and(|r| r.passed())
                };
                *pass += usize::from(passed);
            }
        }
        let not_checked: Vec<(String, Scope)> = fc
            .outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::NotChecked { name, scope } => Some((name.clone(), scope.clone())),
                Outcome::Checked(_) => None,
            })
            .collect();
        let fingerprinted = fc.fingerprinted;
        let checks: Vec<CaseCheck> = fc.checks().cloned().collect();
        let mut kinds: BTreeMap<Kind, usize> = BTreeMap::new();
        let mut surprises = Vec::new();
        let mut awaiting = Vec::new();
        for ck in &checks {
            let name = &ck.report.name;
            let got = ck.kinds();
            for k in &got {
                *kinds.entry(*k).or_default() += 1;
            }
            for (i, e) in set.expected.entries.iter().enumerate() {
                if e.file == *rel
                    && e.cases.iter().any(|p| glob_match(p, name))
                    && got.contains(&e.deviation)
                {
                    used[i] = true;
                }
            }
            let want = set.expected.kinds_for(rel, name);
            if got != want {
                surprises.push(format!(
                    "{name}: detected [{}], expected [{}]",
                    got.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "),
                    want.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
                ));
            }
            let awaited = set.expected.unexplained.iter().position(|u| {
                u.file == *rel
                    && u.cases.iter().any(|p| glob_match(p, name))
                    && u.elements == ck.unexplained.len()
            });
            if let Some(i) = awaited {
                used_unexplained[i] = true;
                if !ck.unexplained.is_empty() {
                    awaiting.push(format!(
                        "{name}: {} out-of-budget element(s) with no named cause, awaiting a form ({EXPECTED_FILE}, unexplained)",
                        ck.unexplained.len()
                    ));
                }
            } else if !ck.unexplained.is_empty() {
                surprises.push(format!(
                    "{name}: {} out-of-budget element(s) with no named cause; worst {}",
                    ck.unexplained.len(),
                    ck.report.describe(&ck.unexplained[0])
                ));
            }
        }
        files.push(FileConformance {
            rel: rel.clone(),
            implementation: dump.implementation.clone(),
            dtype: dump.dtype,
            checks,
            not_checked,
            fingerprinted,
            preset_passes,
            kinds,
            surprises,
            awaiting,
        });
    }
    let stale = set
        .expected
        .entries
        .iter()
        .zip(&used)
        .enumerate()
        .filter(|(_, (_, u))| !**u)
        .map(|(i, (e, _))| {
            format!(
                "{EXPECTED_FILE} entry {i} ({} {:?} {}) matched no detection: the deviation is no longer detected",
                e.file, e.cases, e.deviation
            )
        })
        .chain(
            set.expected
                .unexplained
                .iter()
                .zip(&used_unexplained)
                .enumerate()
                .filter(|(_, (_, u))| !**u)
                .map(|(i, (e, _))| {
                    format!(
                        "{EXPECTED_FILE} unexplained entry {i} ({} {:?}: {} element(s)) matched no case: a form now explains them, or the count changed",
                        e.file, e.cases, e.elements
                    )
                }),
        )
        .collect();
    Ok(Conformance {
        place: set.place.clone(),
        files,
        stale,
    })
}

/// Shortens an implementation string to the last component of its name, with what follows
/// the first `@` kept whole ("CombinedMarginLoss@9097cd7", "ArcFace@22.4": a version's dots
/// are not name separators).
fn short_impl(s: &str) -> String {
    let (name, version) = match s.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (s, None),
    };
    let last = name.rsplit(['.', ':', '/']).next().unwrap_or(name);
    match version {
        Some(v) => format!("{last}@{v}"),
        None => last.to_string(),
    }
}

/// The matrix as `cmargin check` prints it.
pub fn matrix_text(c: &Conformance) -> String {
    let mut header: Vec<String> = ["file", "implementation", "dtype", "cases"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(preset_names().map(|s| s.to_string()));
    header.push("status".into());
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for f in &c.files {
        let mapped: Vec<&str> = f
            .checks
            .iter()
            .map(|ck| ck.report.profile.name.as_str())
            .collect();
        let mut row = vec![
            f.rel.clone(),
            short_impl(&f.implementation),
            f.dtype.to_string(),
            (f.checks.len() + f.not_checked.len()).to_string(),
        ];
        for (name, pass) in preset_names().zip(&f.preset_passes) {
            let star = if mapped.contains(&name) { "*" } else { "" };
            row.push(if f.checks.is_empty() {
                "-".to_string()
            } else {
                format!("{pass}/{}{star}", f.checks.len())
            });
        }
        row.push(f.status());
        rows.push(row);
        if !f.kinds.is_empty() {
            notes.push(format!(
                "{}: {}",
                f.rel,
                f.kinds
                    .iter()
                    .map(|(k, n)| format!("{k} ({n} case{})", if *n == 1 { "" } else { "s" }))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some((_, scope)) = f.not_checked.first() {
            notes.push(format!(
                "{}: {} case(s) not checked: {}",
                f.rel,
                f.not_checked.len(),
                scope.line()
            ));
        }
        for a in &f.awaiting {
            notes.push(format!("{}: {a}", f.rel));
        }
        for s in &f.surprises {
            notes.push(format!("{}: UNEXPECTED: {s}", f.rel));
        }
    }
    notes.extend(c.stale.iter().map(|s| format!("UNEXPECTED: {s}")));
    let mut out = String::new();
    let _ = writeln!(out, "Conformance of the golden dumps {}", c.place);
    let _ = writeln!(out, "Cells: cases within budget under each profile (of the checked cases; - where none is checked, SPEC.md §6.6); * marks the profile SPEC.md §6 maps the implementation to.\n");
    out.push_str(&table(&header, &rows));
    let _ = writeln!(
        out,
        "\nDeviations detected under the mapped profile (SPEC.md §6; expected ones are listed in {EXPECTED_FILE}):"
    );
    for n in &notes {
        let _ = writeln!(out, "  {n}");
    }
    let _ = writeln!(
        out,
        "\n{}",
        if c.all_ok() {
            "Every case agrees within budget or shows exactly its expected, named deviations."
        } else {
            "Some cases do not match the expected-deviation table (see UNEXPECTED above)."
        }
    );
    out
}

/// An aligned text table: text columns left, count columns right.
fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let w: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i >= 3 && i < cells.len() - 1 {
                s.push_str(&format!("{:>width$}  ", c, width = w[i]));
            } else {
                s.push_str(&format!("{:<width$}  ", c, width = w[i]));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header);
    line(&w.iter().map(|&n| "-".repeat(n)).collect::<Vec<_>>());
    for r in rows {
        line(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("*_edges_*", "arcface_edges_n28_c5"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXcYb"));
        assert!(!glob_match("*_edges_*", "arcface_random_n16_c10"));
        assert!(glob_match("exact", "exact"));
        assert_eq!(
            short_impl("catalyst.contrib.layers.ArcFace@22.4"),
            "ArcFace@22.4"
        );
        assert_eq!(
            short_impl("arcface_torch.losses.CombinedMarginLoss@9097cd7"),
            "CombinedMarginLoss@9097cd7"
        );
        assert_eq!(short_impl("caffe-cpu"), "caffe-cpu");
        assert!(!glob_match("exact", "exact2"));
    }
}
