//! What a plain `cmargin check FILE` does with the dumps that are not a plain, mapped
//! combined-margin layer (SPEC.md §6.5, §6.6, §8.7): an unmapped implementation is
//! fingerprinted, a loss-only dump is checked on its loss and d_cos, a head that is not a
//! combined margin gets one line and is not checked, a modulated head is checked, and NaN in a
//! computed blob is judged, not refused. Never exit 2 for any of these; bad input still is.
//! Each mutation is written to a scratch file and removed.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn golden(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/golden")
        .join(rel)
}

/// (exit code, stdout, stderr) of `cmargin check ARGS FILE`.
fn check(args: &[&str], file: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cmargin"))
        .arg("check")
        .args(args)
        .arg(file)
        .output()
        .expect("cmargin runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A golden dump with its first `keep` cases, changed by `edit`, written to a scratch file
/// (removed by the caller through [`Scratch`]'s drop).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn mutated(rel: &str, tag: &str, keep: usize, edit: impl Fn(&mut Value)) -> Scratch {
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(golden(rel)).unwrap()).unwrap();
    v["cases"].as_array_mut().unwrap().truncate(keep);
    edit(&mut v);
    let p = std::env::temp_dir().join(format!("cmargin-scope-{}-{tag}.json", std::process::id()));
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    Scratch(p)
}

/// Every shipped dump, checked the plain way through the library (what `cmargin check FILE`
/// runs): never an error, so never exit 2.
#[test]
fn a_plain_check_of_every_golden_dump_is_never_bad_input() {
    use combined_margin::filecheck::{check_file, Choice};
    use combined_margin::fixture::{read_dump, Limits};
    let dir = golden("");
    let files = combined_margin::conformance::golden_files(&dir).unwrap();
    assert!(files.len() >= 63, "{}", files.len());
    for (rel, path) in files {
        let dump = read_dump(&path, Limits::default()).unwrap();
        if let Err(e) = check_file(&dump, &Choice::Mapped) {
            panic!("{rel}: {e}");
        }
    }
}

#[test]
fn an_unmapped_implementation_is_fingerprinted_not_refused() {
    let (rc, out, err) = check(&[], &golden("catalyst/adacos_pipeline_f32.json"));
    // AdaCos is mapped (analytic): no notice.
    assert_eq!(rc, 0, "{out}{err}");
    assert!(!out.contains("no profile is mapped"), "{out}");
    let (rc, out, err) = check(&[], &golden("catalyst/arcface_pipeline_f32.json"));
    assert!(rc == 0 || rc == 1, "exit {rc}: {out}{err}");
    assert!(
        out.contains(
            "no profile is mapped to implementation \"catalyst.contrib.layers.ArcFace@22.4\""
        ) && out.contains("fingerprinted as --profile auto does")
            && out.contains("=> behaves like"),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");
}

#[test]
fn a_loss_only_dump_is_checked_on_its_loss_and_d_cos() {
    let (rc, out, err) = check(&[], &golden("nemo/angular_softmax_loss_f32.json"));
    assert!(rc == 0 || rc == 1, "exit {rc}: {out}{err}");
    assert!(
        !out.contains("top_diff") && !err.contains("top_diff"),
        "{out}{err}"
    );
    assert!(out.contains("loss-only fingerprint"), "{out}");
    assert!(out.contains("  loss: got "), "{out}");
    // Teeth: the loss moved by 1% (far beyond the f32 budget) fails, with the loss named.
    let bad = mutated("nemo/angular_softmax_loss_f32.json", "loss", 1, |v| {
        let l = v["cases"][0]["loss"].as_f64().unwrap();
        v["cases"][0]["loss"] = Value::from(l * 1.01);
    });
    let (rc, out, _) = check(&["--profile", "analytic"], &bad.0);
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("FAIL") && out.contains("loss: got"), "{out}");
    // And one d_cos entry scaled by 2 fails too, where the untouched case passes.
    let good = mutated("nemo/angular_softmax_loss_f32.json", "good", 1, |_| {});
    let bad = mutated("nemo/angular_softmax_loss_f32.json", "dcos", 1, |v| {
        let d = v["cases"][0]["d_cos"][3].as_f64().unwrap();
        v["cases"][0]["d_cos"][3] = Value::from(2.0 * d + 1e-3);
    });
    let (rc_good, out_good, _) = check(&[], &good.0);
    let (rc_bad, out_bad, _) = check(&[], &bad.0);
    assert_eq!(rc_good, 0, "{out_good}");
    assert_eq!(rc_bad, 1, "{out_bad}");
}

