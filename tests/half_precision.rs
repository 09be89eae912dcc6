//! Half precision (f16, bf16), SPEC.md §4.3, §5.6, §7.3: the golden half dumps read as exact
//! half values, generated fixtures round-trip bit for bit (JSON and .npz, and numpy reads the
//! .npz), the degeneracies the half README records are what the crate computes, the
//! wrong-side threshold is named (and the detector has teeth), and the reference properties
//! hold in the half dtypes. Expected values come from the README, the issue text, brute force
//! over every half value, or identities; never from the code under test.

use crate::common::{self, batch, cos_for, params, profiles};
use crate::golden::golden_dir;
use crate::npz::{npy, zip_of};
use combined_margin::catalogue::edge_cases;
use combined_margin::compare::{Role, Side};
use combined_margin::degeneracy::{
    clamp_collapses, degeneracies, promises_finite_in, Constant, Effect,
};
use combined_margin::deviation::{self, Declared, Kind};
use combined_margin::fixture::generate::{generate, Generated, Inputs, Spec, TopDiff};
use combined_margin::fixture::{read_dump, read_dump_str, read_layer_npz_bytes, Limits};
use combined_margin::profile::InputDomain;
use combined_margin::{layer, margin, tolerance, Dtype, Params, Profile};
use ndarray::Array2;
use proptest::prelude::*;
use std::f64::consts::PI;

const HALF: [Dtype; 2] = [Dtype::F16, Dtype::BF16];

fn half_file(name: &str) -> std::path::PathBuf {
    golden_dir().join("insightface-torch-half").join(name)
}

/// Every value of a 16-bit type in [−1, 1], decoded by the `half` crate (not by the code under test).
fn grid_in_unit(dt: Dtype) -> Vec<f64> {
    (0..=u16::MAX)
        .map(|b| match dt {
            Dtype::F16 => half::f16::from_bits(b).to_f64(),
            Dtype::BF16 => half::bf16::from_bits(b).to_f64(),
            Dtype::F32 | Dtype::F64 => unreachable!("16-bit types only"),
        })
        .filter(|x| (-1.0..=1.0).contains(x))
        // −0 and +0 are one value (the README counts values, not bit patterns).
        .filter(|x| !(*x == 0.0 && x.is_sign_negative()))
        .collect()
}

#[test]
fn golden_half_dumps_read_as_exact_half_values() {
    let mut rounded_away = 0usize;
    for (file, dt) in [
        ("combined_margin_loss_5ef9804_f16.json", Dtype::F16),
        ("arcface_9097cd7_bf16.json", Dtype::BF16),
        ("cosface_f16.json", Dtype::F16),
    ] {
        let dump = read_dump(&half_file(file), Limits::default()).unwrap();
        assert_eq!(dump.dtype, dt, "{file}");
        for (raw, case) in dump.cases.iter().zip(dump.layer_cases().unwrap()) {
            let len = case.n * case.c;
            let text = raw.f64s("forward", len).unwrap();
            let arrays = [
                &case.cos,
                case.top_diff.as_ref().unwrap(),
                case.forward.as_ref().unwrap(),
                case.backward.as_ref().unwrap(),
            ];
            for v in arrays {
                for &x in v.iter() {
                    assert!(
                        !x.is_finite() || dt.is_exact(x),
                        "{file} {}: {x:e}",
                        case.name
                    );
                }
            }
            // The 9-digit text is not always the half value itself: reading must round.
            rounded_away += text
                .iter()
                .zip(case.forward.as_ref().unwrap())
                .filter(|(t, x)| t.is_finite() && t.to_bits() != x.to_bits())
                .count();
        }
    }
    assert!(
        rounded_away > 100,
        "{rounded_away} forward tokens differ from their half value"
    );
    // README "Sanity checks done": -0.584472656 is -0.58447265625.
    let dump = read_dump_str(
        "t.json",
        r#"{"format":"golden-dump/1","dtype":"f16","kind":"layer","implementation":"x","cases":[
            {"name":"a","params":{"m1":1,"m2":0.5,"m3":0},"shape":[1,1],"labels":[-1],"cos":[-0.584472656]}]}"#,
        Limits::default(),
    )
    .unwrap();
    assert_eq!(dump.layer_cases().unwrap()[0].cos[0], -0.58447265625);
}

