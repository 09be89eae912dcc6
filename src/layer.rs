//! Batch forms of the reference over `cos` [N, C] with labels [N].
//!
//! Forward: target entries `out = margin(c)`, every other entry and every ignored row
//! unchanged. Backward: `bottom_diff = top_diff · factor` at targets, `top_diff` elsewhere.
//! Both are unscaled; [`scale`] multiplies by s where an implementation scales in the layer.

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::margin::{self, Constants};
use crate::params::Params;
use crate::profile::Profile;
use ndarray::{Array2, ArrayView2};

/// Checks that labels match the rows and that every label is the ignore value or in [0, C).
/// Returns the target column per row (`None` for ignored rows).
pub fn targets(
    n: usize,
    classes: usize,
    labels: &[i64],
    profile: &Profile,
) -> Result<Vec<Option<usize>>> {
    if labels.len() != n {
        return Err(Error::ShapeMismatch {
            what: "labels".into(),
            expected: n,
            got: labels.len(),
        });
    }
    let ignore = profile.labels.ignore;
    labels
        .iter()
        .enumerate()
        .map(|(row, &label)| {
            if label == ignore {
                Ok(None)
            } else if label >= 0 && (label as u64) < classes as u64 {
                Ok(Some(label as usize))
            } else {
                Err(Error::LabelOutOfRange {
                    row,
                    label,
                    classes,
                    ignore,
                })
            }
        })
        .collect()
}

fn check_same_shape(what: &str, a: &ArrayView2<f64>, b: &ArrayView2<f64>) -> Result<()> {
    if a.dim() != b.dim() {
        return Err(Error::ShapeMismatch {
            what: what.into(),
            expected: a.len(),
            got: b.len(),
        });
    }
    Ok(())
}

/// Forward of the layer: a copy of `cos` with each non-ignored row's target transformed.
pub fn forward(
    cos: ArrayView2<f64>,
    labels: &[i64],
    p: &Params,
    profile: &Profile,
    dtype: Dtype,
) -> Result<Array2<f64>> {
    p.validate()?;
    let (n, c) = cos.dim();
    let t = targets(n, c, labels, profile)?;
    let k = Constants::new(profile, p, dtype);
    let mut out = cos.to_owned();
    for (i, col) in t.into_iter().enumerate() {
        if let Some(j) = col {
            out[[i, j]] = margin::eval_with(cos[[i, j]], p, profile, &k).out;
        }
    }
    Ok(out)
}

/// Backward of the layer: `top_diff` with each non-ignored row's target multiplied by the factor.
pub fn backward(
    cos: ArrayView2<f64>,
    labels: &[i64],
    top_diff: ArrayView2<f64>,
    p: &Params,
    profile: &Profile,
    dtype: Dtype,
) -> Result<Array2<f64>> {
    p.validate()?;
    check_same_shape("top_diff", &cos, &top_diff)?;
    let (n, c) = cos.dim();
    let t = targets(n, c, labels, profile)?;
    let k = Constants::new(profile, p, dtype);
    let mut out = top_diff.to_owned();
    for (i, col) in t.into_iter().enumerate() {
        if let Some(j) = col {
            out[[i, j]] = top_diff[[i, j]] * margin::eval_with(cos[[i, j]], p, profile, &k).factor;
        }
    }
    Ok(out)
}

/// Multiplies every element by s (the scale some implementations apply inside the layer).
pub fn scale(mut a: Array2<f64>, s: f64) -> Array2<f64> {
    if s != 1.0 {
        a.mapv_inplace(|x| x * s);
    }
    a
}
