//! Margin families (SPEC.md §11): per-row margins as a property of the reference, checked on
//! AdaFace's golden dumps and on identities (constant arrays = the scalar case, bit for bit;
//! a negative m2 moves the angle-clamp kink to the other side).

use combined_margin::compare;
use combined_margin::filecheck::{check_file, Choice};
use combined_margin::fixture::{read_dump, Limits};
use combined_margin::kinks::{self, KinkKind};
use combined_margin::profile::{adaface, mapped_profile};
use combined_margin::{Dtype, Params, Profile};
use std::path::Path;

fn golden(rel: &str) -> combined_margin::fixture::Dump {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/golden")
        .join(rel);
    read_dump(&p, Limits::default()).unwrap()
}

/// Every AdaFace case is read with one (m1, m2, m3) per row, some rows with m2 < 0, and
/// passes under the mapped profile.
#[test]
fn adaface_dumps_pass_row_by_row() {
    for dt in ["f32", "f64"] {
        let dump = golden(&format!("adaface/adaface_pipeline_{dt}.json"));
        assert_eq!(
            mapped_profile(&dump.implementation, None).map(|p| p.name),
            Some("adaface".to_string())
        );
        let mut negative = 0;
        for raw in &dump.cases {
            let case = dump.layer_view(raw).unwrap();
            let rows = case.row_params.as_ref().expect("per-row margins");
            assert_eq!(rows.len(), case.n);
            negative += rows.iter().filter(|p| p.m2 < 0.0).count();
        }
        assert!(negative > 0, "{dt}: no row with a negative m2");
        let fc = check_file(&dump, &Choice::Mapped).unwrap();
        let checks: Vec<_> = fc.checks().collect();
        assert_eq!(checks.len(), 6);
        for ck in checks {
            assert!(
                ck.report.passed() && ck.deviations.is_empty(),
                "{dt} {}: {:?}",
                ck.report.name,
                ck.report.worst()
            );
        }
    }
}

/// Per-row arrays that hold one value equal the scalar case bit for bit: every element's
/// reference and budget, under several profiles.
#[test]
fn constant_per_row_arrays_equal_the_scalar_case() {
    let dump = golden("catalyst/arcface_pipeline_f64.json");
    for raw in &dump.cases {
        let scalar = dump.layer_view(raw).unwrap();
        let per_row = combined_margin::fixture::LayerCase {
            row_params: Some(vec![scalar.params_effective; scalar.n]),
            ..scalar.clone()
        };
        for name in ["analytic", "arcface-thmm", "speechbrain-aam", "recommended"] {
            let prof = Profile::preset(name).unwrap();
            let a = compare::compare(&scalar, &prof, Dtype::F64).unwrap();
            let b = compare::compare(&per_row, &prof, Dtype::F64).unwrap();
            assert_eq!(a.elements.len(), b.elements.len());
            for (x, y) in a.elements.iter().zip(&b.elements) {
                assert_eq!(x.reference.to_bits(), y.reference.to_bits(), "{name}");
                assert_eq!(x.budget.to_bits(), y.budget.to_bits(), "{name}");
            }
        }
    }
}

/// A negative m2 moves the angle clamp's kink from near c = −1 (φ = π − ε) to near c = +1
/// (φ = ε at θ = ε − m2); the report keeps each row's own kinks.
#[test]
fn negative_m2_moves_the_kink_to_the_other_side() {
    let p = adaface();
    let eps = combined_margin::profile::ADAFACE_EPS;
    let pos = kinks::kinks(&p, &Params::new(1.0, 0.1, 0.4), Dtype::F64);
    let neg = kinks::kinks(&p, &Params::new(1.0, -0.1, 0.4), Dtype::F64);
    let at = |ks: &[kinks::Kink], kind| ks.iter().find(|k| k.kind == kind).map(|k| k.c);
    assert_eq!(at(&pos, KinkKind::AngleClampLow), None);
    let hi = at(&pos, KinkKind::AngleClampHigh).unwrap();
    assert!((hi - (std::f64::consts::PI - eps - 0.1).cos()).abs() < 1e-15);
    let lo = at(&neg, KinkKind::AngleClampLow).unwrap();
    assert!((lo - (eps + 0.1f64).cos()).abs() < 1e-15, "{lo}");
    // Row by row in a report.
    let dump = golden("adaface/adaface_pipeline_f64.json");
    let case = dump.layer_view(&dump.cases[0]).unwrap();
    let r = compare::compare(&case, &p, Dtype::F64).unwrap();
    for (row, q) in case.row_params.as_ref().unwrap().iter().enumerate() {
        let has_low = r
            .kinks_of_row(row)
            .iter()
            .any(|k| k.kind == KinkKind::AngleClampLow);
        // Listed where it lies inside the input clamp's domain (c < 1 − ε).
        let inside = q.m2 < -eps && (eps - q.m2).cos() < 1.0 - eps;
        assert_eq!(has_low, inside, "row {row}: m2 = {}", q.m2);
    }
}

