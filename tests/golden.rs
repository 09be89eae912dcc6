//! The reference against every shipped golden dump (fixtures/golden/), under the profile
//! SPEC.md §6 maps each implementation to. A case passes when every element is within the
//! budget of SPEC.md §5 or is accounted for by a detected deviation, and the detected
//! deviations are exactly the ones `expected_deviations.json` lists for it.

use combined_margin::deviation::{self, Expected, Kind};
use combined_margin::fixture::{read_dump, Limits};
use std::collections::BTreeSet;
use std::path::PathBuf;

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden")
}

#[test]
fn every_golden_case_agrees_or_carries_its_expected_deviations() {
    let dir = golden_dir();
    let expected = Expected::load(&dir.join(deviation::EXPECTED_FILE)).expect("expected table");
    let files = deviation::golden_files(&dir).expect("golden dir");
    assert_eq!(
        files.len(),
        27,
        "the shipped golden dumps (6 Caffe, 2 MXNet, 10 PyTorch, 9 PyTorch half)"
    );
    let mut used = vec![false; expected.entries.len()];
    let mut problems = Vec::new();
    println!(
        "{:<56} {:>5} {:>6} {:>12} {:>12}  deviations (cases)",
        "file", "cases", "agree", "max in-budg", "max overall"
    );
    for (rel, path) in &files {
        let dump = read_dump(path, Limits::default()).expect("golden dump reads");
        let checks = deviation::check_dump(&dump, None).expect("golden cases check");
        let mut agree = 0;
        let mut max_in = 0.0f64;
        let mut max_all = 0.0f64;
        let mut kinds: std::collections::BTreeMap<Kind, usize> = Default::default();
        for ck in &checks {
            let name = &ck.report.name;
            if ck.report.passed() {
                agree += 1;
            }
            for e in &ck.report.elements {
                if e.passed() {
                    max_in = max_in.max(e.fraction);
                }
                max_all = max_all.max(e.fraction);
            }
            let got: BTreeSet<Kind> = ck.kinds().into_iter().collect();
            for k in &got {
                *kinds.entry(*k).or_default() += 1;
            }
            let want: BTreeSet<Kind> = expected.kinds_for(rel, name).into_iter().collect();
            for (i, e) in expected.entries.iter().enumerate() {
                if e.file == *rel
                    && e.cases.iter().any(|p| deviation::glob_match(p, name))
                    && got.contains(&e.deviation)
                {
                    used[i] = true;
                }
            }
            if got != want {
                problems.push(format!(
                    "{rel}: {name}: detected {:?}, expected {:?}",
                    got.iter().map(|k| k.name()).collect::<Vec<_>>(),
                    want.iter().map(|k| k.name()).collect::<Vec<_>>()
                ));
            }
            for e in ck.unexplained.iter().take(3) {
                problems.push(format!(
                    "{rel}: {name}: unexplained: {}",
                    ck.report.describe(e)
                ));
            }
        }
        println!(
            "{:<56} {:>5} {:>6} {:>12.3} {:>12}  {}",
            rel,
            checks.len(),
            agree,
            max_in,
            if max_all.is_finite() {
                format!("{max_all:.3e}")
            } else {
                "inf".into()
            },
            kinds
                .iter()
                .map(|(k, n)| format!("{k} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (i, e) in expected.entries.iter().enumerate() {
        if !used[i] {
            problems.push(format!(
                "expected_deviations.json entry {i} ({} {:?} {}) matched no detection: the deviation is no longer detected",
                e.file, e.cases, e.deviation
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The mapping of SPEC.md §6, case by case: which profile each implementation gets.
#[test]
fn profile_mapping_follows_spec_section_6() {
    use combined_margin::compare::mapped_profile;
    let cases = [
        ("caffe-cpu", None, "caffe-cpu"),
        ("caffe-gpu-kernel-on-host", None, "caffe-gpu"),
        (
            "arcface_torch.losses.CombinedMarginLoss@9097cd7",
            None,
            "detached",
        ),
        (
            "arcface_torch.losses.ArcFace@9097cd7",
            Some(true),
            "detached",
        ),
        (
            "arcface_torch.losses.CombinedMarginLoss@5ef9804",
            None,
            "arcface-thmm",
        ),
        (
            "arcface_torch.losses.ArcFace@2e2e8c9",
            Some(false),
            "arcface-thmm",
        ),
        (
            "arcface_torch.losses.ArcFace@2e2e8c9",
            Some(true),
            "arcface-thmm-easy",
        ),
        ("arcface_torch.losses.CosFace@9097cd7", None, "analytic"),
        (
            "arcface_mxnet.train.get_symbol:margin_softmax@ce3600a",
            None,
            "analytic",
        ),
        (
            "src.train_softmax.get_symbol:loss_type4@ab50ba9",
            Some(true),
            "arcface-thmm-easy",
        ),
        (
            "src.train_softmax.get_symbol:loss_type4@ab50ba9",
            Some(false),
            "arcface-thmm",
        ),
    ];
    for (imp, easy, want) in cases {
        assert_eq!(
            mapped_profile(imp, easy).map(|p| p.name),
            Some(want.to_string()),
            "{imp}"
        );
    }
    assert!(mapped_profile("someone-elses-kernel", None).is_none());
}

/// The expected table itself must not name kinds the checker does not know, and the loader
/// must reject a table that does (located by field).
#[test]
fn expected_table_rejects_unknown_kinds() {
    let bad = r#"{"format":"expected-deviations/1","expected":[{"file":"a.json","cases":["*"],"deviation":"made-up","why":"x"}]}"#;
    let err = Expected::parse("t.json", bad).unwrap_err().to_string();
    assert!(
        err.contains("expected[0].deviation") && err.contains("made-up"),
        "{err}"
    );
}
