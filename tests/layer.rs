//! The batch layer: bad input is a typed error naming the row and value, never a panic; the
//! targets it transforms are exactly the labelled ones.

use combined_margin::{layer, Dtype, Error, Params, Profile};
use ndarray::{array, Array2};

fn p() -> Params {
    Params::new(1.0, 0.5, 0.0)
}

#[test]
fn label_out_of_range_is_an_error_naming_the_row() {
    let cos = Array2::<f64>::zeros((3, 4));
    for bad in [4i64, -2, i64::MAX, i64::MIN] {
        let labels = [0, -1, bad];
        let e = layer::forward(
            cos.view(),
            &labels,
            &p(),
            &Profile::preset("analytic").unwrap(),
            Dtype::F64,
        )
        .unwrap_err();
        assert_eq!(
            e,
            Error::LabelOutOfRange {
                row: 2,
                label: bad,
                classes: 4,
                allows_ignore: true
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("row 2") && msg.contains(&bad.to_string()),
            "{msg}"
        );
    }
}

#[test]
fn shape_mismatches_are_errors() {
    let cos = Array2::<f64>::zeros((3, 4));
    let e = layer::forward(
        cos.view(),
        &[0, 1],
        &p(),
        &Profile::preset("analytic").unwrap(),
        Dtype::F64,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                expected: 3,
                got: 2,
                ..
            }
        ),
        "{e}"
    );
    let top = Array2::<f64>::zeros((4, 3));
    let e = layer::backward(
        cos.view(),
        &[0, 1, 2],
        top.view(),
        &p(),
        &Profile::preset("analytic").unwrap(),
        Dtype::F64,
    )
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
}

#[test]
fn invalid_params_are_errors() {
    let cos = Array2::<f64>::zeros((1, 1));
    for (bad, field) in [
        (Params::new(0.0, 0.5, 0.0), "m1"),
        // m2 may be negative (AdaFace, SPEC.md §11.1), down to −π exclusive.
        (Params::new(1.0, -4.0, 0.0), "m2"),
        (Params::new(1.0, 0.5, f64::NAN), "m3"),
    ] {
        let e = layer::forward(
            cos.view(),
            &[0],
            &bad,
            &Profile::preset("analytic").unwrap(),
            Dtype::F64,
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::InvalidParam { field: f, .. } if f == field),
            "{e}"
        );
    }
}

/// Only the labelled entry changes, by the closed form cos(acos(c) + m2); the ignored row and
/// the other columns are untouched.
#[test]
fn only_targets_change() {
    let cos = array![[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]];
    let top = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let labels = [1, -1];
    let prof = Profile::preset("analytic").unwrap();
    let fwd = layer::forward(cos.view(), &labels, &p(), &prof, Dtype::F64).unwrap();
    let bwd = layer::backward(cos.view(), &labels, top.view(), &p(), &prof, Dtype::F64).unwrap();
    // Closed forms, evaluated independently of the profile machinery.
    let want = (0.2f64.acos() + 0.5).cos();
    approx::assert_relative_eq!(fwd[[0, 1]], want, max_relative = 4.0 * f64::EPSILON);
    let want_g = 2.0 * (0.2f64.acos() + 0.5).sin() / (1.0 - 0.04f64).sqrt();
    approx::assert_relative_eq!(bwd[[0, 1]], want_g, max_relative = 8.0 * f64::EPSILON);
    for (i, j) in [(0, 0), (0, 2), (1, 0), (1, 1), (1, 2)] {
        assert_eq!(fwd[[i, j]], cos[[i, j]]);
        assert_eq!(bwd[[i, j]], top[[i, j]]);
    }
}
