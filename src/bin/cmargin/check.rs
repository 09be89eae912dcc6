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

use combined_margin::compare::{self, fraction_text, CaseReport, Side};
use combined_margin::deviation::{self, CaseCheck, Expected, Kind, Verdict};
use combined_margin::embedded;
use combined_margin::fixture::{
    file_is_zip, read_dump, read_dump_str, read_layer_npz, Dump, LayerCase, Limits,
};
use combined_margin::profile::PRESET_NAMES;
use combined_margin::Profile;
use combined_margin::{fingerprint, Dtype};
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

    fn name(self) -> &'static str {
        match self {
            Required::Forward => "forward",
            Required::Backward => "backward",
        }
    }
}

/// How the per-case reports are judged and printed.
struct Opts<'a> {
    allowed: &'a [Kind],
    require: &'a [Required],
    verbose: bool,
    max_elements: usize,
}

/// The word printed for a case; PASS and ALLOWED are the accepted ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Word {
    Pass,
    /// Not a pass, but every deviation is accepted by `--allow` and nothing is unexplained.
    Allowed,
    Deviates,
    Fail,
    /// A side required by `--require` has no outputs.
    Missing,
}

impl Word {
    fn of(ck: &CaseCheck, o: &Opts, missing: bool) -> Word {
        if missing {
            return Word::Missing;
        }
        match (ck.verdict(), ck.accepted_with(o.allowed)) {
            (Verdict::Pass, _) => Word::Pass,
            (Verdict::Deviates | Verdict::Fail, true) => Word::Allowed,
            (Verdict::Deviates, false) => Word::Deviates,
            (Verdict::Fail, false) => Word::Fail,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Word::Pass => "PASS",
            Word::Allowed => "ALLOWED",
            Word::Deviates => "DEVIATES",
            Word::Fail => "FAIL",
            Word::Missing => "MISSING",
        }
    }