fn spec(profile: &str, dtype: Dtype, grid: Option<Dtype>, inputs: Inputs) -> Spec {
    Spec {
        profile: Profile::preset(profile).unwrap(),
        params: Params::new(1.0, 0.5, 0.0).with_scale(64.0),
        scaled: true,
        n: 40,
        c: 8,
        dtype,
        input_grid: grid,
        seed: 7,
        inputs,
        top_diff: TopDiff::Uniform,
        ignore_every: 8,
    }
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

fn assert_round_trip(g: &Generated) {
    let dt = g.spec.dtype;
    let d = read_dump_str("t.json", &g.to_json(), Limits::default()).unwrap();
    assert_eq!(d.dtype, dt);
    let back = &d.layer_cases().unwrap()[0];
    for (name, a, b) in [
        ("cos", &g.case.cos, &back.cos),
        (
            "top_diff",
            g.case.top_diff.as_ref().unwrap(),
            back.top_diff.as_ref().unwrap(),
        ),
        (
            "forward",
            g.case.forward.as_ref().unwrap(),
            back.forward.as_ref().unwrap(),
        ),
        (
            "backward",
            g.case.backward.as_ref().unwrap(),
            back.backward.as_ref().unwrap(),
        ),
    ] {
        assert!(same_bits(a, b), "JSON {dt} {name}");
    }
    let f = read_layer_npz_bytes("t.npz", &g.to_npz().unwrap(), Limits::default()).unwrap();
    assert_eq!(f.dtype, dt);
    assert!(same_bits(&g.case.cos, &f.case.cos), "npz {dt} cos");
    assert!(same_bits(
        g.case.top_diff.as_ref().unwrap(),
        f.case.top_diff.as_ref().unwrap()
    ));
    assert!(same_bits(
        g.case.forward.as_ref().unwrap(),
        f.reference_forward.as_ref().unwrap()
    ));
    assert!(same_bits(
        g.case.backward.as_ref().unwrap(),
        f.reference_backward.as_ref().unwrap()
    ));
}

#[test]
fn generated_half_fixtures_round_trip_bit_exactly() {
    for dt in HALF {
        for inputs in [Inputs::Uniform, Inputs::Edges] {
            for profile in ["arcface-thmm", "recommended", "caffe-gpu"] {
                let g = generate(&spec(profile, dt, None, inputs)).unwrap();
                assert!(g.case.cos.iter().all(|&x| dt.is_exact(x)));
                assert_round_trip(&g);
            }
        }
    }
    // Autocast-style: an f32 implementation fed f16-rounded inputs.
    let g = generate(&spec(
        "arcface-thmm",
        Dtype::F32,
        Some(Dtype::F16),
        Inputs::Edges,
    ))
    .unwrap();
    assert!(g.case.cos.iter().all(|&x| Dtype::F16.is_exact(x)));
    assert!(g.case.name.contains("_f32_f16inputs_"), "{}", g.case.name);
    assert_round_trip(&g);
    // f16 is not inside bf16 (nor bf16 inside f16): refused.
    assert!(generate(&spec(
        "analytic",
        Dtype::BF16,
        Some(Dtype::F16),
        Inputs::Uniform
    ))
    .is_err());
}

#[test]
fn edge_catalogue_sits_on_the_half_grid() {
    let p = Params::new(1.0, 0.5, 0.0);
    let thmm = Profile::preset("arcface-thmm").unwrap();
    let f16 = edge_cases(&thmm, &p, Dtype::F16);
    // README "halfedges": pred(1), succ(-1), succ(1), pred(-1), and H(thr(0.5)) with its neighbours.
    for want in [
        0.99951171875,
        -0.99951171875,
        1.0009765625,
        -1.0009765625,
        1.0,
        -1.0,
        -0.876953125,
        -0.87744140625,
        -0.8779296875,
    ] {
        assert!(f16.contains(&want), "f16 catalogue lacks {want}");
    }
    let bf16 = edge_cases(&thmm, &p, Dtype::BF16);
    for want in [0.99609375, 1.0078125, -0.875, -0.87890625, -0.8828125] {
        assert!(bf16.contains(&want), "bf16 catalogue lacks {want}");
    }
    // 1 − 1e-4 is 1 in both: no separate catalogue entry survives between pred(1) and 1.
    assert!(!f16.iter().any(|&x| x > 0.99951171875 && x < 1.0));
}

/// Reads a hand-built .npz: `dtype` text, `cos` with the given descr/bytes, labels, params.
fn npz_with_cos(dtype: &str, descr: &str, cos: &[u8]) -> Vec<u8> {
    let n = dtype.chars().count();
    let text: Vec<u8> = dtype
        .chars()
        .flat_map(|c| (c as u32).to_le_bytes())
        .collect();
    let dt = npy(
        &format!("{{'descr': '<U{n}', 'fortran_order': False, 'shape': (), }}"),
        &text,
    );
    let cos = npy(
        &format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 2), }}"),
        cos,
    );
    let labels = npy(
        "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
        &[0i64, 1]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    let params = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
        &[1.0f64, 0.5, 0.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    zip_of(&[
        ("dtype.npy", dt),
        ("cos.npy", cos),
        ("labels.npy", labels),
        ("params.npy", params),
    ])
}

#[test]
fn npz_half_layouts_are_enforced() {
    let f32s = |v: [f32; 4]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    // bf16 as float32 values exact in bf16: read.
    let ok = npz_with_cos("bf16", "<f4", &f32s([0.5, -0.87890625, 1.0, 0.99609375]));
    let f = read_layer_npz_bytes("t.npz", &ok, Limits::default()).unwrap();
    assert_eq!(f.dtype, Dtype::BF16);
    assert_eq!(f.case.cos[1], -0.87890625);
    // One float32 that is not a bf16 value (1 + 2^-9): refused, element named.
    let bad = npz_with_cos("bf16", "<f4", &f32s([0.5, 1.0 + 1.0 / 512.0, 1.0, 0.25]));
    let e = read_layer_npz_bytes("t.npz", &bad, Limits::default()).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("cos"), "{e}");
    assert!(
        e.problem.contains("element 1 (row 0, column 1)") && e.problem.contains("not a bf16 value"),
        "{e}"
    );
    // f16 must be <f2; a float32 array in an f16 fixture is refused.
    let wrong_width = npz_with_cos("f16", "<f4", &f32s([0.5, 0.25, 1.0, 0.5]));
    let e = read_layer_npz_bytes("t.npz", &wrong_width, Limits::default()).unwrap_err();
    assert!(
        e.problem.contains("does not match the fixture's dtype f16"),
        "{e}"
    );
    // <f2 without a dtype array: inferred f16, values exact.
    let f2: Vec<u8> = [0x3bffu16, 0xbb05, 0x3c00, 0x0001]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect();
    let f =
        read_layer_npz_bytes("t.npz", &npz_with_cos("f16", "<f2", &f2), Limits::default()).unwrap();
    assert_eq!(f.case.cos[0], 0.99951171875);
    assert_eq!(f.case.cos[2], 1.0);
    assert_eq!(f.case.cos[3], 2f64.powi(-24));
}

