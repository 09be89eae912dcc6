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