#[test]
fn a_head_that_is_not_a_combined_margin_gets_one_line() {
    for dt in ["f32", "f64", "f16", "bf16"] {
        let f = golden(&format!("fastreid/circlesoftmax_layer_{dt}.json"));
        let (rc, out, err) = check(&[], &f);
        assert_eq!(rc, 0, "{out}{err}");
        assert!(!out.contains("params.m1") && err.is_empty(), "{out}{err}");
        assert!(
            out.contains("NOT CHECKED")
                && out.contains("Circle loss (CircleSoftmax)")
                && out.contains("not a combined margin; not modelled"),
            "{out}"
        );
        // Never counted as a pass.
        assert!(
            out.contains("0 pass") && out.contains("9 not checked"),
            "{out}"
        );
        assert!(
            !out.lines().any(|l| l.trim_start().starts_with("PASS")),
            "{out}"
        );
    }
    // The same case without its mark is bad input, located.
    let unmarked = mutated("fastreid/cossoftmax_layer_f32.json", "nom1", 1, |v| {
        let p = v["cases"][0]["params"].as_object_mut().unwrap();
        p.remove("m1");
    });
    let (rc, _, err) = check(&[], &unmarked.0);
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains("\"params.m1\"") && err.contains("missing"),
        "{err}"
    );
}

/// Per-row margins (SPEC.md §11.1): AdaFace's dumps are checked row by row under the mapped
/// `adaface` profile, and every case passes (f32 and f64; negative m2 rows included).
#[test]
fn per_row_margins_are_checked_row_by_row() {
    for dt in ["f32", "f64"] {
        let (rc, out, err) = check(&[], &golden(&format!("adaface/adaface_pipeline_{dt}.json")));
        assert_eq!(rc, 0, "{out}{err}");
        assert!(out.contains("summary: 6 pass, 0 deviate, 0 fail"), "{out}");
        assert!(out.contains(" adaface "), "{out}");
        // Under --profile auto the per-row cases keep the mapped profile, and say so.
        let (rc, out, err) = check(
            &["--profile", "auto"],
            &golden(&format!("adaface/adaface_pipeline_{dt}.json")),
        );
        assert_eq!(rc, 0, "{out}{err}");
        assert!(
            out.contains("per-row margins: checked under the mapped profile adaface"),
            "{out}"
        );
    }
    // A per-row margin that is not a number is bad input, located.
    let bad = mutated("adaface/adaface_pipeline_f32.json", "rowm", 1, |v| {
        v["cases"][0]["params"]["m2"][2] = Value::from("x");
    });
    let (rc, _, err) = check(&[], &bad.0);
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains("params.m2") && err.contains("element 2"),
        "{err}"
    );
    // A per-row array of the wrong length names the field and the expected shape, and does
    // not print the array.
    let short = mutated("adaface/adaface_pipeline_f32.json", "rowlen", 1, |v| {
        v["cases"][0]["params"]["m3"].as_array_mut().unwrap().pop();
    });
    let (rc, _, err) = check(&[], &short.0);
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains("field \"params.m3\"")
            && err.contains("an array of N = 8 numbers (one per row), found an array of 7"),
        "{err}"
    );
    assert!(!err.contains("0.37"), "the array is printed: {err}");
}

/// The planted bug: the rows' margins shifted by one row (the dump claims row i + 1's
/// margins for row i) is rejected with the named cause `row-margins-differ`.
#[test]
fn misaligned_per_row_margins_are_named() {
    let rot = mutated("adaface/adaface_pipeline_f64.json", "rowrot", 2, |v| {
        for case in v["cases"].as_array_mut().unwrap() {
            for k in ["m2", "m3"] {
                let a = case["params"][k].as_array_mut().unwrap();
                a.rotate_left(1);
            }
        }
    });
    let (rc, out, err) = check(&["-v"], &rot.0);
    assert_eq!(rc, 1, "{out}{err}");
    assert!(
        out.contains("row-margins-differ") && !out.contains("no named cause"),
        "{out}"
    );
    assert!(out.contains("row i got row i + 7's margins"), "{out}");
}

/// CurricularFace's modulated non-targets are checked (SPEC.md §11.3): a plain check of the
/// catalyst dump passes every case; a case recording a hard-negative mask but no t is bad
/// input, located.
#[test]
fn curricular_modulation_is_checked() {
    let rel = "catalyst/curricularface_pipeline_f64.json";
    let (rc, out, err) = check(&[], &golden(rel));
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("6 pass, 0 deviate, 0 fail"), "{out}");
    let no_t = mutated(rel, "not", 1, |v| {
        let obj = v["cases"][0].as_object_mut().unwrap();
        obj.remove("t_after_forward");
        obj.remove("t_before_forward");
    });
    let (rc, _, err) = check(&[], &no_t.0);
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains("\"t_used\": missing") && err.lines().count() == 1,
        "{err}"
    );
}