#[test]
#[ignore = "needs python3 with numpy (CI installs it and runs it with --ignored)"]
fn numpy_reads_the_half_npz() {
    let has_numpy = std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        has_numpy,
        "numpy_reads_the_half_npz: needs python3 with numpy"
    );
    let dir = common::ScratchDir::new("half-npz");
    for dt in HALF {
        let g = generate(&spec("arcface-thmm", dt, None, Inputs::Edges)).unwrap();
        let path = dir.join(format!("{dt}.npz"));
        std::fs::write(&path, g.to_npz().unwrap()).unwrap();
        let script = r#"
import json, sys, numpy as np
z = np.load(sys.argv[1], allow_pickle=False)
cos = z["cos"]
low16 = bool((cos.view(np.uint32) & 0xFFFF == 0).all()) if cos.dtype == np.float32 else None
print(json.dumps({"dtype": str(z["dtype"]), "descr": cos.dtype.str, "low16_zero": low16,
                  "cos": [float(x) for x in cos.astype(np.float64).ravel()]}))
"#;
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["dtype"], dt.name());
        let cos: Vec<f64> = v["cos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(same_bits(&cos, &g.case.cos), "{dt}: numpy's cos differs");
        match dt {
            Dtype::F16 => assert_eq!(v["descr"], "<f2"),
            Dtype::BF16 => {
                assert_eq!(v["descr"], "<f4");
                assert_eq!(v["low16_zero"], true, "bf16 as float32 has zero low halves");
            }
            Dtype::F32 | Dtype::F64 => unreachable!(),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The wrong-side count by brute force: every value of the grid in [−1, 1], the rounded
/// comparison `c > T(th)` against the exact criterion "θ + m2 < π" (acos in f64).
fn brute_wrong_side(dt: Dtype, m2: f64) -> Vec<f64> {
    let th = dt.round((PI - m2).cos());
    grid_in_unit(dt)
        .into_iter()
        .filter(|&c| (c > th) != (c.acos() + m2 < PI))
        .collect()
}

#[test]
fn degeneracies_are_the_ones_the_readme_and_the_issue_record() {
    let p = Params::new(1.0, 0.5, 0.0);
    let thmm = Profile::preset("arcface-thmm").unwrap();
    let th = |dt: Dtype, p: &Params| {
        degeneracies(&thmm, p, dt, dt)
            .into_iter()
            .find(|d| d.constant == Constant::Threshold)
            .unwrap()
    };
    // f16: th rounds to −0.877441406, above the exact value: one grid value on the wrong side
    // (README "What the thresholds and margins become": the only one of 30,721).
    let d = th(Dtype::F16, &p);
    assert_eq!(d.rounded, -0.87744140625);
    assert_eq!((d.effect, d.inputs), (Effect::WrongSide, 1));
    assert!(d.affects(-0.87744140625) && !d.affects(-0.876953125) && !d.affects(-0.8779296875));
    assert_eq!(brute_wrong_side(Dtype::F16, 0.5), vec![-0.87744140625]);
    assert_eq!(grid_in_unit(Dtype::F16).len(), 30_721);
    // bf16: below the exact value, no wrong side (32,513 values run as targets: none).
    let d = th(Dtype::BF16, &p);
    assert_eq!(
        (d.rounded, d.effect, d.inputs),
        (-0.87890625, Effect::Moved, 0)
    );
    assert!(brute_wrong_side(Dtype::BF16, 0.5).is_empty());
    assert_eq!(grid_in_unit(Dtype::BF16).len(), 32_513);
    // m = 0.3: both round below the exact value.
    let p3 = Params::new(1.0, 0.3, 0.0);
    for (dt, want) in [(Dtype::F16, -0.955566406), (Dtype::BF16, -0.95703125)] {
        let d = th(dt, &p3);
        assert!(
            (d.rounded - want).abs() < 1e-9 && d.effect == Effect::Moved,
            "{dt}: {d:?}"
        );
        assert!(brute_wrong_side(dt, 0.3).is_empty());
    }
    // f32 (insightface-torch/README.md quirk 6): the f32 th is "equal, not greater".
    let d = th(Dtype::F32, &p);
    assert_eq!(d.rounded, (-0.877_582_56f32) as f64);
    assert_eq!((d.effect, d.inputs), (Effect::WrongSide, 1));
    // f64 is its own resolution: nothing to report.
    assert!(degeneracies(&thmm, &p, Dtype::F64, Dtype::F64).is_empty());

    // The issue: 1 − 1e-4, 1 − 1e-5, 1 − 1e-7 round to 1 in f16, 1 − 1e-3 does in bf16.
    let clamp = |eps: f64, dt: Dtype| {
        let prof = Profile {
            domain: InputDomain::Clamp {
                eps,
                scope: combined_margin::profile::ClampScope::Target,
                at_bound: combined_margin::profile::BoundGradient::Pass,
            },
            ..Profile::preset("recommended").unwrap()
        };
        degeneracies(&prof, &p, dt, dt)
            .into_iter()
            .find(|d| d.constant == Constant::DomainHigh)
            .unwrap()
            .effect
    };
    for eps in [1e-4, 1e-5, 1e-7] {
        assert_eq!(clamp(eps, Dtype::F16), Effect::NoOp, "1 - {eps} in f16");
        assert_eq!(clamp(eps, Dtype::BF16), Effect::NoOp, "1 - {eps} in bf16");
    }
    assert_eq!(clamp(1e-3, Dtype::BF16), Effect::NoOp);
    assert_ne!(
        clamp(1e-3, Dtype::F16),
        Effect::NoOp,
        "0.999 is 0.99902344 in f16"
    );
    assert_ne!(clamp(1e-4, Dtype::F32), Effect::NoOp);
}

#[test]
fn the_f16_wrong_side_threshold_is_named_and_has_teeth() {
    let dump = read_dump(
        &half_file("combined_margin_loss_5ef9804_f16.json"),
        Limits::default(),
    )
    .unwrap();
    let prof = Profile::preset("arcface-thmm").unwrap();
    let case = dump
        .layer_cases()
        .unwrap()
        .into_iter()
        .find(|c| c.name == "arcface_s64_m1_1_m2_0.5_m3_0_edges_n16_c8")
        .unwrap();
    let ck = deviation::check(&case, &prof, Dtype::F16, &Declared::default()).unwrap();
    let d = ck
        .deviations
        .iter()
        .find(|d| d.kind == Kind::ConstantRoundedWrongSide)
        .expect("named");
    assert!(
        d.detail.contains("-0.877441406") && d.detail.contains("3 target input"),
        "{}",
        d.detail
    );
    // The float32 code's value there (README: -64, the margin branch) is not what an f16
    // implementation holding the rounded constant returns: out of budget, and not excused.
    let mut moved = case.clone();
    let wrong: Vec<usize> = ck
        .report
        .elements
        .iter()
        .filter(|e| e.side == Side::Forward && e.role == Role::Target && e.input == -0.87744140625)
        .map(|e| e.index(case.c))
        .collect();
    assert_eq!(wrong.len(), 3, "edges rows 5, 6, 7");
    for &i in &wrong {
        moved.forward.as_mut().unwrap()[i] = -64.0;
    }
    let after = deviation::check(&moved, &prof, Dtype::F16, &Declared::default()).unwrap();
    assert!(
        !after.kinds().contains(&Kind::ConstantRoundedWrongSide),
        "{:?}",
        after.kinds()
    );
    assert_eq!(after.unexplained.len(), 3, "{:?}", after.kinds());
    // bf16 rounds th below the exact value: the same case is not flagged.
    let bf = read_dump(
        &half_file("combined_margin_loss_5ef9804_bf16.json"),
        Limits::default(),
    )
    .unwrap();
    for c in bf.layer_cases().unwrap() {
        let ck = deviation::check(&c, &prof, Dtype::BF16, &Declared::default()).unwrap();
        assert!(
            !ck.kinds().contains(&Kind::ConstantRoundedWrongSide),
            "{}",
            c.name
        );
    }
}

/// caffe-gpu's clamp ±(1 − 1e-4) is ±1 in f16 and bf16: at c = 1 with m2 = 0 the backward is
/// 0·∞ = NaN (Caffe's clip keeps NaN), the finiteness the clamp bought in f32 is gone; in f32
/// the same input is clamped and finite.
#[test]
fn half_collapsed_clamp_loses_finiteness() {
    let gpu = Profile::preset("caffe-gpu").unwrap();
    let p = Params::new(1.0, 0.0, 0.35);
    for dt in HALF {
        assert!(clamp_collapses(&gpu, &p, dt) && !promises_finite_in(&gpu, &p, dt));
        assert!(margin::eval(1.0, &p, &gpu, dt).factor.is_nan(), "{dt}");
    }
    assert!(promises_finite_in(&gpu, &p, Dtype::F32));
    assert!(margin::eval(1.0, &p, &gpu, Dtype::F32).factor.is_finite());
    // recommended (ε = 0, limit rule, clip) keeps its promise in half.
    let rec = Profile::preset("recommended").unwrap();
    for dt in HALF {
        assert!(promises_finite_in(&rec, &p, dt));
        assert!(margin::eval(1.0, &p, &rec, dt).factor.is_finite());
    }
}

fn half_dtypes() -> impl Strategy<Value = Dtype> {
    prop::sample::select(HALF.to_vec())
}

fn half_entry() -> impl Strategy<Value = (Profile, Params, Dtype, f64)> {
    (profiles(), params(), half_dtypes()).prop_flat_map(|(prof, p, dt)| {
        let c = cos_for(&prof, &p, dt);
        (Just(prof), Just(p), Just(dt), c)
    })
}

proptest! {
    #![proptest_config(common::config(2048))]

    /// (1, 0, 0) is the identity in f16/bf16 too: exactly with the shortcut, within the half
    /// budget through cos(acos(c)).
    #[test]
    fn half_identity_at_1_0_0((prof, _p, dt, c) in half_entry()) {
        let p = Params::new(1.0, 0.0, 0.0);
        prop_assume!((-1.0..=1.0).contains(&c));
        let e = margin::eval(c, &p, &prof, dt);
        if prof.shortcut {
            prop_assert_eq!(e.out.to_bits(), c.to_bits());
        } else {
            let b = tolerance::target_budget(c, 1.0, &p, &prof, dt);
            prop_assert!(tolerance::within(dt.round(e.out), e.c_eff, b.forward),
                "{} {}: {:e} vs {:e} (budget {:e})", prof.name, dt, e.out, e.c_eff, b.forward);
        }
    }

    /// Non-target entries and ignored rows are bit-identical in f16/bf16 batches.
    #[test]
    fn half_non_targets_untouched(
        (prof, p, dt, (n, c, cos, labels, top)) in (profiles(), params(), half_dtypes())
            .prop_flat_map(|(prof, p, dt)| (Just(prof.clone()), Just(p), Just(dt), batch(prof, p, dt)))
    ) {
        let cos = Array2::from_shape_vec((n, c), cos).unwrap();
        let top = Array2::from_shape_vec((n, c), top).unwrap();
        let fwd = layer::forward(cos.view(), &labels, &p, &prof, dt).unwrap();
        let bwd = layer::backward(cos.view(), &labels, top.view(), &p, &prof, dt).unwrap();
        // Profiles that clamp or round-trip non-targets change them by design (tests/properties.rs).
        prop_assume!(!prof.transforms_non_targets());
        for i in 0..n {
            for j in 0..c {
                if labels[i] != j as i64 {
                    prop_assert_eq!(fwd[[i, j]].to_bits(), cos[[i, j]].to_bits());
                    prop_assert_eq!(bwd[[i, j]].to_bits(), top[[i, j]].to_bits());
                }
            }
        }
    }

    /// Presets that promise finiteness stay finite with half constants, unless their clamp
    /// collapses in the dtype (`half_collapsed_clamp_loses_finiteness` shows that case).
    #[test]
    fn half_clamped_presets_finite(
        (prof, dt) in half_dtypes().prop_flat_map(|dt| {
            // Whether a clamp collapses depends on ε and the dtype only, not on (m1, m2, m3).
            let keep: Vec<Profile> = Profile::presets()
                .into_iter()
                .filter(|q| promises_finite_in(q, &Params::new(1.0, 0.5, 0.0), dt))
                .collect();
            (prop::sample::select(keep), Just(dt))
        }),
        p in params(),
        c in prop_oneof![-1.5f64..1.5, Just(1.0), Just(-1.0)],
    ) {
        prop_assert!(promises_finite_in(&prof, &p, dt));
        let c = dt.round(c);
        let e = margin::eval(c, &p, &prof, dt);
        prop_assert!(e.out.is_finite() && e.factor.is_finite(), "{} {} at {:e}: {:e} / {:e}", prof.name, dt, c, e.out, e.factor);
    }

    /// The factor clip bounds the backward in f16/bf16 (where the clamp still clamps).
    #[test]
    fn half_gradient_bounds((prof, p, dt, c) in half_entry()) {
        prop_assume!(!clamp_collapses(&prof, &p, dt));
        if let Some((lo, hi)) = prof.factor_clip {
            let g = margin::eval(c, &p, &prof, dt).factor;
            prop_assert!(g >= lo && g <= hi, "{} {}: {:e} at {:e}", prof.name, dt, g, c);
        }
    }
}

/// A half-precision head as PyTorch computes it under its opmath model (SPEC.md §5.5): every
/// op in f32, its result rounded to the storage type; the softmax sum accumulated in f32. The
/// margin logits come from the reference rounded to half (the layer is checked on its own
/// elsewhere). `shift` = false omits the max subtraction (a porting bug the budget must catch).
struct HalfHead {
    loss: f64,
    probs: Vec<f64>,
    d_cos: Vec<f64>,
}

fn half_head(
    h: &combined_margin::pipeline::reference::HeadForward,
    labels: &[i64],
    cfg: &combined_margin::pipeline::LossConfig,
    dt: Dtype,
    shift: bool,
) -> HalfHead {
    let (n, c) = h.cos.dim();
    let r = |x: f64| dt.round(x as f32 as f64);
    let s = cfg.params.s;
    let unscaled = Params {
        s: 1.0,
        ..cfg.params
    };
    let mut probs = vec![0.0; n * c];
    let mut d_cos = vec![0.0; n * c];
    let mut total = 0.0f32;
    let nv = h.valid.max(1) as f64;
    for i in 0..n {
        let z: Vec<f64> = (0..c).map(|j| r(s * r(h.margin_logits[[i, j]]))).collect();
        let m = if shift {
            z.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        } else {
            0.0
        };
        let e: Vec<f64> = z
            .iter()
            .map(|&v| r((r(v - m) as f32).exp() as f64))
            .collect();
        let sum = e.iter().map(|&v| v as f32).sum::<f32>() as f64;
        for j in 0..c {
            probs[i * c + j] = r(e[j] / sum);
        }
        if let Some(y) = h.targets[i] {
            let lse = r((sum as f32).ln() as f64 + m);
            total += r(lse - z[y]) as f32;
            for j in 0..c {
                let onehot = if j == y { 1.0 } else { 0.0 };
                let ds = r(r(probs[i * c + j] - onehot) / nv);
                let dm = r(s * ds);
                d_cos[i * c + j] = if j == y {
                    let f = margin::eval(h.cos[[i, j]], &unscaled, &cfg.profile, dt).factor;
                    r(dm * f)
                } else {
                    dm
                };
            }
        }
    }
    let _ = labels;
    HalfHead {
        loss: (total as f64 / nv) as f32 as f64,
        probs,
        d_cos,
    }
}

#[test]
fn half_pipeline_head_within_its_budget_and_underflow_is_budgeted() {
    use combined_margin::pipeline::{budget, reference, LossConfig};
    for dt in HALF {
        for prof in [
            Profile::preset("recommended").unwrap(),
            Profile::preset("arcface-thmm").unwrap(),
        ] {
            let cfg = LossConfig::exact(
                Params::new(1.0, 0.5, 0.0).with_scale(64.0),
                prof.clone(),
                dt,
                0.0,
            );
            // Realistic logits: cos ~ N(0, 1/512) off target; the target 0.6 (odd rows) or
            // 0.95 (even rows: 64·cos(θ + 0.5) = 43.8, whose exp overflows f16); C = 1000.
            let (n, c) = (8, 1000);
            let mut rng = combined_margin::rng::SplitMix64::new(11);
            let mut cos = Array2::zeros((n, c));
            let labels: Vec<i64> = (0..n as i64).map(|i| (i * 97) % c as i64).collect();
            for i in 0..n {
                for j in 0..c {
                    let target = if i % 2 == 0 { 0.95 } else { 0.6 };
                    let v = if j as i64 == labels[i] {
                        target
                    } else {
                        rng.normal() / 512f64.sqrt()
                    };
                    cos[[i, j]] = dt.round(v);
                }
            }
            let h = reference::head_forward(cos.view(), &labels, &cfg).unwrap();
            let hb = reference::head_backward(&h, &labels, &cfg).unwrap();
            let zero = Array2::zeros((n, c));
            let b = budget::head(&h, &hb, zero.view(), &cfg, dt);
            let got = half_head(&h, &labels, &cfg, dt, true);
            let fl = tolerance::error_fraction(got.loss, h.loss, b.loss);
            assert!(
                fl <= 1.0,
                "{dt} {prof}: loss {} vs {}: {fl}",
                got.loss,
                h.loss
            );
            let mut underflowed = 0;
            let mut worst: f64 = 0.0;
            for (k, (&p, &bp)) in h.probs.iter().zip(b.probs.iter()).enumerate() {
                let fr = tolerance::error_fraction(got.probs[k], p, bp);
                assert!(
                    fr <= 1.0,
                    "{dt} {prof}: p[{k}] {} vs {p:e}: {fr}",
                    got.probs[k]
                );
                worst = worst.max(fr);
                if got.probs[k] == 0.0 && p > 0.0 {
                    underflowed += 1;
                }
            }
            for (k, (&g, &bg)) in hb.d_cos.iter().zip(b.d_cos.iter()).enumerate() {
                let fr = tolerance::error_fraction(got.d_cos[k], g, bg);
                assert!(
                    fr <= 1.0,
                    "{dt} {prof}: d_cos[{k}] {} vs {g:e}: {fr}",
                    got.d_cos[k]
                );
                worst = worst.max(fr);
            }
            // f16 probabilities below 2^-25 flush to 0 (s = 64, C = 1000): the budget's
            // spacing term admits them. bf16 has f32's exponent range: nothing flushes.
            match dt {
                Dtype::F16 => assert!(underflowed > 0, "f16 must exercise underflow"),
                Dtype::BF16 => assert_eq!(underflowed, 0),
                Dtype::F32 | Dtype::F64 => unreachable!(),
            }
            println!(
                "{dt} {prof}: worst {worst:.3} of budget, {underflowed} probabilities flushed to 0"
            );
            // Teeth: without the max shift, exp(64·cos) overflows f16 (e^11.09 = 65504):
            // rejected. bf16 does not overflow at s = 64 and is not asserted.
            if dt == Dtype::F16 {
                let bad = half_head(&h, &labels, &cfg, dt, false);
                let rejected = tolerance::error_fraction(bad.loss, h.loss, b.loss) > 1.0
                    || bad
                        .probs
                        .iter()
                        .zip(h.probs.iter().zip(b.probs.iter()))
                        .any(|(&a, (&p, &bp))| tolerance::error_fraction(a, p, bp) > 1.0);
                assert!(
                    rejected,
                    "{prof}: an unshifted f16 softmax must be rejected"
                );
            }
        }
    }
}

/// The CLI with the half dtypes: generate → check passes (JSON and .npz), kinks reports the
/// wrong side, plot accepts bf16, --profile auto runs on a half dump, a bad dtype is exit 2.
#[test]
fn cli_takes_the_half_dtypes() {
    let bin = || std::process::Command::new(env!("CARGO_BIN_EXE_cmargin"));
    let dir = common::ScratchDir::new("half-cli");
    for (dt, grid) in [("f16", None), ("bf16", None), ("f32", Some("f16"))] {
        let json = dir.join(format!("{dt}.json"));
        let npz = dir.join(format!("{dt}.npz"));
        let mut g = bin();
        g.args([
            "generate",
            "--profile",
            "arcface-thmm",
            "--inputs",
            "edges",
            "--scale",
            "64",
        ])
        .args(["--dtype", dt, "--force", "-o"])
        .arg(&json)
        .arg("-o")
        .arg(&npz);
        if let Some(grid) = grid {
            g.args(["--input-grid", grid]);
        }
        let out = g.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The reference checked against itself (the JSON's forward/backward): within budget;
        // the catalogue's ±1 and out-of-range inputs give NaN/inf (arcface-thmm predicts them),
        // and in f16 the catalogue holds T(th) = -0.877441406, on the wrong side.
        let out = bin()
            .args(["check", "--profile", "arcface-thmm", "--allow"])
            .arg("non-finite-output,constant-rounded-wrong-side")
            .arg(&json)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{dt}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(&format!(", {dt}, 1 cases)")), "{text}");
        assert!(text.contains("within budget"), "{text}");
        // Named as a note: it moves no element out of budget (SPEC.md §6.5).
        assert_eq!(
            text.contains("note constant-rounded-wrong-side"),
            dt == "f16",
            "{text}"
        );
    }
    let out = bin()
        .args(["kinks", "--dtype", "f16", "--profile", "arcface-thmm"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("-0.877582562 -> -0.877441406 wrong side (1 in"),
        "{text}"
    );
    let svg = dir.join("p.svg");
    let out = bin()
        .args(["plot", "--dtype", "bf16", "-o"])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let out = bin()
        .args(["check", "--profile", "auto"])
        .arg(half_file("cosface_bf16.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("=> behaves like analytic"));
    let out = bin().args(["kinks", "--dtype", "f8"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected f64, f32, f16 or bf16"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The half margin kernels' math on the host: the `_f16`/`_bf16` kernels evaluate
/// `cm_eval<float>` of the widened input under the profile rounded to the storage type and
/// round the result once (kernels/combined_margin.cu, (a')). The host build of that same
/// header text, rounded the same way, must agree with the half reference within its budget
/// on the half catalogue of every preset at the paper parameter sets.
#[test]
fn half_kernel_math_on_the_host_matches_the_reference() {
    use combined_margin::cuda::host::HostEval;
    use combined_margin::cuda::KernelProfile;
    use combined_margin::params::PAPER_CONFIGS;
    let mut n = 0usize;
    let mut worst: f64 = 0.0;
    for dt in HALF {
        for prof in Profile::presets() {
            for (m1, m2, m3) in PAPER_CONFIGS {
                let p = Params::new(m1, m2, m3);
                let kp = KernelProfile::new(&prof, &p, dt);
                let pk = kp.params();
                for c in edge_cases(&prof, &p, dt) {
                    let h = <f32 as HostEval>::host_eval(c as f32, &kp);
                    let (out, factor) = (dt.round(h.out as f64), dt.round(h.factor as f64));
                    let e = margin::eval(c, &pk, &prof, dt);
                    let b = tolerance::target_budget(c, 1.0, &pk, &prof, dt);
                    let fo = tolerance::error_fraction(out, dt.round(e.out), b.forward);
                    let fb = tolerance::error_fraction(factor, dt.round(e.factor), b.backward);
                    assert!(
                        fo <= 1.0 && fb <= 1.0,
                        "{dt} {prof} {p} c = {c:e}: out {out:e} vs {:e} ({fo}), factor {factor:e} vs {:e} ({fb})",
                        e.out,
                        e.factor
                    );
                    worst = worst.max(fo).max(fb);
                    n += 1;
                }
            }
        }
    }
    println!("half kernel math on the host: {n} entries, worst {worst:.3} of budget");
    assert!(n > 1000);
    // Teeth: a half kernel handed the f32 profile (th = -0.87758255, below the f16 input
    // -0.877441406) takes the margin branch there: -64/64 = -1 instead of the fallback -1.117.
    let (prof, p) = (
        Profile::preset("arcface-thmm").unwrap(),
        Params::new(1.0, 0.5, 0.0),
    );
    let c = -0.87744140625;
    let wrong = KernelProfile::new(&prof, &p, Dtype::F32);
    let right = KernelProfile::new(&prof, &p, Dtype::F16);
    let out = |kp: &KernelProfile| {
        Dtype::F16.round(<f32 as HostEval>::host_eval(c as f32, kp).out as f64)
    };
    let e = margin::eval(c, &right.params(), &prof, Dtype::F16);
    let b = tolerance::target_budget(c, 1.0, &right.params(), &prof, Dtype::F16);
    assert!(tolerance::within(out(&right), e.out, b.forward));
    assert!(
        !tolerance::within(out(&wrong), e.out, b.forward),
        "{} vs {}",
        out(&wrong),
        e.out
    );
}

/// NVRTC compiles the half kernels, and their PTX widens and rounds with the storage type's
/// own conversions (round to nearest even: cvt.rn).
#[test]
#[ignore = "needs NVRTC 13.0 (libnvrtc on LD_LIBRARY_PATH): .ci/run runs it with --ignored"]
fn half_kernels_compile_with_nvrtc() {
    use combined_margin::cuda::device;
    crate::cuda_nvrtc::require_nvrtc("half_precision::half_kernels_compile_with_nvrtc");
    let (ptx, _) = device::compile(device::CI_ARCH).unwrap();
    let text = ptx.to_src();
    for (name, cvts) in [
        (
            "cm_margin_forward_f16",
            &["cvt.f32.f16", "cvt.rn.f16.f32"][..],
        ),
        (
            "cm_margin_backward_f16",
            &["cvt.f32.f16", "cvt.rn.f16.f32"][..],
        ),
        ("cm_margin_forward_bf16", &["cvt.rn.bf16.f32"][..]),
        ("cm_margin_backward_bf16", &["cvt.rn.bf16.f32"][..]),
    ] {
        let body = device::ptx_entry_body(&text, name).unwrap_or_else(|| panic!("{name} in PTX"));
        for op in cvts {
            assert!(body.contains(op), "{name} lacks {op}");
        }
        // Storage is 16-bit: loads and stores of .u16/.b16, no 32-bit store of the result.
        assert!(
            body.contains("st.global.u16") || body.contains("st.global.b16"),
            "{name}"
        );
    }
}
