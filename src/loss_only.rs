//! Loss-only dumps (SPEC.md §8.7): a library that maps `cos` straight to a scalar loss and
//! records `loss` and `d_cos` (the gradient of the loss with respect to `cos`), with no margin
//! logits and no upstream gradient (NeMo's `AngularSoftmaxLoss`, FORMAT.md "Loss-only dumps").
//!
//! The reference is the crate's loss reference, [`crate::pipeline::reference`]'s head (margin,
//! scale, softmax cross-entropy, in f64) under the profile, and the budgets are the head's
//! ([`crate::pipeline::budget::head`], the implementation fed the same cos, so no cos error):
//! the loss is compared as a scalar ([`Scalar`]), `d_cos` element by element as the backward
//! side of a layer whose upstream gradient is the reference's `d_margin_logits`. A target
//! element gets the head's `d_cos` budget (which holds the layer's own budget and the softmax
//! error times the factor); a pass-through element gets the layer's pass-through budget (the
//! non-target transform of the profile, if any) plus the head's budget of its upstream
//! gradient. The reference log-sum-exp is stabilised; an implementation without the max
//! subtraction that overflows its dtype (exp(s·c) > the dtype's largest finite value) returns
//! a non-finite loss where a finite one is due: a non-finite mismatch, which fails.

use crate::compare::{self, CaseReport, Element, Scalar, Side};
use crate::deviation::{self, CaseCheck, Declared};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::fixture::{FixtureError, LayerCase, RawCase};
use crate::params::Params;
use crate::pipeline::{budget, reference, LossConfig};
use crate::profile::{preset_names, Profile};
use crate::space::{self, Axis};
use ndarray::Array2;

/// One loss-only case, read.
#[derive(Clone, Debug, PartialEq)]
pub struct LossOnlyCase {
    pub name: String,
    /// m1, m2, m3 and the scale s the loss applies (s = 1 if `params` has none).
    pub params: Params,
    pub n: usize,
    pub c: usize,
    pub cos: Vec<f64>,
    pub labels: Vec<i64>,
    /// The implementation's loss (may be non-finite: that is a finding).
    pub loss: Option<f64>,
    /// The implementation's d loss / d cos (may hold NaN: a finding).
    pub d_cos: Vec<f64>,
    /// The loss is a sum over rows (`reduction` starting with "sum"), not a mean.
    pub sum: bool,
}

/// Reads a loss-only case (`cos`, `labels`, `params`, `dims`, `d_cos`, optional `loss` and
/// `reduction`). Errors are located by file, case and field; NaN in `cos` is bad input, NaN
/// in the outputs (`loss`, `d_cos`) is not.
pub fn read(raw: &RawCase, dtype: Dtype) -> std::result::Result<LossOnlyCase, FixtureError> {
    let (params, _) = raw.params("params")?;
    let params = raw.params_effective(&params)?;
    let (n, c) = if raw.has("dims") {
        (raw.dim("dims", "N")?, raw.dim("dims", "C")?)
    } else {
        raw.shape2()?
    };
    raw.check_count("dims", n as u128 * c as u128)?;
    let len = n * c;
    let cos = raw.f64s_as("cos", len, dtype)?;
    raw.reject_nan("cos", Some(&cos), c)?;
    let d_cos = raw
        .f64s_opt("d_cos", len, dtype)?
        .ok_or_else(|| raw.err("d_cos", "missing (a loss-only case needs d loss / d cos)"))?;
    let loss = if raw.has("loss") {
        Some(dtype.round(raw.number("loss")?))
    } else {
        None
    };
    let sum = raw.reduction_is_sum();
    Ok(LossOnlyCase {
        name: raw.name.clone(),
        params,
        n,
        c,
        labels: raw.labels("labels", n)?,
        cos,
        loss,
        d_cos,
        sum,
    })
}

/// Checks one loss-only case under `profile` in `dtype`: the loss and every `d_cos` element
/// against the loss reference ([`compare`]), then the deviation detectors on the `d_cos` side.
pub fn check(case: &LossOnlyCase, profile: &Profile, dtype: Dtype) -> Result<CaseCheck> {
    let (layer, report) = compare(case, profile, dtype)?;
    deviation::check_report(&layer, report, &Declared::default())
}