/// A-Softmax's λ (SPEC.md §11.4) must be a number >= 0, and inter-top-k's k comes with its
/// m′: anything else is bad input, one line naming the field.
#[test]
fn bad_family_constants_are_located_bad_input() {
    let rel = "catalyst/arcface_pipeline_f64.json";
    for (tag, key, value, field) in [
        ("lamneg", "lambda", Value::from(-1.0), "\"params.lambda\""),
        ("lamstr", "lambda", Value::from("five"), "\"params.lambda\""),
        (
            "topk",
            "intertopk_k",
            Value::from(3),
            "\"params.intertopk_m\": missing",
        ),
    ] {
        let bad = mutated(rel, tag, 1, |v| {
            v["cases"][0]["params"][key] = value.clone();
        });
        let (rc, _, err) = check(&[], &bad.0);
        assert_eq!(rc, 2, "{tag}: {err}");
        assert!(
            err.contains(field) && err.lines().count() == 1,
            "{tag}: {err}"
        );
    }
}

/// NaN in what the implementation computed (a pipeline's `d_margin_logits` and `d_cos`) is a
/// finding (a non-finite mismatch, exit 1), not bad input; NaN in `cos` still is (exit 2).
#[test]
fn nan_in_computed_blobs_is_judged_and_nan_in_inputs_is_refused() {
    let rel = "catalyst/cosface_pipeline_f32.json";
    let (rc, out, _) = check(&[], &golden(rel));
    assert_eq!(rc, 0, "{out}");
    let nan = mutated(rel, "nan", 1, |v| {
        v["cases"][0]["d_margin_logits"][5] = Value::from("NaN");
        v["cases"][0]["d_cos"][5] = Value::from("NaN");
    });
    let (rc, out, err) = check(&[], &nan.0);
    assert_eq!(rc, 1, "{out}{err}");
    assert!(err.is_empty(), "{err}");
    assert!(
        out.contains("FAIL")
            && out.contains("non-finite mismatch")
            && out.contains("non-finite-output"),
        "{out}"
    );
    // Only the upstream gradient NaN: read and judged (d_cos against the softmax gradient of
    // the implementation's own logits), not refused.
    let up = mutated(rel, "nanup", 1, |v| {
        v["cases"][0]["d_margin_logits"][5] = Value::from("NaN");
    });
    let (rc, out, err) = check(&[], &up.0);
    assert!(rc == 0 || rc == 1, "exit {rc}: {out}{err}");
    assert!(err.is_empty(), "{err}");
    let bad_in = mutated(rel, "nancos", 1, |v| {
        v["cases"][0]["cos"][5] = Value::from("NaN");
    });
    let (rc, _, err) = check(&[], &bad_in.0);
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains("field \"cos\"") && err.contains("is NaN"),
        "{err}"
    );
}

/// Sub-centres recorded only as `cos_subcenters` [N, C, K] (SPEC.md §11.2) are read through
/// the max over K: a dump whose sub-centre maxima are the recorded `cos` gives the same
/// report as the original; one whose maxima sit elsewhere (the planted bug: the head used
/// sub-centre 0, not the max) fails.
#[test]
fn cos_subcenters_are_read_through_the_max() {
    let rel = "catalyst/subcenter_arcface_pipeline_f64.json";
    let with = |tag: &str, offsets: [f64; 3]| {
        mutated(rel, tag, 1, move |v| {
            let case = &mut v["cases"][0];
            let cos: Vec<f64> = case["cos"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let sub: Vec<Value> = cos
                .iter()
                .flat_map(|&c| offsets.map(|o| Value::from(c + o)))
                .collect();
            let obj = case.as_object_mut().unwrap();
            obj.remove("cos");
            obj.insert("cos_subcenters".into(), Value::from(sub));
        })
    };
    let original = mutated(rel, "suborig", 1, |_| {});
    let (rc0, out0, _) = check(&[], &original.0);
    let faithful = with("subok", [-0.05, 0.0, -0.1]);
    let (rc, out, err) = check(&[], &faithful.0);
    assert_eq!((rc, err.as_str()), (rc0, ""), "{out}");
    let strip = |s: &str, p: &Path| s.replace(&p.display().to_string(), "FILE");
    assert_eq!(strip(&out, &faithful.0), strip(&out0, &original.0));
    let planted = with("subbad", [0.0, 0.05, -0.1]);
    let (rc, out, err) = check(&["--profile", "speechbrain-aam"], &planted.0);
    assert_eq!(rc, 1, "{out}{err}");
    assert!(out.contains("FAIL"), "{out}");
    // Without params.k the sub-centres cannot be read: bad input, located.
    let nok = mutated(rel, "subnok", 1, |v| {
        let case = &mut v["cases"][0];
        let n = case["cos"].as_array().unwrap().len();
        let obj = case.as_object_mut().unwrap();
        obj.remove("cos");
        obj.insert("cos_subcenters".into(), Value::from(vec![0.0; 3 * n]));
        obj["params"].as_object_mut().unwrap().remove("k");
    });
    let (rc, _, err) = check(&[], &nok.0);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("\"params.k\": missing"), "{err}");
}
