//! The pipeline in f64, with every intermediate, forward and backward (SPEC.md §8.1–8.2).
//!
//! The margin is applied by [`crate::layer`] (the formula exists once, in [`crate::margin`]).
//! Normalization backward is the exact Jacobian including eps: with n = sqrt(|x|² + eps) and
//! y = x / n, dy/dx = (I − y yᵀ) / n (since x xᵀ / n³ = y yᵀ / n), so dx = (dy − y (y·dy)) / n.

use super::{LossConfig, WeightGrad};
use crate::error::{Error, Result};
use crate::layer;
use ndarray::{Array2, ArrayView2, Axis};

/// Rows of `x` divided by sqrt(Σx² + eps). Returns the normalized rows and the divisors n.
pub fn normalize_rows(x: ArrayView2<f64>, eps: f64) -> (Array2<f64>, Vec<f64>) {
    let mut y = x.to_owned();
    let mut norms = Vec::with_capacity(x.nrows());
    for mut row in y.axis_iter_mut(Axis(0)) {
        let n = (row.iter().map(|v| v * v).sum::<f64>() + eps).sqrt();
        row.mapv_inplace(|v| v / n);
        norms.push(n);
    }
    (y, norms)
}

/// Backward of [`normalize_rows`]: dx = (dy − y (y·dy)) / n, row by row.
pub fn normalize_rows_backward(
    y: ArrayView2<f64>,
    norms: &[f64],
    dy: ArrayView2<f64>,
) -> Array2<f64> {
    let mut dx = dy.to_owned();
    for (i, mut row) in dx.axis_iter_mut(Axis(0)).enumerate() {
        let yi = y.row(i);
        let dot = yi.dot(&dy.row(i));
        let n = norms[i];
        row.zip_mut_with(&yi, |d, &yv| *d = (*d - yv * dot) / n);
    }
    dx
}

/// The head from cos: margin, scale, softmax cross-entropy.
#[derive(Clone, Debug)]
pub struct HeadForward {
    pub cos: Array2<f64>,
    /// Target column per row, `None` for ignored rows.
    pub targets: Vec<Option<usize>>,
    /// Unscaled logits after the margin ([`layer::forward`]).
    pub margin_logits: Array2<f64>,
    /// s · margin_logits.
    pub scaled_logits: Array2<f64>,
    /// softmax of each row of the scaled logits (ignored rows too; they carry no loss).
    pub probs: Array2<f64>,
    /// log Σ_j exp(z_ij) per row (nats).
    pub lse: Vec<f64>,
    /// lse_i − z_i,y_i per row (the floor applied if configured); `None` for ignored rows.
    pub row_loss: Vec<Option<f64>>,
    /// Rows whose loss the probability floor changed.
    pub floored_rows: Vec<usize>,
    /// Number of rows with a label (Caffe's VALID normalizer is max(1, this)).
    pub valid: usize,
    /// Mean of the row losses over the valid rows (nats); 0 when no row is valid.
    pub loss: f64,
}

/// Gradients of the head.
#[derive(Clone, Debug)]
pub struct HeadBackward {
    /// d loss / d z = (p − onehot) / N_valid on valid rows, 0 on ignored rows.
    pub d_scaled_logits: Array2<f64>,
    /// s · d_scaled_logits.
    pub d_margin_logits: Array2<f64>,
    /// [`layer::backward`] of d_margin_logits.
    pub d_cos: Array2<f64>,
}

fn check_cos(cos: &ArrayView2<f64>) -> Result<()> {
    if cos.ncols() == 0 {
        return Err(Error::Invalid(
            "cos has no columns: need at least one class".into(),
        ));
    }
    Ok(())
}

