//! `cmargin check`: an implementation's outputs against the reference (SPEC.md §5, §6).
//!
//! With files: one report per case (verdict, worst element as a fraction of its budget, with
//! its input, label and region; the named deviations). With `--profile auto`: which preset
//! (or policy variant) the implementation behaves like, ranked. With no file: every shipped
//! golden dump, as a conformance matrix checked against `expected_deviations.json`.
//!
//! Every case gets one verdict word, and the words, the summary and the exit code agree:
//! PASS and ALLOWED (deviations accepted by `--allow`) are accepted (exit 0 when every case
//! is); DEVIATES, FAIL and MISSING (a side `--require` asks for has no outputs) are not (1).
//! NOT CHECKED (a head that is not a combined margin, a family not modelled yet; SPEC.md
//! §6.6) is neither: it is counted apart and never read as a pass. With no `--profile`, a
//! file whose implementation maps to no preset is fingerprinted, never refused.

use combined_margin::compare::Side;
use combined_margin::conformance;
use combined_margin::deviation::{self, CaseCheck, Kind};
use combined_margin::filecheck::{self, Choice};
use combined_margin::fixture::{
    file_is_zip, read_dump, read_layer_npz_arrays, Arrays, Dump, Limits,
};
use combined_margin::report::{self, ReportOptions};
use combined_margin::Dtype;
use combined_margin::Profile;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Golden-dump JSON files or filled-in .npz fixtures with an implementation's outputs. Without files, every shipped
    /// golden dump is checked and the conformance matrix printed.
    files: Vec<PathBuf>,
    /// Profile to check against: a preset name, or "auto" to find the closest one.
    /// Default: the profile SPEC.md §6 maps the dump's implementation to.
    #[arg(long)]
    profile: Option<String>,
    /// Directory of golden dumps to check instead of the ones embedded in this binary
    /// (fixtures/golden at build time).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Deviations to accept (comma-separated names), e.g. non-finite-output.
    #[arg(long, value_delimiter = ',')]
    allow: Vec<String>,
    /// Print every deviation's evidence and the unexplained elements.
    #[arg(long, short)]
    verbose: bool,
    /// With -v: how many unexplained elements to list per case (the rest are counted).
    #[arg(long, default_value_t = 5)]
    max_elements: usize,
    /// Sides every case must have outputs for (comma-separated: forward, backward); a case
    /// lacking one is MISSING (exit 1). Without it a missing side is reported, not refused.
    #[arg(long, value_delimiter = ',', value_enum)]
    require: Vec<Required>,
    /// With --profile auto: write the searches as JSON to this file ("-": stdout, after the report): the ranking
    /// and the point found, with every fitted constant, its uncertainty and the stated value.
    #[arg(long)]
    fit_json: Option<PathBuf>,
    /// Overwrite the --fit-json file if it exists.
    #[arg(long)]
    force: bool,
}

/// A side of the layer whose outputs `--require` insists on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Required {
    Forward,
    Backward,
}

impl Required {
    fn side(self) -> Side {
        match self {
            Required::Forward => Side::Forward,
            Required::Backward => Side::Backward,
        }
    }
}