/// m2 may be negative (down to −π, exclusive); m1 must stay positive.
#[test]
fn negative_m2_is_valid_and_m1_still_is_not() {
    assert!(Params::new(1.0, -0.3, 0.2).validate().is_ok());
    assert!(Params::new(1.0, -4.0, 0.2).validate().is_err());
    assert!(Params::new(-1.0, 0.3, 0.2).validate().is_err());
}

/// Sub-centres: the max over K with the arg-max at the first index on ties (torch.max), a
/// NaN sub-centre winning, and the backward routed to the arg-max only.
#[test]
fn subcenter_max_takes_the_first_index_on_ties() {
    use combined_margin::layer::{subcenter_backward, subcenter_max};
    // One row, three classes, K = 3: a clear max, an exact three-way tie, a NaN.
    let cos = [0.1, 0.7, 0.2, 0.5, 0.5, 0.5, 0.3, f64::NAN, 0.9];
    let (max, arg) = subcenter_max(&cos, 1, 3, 3).unwrap();
    assert_eq!(arg, vec![1, 0, 1]);
    assert_eq!(max[..2], [0.7, 0.5]);
    assert!(max[2].is_nan());
    let d = subcenter_backward(&[2.0, -1.0, 0.5], &arg, 3).unwrap();
    assert_eq!(d, vec![0.0, 2.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.5, 0.0]);
    // A wrong length names the shape.
    let e = subcenter_max(&cos, 1, 3, 2).unwrap_err().to_string();
    assert!(e.contains("[N, C, K] = [1, 3, 2]"), "{e}");
}

