//! `cmargin check` verdicts: the word on each case line, the summary and the exit code agree
//! (ALLOWED for deviations accepted by --allow, MISSING for a side --require insists on),
//! non-finite outputs the profile predicts are agreement, a side without outputs is said,
//! `-v` counts what it leaves out, and what `generate` writes is checked as written.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cmargin"))
}

fn golden(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/golden")
        .join(rel)
}

/// A scratch file path in a directory of its own, removed when the guard drops.
fn scratch(name: &str) -> crate::common::Scratch {
    crate::common::Scratch::new("verdicts", name)
}

/// (exit code, stdout, stderr).
fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("cmargin runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The verdict words of the case lines (two-space indent, word, then the case name).
fn words(stdout: &str) -> Vec<String> {
    const WORDS: [&str; 5] = ["PASS", "ALLOWED", "DEVIATES", "FAIL", "MISSING"];
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| WORDS.contains(w))
        .map(str::to_string)
        .collect()
}

fn summary(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary in {stdout}"))
}

/// Writes `cmargin generate ARGS -o NAME` into the scratch dir and returns its path.
fn generate(name: &str, args: &[&str]) -> crate::common::Scratch {
    let p = scratch(name);
    let (rc, _, err) = run(bin()
        .arg("generate")
        .args(args)
        .arg("--force")
        .arg("-o")
        .arg(&p));
    assert_eq!(rc, 0, "{err}");
    p
}

#[test]
fn allowed_deviations_say_allowed_and_agree_with_the_exit_code() {
    let f = golden("insightface-torch/arcface_2e2e8c9_f32.json");
    let (rc, out, _) = run(bin().arg("check").arg(&f));
    assert_eq!(rc, 1, "{out}");
    let w = words(&out);
    assert_eq!(w.iter().filter(|w| *w == "FAIL").count(), 4, "{out}");
    assert!(summary(&out).contains("4 fail; 12 of 16 accepted"), "{out}");

    let (rc, out, _) = run(bin()
        .args([
            "check",
            "--allow",
            "non-finite-output,constant-rounded-wrong-side",
        ])
        .arg(&f));
    assert_eq!(rc, 0, "{out}");
    let w = words(&out);
    assert_eq!(w.len(), 16, "{out}");
    assert_eq!(w.iter().filter(|w| *w == "ALLOWED").count(), 4, "{out}");
    assert!(
        w.iter().all(|w| w == "PASS" || w == "ALLOWED"),
        "exit 0, so no case may read FAIL or DEVIATES: {out}"
    );
    let s = summary(&out);
    assert!(
        s.contains("12 pass, 4 allowed, 0 deviate, 0 fail; 16 of 16 accepted"),
        "{s}"
    );
    assert!(s.contains("allowing non-finite-output"), "{s}");
}

#[test]
fn non_finite_outputs_the_profile_predicts_are_agreement() {
    // The analytic profile is unclamped: acos of |c| > 1 is NaN, and the edge catalogue has
    // such inputs. An implementation that reproduces the reference exactly (the fixture's own
    // outputs) agrees with it, NaN included.
    let p = generate(
        "analytic_edges.json",
        &[
            "--profile",
            "analytic",
            "--inputs",
            "edges",
            "--dtype",
            "f64",
        ],
    );
    let dump: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let fwd = dump["cases"][0]["forward"].as_array().unwrap();
    let nan_at = fwd
        .iter()
        .position(|v| v == "NaN")
        .expect("a predicted NaN");
    let (rc, out, _) = run(bin().arg("check").arg(&p));
    assert_eq!(rc, 0, "{out}");
    assert_eq!(words(&out), ["PASS"], "{out}");
    assert!(
        out.contains("exactly where analytic predicts them (agreement)"),
        "{out}"
    );
    assert!(!out.contains("deviation non-finite-output"), "{out}");

    // Teeth: a NaN where the profile predicts a number is still the deviation (exit 1).
    let finite_at = fwd
        .iter()
        .position(|v| v.is_number())
        .expect("a finite output");
    let mut bad = dump.clone();
    bad["cases"][0]["forward"][finite_at] = Value::String("NaN".into());
    let q = scratch("analytic_edges_nan.json");
    std::fs::write(&q, serde_json::to_string(&bad).unwrap()).unwrap();
    let (rc, out, _) = run(bin().arg("check").arg(&q));
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("deviation non-finite-output"), "{out}");
    // And a number where the profile predicts NaN is out of budget, not agreement.
    let mut bad = dump;
    bad["cases"][0]["forward"][nan_at] = serde_json::json!(0.5);
    std::fs::write(&q, serde_json::to_string(&bad).unwrap()).unwrap();
    let (rc, out, _) = run(bin().arg("check").arg(&q));
    assert_eq!(rc, 1, "{out}");
    assert_eq!(words(&out), ["FAIL"], "{out}");
}