pub fn run(a: Args) -> Result<ExitCode, String> {
    let allowed = a
        .allow
        .iter()
        .map(|n| {
            Kind::parse(n).ok_or_else(|| {
                format!(
                    "--allow {n:?}: unknown deviation (known: {})",
                    Kind::ALL.map(|k| k.name()).join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if a.files.is_empty() {
        return matrix(a.fixtures.as_deref());
    }
    let opts = ReportOptions {
        allowed,
        require: a.require.iter().map(|r| r.side()).collect(),
        verbose: a.verbose,
        max_elements: a.max_elements,
        ..ReportOptions::default()
    };
    if a.fit_json.is_some() && a.profile.as_deref() != Some("auto") {
        return Err(
            "--fit-json: needs --profile auto (it writes the searches' fitted points)".into(),
        );
    }
    let mut searches: Vec<serde_json::Value> = Vec::new();
    let mut ok = true;
    for file in &a.files {
        // By content, not by name: an .npz is a zip archive whatever it is called.
        if file_is_zip(file) {
            ok &= check_npz(file, a.profile.as_deref(), &opts, &mut searches)?;
            continue;
        }
        let dump = load(file)?;
        let choice = match a.profile.as_deref() {
            None => Choice::Mapped,
            Some("auto") => Choice::Auto,
            Some(name) => {
                Choice::Named(Profile::preset(name).map_err(|e| format!("--profile: {e}"))?)
            }
        };
        // Per case: its scope (SPEC.md §6.6), then the given, mapped or fingerprinted profile.
        let fc = filecheck::check_file(&dump, &choice)?;
        print!("{}", fc.text);
        searches.extend(fc.searches.iter().cloned());
        let (text, accepted) = report::outcomes_report(
            &dump.file,
            &dump.implementation,
            dump.dtype,
            &fc.outcomes,
            &opts,
        );
        print!("{text}");
        ok &= accepted;
    }
    if let Some(p) = &a.fit_json {
        let j = serde_json::json!({ "searches": searches });
        let mut bytes = serde_json::to_vec_pretty(&j).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        if p.as_os_str() == "-" {
            print!("{}", String::from_utf8_lossy(&bytes));
        } else {
            combined_margin::fixture::write_atomic(p, &bytes, a.force)
                .map_err(|e| format!("--fit-json {}: {e}", p.display()))?;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A `.npz` layer fixture (SPEC.md §7.2) with the implementation's `impl_forward` /
/// `impl_backward` filled in. Profile: `--profile`, else the one the fixture was written for.
fn check_npz(
    file: &Path,
    profile: Option<&str>,
    opts: &ReportOptions,
    searches: &mut Vec<serde_json::Value>,
) -> Result<bool, String> {
    let npz =
        read_layer_npz_arrays(file, check_limits(), Arrays::ForCheck).map_err(|e| e.to_string())?;
    let label = npz.file.clone();
    let case = npz.case;
    if case.forward.is_none() && case.backward.is_none() {
        return Err(format!(
            "{label}: fields \"impl_forward\", \"impl_backward\": absent or NaN everywhere; fill in the implementation's outputs"
        ));
    }
    // Under `--profile auto`, the search's pass over the non-targets, reused by the check.
    let mut passthrough = None;
    let prof = match (profile, npz.profile.as_deref()) {
        (Some("auto"), _) => {
            let mut search =
                combined_margin::verdict::search::search(std::slice::from_ref(&case), npz.dtype)
                    .map_err(|e| format!("{label}: {e}"))?;
            print!("{}", report::search_text(&label, &search));
            searches.push(report::search_json(&label, &search));
            passthrough = search.passthrough.pop().flatten();
            search.best().profile.clone()
        }
        (Some(name), _) | (None, Some(name)) => {
            Profile::preset(name).map_err(|e| format!("{label}: field \"profile\": {e}"))?
        }
        (None, None) => {
            return Err(format!(
                "{label}: field \"profile\": missing; pass --profile NAME"
            ))
        }
    };
    let ck = deviation::check_reusing(
        &case,
        &prof,
        npz.dtype,
        &deviation::Declared::default(),
        combined_margin::compare::Detail::for_shape(case.n, case.c),
        passthrough.as_ref(),
    )
    .map_err(|e| format!("{label}: case {:?}: {e}", case.name))?;
    Ok(report_file(&label, "npz fixture", npz.dtype, &[ck], opts))
}

/// The `.npz` reader's limits for a check: they follow the memory (SPEC.md §8.5), at the
/// checker's measured peak per element. JSON dumps keep the fixed limits (a JSON number costs
/// far more to parse than its share of that figure).
fn check_limits() -> Limits {
    Limits::for_memory(combined_margin::memory::CHECK_BYTES_PER_ELEMENT)
}

fn load(file: &Path) -> Result<Dump, String> {
    read_dump(file, Limits::default()).map_err(|e| e.to_string())
}

/// Prints one file's per-case report ([`report::file_report`]); returns whether every case
/// is accepted (its word is PASS or ALLOWED), which is what the exit code says.
fn report_file(
    file: &str,
    implementation: &str,
    dtype: Dtype,
    checks: &[CaseCheck],
    o: &ReportOptions,
) -> bool {
    let (text, ok) = report::file_report(file, implementation, dtype, checks, o);
    print!("{text}");
    ok
}

/// The conformance matrix of the embedded golden dumps, or of `--fixtures DIR`
/// ([`conformance`]).
fn matrix(dir: Option<&Path>) -> Result<ExitCode, String> {
    let set = conformance::golden_set(dir)?;
    if set.dumps.is_empty() {
        return Err(format!(
            "golden dumps {}: none found (pass --fixtures DIR)",
            set.place
        ));
    }
    let c = conformance::run(&set)?;
    print!("{}", conformance::matrix_text(&c));
    Ok(if c.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
