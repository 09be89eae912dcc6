//! The head written the straightforward way, for the benchmark's baseline (SPEC.md §8.5):
//! one pass per step, every intermediate materialized as an N×C array (margin logits, scaled
//! logits, probabilities, gradient). It uses the same exp as the fused path, so the benchmark
//! ratio measures the fusion and nothing else; it is tested against the reference like the
//! fused path, so the ratio compares two correct implementations.

use super::fused::{check_rows, Real};
use super::LossConfig;
use crate::error::Result;
use crate::layer;
use crate::margin::{self, Constants};
use crate::params::Params;
use ndarray::{Array2, ArrayView2, Axis};

/// Loss (nats) and d loss / d cos.
pub fn forward_backward<T: Real>(
    cos: ArrayView2<T>,
    labels: &[i64],
    cfg: &LossConfig,
) -> Result<(f64, Array2<T>)> {
    cfg.validate()?;
    check_rows(&cos)?;
    let (n, c) = cos.dim();
    let targets = layer::targets(n, c, labels, &cfg.profile)?;
    let unscaled = Params { s: 1.0, ..cfg.params };
    let k = Constants::new(&cfg.profile, &unscaled, cfg.dtype);
    let s = T::of(cfg.params.s);

    // 1. margin logits
    let mut margin_logits = cos.to_owned();
    let mut factors = vec![0.0; n];
    for (i, t) in targets.iter().enumerate() {
        if let Some(y) = *t {
            let e = margin::eval_with(cos[[i, y]].f64(), &unscaled, &cfg.profile, &k);
            margin_logits[[i, y]] = T::of(e.out);
            factors[i] = e.factor;
        }
    }
    // 2. scaled logits
    let scaled = margin_logits.mapv(|v| s * v);
    // 3. row max
    let maxes: Vec<T> = scaled
        .axis_iter(Axis(0))
        .map(|r| r.iter().copied().fold(T::neg_infinity(), T::max))
        .collect();
    // 4. exp
    let mut probs = scaled.clone();
    for (i, mut r) in probs.axis_iter_mut(Axis(0)).enumerate() {
        r.mapv_inplace(|z| (z - maxes[i]).exp_fast());
    }
    // 5. row sums, normalize
    let sums: Vec<T> = probs
        .axis_iter(Axis(0))
        .map(|r| r.iter().fold(T::zero(), |a, &b| a + b))
        .collect();
    for (i, mut r) in probs.axis_iter_mut(Axis(0)).enumerate() {
        let inv = sums[i];
        r.mapv_inplace(|p| p / inv);
    }
    // 6. loss
    let valid = targets.iter().filter(|t| t.is_some()).count();
    let mut total = 0.0;
    for (i, t) in targets.iter().enumerate() {
        if let Some(y) = *t {
            let lse = maxes[i] + sums[i].ln();
            let mut l = lse - scaled[[i, y]];
            if let Some(f) = cfg.prob_floor {
                l = l.min(T::of(-f.ln()));
            }
            total += l.f64();
        }
    }
    // 7. gradient
    let scale = T::of(cfg.params.s / valid.max(1) as f64);
    let mut grad = probs.mapv(|p| scale * p);
    for (i, t) in targets.iter().enumerate() {
        match *t {
            None => grad.row_mut(i).fill(T::zero()),
            Some(y) => grad[[i, y]] = scale * (probs[[i, y]] - T::one()) * T::of(factors[i]),
        }
    }
    Ok((total / valid.max(1) as f64, grad))
}