#[test]
fn a_side_without_outputs_is_said_and_require_refuses_it() {
    let p = generate("fwd_only.json", &[]);
    let mut dump: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    dump["cases"][0].as_object_mut().unwrap().remove("backward");
    std::fs::write(&p, serde_json::to_string(&dump).unwrap()).unwrap();

    let (rc, out, _) = run(bin().arg("check").arg(&p));
    assert_eq!(rc, 0, "{out}");
    let case_line = out.lines().find(|l| l.starts_with("  PASS")).unwrap();
    assert!(
        case_line.contains("backward not checked (no outputs)"),
        "{out}"
    );
    let s = summary(&out);
    assert!(s.contains("backward not checked in 1 of 1 case"), "{s}");
    assert!(s.contains("--require forward,backward"), "{s}");

    let (rc, out, _) = run(bin()
        .args(["check", "--require", "forward,backward"])
        .arg(&p));
    assert_eq!(rc, 1, "{out}");
    assert_eq!(words(&out), ["MISSING"], "{out}");
    assert!(
        summary(&out).contains("1 missing; 0 of 1 accepted"),
        "{out}"
    );
    // Requiring only the side that is there passes.
    let (rc, out, _) = run(bin().args(["check", "--require", "forward"]).arg(&p));
    assert_eq!(rc, 0, "{out}");
    assert_eq!(words(&out), ["PASS"], "{out}");
    // An unknown side is a usage error (exit 2), not ignored.
    let (rc, _, err) = run(bin().args(["check", "--require", "sideways"]).arg(&p));
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("sideways"), "{err}");

    // Neither side: nothing to check is bad input, not a pass.
    dump["cases"][0].as_object_mut().unwrap().remove("forward");
    std::fs::write(&p, serde_json::to_string(&dump).unwrap()).unwrap();
    let (rc, out, err) = run(bin().arg("check").arg(&p));
    assert_eq!(rc, 2, "{out}");
    assert!(
        err.contains(&p.display().to_string()) && err.contains("nothing to compare"),
        "{err}"
    );
}

#[test]
fn an_empty_case_list_is_bad_input() {
    let p = scratch("no_cases.json");
    std::fs::write(
        &p,
        r#"{"format":"golden-dump/1","source":"t","implementation":"caffe-cpu","dtype":"f64","kind":"layer","cases":[]}"#,
    )
    .unwrap();
    let (rc, out, err) = run(bin().arg("check").arg(&p));
    assert_eq!(rc, 2, "{out}");
    assert!(
        err.contains(&p.display().to_string())
            && err.contains("field \"cases\"")
            && err.contains("no cases"),
        "{err}"
    );
}

