//! Named deviations of a pipeline from the exact loss and its true gradient (SPEC.md §8.4).
//! Layer-level deviations live in `crate::deviation`; these concern the whole head.

use super::budget;
use super::reference::{self, Backward, Forward};
use super::{LossConfig, WeightGrad};
use crate::dtype::Dtype;
use crate::tolerance::error_fraction;
use ndarray::ArrayView2;

/// A way a pipeline departs from d(loss)/d(inputs) of the loss it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipelineDeviation {
    /// The class-weight gradient is d loss / d ŵ (= d_cosᵀ · x̂), not d loss / d w through
    /// ŵ = w / sqrt(|w|² + eps): the Caffe seed's InnerProduct with `normalize: true`.
    WeightGradientWrtNormalized,
    /// Each row's loss is −log(max(p_y, floor)) (Caffe: FLT_MIN, so at most 87.34 nats per
    /// row) while the gradient stays p − onehot: past the floor the loss is flat but the
    /// gradient is not.
    LossProbabilityFloor,
}

impl PipelineDeviation {
    pub fn name(self) -> &'static str {
        match self {
            PipelineDeviation::WeightGradientWrtNormalized => "weight-gradient-wrt-normalized",
            PipelineDeviation::LossProbabilityFloor => "loss-probability-floor",
        }
    }
}

/// How an implementation's weight gradient compares with both semantics: the worst
/// |actual − reference| / budget over the elements, for each. ≤ 1 means "matches".
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightGradFinding {
    pub vs_true: f64,
    pub vs_wrt_normalized: f64,
}

impl WeightGradFinding {
    /// The deviation, if the gradient matches d loss / d ŵ and not the true gradient.
    pub fn deviation(&self) -> Option<PipelineDeviation> {
        (self.vs_wrt_normalized <= 1.0 && self.vs_true > 1.0)
            .then_some(PipelineDeviation::WeightGradientWrtNormalized)
    }
}

/// Compares `actual` [C, D] with both weight-gradient semantics under the budget of each.
pub fn classify_weight_gradient(
    actual: ArrayView2<f64>,
    f: &Forward,
    b: &Backward,
    cfg: &LossConfig,
    t: Dtype,
) -> WeightGradFinding {
    let worst = |reference: ArrayView2<f64>, wg: WeightGrad| {
        let cfg = LossConfig {
            weight_grad: wg,
            ..cfg.clone()
        };
        let bud = budget::pipeline(f, b, &cfg, t);
        actual
            .iter()
            .zip(reference.iter())
            .zip(bud.d_weights.iter())
            .map(|((&a, &r), &bu)| error_fraction(a, r, bu))
            .fold(0.0, f64::max)
    };
    WeightGradFinding {
        vs_true: worst(b.d_weights_true.view(), WeightGrad::ThroughNormalization),
        vs_wrt_normalized: worst(b.d_weights_normalized.view(), WeightGrad::WrtNormalized),
    }
}

/// Whether a reported loss shows the probability floor: it matches the floored reference and
/// not the unfloored one. `None` when no row reaches the floor (the inputs cannot tell).
pub fn detect_prob_floor(
    actual_loss: f64,
    cos: ArrayView2<f64>,
    labels: &[i64],
    cfg: &LossConfig,
    floor: f64,
    t: Dtype,
) -> crate::Result<Option<PipelineDeviation>> {
    let with = LossConfig {
        prob_floor: Some(floor),
        ..cfg.clone()
    };
    let without = LossConfig {
        prob_floor: None,
        ..cfg.clone()
    };
    let fw = reference::head_forward(cos, labels, &with)?;
    if fw.floored_rows.is_empty() {
        return Ok(None);
    }
    let fo = reference::head_forward(cos, labels, &without)?;
    let bo = reference::head_backward(&fo, labels, &without)?;
    let zero = ndarray::Array2::zeros(cos.dim());
    let bud = budget::head(&fo, &bo, zero.view(), &without, t).loss;
    let matches_floored = error_fraction(actual_loss, fw.loss, bud) <= 1.0;
    let matches_plain = error_fraction(actual_loss, fo.loss, bud) <= 1.0;
    Ok((matches_floored && !matches_plain).then_some(PipelineDeviation::LossProbabilityFloor))
}