/// log Σ exp over a row, max-shifted. NaN anywhere gives NaN; an all −inf row gives −inf.
pub fn logsumexp(row: impl Iterator<Item = f64> + Clone) -> f64 {
    let mut m = f64::NEG_INFINITY;
    for v in row.clone() {
        if v.is_nan() {
            return f64::NAN;
        }
        m = m.max(v);
    }
    if m.is_infinite() {
        return m;
    }
    m + row.map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// Forward of the head over `cos` [N, C].
pub fn head_forward(cos: ArrayView2<f64>, labels: &[i64], cfg: &LossConfig) -> Result<HeadForward> {
    cfg.validate()?;
    check_cos(&cos)?;
    let (n, c) = cos.dim();
    let targets = layer::targets(n, c, labels, &cfg.profile)?;
    let margin_logits = layer::forward(cos, labels, &cfg.params, &cfg.profile, cfg.dtype)?;
    let s = cfg.params.s;
    let scaled_logits = margin_logits.mapv(|v| s * v);
    let mut probs = Array2::zeros((n, c));
    let mut lse = Vec::with_capacity(n);
    let mut row_loss = Vec::with_capacity(n);
    let mut floored_rows = Vec::new();
    let mut total = 0.0;
    let mut valid = 0usize;
    for i in 0..n {
        let z = scaled_logits.row(i);
        let l = logsumexp(z.iter().copied());
        for j in 0..c {
            probs[[i, j]] = (z[j] - l).exp();
        }
        lse.push(l);
        match targets[i] {
            None => row_loss.push(None),
            Some(y) => {
                let mut li = l - z[y];
                if let Some(floor) = cfg.prob_floor {
                    let cap = -floor.ln();
                    if li > cap {
                        li = cap;
                        floored_rows.push(i);
                    }
                }
                total += li;
                valid += 1;
                row_loss.push(Some(li));
            }
        }
    }
    let loss = total / valid.max(1) as f64;
    Ok(HeadForward {
        cos: cos.to_owned(),
        targets,
        margin_logits,
        scaled_logits,
        probs,
        lse,
        row_loss,
        floored_rows,
        valid,
        loss,
    })
}

/// Backward of the head (loss weight 1). The probability floor, as in Caffe, does not enter.
pub fn head_backward(h: &HeadForward, labels: &[i64], cfg: &LossConfig) -> Result<HeadBackward> {
    let (n, c) = h.cos.dim();
    let norm = h.valid.max(1) as f64;
    let mut d_scaled = Array2::zeros((n, c));
    for i in 0..n {
        if let Some(y) = h.targets[i] {
            for j in 0..c {
                let onehot = if j == y { 1.0 } else { 0.0 };
                d_scaled[[i, j]] = (h.probs[[i, j]] - onehot) / norm;
            }
        }
    }
    let s = cfg.params.s;
    let d_margin = d_scaled.mapv(|v| s * v);
    let d_cos = layer::backward(
        h.cos.view(),
        labels,
        d_margin.view(),
        &cfg.params,
        &cfg.profile,
        cfg.dtype,
    )?;
    Ok(HeadBackward {
        d_scaled_logits: d_scaled,
        d_margin_logits: d_margin,
        d_cos,
    })
}

/// The whole forward from features and class weights.
#[derive(Clone, Debug)]
pub struct Forward {
    pub features_normalized: Array2<f64>,
    /// sqrt(|x_i|² + eps) per feature row.
    pub feature_norms: Vec<f64>,
    pub weights_normalized: Array2<f64>,
    /// sqrt(|w_j|² + eps) per class row.
    pub weight_norms: Vec<f64>,
    pub head: HeadForward,
}

/// The whole backward.
#[derive(Clone, Debug)]
pub struct Backward {
    pub head: HeadBackward,
    /// d loss / d x̂ = d_cos · ŵ  [N, D].
    pub d_features_normalized: Array2<f64>,
    /// d loss / d x  [N, D].
    pub d_features: Array2<f64>,
    /// d loss / d ŵ = d_cosᵀ · x̂  [C, D].
    pub d_weights_normalized: Array2<f64>,
    /// The weight gradient the configuration asks for ([`WeightGrad`]).
    pub d_weights: Array2<f64>,
    /// The true d loss / d w, whatever the configuration returns (for deviation checks).
    pub d_weights_true: Array2<f64>,
}

/// Forward from features [N, D], weights [C, D] and labels [N].
pub fn forward(
    features: ArrayView2<f64>,
    weights: ArrayView2<f64>,
    labels: &[i64],
    cfg: &LossConfig,
) -> Result<Forward> {
    cfg.validate()?;
    if features.ncols() != weights.ncols() {
        return Err(Error::ShapeMismatch {
            what: format!(
                "weights row length (features are [{}, {}], weights [{}, {}])",
                features.nrows(),
                features.ncols(),
                weights.nrows(),
                weights.ncols()
            ),
            expected: features.ncols(),
            got: weights.ncols(),
        });
    }
    if features.ncols() == 0 {
        return Err(Error::Invalid("features have D = 0 columns".into()));
    }
    let (xh, xn) = normalize_rows(features, cfg.norm_eps);
    let (wh, wn) = normalize_rows(weights, cfg.norm_eps);
    let cos = xh.dot(&wh.t());
    let head = head_forward(cos.view(), labels, cfg)?;
    Ok(Forward {
        features_normalized: xh,
        feature_norms: xn,
        weights_normalized: wh,
        weight_norms: wn,
        head,
    })
}

/// Backward of [`forward`].
pub fn backward(f: &Forward, labels: &[i64], cfg: &LossConfig) -> Result<Backward> {
    let head = head_backward(&f.head, labels, cfg)?;
    let d_xh = head.d_cos.dot(&f.weights_normalized);
    let d_x = normalize_rows_backward(f.features_normalized.view(), &f.feature_norms, d_xh.view());
    let d_wh = head.d_cos.t().dot(&f.features_normalized);
    let d_w_true =
        normalize_rows_backward(f.weights_normalized.view(), &f.weight_norms, d_wh.view());
    let d_weights = match cfg.weight_grad {
        WeightGrad::ThroughNormalization => d_w_true.clone(),
        WeightGrad::WrtNormalized => d_wh.clone(),
    };
    Ok(Backward {
        head,
        d_features_normalized: d_xh,
        d_features: d_x,
        d_weights_normalized: d_wh,
        d_weights,
        d_weights_true: d_w_true,
    })
}

/// The loss alone, for finite differences: features and weights flattened row-major.
pub fn loss_of(
    features: &[f64],
    weights: &[f64],
    d: usize,
    labels: &[i64],
    cfg: &LossConfig,
) -> Result<f64> {
    let x = ArrayView2::from_shape((features.len() / d.max(1), d), features)
        .map_err(|e| Error::Invalid(format!("features: {e}")))?;
    let w = ArrayView2::from_shape((weights.len() / d.max(1), d), weights)
        .map_err(|e| Error::Invalid(format!("weights: {e}")))?;
    Ok(forward(x, w, labels, cfg)?.head.loss)
}