#[test]
fn verbose_lists_at_most_max_elements_and_counts_the_rest() {
    // A Caffe CPU dump whose first case's forward targets carry an irregular error no profile
    // of the space and no named cause explains: 23 out-of-budget elements with no named cause.
    let text = std::fs::read_to_string(golden("caffe/layer_cpu_f64.json")).unwrap();
    let mut dump: Value = serde_json::from_str(&text).unwrap();
    let case = &mut dump["cases"][0];
    let c = case["shape"][1].as_u64().unwrap() as usize;
    let labels: Vec<i64> = case["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let mut broken = 0;
    for side in ["forward", "backward"] {
        for (row, &label) in labels.iter().enumerate() {
            if label < 0 || broken == 23 {
                continue;
            }
            let k = row * c + label as usize;
            if let Some(x) = case[side][k].as_f64() {
                case[side][k] = Value::from(x + 1e-3 * (1.0 + (row % 5) as f64));
                broken += 1;
            }
        }
    }
    assert_eq!(broken, 23);
    let f = scratch("broken_targets.json");
    std::fs::write(&f, serde_json::to_string(&dump).unwrap()).unwrap();
    let listing = |extra: &[&str]| {
        let (rc, out, _) = run(bin().args(["check", "-v"]).args(extra).arg(&f));
        assert_eq!(rc, 1);
        let block: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.contains("23 out-of-budget element(s) with no named cause"))
            .skip(1)
            .take_while(|l| l.starts_with("             "))
            // The residual lines come first, one per side (described elsewhere).
            .filter(|l| !l.contains("residual:"))
            .collect();
        block
            .iter()
            .map(|l| l.trim().to_string())
            .collect::<Vec<_>>()
    };
    let five = listing(&[]);
    assert_eq!(five.len(), 6, "{five:?}");
    assert!(five[5].starts_with("… and 18 more"), "{five:?}");
    let two = listing(&["--max-elements", "2"]);
    assert_eq!(two.len(), 3, "{two:?}");
    assert_eq!(two[..2], five[..2]);
    assert!(two[2].starts_with("… and 21 more"), "{two:?}");
    let all = listing(&["--max-elements", "100"]);
    assert_eq!(all.len(), 23, "every element, no '... more' line: {all:?}");
}

#[test]
fn what_generate_writes_check_reads_without_flags() {
    for (name, args) in [
        ("g_default.json", vec![]),
        (
            "g_caffe_gpu.json",
            vec!["--profile", "caffe-gpu", "--inputs", "edges"],
        ),
        ("g_scaled.json", vec!["--scale", "30", "--dtype", "f64"]),
    ] {
        let p = generate(name, &args);
        let (rc, out, err) = run(bin().arg("check").arg(&p));
        assert_eq!(rc, 0, "{name}: {out}{err}");
        assert!(words(&out).iter().all(|w| w == "PASS"), "{name}: {out}");
    }
}

#[test]
fn the_format_is_told_by_content_not_by_name() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let bytes = std::fs::read(data.join("numpy_savez_filled.npz")).unwrap();
    for name in ["filled_npz_named.json", "filled_npz_no_extension"] {
        let p = scratch(name);
        std::fs::write(&p, &bytes).unwrap();
        let (rc, out, err) = run(bin().arg("check").arg(&p));
        assert_eq!(rc, 0, "{name}: {err}");
        assert!(out.contains("12/12"), "{name}: {out}");
    }
    // A JSON dump named .npz is read as JSON.
    let p = scratch("dump_named.npz");
    std::fs::copy(golden("insightface-torch/cosface_f32.json"), &p).unwrap();
    let (rc, out, _) = run(bin().arg("check").arg(&p));
    assert_eq!(rc, 0, "{out}");
    // Neither: bytes that are not UTF-8 and not a zip get one located line, exit 2.
    let p = scratch("binary.json");
    std::fs::write(&p, b"{\"a\": \xff\xfe}").unwrap();
    let (rc, _, err) = run(bin().arg("check").arg(&p));
    assert_eq!(rc, 2);
    assert!(
        err.contains(&p.display().to_string())
            && err.contains("not UTF-8 text at byte 6")
            && err.contains("neither a JSON dump nor an .npz"),
        "{err}"
    );
}

