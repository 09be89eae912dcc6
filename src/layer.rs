//! Batch forms of the reference over `cos` [N, C] with labels [N].
//!
//! Forward: target entries `out = margin(c)`, every other entry and every ignored row
//! unchanged. Backward: `bottom_diff = top_diff · factor` at targets, `top_diff` elsewhere.
//! Both are unscaled; [`scale`] multiplies by s where an implementation scales in the layer.

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::margin::{self, Constants};
use crate::params::Params;
use crate::profile::{LabelPolicy, Profile, IGNORE_LABEL};
use ndarray::{Array2, ArrayView2};

/// What a row is under the label policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Row {
    /// The target column.
    Target(usize),
    /// No target; every entry gets the non-target treatment ([`margin::non_target`]).
    NoTarget,
    /// Ignored: every entry passes through untouched.
    Untouched,
}

impl Row {
    /// The target column, if the row has one.
    pub fn target(self) -> Option<usize> {
        match self {
            Row::Target(j) => Some(j),
            Row::NoTarget | Row::Untouched => None,
        }
    }
}

impl LabelPolicy {
    /// The row a label makes in a layer of `classes` columns, or `None` for a label the
    /// policy refuses.
    pub fn row(self, label: i64, classes: usize) -> Option<Row> {
        let in_range = label >= 0 && (label as u64) < classes as u64;
        if in_range {
            return Some(Row::Target(label as usize));
        }
        match self {
            LabelPolicy::IgnoreMinusOne => (label == IGNORE_LABEL).then_some(Row::Untouched),
            LabelPolicy::IgnoreOutOfRange => Some(Row::Untouched),
            LabelPolicy::MinusOneNoTarget => (label == IGNORE_LABEL).then_some(Row::NoTarget),
            LabelPolicy::NoIgnore => None,
        }
    }

    /// Whether −1 is accepted as "no target".
    pub fn allows_ignore(self) -> bool {
        match self {
            LabelPolicy::IgnoreMinusOne
            | LabelPolicy::IgnoreOutOfRange
            | LabelPolicy::MinusOneNoTarget => true,
            LabelPolicy::NoIgnore => false,
        }
    }
}

/// Checks that labels match the rows and that every label is accepted by the label policy.
/// Returns each row's kind.
pub fn rows(n: usize, classes: usize, labels: &[i64], profile: &Profile) -> Result<Vec<Row>> {
    if labels.len() != n {
        return Err(Error::ShapeMismatch {
            what: "labels".into(),
            expected: n,
            got: labels.len(),
        });
    }
    labels
        .iter()
        .enumerate()
        .map(|(row, &label)| {
            profile
                .labels
                .row(label, classes)
                .ok_or(Error::LabelOutOfRange {
                    row,
                    label,
                    classes,
                    allows_ignore: profile.labels.allows_ignore(),
                })
        })
        .collect()
}

/// The target column per row (`None` for rows without one), after [`rows`]' checks.
pub fn targets(
    n: usize,
    classes: usize,
    labels: &[i64],
    profile: &Profile,
) -> Result<Vec<Option<usize>>> {
    Ok(rows(n, classes, labels, profile)?
        .into_iter()
        .map(Row::target)
        .collect())
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
    let rows = rows(n, c, labels, profile)?;
    let k = Constants::new(profile, p, dtype);
    let mut out = cos.to_owned();
    for (i, row) in rows.into_iter().enumerate() {
        for j in 0..c {
            out[[i, j]] = match row {
                Row::Target(t) if t == j => margin::eval_with(cos[[i, j]], p, profile, &k).out,
                Row::Target(_) | Row::NoTarget => margin::non_target(cos[[i, j]], profile, &k).0,
                Row::Untouched => continue,
            };
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
    let rows = rows(n, c, labels, profile)?;
    let k = Constants::new(profile, p, dtype);
    let mut out = top_diff.to_owned();
    for (i, row) in rows.into_iter().enumerate() {
        for j in 0..c {
            let factor = match row {
                Row::Target(t) if t == j => margin::eval_with(cos[[i, j]], p, profile, &k).factor,
                Row::Target(_) | Row::NoTarget => margin::non_target(cos[[i, j]], profile, &k).1,
                Row::Untouched => continue,
            };
            // Only a transformed entry's gradient is a product (a copy stays bit-exact).
            if factor != 1.0 {
                out[[i, j]] = top_diff[[i, j]] * factor;
            }
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

/// Sub-centres (SPEC.md §11.2): `cos` of shape [N, C, K] (row-major, k fastest) reduced to
/// [N, C] by the max over K, with the arg-max of each (row, class). Ties go to the **first**
/// index, as `torch.max(dim)` returns it (and as the shipped catalyst dumps show: their
/// identical sub-centres get gradient only at k = 0); a NaN sub-centre wins (torch's max
/// propagates NaN), the first NaN on several.
pub fn subcenter_max(cos: &[f64], n: usize, c: usize, k: usize) -> Result<(Vec<f64>, Vec<usize>)> {
    subcenter_shape(cos, n, c, k)?;
    let mut max = Vec::with_capacity(n * c);
    let mut arg = Vec::with_capacity(n * c);
    for cell in cos.chunks_exact(k) {
        let best = subcenter_arg(cell);
        max.push(cell[best]);
        arg.push(best);
    }
    Ok((max, arg))
}

/// The values of [`subcenter_max`] alone: what a reader needs for `cos` (the arg-max is
/// recomputed where a gradient is routed), without an index per entry.
pub fn subcenter_max_values(cos: &[f64], n: usize, c: usize, k: usize) -> Result<Vec<f64>> {
    subcenter_shape(cos, n, c, k)?;
    Ok(cos
        .chunks_exact(k)
        .map(|cell| cell[subcenter_arg(cell)])
        .collect())
}

/// `cos` holds [N, C, K] values, K ≥ 1.
fn subcenter_shape(cos: &[f64], n: usize, c: usize, k: usize) -> Result<()> {
    if k == 0 || cos.len() != n * c * k {
        return Err(Error::ShapeMismatch {
            what: format!("cos of shape [N, C, K] = [{n}, {c}, {k}]"),
            expected: n * c * k,
            got: cos.len(),
        });
    }
    Ok(())
}

/// The sub-centre [`subcenter_max`] takes from one cell of K: the largest, NaN above every
/// number, the first of equals (torch's `max`).
fn subcenter_arg(cell: &[f64]) -> usize {
    let mut best = 0;
    for (j, &v) in cell.iter().enumerate().skip(1) {
        let b = cell[best];
        if (v.is_nan() && !b.is_nan()) || v > b {
            best = j;
        }
    }
    best
}

/// The backward of [`subcenter_max`]: the gradient of each (row, class) goes to its arg-max
/// sub-centre; every other sub-centre gets exactly 0. Returns [N, C, K].
pub fn subcenter_backward(d_cos: &[f64], argmax: &[usize], k: usize) -> Result<Vec<f64>> {
    if d_cos.len() != argmax.len() {
        return Err(Error::ShapeMismatch {
            what: "d_cos against the arg-max of the sub-centres".into(),
            expected: argmax.len(),
            got: d_cos.len(),
        });
    }
    let mut out = vec![0.0; d_cos.len() * k];
    for (i, (&g, &a)) in d_cos.iter().zip(argmax).enumerate() {
        out[i * k + a] = g;
    }
    Ok(out)
}
