//! `cmargin check`: an implementation's outputs against the reference (SPEC.md §5, §6).
//!
//! With files: one report per case (verdict, worst element as a fraction of its budget, with
//! its input, label and region; the named deviations). With `--profile auto`: which preset
//! (or policy variant) the implementation behaves like, ranked. With no file: every shipped
//! golden dump, as a conformance matrix checked against `expected_deviations.json`.

use combined_margin::compare;
use combined_margin::deviation::{self, CaseCheck, Expected, Kind};
use combined_margin::fixture::{read_dump, read_layer_npz, Dump, LayerCase, Limits};
use combined_margin::profile::preset_names;
use combined_margin::Profile;
use combined_margin::{report, Dtype};
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
    /// Directory of the golden dumps (default: the crate's fixtures/golden).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Deviations to accept (comma-separated names), e.g. non-finite-output.
    #[arg(long, value_delimiter = ',')]
    allow: Vec<String>,
    /// Print every deviation's evidence and the unexplained elements.
    #[arg(long, short)]
    verbose: bool,
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
        let dir = a
            .fixtures
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden"));
        return matrix(&dir);
    }
    let mut ok = true;
    for file in &a.files {
        if is_npz(file) {
            ok &= check_npz(file, a.profile.as_deref(), &allowed, a.verbose)?;
            continue;
        }
        let dump = load(file)?;
        let profiles: Option<Vec<Profile>> = match a.profile.as_deref() {
            None => None,
            Some("auto") => {
                let cases = dump
                    .cases
                    .iter()
                    .map(|raw| dump.layer_view(raw))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let (text, per_case) =
                    report::fingerprint_groups_report(&dump.file, &cases, dump.dtype)?;
                print!("{text}");
                Some(per_case)
            }
            Some(name) => {
                let p = Profile::preset(name).map_err(|e| format!("--profile: {e}"))?;
                Some(vec![p; dump.cases.len()])
            }
        };
        let checks = deviation::check_dump_per_case(&dump, profiles.as_deref())
            .map_err(|e| e.to_string())?;
        ok &= report_file(
            &dump.file,
            &dump.implementation,
            dump.dtype,
            &checks,
            &allowed,
            a.verbose,
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn is_npz(file: &Path) -> bool {
    file.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"))
}

/// A `.npz` layer fixture (SPEC.md §7.2) with the implementation's `impl_forward` /
/// `impl_backward` filled in. Profile: `--profile`, else the one the fixture was written for.
fn check_npz(
    file: &Path,
    profile: Option<&str>,
    allowed: &[Kind],
    verbose: bool,
) -> Result<bool, String> {
    let npz = read_layer_npz(file, Limits::default()).map_err(|e| e.to_string())?;
    let label = npz.file.clone();
    let case = npz.case;
    if case.forward.is_none() && case.backward.is_none() {
        return Err(format!(
            "{label}: fields \"impl_forward\", \"impl_backward\": absent or NaN everywhere; fill in the implementation's outputs"
        ));
    }
    let prof = match (profile, npz.profile.as_deref()) {
        (Some("auto"), _) => fingerprint(&label, std::slice::from_ref(&case), npz.dtype)?,
        (Some(name), _) | (None, Some(name)) => {
            Profile::preset(name).map_err(|e| format!("{label}: field \"profile\": {e}"))?
        }
        (None, None) => {
            return Err(format!(
                "{label}: field \"profile\": missing; pass --profile NAME"
            ))
        }
    };
    let ck = deviation::check(&case, &prof, npz.dtype, &deviation::Declared::default())
        .map_err(|e| format!("{label}: case {:?}: {e}", case.name))?;
    Ok(report_file(
        &label,
        "npz fixture",
        npz.dtype,
        &[ck],
        allowed,
        verbose,
    ))
}

fn load(file: &Path) -> Result<Dump, String> {
    read_dump(file, Limits::default()).map_err(|e| e.to_string())
}

/// Prints one file's per-case report ([`report::file_report`]); returns whether every case is accepted.
fn report_file(
    file: &str,
    implementation: &str,
    dtype: Dtype,
    checks: &[CaseCheck],
    allowed: &[Kind],
    verbose: bool,
) -> bool {
    let (text, ok) = report::file_report(file, implementation, dtype, checks, allowed, verbose);
    print!("{text}");
    ok
}

/// Ranks every candidate ([`report::fingerprint_report`]), prints the top of the ranking and
/// returns the best.
fn fingerprint(file: &str, cases: &[LayerCase], dtype: Dtype) -> Result<Profile, String> {
    let (text, best, _) = report::fingerprint_report(file, cases, dtype)?;
    print!("{text}");
    Ok(best)
}

/// Shortens an implementation string to its last component ("CombinedMarginLoss@9097cd7").
fn short_impl(s: &str) -> &str {
    s.rsplit(['.', ':']).next().unwrap_or(s)
}

fn matrix(dir: &Path) -> Result<ExitCode, String> {
    let files = deviation::golden_files(dir)
        .map_err(|e| format!("{}: cannot list the golden dumps: {e}", dir.display()))?;
    if files.is_empty() {
        return Err(format!(
            "{}: no golden dumps found (pass --fixtures DIR)",
            dir.display()
        ));
    }
    let expected =
        Expected::load(&dir.join(deviation::EXPECTED_FILE)).map_err(|e| e.to_string())?;
    let presets = Profile::presets();
    let mut header: Vec<String> = ["file", "implementation", "dtype", "cases"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(preset_names().map(|s| s.to_string()));
    header.push("status".into());
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut all_ok = true;
    for (rel, path) in &files {
        let dump = read_dump(path, Limits::default()).map_err(|e| e.to_string())?;
        let checks = deviation::check_dump(&dump, None).map_err(|e| e.to_string())?;
        let mapped: Vec<String> = checks
            .iter()
            .map(|c| c.report.profile.name.clone())
            .collect();
        let mut row = vec![
            rel.clone(),
            short_impl(&dump.implementation).to_string(),
            dump.dtype.to_string(),
            checks.len().to_string(),
        ];
        for prof in &presets {
            let mut pass = 0;
            for raw in &dump.cases {
                let case = dump.layer_view(raw).map_err(|e| e.to_string())?;
                // A preset whose label policy refuses a label of the case does not pass it.
                if compare::compare(&case, prof, dump.dtype).is_ok_and(|r| r.passed()) {
                    pass += 1;
                }
            }
            let star = if mapped.contains(&prof.name) { "*" } else { "" };
            row.push(format!("{pass}/{}{star}", checks.len()));
        }
        // Deviations under the mapped profile, against the expected table.
        let mut surprises = Vec::new();
        let mut kinds: std::collections::BTreeMap<Kind, usize> = Default::default();
        for ck in &checks {
            let got = ck.kinds();
            for k in &got {
                *kinds.entry(*k).or_default() += 1;
            }
            let want = expected.kinds_for(rel, &ck.report.name);
            if got != want {
                surprises.push(format!(
                    "{}: detected [{}], expected [{}]",
                    ck.report.name,
                    got.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "),
                    want.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
                ));
            }
            if !ck.unexplained.is_empty() {
                surprises.push(format!(
                    "{}: {} out-of-budget element(s) with no named cause; worst {}",
                    ck.report.name,
                    ck.unexplained.len(),
                    ck.report.describe(&ck.unexplained[0])
                ));
            }
        }
        let status = if surprises.is_empty() {
            if kinds.is_empty() {
                "conforms".to_string()
            } else {
                "expected deviations".to_string()
            }
        } else {
            all_ok = false;
            format!("UNEXPECTED ({})", surprises.len())
        };
        row.push(status);
        rows.push(row);
        if !kinds.is_empty() {
            notes.push(format!(
                "{rel}: {}",
                kinds
                    .iter()
                    .map(|(k, n)| format!("{k} ({n} case{})", if *n == 1 { "" } else { "s" }))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for s in surprises {
            notes.push(format!("{rel}: UNEXPECTED: {s}"));
        }
    }
    println!("Conformance of the golden dumps in {}", dir.display());
    println!("Cells: cases within budget under each profile; * marks the profile SPEC.md §6 maps the implementation to.\n");
    print_table(&header, &rows);
    println!("\nDeviations detected under the mapped profile (SPEC.md §6; expected ones are listed in {}):", deviation::EXPECTED_FILE);
    for n in &notes {
        println!("  {n}");
    }
    println!(
        "\n{}",
        if all_ok {
            "Every case agrees within budget or shows exactly its expected, named deviations."
        } else {
            "Some cases do not match the expected-deviation table (see UNEXPECTED above)."
        }
    );
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_table(header: &[String], rows: &[Vec<String>]) {
    let w: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            // Text left, counts right.
            if i >= 3 && i < cells.len() - 1 {
                s.push_str(&format!("{:>width$}  ", c, width = w[i]));
            } else {
                s.push_str(&format!("{:<width$}  ", c, width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header);
    line(&w.iter().map(|&n| "-".repeat(n)).collect::<Vec<_>>());
    for r in rows {
        line(r);
    }
}