/// SPEC.md §6.5: a named fact that moves no element out of budget is a note. A faithful
/// arcface-thmm implementation in f32 (the generated fixture's own outputs) on the edge
/// catalogue meets the f32 threshold that rounds to the wrong side of cos(π − 0.5):
/// `constant-rounded-wrong-side` is detected and listed as a note, and the case is PASS,
/// exit 0, with no --allow. The same case with one target output moved far out of budget is
/// FAIL, exit 1: a note never excuses an element.
#[test]
fn a_fact_that_moves_nothing_out_of_budget_is_a_note_and_never_fails() {
    let p = generate(
        "thmm_edges_note.json",
        &[
            "--profile",
            "arcface-thmm",
            "--params",
            "1,0.5,0",
            "--inputs",
            "edges",
            "--dtype",
            "f32",
        ],
    );
    let (rc, out, err) = run(bin().arg("check").arg(&p));
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("note constant-rounded-wrong-side (moves no element out of budget)"),
        "the detector must fire on the edge catalogue's thr(0.5) row: {out}"
    );
    assert!(words(&out).iter().all(|w| w == "PASS"), "{out}");
    assert!(
        !out.contains("deviation constant-rounded-wrong-side"),
        "{out}"
    );

    // Teeth: one target forward pushed to twice its value (far out of budget).
    let mut dump: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let case = &mut dump["cases"][0];
    let c = case["shape"][1].as_u64().unwrap() as usize;
    let fwd = case["forward"].clone();
    let (i, x) = case["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_i64().unwrap())
        .enumerate()
        .filter(|(_, l)| *l >= 0)
        .map(|(row, l)| row * c + l as usize)
        .find_map(|i| fwd[i].as_f64().filter(|x| x.is_finite()).map(|x| (i, x)))
        .unwrap();
    case["forward"][i] = Value::from(2.0 * x + 1.0);
    let bad = scratch("thmm_edges_note_bad.json");
    std::fs::write(&bad, serde_json::to_string(&dump).unwrap()).unwrap();
    let (rc, out, _) = run(bin().arg("check").arg(&bad));
    assert_eq!(rc, 1, "{out}");
    assert!(words(&out).contains(&"FAIL".to_string()), "{out}");
    assert!(out.contains("note constant-rounded-wrong-side"), "{out}");
}

/// The rule in the library (`CaseCheck::verdict`), over every shipped golden case: a case
/// within budget is PASS whatever notes it carries; a case with an element out of budget is
/// FAIL; and every deviation of a PASS case is a note (it accounts for no out-of-budget
/// element). A real out-of-budget deviation (insightface 5ef9804's margin-term-ignored) fails.
#[test]
fn the_verdict_rule_holds_on_every_golden_case() {
    use combined_margin::conformance;
    use combined_margin::deviation::{Kind, Verdict};
    let set = conformance::golden_set(Some(&golden(""))).unwrap();
    let c = conformance::run(&set).unwrap();
    let (mut notes, mut fails_with_named_cause) = (0, 0);
    for f in &c.files {
        for ck in &f.checks {
            let v = ck.verdict();
            if ck.report.passed() {
                assert_eq!(v, Verdict::Pass, "{}: {}", f.rel, ck.report.name);
                assert!(ck.deviations.iter().all(|d| ck.is_note(d)));
                notes += ck.deviations.len();
            } else {
                assert_eq!(v, Verdict::Fail, "{}: {}", f.rel, ck.report.name);
                if ck.kinds().contains(&Kind::MarginTermIgnored) {
                    fails_with_named_cause += 1;
                    assert!(ck.findings().next().is_some());
                }
            }
        }
    }
    assert!(
        notes > 0,
        "the golden set carries notes (e.g. constant-rounded-wrong-side)"
    );
    assert!(fails_with_named_cause > 0);
}

