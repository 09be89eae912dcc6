//! The reference against every shipped golden dump (fixtures/golden/), under the profile
//! SPEC.md §6 maps each implementation to. A case passes when every element is within the
//! budget of SPEC.md §5 or is accounted for by a detected deviation, and the detected
//! deviations are exactly the ones `expected_deviations.json` lists for it.

use combined_margin::conformance::{self, Expected};
use std::path::PathBuf;

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden")
}

/// The conformance of the shipped dumps, through the library's one implementation
/// (`conformance::run`, which `cmargin check` prints as the matrix).
#[test]
fn every_golden_case_agrees_or_carries_its_expected_deviations() {
    let set = conformance::golden_set(Some(&golden_dir())).expect("golden set");
    assert_eq!(
        set.dumps.len(),
        63,
        "the shipped golden dumps (6 Caffe, 2 MXNet, 10 PyTorch, 2 OneFlow, 4 SpeechBrain, 9 PyTorch half, 14 catalyst, 12 fastreid, 2 NeMo, 2 AdaFace)"
    );
    let c = conformance::run(&set).expect("golden cases check");
    println!(
        "{:<56} {:>5} {:>6} {:>12} {:>12}  deviations (cases)",
        "file", "cases", "agree", "max in-budg", "max overall"
    );
    for f in &c.files {
        let agree = f.checks.iter().filter(|ck| ck.report.passed()).count();
        let fractions = f.checks.iter().flat_map(|ck| &ck.report.elements);
        let max_in = fractions
            .clone()
            .filter(|e| e.passed())
            .map(|e| e.fraction)
            .fold(0.0, f64::max);
        let max_all = fractions.map(|e| e.fraction).fold(0.0, f64::max);
        println!(
            "{:<56} {:>5} {:>6} {:>12.3} {:>12}  {}",
            f.rel,
            f.checks.len(),
            agree,
            max_in,
            if max_all.is_finite() {
                format!("{max_all:.3e}")
            } else {
                "inf".into()
            },
            f.kinds
                .iter()
                .map(|(k, n)| format!("{k} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // The new folders are in the matrix with the status SPEC.md §6.6 gives them.
    let status = |rel: &str| {
        c.files
            .iter()
            .find(|f| f.rel == rel)
            .unwrap_or_else(|| panic!("{rel} not in the matrix"))
            .status()
    };
    for dt in ["f32", "f64", "f16", "bf16"] {
        assert_eq!(
            status(&format!("fastreid/circlesoftmax_layer_{dt}.json")),
            "not modelled (not a combined margin)"
        );
        assert_eq!(
            status(&format!("fastreid/cossoftmax_layer_{dt}.json")),
            "conforms"
        );
    }
    for dt in ["f32", "f64"] {
        assert_eq!(
            status(&format!("adaface/adaface_pipeline_{dt}.json")),
            "conforms"
        );
        // Modulated non-targets are checked (SPEC.md §11.3); f32's edge row 7 carries the
        // th/mm note every f32 ArcFace port with a python-float threshold carries.
        assert_eq!(
            status(&format!("catalyst/curricularface_pipeline_{dt}.json")),
            if dt == "f32" {
                "expected deviations (fingerprinted)"
            } else {
                "conforms (fingerprinted)"
            }
        );
        assert_eq!(
            status(&format!("catalyst/cosface_pipeline_{dt}.json")),
            "conforms"
        );
        let nemo = c
            .files
            .iter()
            .find(|f| f.rel == format!("nemo/angular_softmax_loss_{dt}.json"))
            .unwrap();
        assert!(nemo.fingerprinted && nemo.checks.len() == 9);
        assert!(nemo.checks.iter().all(|ck| ck.report.scalars.len() == 1));
    }
    let problems: Vec<String> = c
        .files
        .iter()
        .flat_map(|f| f.surprises.iter().map(move |s| format!("{}: {s}", f.rel)))
        .chain(c.stale.iter().cloned())
        .collect();
    assert!(c.all_ok() && problems.is_empty(), "{}", problems.join("\n"));
}

/// The mapping of SPEC.md §6, case by case: which profile each implementation gets.
#[test]
fn profile_mapping_follows_spec_section_6() {
    use combined_margin::profile::mapped_profile;
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
        ("catalyst.contrib.layers.CosFace@22.4", None, "analytic"),
        ("catalyst.contrib.layers.AdaCos@22.4", None, "analytic"),
        (
            "catalyst.contrib.layers.ArcMarginProduct@22.4",
            None,
            "analytic",
        ),
        (
            "fastreid.layers.any_softmax.CosSoftmax@1.4.0",
            None,
            "analytic",
        ),
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
    // Not presets (SPEC.md §6.1): fingerprinted instead.
    for imp in [
        "catalyst.contrib.layers.ArcFace@22.4",
        "catalyst.contrib.layers.AMSoftmax@22.4",
        "fastreid.layers.any_softmax.ArcSoftmax@1.4.0",
        "nemo.collections.asr.losses.angularloss.AngularSoftmaxLoss@3.0.0",
        "someones.ArcMarginProduct@1",
    ] {
        assert!(mapped_profile(imp, None).is_none(), "{imp}");
    }
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