    fn accepted(self) -> bool {
        match self {
            Word::Pass | Word::Allowed => true,
            Word::Deviates | Word::Fail | Word::Missing => false,
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
    let opts = Opts {
        allowed: &allowed,
        require: &a.require,
        verbose: a.verbose,
        max_elements: a.max_elements,
    };
    let mut ok = true;
    for file in &a.files {
        // By content, not by name: an .npz is a zip archive whatever it is called.
        if file_is_zip(file) {
            ok &= check_npz(file, a.profile.as_deref(), &opts)?;
            continue;
        }
        let dump = load(file)?;
        let profile = match a.profile.as_deref() {
            None => None,
            Some("auto") => {
                let cases = dump
                    .cases
                    .iter()
                    .map(|raw| dump.layer_view(raw))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                Some(fingerprint(&dump.file, &cases, dump.dtype)?)
            }
            Some(name) => Some(Profile::preset(name).map_err(|e| format!("--profile: {e}"))?),
        };
        let checks = deviation::check_dump(&dump, profile.as_ref()).map_err(|e| e.to_string())?;
        ok &= report_file(&dump.file, &dump.implementation, dump.dtype, &checks, &opts);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A `.npz` layer fixture (SPEC.md §7.2) with the implementation's `impl_forward` /
/// `impl_backward` filled in. Profile: `--profile`, else the one the fixture was written for.
fn check_npz(file: &Path, profile: Option<&str>, opts: &Opts) -> Result<bool, String> {
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
    Ok(report_file(&label, "npz fixture", npz.dtype, &[ck], opts))
}

fn load(file: &Path) -> Result<Dump, String> {
    read_dump(file, Limits::default()).map_err(|e| e.to_string())
}

fn worst_line(r: &CaseReport) -> String {
    match r.worst() {
        Some(e) => r.describe(e),
        None => "no elements".into(),
    }
}

/// Prints one file's per-case report; returns whether every case is accepted (its word is
/// PASS or ALLOWED), which is what the exit code says.
fn report_file(
    file: &str,
    implementation: &str,
    dtype: Dtype,
    checks: &[CaseCheck],
    o: &Opts,
) -> bool {
    println!(
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
    let mut counts = [0usize; 5];
    let (mut accepted, mut no_backward, mut no_forward) = (0, 0, 0);
    for ck in checks {
        let r = &ck.report;
        let has = |side: Side| r.elements.iter().any(|e| e.side == side);
        let lacking: Vec<&str> = [Side::Forward, Side::Backward]
            .into_iter()
            .filter(|&s| !has(s))
            .map(|s| match s {
                Side::Forward => "forward",
                Side::Backward => "backward",
            })
            .collect();
        let missing = o.require.iter().any(|q| !has(q.side()));
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
        println!(
            "  {:<8} {:<w$}  {:<pw$}  {:>6}/{:<6} within budget, max {}{unchecked}",
            word.name(),
            r.name,
            r.profile.name,
            r.within(),
            r.count(),
            fraction_text(r.max_fraction()),
        );
        println!("  {:<8} worst: {}", "", worst_line(r));
        let predicted = r
            .elements
            .iter()
            .filter(|e| !e.actual.is_finite() && e.passed())
            .count();
        if predicted > 0 {
            println!(
                "  {:<8} {predicted} non-finite output(s) exactly where {} predicts them (agreement)",
                "", r.profile.name
            );
        }
        for d in &ck.deviations {
            let mark = if o.allowed.contains(&d.kind) {
                " (allowed)"
            } else {
                ""
            };
            if o.verbose {
                println!("  {:<8} deviation {}{mark}: {}", "", d.kind, d.detail);
            } else {
                println!("  {:<8} deviation {}{mark}", "", d.kind);
            }
        }
        if !ck.unexplained.is_empty() {
            println!(
                "  {:<8} {} out-of-budget element(s) with no named cause",
                "",
                ck.unexplained.len()
            );
            if o.verbose {
                for e in ck.unexplained.iter().take(o.max_elements) {
                    println!("  {:<8}   {}", "", r.describe(e));
                }
                let left = ck.unexplained.len().saturating_sub(o.max_elements);
                if left > 0 {
                    println!(
                        "  {:<8}   … and {left} more (--max-elements N lists more)",
                        ""
                    );
                }
            }
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
    for (n, side) in [(no_forward, "forward"), (no_backward, "backward")] {
        if n > 0 {
            notes.push(format!(
                "{side} not checked in {n} of {} case{}: no outputs{}",
                checks.len(),
                if checks.len() == 1 { "" } else { "s" },
                if o.require.iter().any(|q| q.name() == side) {
                    ""
                } else {
                    "; --require forward,backward refuses that"
                }
            ));
        }
    }
    println!(
        "  summary: {summary}; {accepted} of {} accepted{}",
        checks.len(),
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        }
    );
    accepted == checks.len()
}

/// Ranks every candidate (`combined_margin::fingerprint`), prints the top of the ranking and
/// returns the best.
fn fingerprint(file: &str, cases: &[LayerCase], dtype: Dtype) -> Result<Profile, String> {
    let ranked = fingerprint::rank(cases, dtype).map_err(|e| format!("{file}: {e}"))?;
    println!(
        "{file}: fingerprint over {} candidate profiles",
        ranked.len()
    );
    let w = ranked
        .iter()
        .take(5)
        .map(|f| f.profile.name.len())
        .max()
        .unwrap_or(8);
    for f in ranked.iter().take(5) {
        println!(
            "  {:<w$}  {:>7.3}% of elements within budget, worst {}",
            f.profile.name,
            100.0 * f.share,
            fraction_text(f.worst)
        );
    }
    if ranked.len() > 5 {
        println!("  … and {} more, ranked lower", ranked.len() - 5);
    }
    let perfect = ranked.iter().filter(|f| f.share == 1.0).count();
    if perfect > 1 {
        println!(
            "  ({perfect} candidates fit every element: these inputs cannot tell them apart; \
             inputs near the kinks would)"
        );
    }
    let best = ranked.into_iter().next().ok_or("no candidates")?;
    let how = if best.share == 1.0 {
        format!(
            "every element within budget, worst {}",
            fraction_text(best.worst)
        )
    } else {
        format!("{:.3}% of elements within budget", 100.0 * best.share)
    };
    println!("  => behaves like {} ({how})\n", best.profile.name);
    Ok(best.profile)
}

/// Shortens an implementation string to its last component ("CombinedMarginLoss@9097cd7").
fn short_impl(s: &str) -> &str {
    s.rsplit(['.', ':']).next().unwrap_or(s)
}

/// The golden dumps to tabulate and their expected-deviations table.
struct GoldenSet {
    /// Where they come from, for the heading.
    place: String,
    /// (path relative to the golden directory, dump), sorted by path.
    dumps: Vec<(String, Dump)>,
    expected: Expected,
}

/// The golden dumps in `dir`, or the ones embedded in the binary ([`embedded`]).
fn golden_set(dir: Option<&Path>) -> Result<GoldenSet, String> {
    let Some(dir) = dir else {
        let mut dumps = Vec::new();
        for (rel, bytes) in embedded::dumps() {
            let label = embedded::label(rel);
            let text =
                std::str::from_utf8(bytes).map_err(|_| format!("{label}: not UTF-8 text"))?;
            dumps.push((
                rel.to_string(),
                read_dump_str(&label, text, Limits::default()).map_err(|e| e.to_string())?,
            ));
        }
        let label = embedded::label(deviation::EXPECTED_FILE);
        let text = embedded::expected()
            .ok_or_else(|| format!("{label}: missing"))
            .and_then(|b| std::str::from_utf8(b).map_err(|_| format!("{label}: not UTF-8 text")))?;
        let expected = Expected::parse(&label, text).map_err(|e| e.to_string())?;
        return Ok(GoldenSet {
            place: "embedded in this binary (fixtures/golden at build time)".into(),
            dumps,
            expected,
        });
    };
    let files = deviation::golden_files(dir)
        .map_err(|e| format!("{}: cannot list the golden dumps: {e}", dir.display()))?;
    let mut dumps = Vec::new();
    for (rel, path) in files {
        dumps.push((
            rel,
            read_dump(&path, Limits::default()).map_err(|e| e.to_string())?,
        ));
    }
    let expected =
        Expected::load(&dir.join(deviation::EXPECTED_FILE)).map_err(|e| e.to_string())?;
    Ok(GoldenSet {
        place: format!("in {}", dir.display()),
        dumps,
        expected,
    })
}

fn matrix(dir: Option<&Path>) -> Result<ExitCode, String> {
    let GoldenSet {
        place,
        dumps: files,
        expected,
    } = golden_set(dir)?;
    if files.is_empty() {
        return Err(format!(
            "golden dumps {place}: none found (pass --fixtures DIR)"
        ));
    }
    let presets = Profile::presets();
    let mut header: Vec<String> = ["file", "implementation", "dtype", "cases"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(PRESET_NAMES.iter().map(|s| s.to_string()));
    header.push("status".into());
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut all_ok = true;
    for (rel, dump) in &files {
        let checks = deviation::check_dump(dump, None).map_err(|e| e.to_string())?;
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
                let r = compare::compare(&case, prof, dump.dtype)
                    .map_err(|e| format!("{rel}: case {:?}: {e}", case.name))?;
                if r.passed() {
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
    println!("Conformance of the golden dumps {place}");
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