/// `--fit-json` carries the searches of a JSON golden dump too (not only of `.npz`
/// fixtures): each point found for catalyst's ArcFace states m2 fitted from its own targets,
/// which agrees with an m2 catalyst was run with (the dump's recorded `params.m2`).
#[test]
fn fit_json_carries_the_searches_of_json_dumps() {
    let out = scratch("fit.json");
    let (rc, stdout, err) = run(bin()
        .args(["check", "--profile", "auto", "--fit-json"])
        .arg(&*out)
        .arg(golden("catalyst/arcface_pipeline_f64.json")));
    assert!(rc == 0 || rc == 1, "{stdout}{err}");
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&*out).unwrap()).unwrap();
    let searches = j["searches"].as_array().expect("searches");
    assert!(!searches.is_empty(), "{j}");
    let dump: Value = serde_json::from_str(
        &std::fs::read_to_string(golden("catalyst/arcface_pipeline_f64.json")).unwrap(),
    )
    .unwrap();
    let run_with: Vec<f64> = dump["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["params"]["m2"].as_f64().unwrap())
        .collect();
    for s in searches {
        assert!(s["label"]
            .as_str()
            .unwrap()
            .contains("arcface_pipeline_f64.json"));
        let m2 = s["point"]["constants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "m2")
            .unwrap_or_else(|| panic!("no m2 in {s}"));
        let stated = m2["stated"].as_f64().unwrap();
        assert!(run_with.contains(&stated), "{m2} not in {run_with:?}");
        let fitted = m2["fitted"].as_f64().unwrap();
        assert!((fitted - stated).abs() < 1e-6, "{m2}");
        assert_eq!(m2["fails"], false, "{m2}");
    }
    // The report on stdout names the same point the JSON does.
    let point = searches[0]["point"]["profile"].as_str().unwrap();
    assert!(stdout.contains(point), "{stdout}");
}

/// Where no cause is named, the report describes the residual (SPEC.md §6.5): planted
/// residuals of known shape on a generated reference dump are each described as what they
/// are, and a residual of no simple shape is said to have none. (NaN where the formula is
/// finite is named `non-finite-output`, so it never reaches this line alone.)
#[test]
fn unexplained_elements_get_their_residual_described() {
    let g = generate(
        "res.json",
        &[
            "--profile",
            "arcface-thmm",
            "--shape",
            "64,10",
            "--dtype",
            "f64",
        ],
    );
    let base: Value = serde_json::from_str(&std::fs::read_to_string(&*g).unwrap()).unwrap();
    let plant = |tag: &str, f: &dyn Fn(usize, f64, &mut Value)| {
        let mut d = base.clone();
        let case = &mut d["cases"][0];
        let labels: Vec<i64> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_i64().unwrap())
            .collect();
        for (r, &lab) in labels.iter().enumerate() {
            if lab >= 0 {
                let k = r * 10 + lab as usize;
                let c = case["cos"][k].as_f64().unwrap();
                f(k, c, case);
            }
        }
        let p = scratch(&format!("res_{tag}.json"));
        std::fs::write(&*p, serde_json::to_vec(&d).unwrap()).unwrap();
        let (rc, out, err) = run(bin().args(["check", "--profile", "arcface-thmm"]).arg(&*p));
        assert_eq!(rc, 1, "{tag}: {out}{err}");
        assert!(out.contains("with no named cause"), "{tag}: {out}");
        out.lines()
            .filter(|l| l.contains("residual:"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let add = |k: usize, case: &mut Value, side: &str, f: &dyn Fn(f64) -> f64| {
        let v = case[side][k].as_f64().unwrap();
        case[side][k] = Value::from(f(v));
    };
    // An offset that is exactly one constant is a fitted m3 (parameter-differs, named); one
    // within 2% of a constant is not a margin, and is described as an offset.
    let r = plant("offset", &|k, _, case| {
        add(k, case, "forward", &|v| {
            v + 1e-3 * (1.0 + 0.01 * (k % 3) as f64)
        })
    });
    assert!(
        r.len() == 1
            && r[0].contains("forward target")
            && r[0].contains("a constant offset, got − want = 0.00101"),
        "{r:?}"
    );
    let r = plant("scale", &|k, _, case| {
        add(k, case, "backward", &|v| v * 1.003)
    });
    assert!(
        r.len() == 1
            && r[0].contains("backward target")
            && r[0].contains("a scale, got / want = 1.003"),
        "{r:?}"
    );
    // A branch taken at the wrong place: no margin below c = -0.3.
    let r = plant("jump", &|k, c, case| {
        if c < -0.3 {
            case["forward"][k] = Value::from(c)
        }
    });
    assert!(
        r.len() == 1 && r[0].contains("a jump at a threshold: every target at and below"),
        "{r:?}"
    );
    let r = plant("noise", &|k, _, case| {
        add(k, case, "forward", &|v| v + 1e-3 * ((k * 37) as f64).sin())
    });
    assert!(r.len() == 1 && r[0].contains("no simple shape"), "{r:?}");
}