/// K = 1 is the plain head: the max is the input, bit for bit, and the backward the upstream.
#[test]
fn one_subcenter_is_the_plain_head() {
    use combined_margin::layer::{subcenter_backward, subcenter_max};
    let cos: Vec<f64> = (0..24).map(|i| ((i as f64) * 0.37).sin()).collect();
    let (max, arg) = subcenter_max(&cos, 4, 6, 1).unwrap();
    assert!(max
        .iter()
        .zip(&cos)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    assert!(arg.iter().all(|&a| a == 0));
    let d = subcenter_backward(&cos, &arg, 1).unwrap();
    assert!(d.iter().zip(&cos).all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// The shipped catalyst SubCenterArcFace dumps (weights [K, C, D]): the sub-centre cosines,
/// recomputed here in f64 from the recorded features and weights, reduce by the crate's max
/// to the recorded `cos` (within 4 units of the file dtype's rounding), and the library's
/// `d_weights` is exactly zero on every sub-centre that is the arg-max of no row and nonzero
/// on the others. The edges cases hold K identical sub-centres (exact ties on every entry):
/// the gradient sits on k = 0 only, the first index.
#[test]
fn catalyst_subcenter_gradients_go_to_the_first_arg_max() {
    use combined_margin::layer::subcenter_max;
    let mut ties = 0;
    for dt in ["f32", "f64"] {
        let dump = golden(&format!("catalyst/subcenter_arcface_pipeline_{dt}.json"));
        let u = dump.dtype.unit_roundoff();
        for raw in &dump.cases {
            let n = raw.dim("dims", "N").unwrap();
            let d = raw.dim("dims", "D").unwrap();
            let c = raw.dim("dims", "C").unwrap();
            let k = raw.dim("params", "k").unwrap();
            let x = raw.f64s("features", n * d).unwrap();
            let w = raw.f64s("weights", k * c * d).unwrap();
            let dw = raw.f64s("d_weights", k * c * d).unwrap();
            let cos = raw.f64s("cos", n * c).unwrap();
            let unit = |v: &[f64]| {
                let r = v.iter().map(|a| a * a).sum::<f64>().sqrt();
                v.iter().map(|a| a / r).collect::<Vec<f64>>()
            };
            let xs: Vec<Vec<f64>> = (0..n).map(|i| unit(&x[i * d..(i + 1) * d])).collect();
            // [K, C, D] layout: sub-centre kk of class j at (kk·C + j)·D.
            let ws: Vec<Vec<f64>> = (0..k * c).map(|r| unit(&w[r * d..(r + 1) * d])).collect();
            let mut sub = vec![0.0; n * c * k];
            for i in 0..n {
                for j in 0..c {
                    for kk in 0..k {
                        let wv = &ws[kk * c + j];
                        sub[(i * c + j) * k + kk] = xs[i].iter().zip(wv).map(|(a, b)| a * b).sum();
                    }
                }
            }
            let (max, arg) = subcenter_max(&sub, n, c, k).unwrap();
            for (a, b) in max.iter().zip(&cos) {
                assert!((a - b).abs() <= 4.0 * u, "{}: {a} vs {b}", raw.name);
            }
            let mut used = vec![false; k * c];
            for i in 0..n {
                for j in 0..c {
                    used[arg[i * c + j] * c + j] = true;
                    let cell = &sub[(i * c + j) * k..(i * c + j + 1) * k];
                    ties += usize::from(cell.iter().all(|&v| v == cell[0]));
                }
            }
            for (r, &u_) in used.iter().enumerate() {
                let zero = dw[r * d..(r + 1) * d].iter().all(|&g| g == 0.0);
                assert_eq!(
                    zero,
                    !u_,
                    "{}: sub-centre {} class {}",
                    raw.name,
                    r / c,
                    r % c
                );
            }
        }
    }
    assert!(ties > 0, "no tied sub-centres in the edges cases");
}

/// The shipped catalyst CurricularFace dumps (SPEC.md §11.3): every case passes with t =
/// `t_after_forward` (the library updates its statistic before use), and the hard negatives
/// the reference picks are the library's own recorded `curricular_hard_mask` (an independent
/// source: the mask torch computed), except within the rounding band where either is allowed.
#[test]
fn catalyst_curricularface_conforms_and_its_mask_is_the_libraries() {
    use combined_margin::compare::Reference;
    use combined_margin::layer::rows;
    use combined_margin::modulation::{Modulation, Treatment};
    for dt in ["f32", "f64"] {
        let dump = golden(&format!("catalyst/curricularface_pipeline_{dt}.json"));
        let fc = check_file(&dump, &Choice::Mapped).unwrap();
        let checks: Vec<_> = fc.checks().collect();
        assert_eq!(checks.len(), 6, "{dt}");
        let mut hard = 0;
        for (raw, ck) in dump.cases.iter().zip(&checks) {
            assert_eq!(
                ck.verdict(),
                combined_margin::deviation::Verdict::Pass,
                "{dt} {}: {:?}",
                ck.report.name,
                ck.report.worst()
            );
            let case = dump.layer_view(raw).unwrap();
            let Modulation::Curricular(cv) = case.modulation else {
                panic!("{dt}: no curricular modulation read");
            };
            let after = raw.obj["t_after_forward"][0].as_f64().unwrap();
            assert_eq!(cv.t, after);
            let mask: Vec<bool> = raw.obj["curricular_hard_mask"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_bool().unwrap_or_else(|| v.as_i64() == Some(1)))
                .collect();
            let reference = Reference::new(&ck.report.profile, &ck.report.params, dump.dtype);
            let kinds = rows(case.n, case.c, &case.labels, &ck.report.profile).unwrap();
            for (i, &kind) in kinds.iter().enumerate() {
                let cos_row = &case.cos[i * case.c..(i + 1) * case.c];
                let plan = reference.row_plan(&case.modulation, kind, cos_row).unwrap();
                for (j, tr) in plan.iter().enumerate() {
                    if case.labels[i] == j as i64 {
                        continue;
                    }
                    let m = mask[i * case.c + j];
                    hard += usize::from(m);
                    match tr {
                        Treatment::Modulated => assert!(m, "{dt} ({i}, {j})"),
                        Treatment::Unchanged => assert!(!m, "{dt} ({i}, {j})"),
                        Treatment::Either => {}
                    }
                }
            }
        }
        assert!(hard > 100, "{dt}: only {hard} hard negatives");
    }
}

/// The outputs of `dump` checked with each case's recorded fields changed by `edit`.
fn check_edited(
    dump: &combined_margin::fixture::Dump,
    edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>),
) -> Vec<combined_margin::deviation::CaseCheck> {
    let mut d = dump.clone();
    for raw in &mut d.cases {
        edit(&mut raw.obj);
    }
    check_file(&d, &Choice::Mapped)
        .unwrap()
        .checks()
        .cloned()
        .collect()
}

/// Planted bugs in the CurricularFace claims are rejected with the named cause
/// `modulation-differs`: the dump claiming the statistic before its update (the outputs used
/// the updated one), and a t 1.5 times the one used (the fit recovers it). A case claiming
/// no modulation at all fails as `non-target-altered`.
#[test]
fn curricularface_planted_bugs_are_named() {
    use serde_json::Value;
    for dt in ["f32", "f64"] {
        let dump = golden(&format!("catalyst/curricularface_pipeline_{dt}.json"));
        let stale = check_edited(&dump, |o| {
            let a = o["t_after_forward"].clone();
            let b = o["t_before_forward"].clone();
            o.insert("t_after_forward".into(), b);
            o.insert("t_before_forward".into(), a);
        });
        let wrong = check_edited(&dump, |o| {
            let t = o["t_after_forward"][0].as_f64().unwrap();
            o.insert("t_used".into(), Value::from(1.5 * t));
        });
        let plain = check_edited(&dump, |o| {
            for k in [
                "t_after_forward",
                "t_before_forward",
                "curricular_hard_mask",
            ] {
                o.remove(k);
            }
        });
        for (what, checks, cause, words) in [
            (
                "stale t",
                &stale,
                "modulation-differs",
                "the other recorded value",
            ),
            ("wrong t", &wrong, "modulation-differs", "t fits"),
            ("no modulation", &plain, "non-target-altered", ""),
        ] {
            for ck in checks.iter() {
                assert!(
                    !ck.report.passed(),
                    "{dt} {what}: {} passed",
                    ck.report.name
                );
                assert!(ck.unexplained.is_empty(), "{dt} {what}: {}", ck.report.name);
                let d = ck
                    .findings()
                    .find(|d| d.kind.name() == cause)
                    .unwrap_or_else(|| panic!("{dt} {what}: {} {:?}", ck.report.name, ck.kinds()));
                assert!(d.detail.contains(words), "{}", d.detail);
            }
        }
    }
}

/// Reference values of every element of `case` under `profile` (forward then backward).
fn references(case: &combined_margin::fixture::LayerCase, profile: &Profile) -> Vec<(u64, u64)> {
    compare::compare(case, profile, Dtype::F64)
        .unwrap()
        .elements
        .iter()
        .map(|e| (e.reference.to_bits(), e.budget.to_bits()))
        .collect()
}

/// A batch with no hard negatives (every non-target far below its row's target after the
/// margin) gives the unmodulated head bit for bit under CurricularFace; k = 0 (and an
/// inactive penalty's forward) gives it under inter-top-k.
#[test]
fn modulation_without_hard_negatives_or_k_zero_is_the_plain_head() {
    use combined_margin::modulation::{
        Curricular, CurricularGradient, CurricularMask, InterTopK, Modulation,
    };
    let dump = golden("catalyst/arcface_pipeline_f64.json");
    let profile = Profile::preset("arcface-thmm").unwrap();
    for raw in &dump.cases {
        let mut case = dump.layer_view(raw).unwrap();
        // Targets at 0.9, non-targets at -0.9 + a small spread: cos(acos 0.9 + m) > -0.5.
        for i in 0..case.n {
            let y = case.labels[i] as usize;
            for j in 0..case.c {
                case.cos[i * case.c + j] = if j == y { 0.9 } else { -0.9 + 1e-3 * j as f64 };
            }
        }
        case.forward = Some(case.cos.clone());
        let plain = references(&case, &profile);
        let curricular = combined_margin::fixture::LayerCase {
            modulation: Modulation::Curricular(Curricular {
                t: 0.3,
                t_other: None,
                mask: CurricularMask::MarginBranch,
                gradient: CurricularGradient::Full,
            }),
            ..case.clone()
        };
        assert_eq!(references(&curricular, &profile), plain, "{}", raw.name);
        let k0 = combined_margin::fixture::LayerCase {
            modulation: Modulation::InterTopK(InterTopK {
                k: 0,
                m: 0.06,
                active: true,
            }),
            ..case.clone()
        };
        assert_eq!(references(&k0, &profile), plain, "{}", raw.name);
    }
}

/// A-Softmax with λ = 0 (SPEC.md §11.4) is the plain head's forward and backward bit for bit
/// (`(0·c̃ + ψ)/1 = ψ`), on every entry of the catalyst ArcFace cases under `sphereface`.
#[test]
fn lambda_zero_is_the_plain_head() {
    let dump = golden("catalyst/arcface_pipeline_f64.json");
    let profile = Profile::preset("sphereface").unwrap();
    for raw in &dump.cases {
        let case = dump.layer_view(raw).unwrap();
        let values = |c: &combined_margin::fixture::LayerCase| -> Vec<u64> {
            compare::compare(c, &profile, Dtype::F64)
                .unwrap()
                .elements
                .iter()
                .map(|e| e.reference.to_bits())
                .collect()
        };
        let zero = combined_margin::fixture::LayerCase {
            lambda: Some(0.0),
            ..case.clone()
        };
        assert_eq!(values(&zero), values(&case), "{}", raw.name);
        let five = combined_margin::fixture::LayerCase {
            lambda: Some(5.0),
            ..case.clone()
        };
        assert_ne!(values(&five), values(&case), "{}", raw.name);
    }
}

/// The modulations' derivatives (SPEC.md §11.3) agree with central finite differences of
/// their values wherever the gradient is exact: CurricularFace's t + 2c everywhere, the
/// inter-top-k cos(θ − m′) away from |c| = 1 (where the derivative is infinite).
#[test]
fn modulation_derivatives_agree_with_finite_differences() {
    use combined_margin::modulation::{
        Curricular, CurricularGradient, CurricularMask, InterTopK, Modulation,
    };
    let heads = [
        Modulation::Curricular(Curricular {
            t: 0.37,
            t_other: None,
            mask: CurricularMask::MarginBranch,
            gradient: CurricularGradient::Full,
        }),
        Modulation::InterTopK(InterTopK {
            k: 3,
            m: 0.2,
            active: true,
        }),
    ];
    let h = 1e-6;
    for m in heads {
        for i in 0..=190 {
            let c = -0.95 + 0.01 * i as f64;
            let fd = (m.value(c + h).0 - m.value(c - h).0) / (2.0 * h);
            let d = m.value(c).1;
            assert!(
                (fd - d).abs() <= 1e-8 * d.abs().max(1.0),
                "{m:?} at c = {c}: fd {fd}, derivative {d}"
            );
        }
    }
}

/// The family constant fit (SPEC.md §11.5) on catalyst's CurricularFace dumps: with the
/// recorded t as stated, t fits the library's own value (its `t_after_forward`, which both
/// sources use) and agrees; with t_used planted 5 % off, it fits the library's value again,
/// differs from the planted one, and the verdict names `modulation-differs` with the fit.
#[test]
fn curricular_t_fits_the_libraries_recorded_value() {
    use combined_margin::fixture::LayerCase;
    use combined_margin::verdict::family_fit::{self, FitOn};
    use serde_json::Value;
    fn on<'a>(case: &'a LayerCase, profile: &'a Profile, dtype: Dtype) -> FitOn<'a> {
        FitOn {
            cases: std::slice::from_ref(case),
            profile,
            dtype,
            s: None,
        }
    }
    for dt in ["f32", "f64"] {
        let dump = golden(&format!("catalyst/curricularface_pipeline_{dt}.json"));
        let dtype = dump.dtype;
        let mut edited = dump.clone();
        for raw in &mut edited.cases {
            let t = raw.obj["t_after_forward"][0].as_f64().unwrap();
            raw.obj.insert("t_used".into(), Value::from(1.05 * t));
        }
        // The profile each case is checked under (catalyst maps to none: fingerprinted).
        let profiles: Vec<Profile> = check_file(&dump, &Choice::Mapped)
            .unwrap()
            .checks()
            .map(|ck| ck.report.profile.clone())
            .collect();
        let mut fitted = 0;
        for ((raw, bad), profile) in dump.cases.iter().zip(&edited.cases).zip(&profiles) {
            let truth = raw.obj["t_after_forward"][0].as_f64().unwrap();
            let case = dump.layer_view(raw).unwrap();
            let Some(f) = family_fit::fit_curricular_t(on(&case, profile, dtype)) else {
                continue; // a case with no usable hard negative
            };
            fitted += 1;
            assert!(
                (f.value - truth).abs() <= f.uncertainty,
                "{dt}: {}",
                f.describe()
            );
            assert!(!f.differs(), "{dt}: {}", f.describe());
            let planted = edited.layer_view(bad).unwrap();
            let f = family_fit::fit_curricular_t(on(&planted, profile, dtype)).unwrap();
            assert!(
                (f.value - truth).abs() <= f.uncertainty,
                "{dt}: {}",
                f.describe()
            );
            assert_eq!(f.stated, Some(1.05 * truth));
            assert!(
                f.differs() && f.describe().contains("-4.762%"),
                "{}",
                f.describe()
            );
        }
        assert!(fitted >= 4, "{dt}: only {fitted} cases fitted");
        let checks: Vec<_> = check_file(&edited, &Choice::Mapped)
            .unwrap()
            .checks()
            .cloned()
            .collect();
        for ck in &checks {
            assert!(ck.unexplained.is_empty(), "{dt}: {}", ck.report.name);
            let d = ck
                .findings()
                .find(|d| d.kind.name() == "modulation-differs")
                .unwrap_or_else(|| panic!("{dt}: {} {:?}", ck.report.name, ck.kinds()));
            assert!(
                d.detail.contains("t fits") && d.detail.contains("-4.762%"),
                "{}",
                d.detail
            );
        }
    }
}

/// AdaFace's law for per-row margins (SPEC.md §11.7) on the shipped AdaFace dumps: m (from
/// m2 + m3 on every row) and h (from the rows' ẑ against the recorded norms and batch
/// statistics) fit the library call's own `params.m` = 0.4 and `params.h` = 0.333. Planted:
/// a stated h of 0.3 is contradicted (h fits 0.333); g_add from m = 0.42 makes m fit 0.42
/// against the stated 0.4; the norms rotated by one row no longer give one h; a `norms`
/// array of the wrong length is bad input naming the field.
#[test]
fn adaface_margins_follow_the_law_and_planted_constants_are_contradicted() {
    use combined_margin::verdict::family_fit::adaface_law;
    use combined_margin::verdict::fit::Fitted;
    use serde_json::Value;
    let law = |dump: &combined_margin::fixture::Dump, i: usize| -> Vec<Fitted> {
        let raw = &dump.cases[i];
        let case = dump.layer_view(raw).unwrap();
        let law = adaface_law(raw, &case, dump.dtype).unwrap().unwrap();
        assert!(law.outside.is_empty(), "{:?}", law.outside);
        law.fits
    };
    let get = |fits: &[Fitted], name: &str| fits.iter().find(|f| f.name == name).cloned().unwrap();
    for dt in ["f32", "f64"] {
        let dump = golden(&format!("adaface/adaface_pipeline_{dt}.json"));
        let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut d = dump.clone();
            for raw in &mut d.cases {
                f(&mut raw.obj);
            }
            d
        };
        let h_off = edit(&|o| {
            o.get_mut("params").unwrap()["h"] = Value::from(0.3);
        });
        let m_off = edit(&|o| {
            let m3: Vec<f64> = o["params"]["m3"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() + 0.02)
                .collect();
            o.get_mut("params").unwrap()["m3"] = Value::from(m3);
        });
        let rotated = edit(&|o| {
            let mut n: Vec<Value> = o["norms"].as_array().unwrap().clone();
            n.rotate_left(1);
            o.insert("norms".into(), Value::from(n));
        });
        for i in 0..dump.cases.len() {
            let fits = law(&dump, i);
            let (m, h) = (get(&fits, "m"), get(&fits, "h"));
            assert!(
                !m.differs() && !h.differs(),
                "{dt}: {} / {}",
                m.describe(),
                h.describe()
            );
            assert!((m.value - 0.4).abs() <= m.uncertainty, "{}", m.describe());
            assert!((h.value - 0.333).abs() <= h.uncertainty, "{}", h.describe());

            let h2 = get(&law(&h_off, i), "h");
            assert!(
                h2.differs() && (h2.value - 0.333).abs() <= h2.uncertainty,
                "{}",
                h2.describe()
            );
            assert!(h2.describe().contains("stated 0.3 ("), "{}", h2.describe());

            let m2 = get(&law(&m_off, i), "m");
            assert!(
                m2.differs() && (m2.value - 0.42).abs() <= m2.uncertainty,
                "{}",
                m2.describe()
            );

            let h3 = get(&law(&rotated, i), "h");
            assert!(
                h3.differs() || h3.uncertainty > 0.01 * 0.333,
                "{dt}: rotated norms still give one h: {}",
                h3.describe()
            );
        }
        // Bad input: a norms array of the wrong length names the field.
        let short = edit(&|o| {
            o.insert("norms".into(), Value::from(vec![1.0, 2.0]));
        });
        let err = check_file(&short, &Choice::Mapped).unwrap_err();
        assert!(err.contains("\"norms\"") || err.contains("norms"), "{err}");
    }
}

/// Under `--profile auto` the family constants join the table of the point found and
/// `--fit-json` (SPEC.md §11.5): on catalyst's CurricularFace dump each case's t (fitted
/// apart: every case records its own) agrees with the recorded one; with `t_used` planted
/// 5 % larger, each fits the library's `t_after_forward` and fails (DIFFERS).
#[test]
fn fit_json_carries_the_family_constants() {
    use serde_json::Value;
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/golden/catalyst/curricularface_pipeline_f64.json");
    let dump: Value = serde_json::from_str(&std::fs::read_to_string(&src).unwrap()).unwrap();
    let truth: Vec<(String, f64)> = dump["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let t = c["t_after_forward"][0].as_f64().unwrap();
            (c["name"].as_str().unwrap().to_string(), t)
        })
        .collect();
    let mut planted = dump.clone();
    for c in planted["cases"].as_array_mut().unwrap() {
        let t = c["t_after_forward"][0].as_f64().unwrap();
        c["t_used"] = Value::from(1.05 * t);
    }
    let bad = dir.path().join("planted.json");
    std::fs::write(&bad, planted.to_string()).unwrap();
    for (file, fails) in [(src.as_path(), false), (bad.as_path(), true)] {
        let json = dir.path().join(format!("fit_{fails}.json"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cmargin"))
            .args(["check", "--profile", "auto", "--fit-json"])
            .arg(&json)
            .arg(file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(if fails { 1 } else { 0 }), "{text}");
        let j: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let mut seen = 0;
        for s in j["searches"].as_array().unwrap() {
            for c in s["point"]["constants"].as_array().unwrap() {
                let name = c["name"].as_str().unwrap();
                let Some((_, t)) = truth.iter().find(|(n, _)| name == format!("t ({n})")) else {
                    continue;
                };
                seen += 1;
                let (v, unc) = (
                    c["fitted"].as_f64().unwrap(),
                    c["uncertainty"].as_f64().unwrap(),
                );
                assert!((v - t).abs() <= unc, "{c}");
                assert_eq!(c["fails"], fails, "{c}");
                if fails {
                    assert!(text.contains(&format!("{name} fits")), "{text}");
                }
            }
        }
        assert_eq!(seen, truth.len(), "{j}");
        // The one-line summary names the fitted t where the stated one fails.
        let summary = text
            .lines()
            .find(|l| l.contains("=> behaves like"))
            .unwrap_or_default();
        assert_eq!(
            summary.contains("fitted where the stated value fails: t ("),
            fails,
            "{text}"
        );
    }
}