/// The comparison alone (no detectors): the layer view the `d_cos` side was compared as, and
/// the report with the loss as its scalar.
pub fn compare(
    case: &LossOnlyCase,
    profile: &Profile,
    dtype: Dtype,
) -> Result<(LayerCase, CaseReport)> {
    let cfg = LossConfig::exact(case.params, profile.clone(), dtype, 0.0);
    let cos = Array2::from_shape_vec((case.n, case.c), case.cos.clone())
        .map_err(|e| Error::Invalid(format!("cos: {e}")))?;
    let h = reference::head_forward(cos.view(), &case.labels, &cfg)?;
    let hb = reference::head_backward(&h, &case.labels, &cfg)?;
    let zeros = Array2::zeros((case.n, case.c));
    let hbud = budget::head(&h, &hb, zeros.view(), &cfg, dtype);
    // A sum reduction is the mean times the number of rows with a label.
    let k = if case.sum { h.valid.max(1) as f64 } else { 1.0 };
    let top: Vec<f64> = hb.d_margin_logits.iter().map(|v| k * v).collect();
    let layer = LayerCase {
        name: case.name.clone(),
        params: case.params,
        params_effective: case.params,
        scaled: false,
        easy_margin: None,
        n: case.n,
        c: case.c,
        cos: case.cos.clone(),
        labels: case.labels.clone(),
        top_diff: Some(top),
        forward: None,
        backward: Some(case.d_cos.clone()),
        row_params: None,
        modulation: crate::modulation::Modulation::None,
        lambda: None,
        subcenters: None,
    };
    // Every element: each one's budget is widened by the softmax's below.
    let p = compare::output_params(&layer);
    let mut report =
        compare::compare_with_detail(&layer, profile, &p, dtype, compare::Detail::Every)?;
    report.rebudget(|e: &Element| match e.side {
        Side::Forward => e.budget,
        Side::Backward => {
            let head = k * hbud.d_cos[[e.row, e.col]];
            if h.targets[e.row] == Some(e.col) {
                head
            } else {
                e.budget + head
            }
        }
    })?;
    if let Some(actual) = case.loss {
        report
            .scalars
            .push(Scalar::new("loss", actual, k * h.loss, k * hbud.loss));
    }
    Ok((layer, report))
}

/// How well one candidate profile explains a set of loss-only cases.
#[derive(Clone, Debug)]
pub struct LossFit {
    pub profile: Profile,
    /// Share of compared values (elements and losses) within budget.
    pub share: f64,
    /// Largest error fraction.
    pub worst: f64,
}

/// The candidates of a loss-only search: every preset, then every one-axis neighbour of each
/// preset (named "`preset` except …"), in that order.
fn candidates() -> Vec<Profile> {
    let mut out: Vec<Profile> = preset_names()
        .map(|n| Profile::preset(n).expect("preset"))
        .collect();
    for base in out.clone() {
        for axis in Axis::ALL {
            for mut p in axis.values(&base) {
                if out.iter().any(|q| space::differences(q, &p).is_empty()) {
                    continue;
                }
                p.name = space::describe_as_neighbour(&base, &p)
                    .trim_start_matches("behaves like ")
                    .to_string();
                out.push(p);
            }
        }
    }
    out
}

/// Ranks the candidates ([`candidates`]) on `cases`, best first: the larger share within
/// budget, then the earlier candidate (a preset before a neighbour: fewer departures win a
/// tie). Candidates whose label policy refuses a label of the cases are left out.
pub fn rank(cases: &[LossOnlyCase], dtype: Dtype) -> Vec<LossFit> {
    let mut fits: Vec<(usize, LossFit)> = Vec::new();
    'cand: for (i, p) in candidates().into_iter().enumerate() {
        let (mut within, mut count, mut worst) = (0usize, 0usize, 0.0f64);
        for case in cases {
            let Ok((_, r)) = compare(case, &p, dtype) else {
                continue 'cand;
            };
            within += r.within() + r.scalars.iter().filter(|x| x.passed()).count();
            count += r.count() + r.scalars.len();
            worst = r
                .elements
                .iter()
                .map(|e| e.fraction)
                .chain(r.scalars.iter().map(|x| x.fraction))
                .fold(worst, f64::max);
        }
        let share = if count == 0 {
            0.0
        } else {
            within as f64 / count as f64
        };
        fits.push((
            i,
            LossFit {
                profile: p,
                share,
                worst,
            },
        ));
    }
    fits.sort_by(|(i, a), (j, b)| b.share.total_cmp(&a.share).then(i.cmp(j)));
    fits.into_iter().map(|(_, f)| f).collect()
}
