//! The whole head a model trains with (SPEC.md §8):
//!
//! ```text
//! x̂ = x / sqrt(Σ x² + eps)          features [N, D] → unit rows (eps: Caffe Normalize 1e-6)
//! ŵ = w / sqrt(Σ w² + eps)          class weights [C, D] → unit rows
//! cos = x̂ · ŵᵀ                      [N, C], dimensionless in [−1, 1]
//! m = layer::forward(cos)           target entries get the margin (crate::margin, once)
//! z = s · m                         logits (dimensionless)
//! loss = (1 / N_valid) Σ_valid (logsumexp(z_i) − z_i,y_i)      nats
//! ```
//!
//! Files: [`reference`] is the f64 specification with every intermediate; [`budget`] turns the
//! tolerance model's pipeline constants into per-element budgets; [`fused`] is the streaming
//! f32/f64 fast path over cos; [`sharded`] splits the classes across model-parallel shards;
//! [`unfused`] is the straightforward baseline the benchmark compares against; [`synthetic`]
//! draws random-initialization inputs; [`estimate`] is the closed-form expected loss at
//! random initialization; [`deviation`] names where a pipeline departs from the true gradient.

pub mod budget;
pub mod deviation;
pub mod estimate;
pub mod fused;
pub mod reference;
pub mod sharded;
pub mod synthetic;
pub mod unfused;

use crate::dtype::Dtype;
use crate::params::Params;
use crate::profile::Profile;

/// Which gradient is returned for the class weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightGrad {
    /// d loss / d w through ŵ = w / sqrt(|w|² + eps): the true gradient.
    ThroughNormalization,
    /// d loss / d ŵ = d_cosᵀ · x̂: what the Caffe seed's InnerProduct returns (it normalizes its
    /// weight blob in place and does not backpropagate through that normalization).
    WrtNormalized,
}

/// The epsilon of the Caffe seed's Normalize layer and of its InnerProduct weight normalization.
pub const CAFFE_NORM_EPS: f64 = 1e-6;

/// Caffe's SoftmaxWithLoss takes −log(max(p, FLT_MIN)): a row's loss saturates at
/// −ln(FLT_MIN) = 87.336 nats, in the double net too (the floor is the float constant).
pub const CAFFE_PROB_FLOOR: f64 = f32::MIN_POSITIVE as f64;

/// Everything that defines a pipeline besides its inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct LossConfig {
    /// (m1, m2, m3) and the scale s.
    pub params: Params,
    pub profile: Profile,
    /// The dtype whose rounding of the profile's comparison constants to use (as in margin::eval).
    pub dtype: Dtype,
    /// eps of y = x / sqrt(Σx² + eps), for features and weights alike (≥ 0, dimension of x²).
    pub norm_eps: f64,
    pub weight_grad: WeightGrad,
    /// If set, a row's loss is −log(max(p_y, floor)) (Caffe: FLT_MIN); the gradient ignores it.
    pub prob_floor: Option<f64>,
}

impl LossConfig {
    /// The exact pipeline: true weight gradient, no probability floor.
    pub fn exact(params: Params, profile: Profile, dtype: Dtype, norm_eps: f64) -> LossConfig {
        LossConfig {
            params,
            profile,
            dtype,
            norm_eps,
            weight_grad: WeightGrad::ThroughNormalization,
            prob_floor: None,
        }
    }

    /// The Caffe seed's pipeline (Normalize + InnerProduct{normalize} + CombinedMargin + Scale +
    /// SoftmaxWithLoss), with `params` as the net really ran them (`params_effective`).
    pub fn caffe(params: Params, dtype: Dtype) -> LossConfig {
        LossConfig {
            params,
            profile: Profile::preset("caffe-cpu").unwrap(),
            dtype,
            norm_eps: CAFFE_NORM_EPS,
            weight_grad: WeightGrad::WrtNormalized,
            prob_floor: Some(CAFFE_PROB_FLOOR),
        }
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        self.params.validate()?;
        if !(self.norm_eps >= 0.0 && self.norm_eps.is_finite()) {
            return Err(crate::Error::InvalidParam {
                field: "norm_eps",
                value: self.norm_eps,
                why: "must be finite and >= 0",
            });
        }
        if let Some(f) = self.prob_floor {
            if !(f > 0.0 && f < 1.0) {
                return Err(crate::Error::InvalidParam {
                    field: "prob_floor",
                    value: f,
                    why: "must be in (0, 1)",
                });
            }
        }
        Ok(())
    }
}
