//! The head written the straightforward way, for the benchmark's baseline (SPEC.md §8.5):
//! one pass per step, every intermediate materialized as an N×C array (margin logits, scaled
//! logits, probabilities, gradient). It uses the same exp as the fused path, so the benchmark
//! ratio measures the fusion and nothing else; it is tested against the reference like the
//! fused path, so the ratio compares two correct implementations.
//!
//! [`forward_backward`] allocates its intermediates on every call (a framework without a
//! caching allocator: each call also pays the first-touch page faults of ~4 N×C arrays);
//! [`forward_backward_with`] reuses a [`Workspace`] (a caching allocator).

use super::fused::{check_rows, Real};
use super::LossConfig;
use crate::error::{Error, Result};
use crate::layer;
use crate::margin::{self, Constants};
use crate::params::Params;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, Zip};

/// The materialized intermediates, reusable across calls of the same shape.
#[derive(Clone, Debug)]
pub struct Workspace<T> {
    pub margin_logits: Array2<T>,
    pub scaled_logits: Array2<T>,
    pub probs: Array2<T>,
}

impl<T: Real> Workspace<T> {
    pub fn new(n: usize, c: usize) -> Self {
        Workspace {
            margin_logits: Array2::zeros((n, c)),
            scaled_logits: Array2::zeros((n, c)),
            probs: Array2::zeros((n, c)),
        }
    }
}

/// Loss (nats) and d loss / d cos, allocating every intermediate.
pub fn forward_backward<T: Real>(
    cos: ArrayView2<T>,
    labels: &[i64],
    cfg: &LossConfig,
) -> Result<(f64, Array2<T>)> {
    let (n, c) = cos.dim();
    let mut ws = Workspace::new(n, c);
    let mut grad = Array2::zeros((n, c));
    let loss = forward_backward_with(cos, labels, cfg, &mut ws, grad.view_mut())?;
    Ok((loss, grad))
}

/// Loss (nats), with d loss / d cos written into `grad`, reusing `ws`.
pub fn forward_backward_with<T: Real>(
    cos: ArrayView2<T>,
    labels: &[i64],
    cfg: &LossConfig,
    ws: &mut Workspace<T>,
    mut grad: ArrayViewMut2<T>,
) -> Result<f64> {
    cfg.validate()?;
    check_rows(&cos)?;
    let (n, c) = cos.dim();
    if ws.margin_logits.dim() != (n, c) || grad.dim() != (n, c) {
        return Err(Error::ShapeMismatch {
            what: "unfused workspace / grad".into(),
            expected: n * c,
            got: grad.len(),
        });
    }
    let targets = layer::targets(n, c, labels, &cfg.profile)?;
    let unscaled = Params {
        s: 1.0,
        ..cfg.params
    };
    let k = Constants::new(&cfg.profile, &unscaled, cfg.dtype);
    let s = T::of(cfg.params.s);

    // 1. margin logits
    ws.margin_logits.assign(&cos);
    let mut factors = vec![0.0; n];
    for (i, t) in targets.iter().enumerate() {
        if let Some(y) = *t {
            let e = margin::eval_with(cos[[i, y]].f64(), &unscaled, &cfg.profile, &k);
            ws.margin_logits[[i, y]] = T::of(e.out);
            factors[i] = e.factor;
        }
    }
    // 2. scaled logits
    Zip::from(&mut ws.scaled_logits)
        .and(&ws.margin_logits)
        .for_each(|z, &m| *z = s * m);
    // 3. row max
    let maxes: Vec<T> = ws
        .scaled_logits
        .axis_iter(Axis(0))
        .map(|r| r.iter().copied().fold(T::neg_infinity(), T::max))
        .collect();
    // 4. exp
    for (i, (mut p, z)) in ws
        .probs
        .axis_iter_mut(Axis(0))
        .zip(ws.scaled_logits.axis_iter(Axis(0)))
        .enumerate()
    {
        p.zip_mut_with(&z, |p, &z| *p = (z - maxes[i]).exp_fast());
    }
    // 5. row sums, normalize
    let sums: Vec<T> = ws
        .probs
        .axis_iter(Axis(0))
        .map(|r| r.iter().fold(T::zero(), |a, &b| a + b))
        .collect();
    for (i, mut r) in ws.probs.axis_iter_mut(Axis(0)).enumerate() {
        let sum = sums[i];
        r.mapv_inplace(|p| p / sum);
    }
    // 6. loss
    let valid = targets.iter().filter(|t| t.is_some()).count();
    let mut total = 0.0;
    for (i, t) in targets.iter().enumerate() {
        if let Some(y) = *t {
            let lse = maxes[i] + sums[i].ln();
            let mut l = lse - ws.scaled_logits[[i, y]];
            if let Some(f) = cfg.prob_floor {
                l = l.min(T::of(-f.ln()));
            }
            total += l.f64();
        }
    }
    // 7. gradient
    let scale = T::of(cfg.params.s / valid.max(1) as f64);
    Zip::from(&mut grad)
        .and(&ws.probs)
        .for_each(|g, &p| *g = scale * p);
    for (i, t) in targets.iter().enumerate() {
        match *t {
            None => grad.row_mut(i).fill(T::zero()),
            Some(y) => grad[[i, y]] = scale * (ws.probs[[i, y]] - T::one()) * T::of(factors[i]),
        }
    }
    Ok(total / valid.max(1) as f64)
}
