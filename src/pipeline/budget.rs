//! Per-element error budgets of the pipeline (SPEC.md §8.3), composed from the constants in
//! [`crate::tolerance::pipeline`] and the layer's own budget ([`tolerance::target_budget`]).
//!
//! First-order forward error analysis of an implementation in T (unit roundoff u) fed the
//! same T-valued inputs as the f64 reference. Each budget is absolute, in the units of the
//! compared value. Notation: ρ_D = (DOT_GAMMA·D/2 + NORM_ROUNDINGS)·u, the relative error of
//! a normalized element; γ_n = DOT_GAMMA·n·u.

use super::reference::{Backward, Forward, HeadBackward, HeadForward};
use super::{LossConfig, WeightGrad};
use crate::dtype::Dtype;
use crate::margin::{self, Constants};
use crate::params::Params;
use crate::tolerance::pipeline::*;
use crate::tolerance::{self, consts::ROUNDING_ULP};
use ndarray::{Array2, ArrayView2, Zip};

/// Budgets of the head (margin → scale → softmax cross-entropy), element by element.
#[derive(Clone, Debug)]
pub struct HeadBudget {
    pub margin_logits: Array2<f64>,
    pub scaled_logits: Array2<f64>,
    pub probs: Array2<f64>,
    /// Per row (0 for ignored rows), nats.
    pub row_loss: Vec<f64>,
    /// The batch loss, nats.
    pub loss: f64,
    pub d_scaled_logits: Array2<f64>,
    pub d_margin_logits: Array2<f64>,
    pub d_cos: Array2<f64>,
}

/// Budgets of the whole pipeline.
#[derive(Clone, Debug)]
pub struct Budget {
    pub features_normalized: Array2<f64>,
    pub weights_normalized: Array2<f64>,
    pub cos: Array2<f64>,
    pub head: HeadBudget,
    pub d_features_normalized: Array2<f64>,
    pub d_features: Array2<f64>,
    /// For the configuration's [`WeightGrad`].
    pub d_weights: Array2<f64>,
}

/// Relative error of one element of y = x / sqrt(Σx² + eps) computed in `t` with rows of length d.
/// The sum of squares is a length-d accumulation ([`gamma`]).
pub fn normalized_rel(d: usize, t: Dtype) -> f64 {
    gamma(d, t) / 2.0 + NORM_ROUNDINGS * t.unit_roundoff()
}

/// γ_n of a length-n sum or dot product. The half types accumulate in f32 and round the
/// result once to storage (PyTorch's opmath reductions, SPEC.md §5.5): γ_n(f32) + u_T. A
/// reduction accumulated in half itself (a hand-written `__half` kernel) would need n·u_T,
/// 256× (f16) or 32768× (bf16) more per term, which this budget does not grant.
fn gamma(n: usize, t: Dtype) -> f64 {
    match t {
        Dtype::F32 | Dtype::F64 => DOT_GAMMA * n as f64 * t.unit_roundoff(),
        Dtype::F16 | Dtype::BF16 => {
            DOT_GAMMA * n as f64 * Dtype::F32.unit_roundoff() + t.unit_roundoff()
        }
    }
}

fn half_ulp(t: Dtype, x: f64) -> f64 {
    ROUNDING_ULP * t.ulp(x)
}

/// The largest change of `f` when its input moves by up to `dc` either way (0 when dc = 0).
fn spread(f: impl Fn(f64) -> f64, c: f64, dc: f64) -> f64 {
    if dc == 0.0 {
        return 0.0;
    }
    let f0 = f(c);
    (f(c + dc) - f0).abs().max((f(c - dc) - f0).abs())
}

/// Budgets of the head for an implementation in `t`, given the reference forward and backward
/// and an error bound `cos_err` on each cos the implementation was fed (zeros when the
/// implementation received the reference's cos itself, as the fused path does).
pub fn head(
    h: &HeadForward,
    hb: &HeadBackward,
    cos_err: ArrayView2<f64>,
    cfg: &LossConfig,
    t: Dtype,
) -> HeadBudget {
    let (n, c) = h.cos.dim();
    let u = t.unit_roundoff();
    let stored = |d: f64| (u * d.abs()).max(t.ulp(d) * if d == 0.0 { 0.0 } else { 1.0 });
    let s = cfg.params.s;
    let unscaled = Params {
        s: 1.0,
        ..cfg.params
    };
    let k = Constants::new(&cfg.profile, &unscaled, t);
    let out_at = |x: f64| margin::eval_with(x, &unscaled, &cfg.profile, &k).out;
    let factor_at = |x: f64| margin::eval_with(x, &unscaled, &cfg.profile, &k).factor;

    // Margin logits: the layer's own budget at targets plus the propagated cos error.
    let mut bm = cos_err.to_owned();
    for i in 0..n {
        if let Some(y) = h.targets[i] {
            let cy = h.cos[[i, y]];
            let layer = tolerance::target_budget(cy, 1.0, &unscaled, &cfg.profile, t).forward;
            bm[[i, y]] = layer + spread(out_at, cy, cos_err[[i, y]]);
        }
    }
    let mut bz = Array2::zeros((n, c));
    Zip::from(&mut bz)
        .and(&bm)
        .and(&h.scaled_logits)
        .for_each(|b, &m, &z| *b = s * m + if s != 1.0 { half_ulp(t, z) } else { 0.0 });

    // Softmax: δ ln p_j ≤ e_j + Σ_k p_k e_k + (6·EXP_ULP + γ_C/u + 2·SOFTMAX_ROUNDINGS)·u,
    // with e_j = δz_j + ½ulp(z_j − max) + ½ulp(z_j − lse) (the shifts' roundings). Six exp
    // errors: the numerator may be a product of two exps, e^{z − m_b}·e^{m_b − lse}, as in the
    // fused path and other online-softmax kernels (m_b a block max, |m_b − lse| ≤ |z_j − lse|),
    // and the denominator's terms carry two on average.
    let mut bp = Array2::zeros((n, c));
    let mut b_row = vec![0.0; n];
    let mut total_b = 0.0;
    let mut sum_abs = 0.0;
    let nv = h.valid.max(1) as f64;
    let mut bd_s = Array2::zeros((n, c));
    for i in 0..n {
        let z = h.scaled_logits.row(i);
        let zmax = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e = |j: usize| bz[[i, j]] + half_ulp(t, z[j] - zmax) + half_ulp(t, z[j] - h.lse[i]);
        let mean_e: f64 = (0..c).map(|j| h.probs[[i, j]] * e(j)).sum();
        let fixed = (6.0 * EXP_ULP + 2.0 * SOFTMAX_ROUNDINGS) * u + gamma(c, t);
        // Relative error of p_j; the absolute spacing term below covers p_j that are
        // subnormal (or 0) in T, where a relative bound means nothing.
        let rel = |j: usize| e(j) + mean_e + fixed;
        for j in 0..c {
            let p = h.probs[[i, j]];
            // p·(e^r − 1) is exact for the multiplicative error model even when r is not
            // small (s = 1e4).
            bp[[i, j]] = p * rel(j).exp_m1() + (EXP_ULP + 1.0) * t.ulp(p);
        }
        if let Some(y) = h.targets[i] {
            let l = h.row_loss[i].unwrap_or(0.0);
            let bl = rel(y)
                + LOG_ULP * t.ulp(l)
                + LOSS_ROUNDINGS * half_ulp(t, l)
                + half_ulp(t, h.lse[i]);
            b_row[i] = bl;
            total_b += bl;
            sum_abs += l.abs();
            for j in 0..c {
                let d = hb.d_scaled_logits[[i, j]];
                let sub = if j == y {
                    half_ulp(t, h.probs[[i, j]] - 1.0)
                } else {
                    0.0
                };
                bd_s[[i, j]] = (bp[[i, j]] + sub) / nv + stored(d);
            }
        }
    }
    let loss = total_b / nv + gamma(h.valid, t) * sum_abs / nv + half_ulp(t, h.loss);

    let bd_m = Zip::from(&bd_s)
        .and(&hb.d_margin_logits)
        .map_collect(|&b, &d| s * b + stored(d));

    // A stored result is rounded once: u·|d| for normal results, one spacing for subnormal ones
    // (½ spacing of the smallest subnormal would itself round to 0 in the budget's f64).
    let mut bd_c = bd_m.clone();
    for i in 0..n {
        if let Some(y) = h.targets[i] {
            let cy = h.cos[[i, y]];
            let dm = hb.d_margin_logits[[i, y]];
            let g = factor_at(cy);
            let layer = tolerance::target_budget(cy, dm, &unscaled, &cfg.profile, t).backward;
            bd_c[[i, y]] = g.abs() * bd_m[[i, y]]
                + layer
                + dm.abs() * spread(factor_at, cy, cos_err[[i, y]])
                + stored(hb.d_cos[[i, y]]);
        }
    }
    HeadBudget {
        margin_logits: bm,
        scaled_logits: bz,
        probs: bp,
        row_loss: b_row,
        loss,
        d_scaled_logits: bd_s,
        d_margin_logits: bd_m,
        d_cos: bd_c,
    }
}

/// Error of the normalization backward dx = (dy − y (y·dy)) / n, given bounds on dy.
fn normalize_backward_budget(
    y: ArrayView2<f64>,
    dy: ArrayView2<f64>,
    bdy: ArrayView2<f64>,
    rho: f64,
    t: Dtype,
) -> Array2<f64> {
    let u = t.unit_roundoff();
    let d = y.ncols();
    let mut out = Array2::zeros(y.dim());
    for i in 0..y.nrows() {
        let (yi, dyi, bi) = (y.row(i), dy.row(i), bdy.row(i));
        let a: f64 = yi.dot(&dyi);
        let abs_dot: f64 = yi.iter().zip(dyi).map(|(p, q)| (p * q).abs()).sum();
        let ba: f64 = yi.iter().zip(bi).map(|(p, q)| p.abs() * q).sum::<f64>()
            + (rho + gamma(d, t)) * abs_dot;
        // dx = q / n: the error of q, plus ρ for n and one rounding for the divide (the
        // caller divides by the reference's n).
        for k in 0..d {
            let q = dyi[k] - yi[k] * a;
            let bq = bi[k]
                + rho * (yi[k] * a).abs()
                + yi[k].abs() * ba
                + 2.0 * u * (dyi[k].abs() + (yi[k] * a).abs());
            out[[i, k]] = bq + q.abs() * (rho + u);
        }
    }
    out
}

/// Budgets of the whole pipeline for an implementation in `t`.
pub fn pipeline(f: &Forward, b: &Backward, cfg: &LossConfig, t: Dtype) -> Budget {
    let d = f.features_normalized.ncols();
    let (n, c) = f.head.cos.dim();
    let rho = normalized_rel(d, t);
    let xh = &f.features_normalized;
    let wh = &f.weights_normalized;
    let axh = xh.mapv(f64::abs);
    let awh = wh.mapv(f64::abs);
    let bxh = axh.mapv(|v| rho * v);
    let bwh = awh.mapv(|v| rho * v);

    // cos = x̂·ŵᵀ: both inputs carry ρ, the dot γ_D; all relative to Σ|x̂||ŵ| (≤ 1).
    let abs_cos = axh.dot(&awh.t());
    let bcos = abs_cos.mapv(|a| (2.0 * rho + gamma(d, t)) * a);
    let hb = head(&f.head, &b.head, bcos.view(), cfg, t);

    let d_cos = &b.head.d_cos;
    let ad_cos = d_cos.mapv(f64::abs);
    // d x̂ = d_cos · ŵ (length-C dots).
    let bdxh = hb.d_cos.dot(&awh) + ad_cos.dot(&awh).mapv(|v| (rho + gamma(c, t)) * v);
    let dx_pre = normalize_backward_budget(
        xh.view(),
        b.d_features_normalized.view(),
        bdxh.view(),
        rho,
        t,
    );
    let bdx = scale_rows(dx_pre, &f.feature_norms);
    // d ŵ = d_cosᵀ · x̂ (length-N dots).
    let bdwh = hb.d_cos.t().dot(&axh) + ad_cos.t().dot(&axh).mapv(|v| (rho + gamma(n, t)) * v);
    let bdw = match cfg.weight_grad {
        WeightGrad::WrtNormalized => bdwh,
        WeightGrad::ThroughNormalization => scale_rows(
            normalize_backward_budget(
                wh.view(),
                b.d_weights_normalized.view(),
                bdwh.view(),
                rho,
                t,
            ),
            &f.weight_norms,
        ),
    };
    Budget {
        features_normalized: bxh,
        weights_normalized: bwh,
        cos: bcos,
        head: hb,
        d_features_normalized: bdxh,
        d_features: bdx,
        d_weights: bdw,
    }
}

/// Divides row i by norms[i] (the 1/n of the normalization backward).
fn scale_rows(mut a: Array2<f64>, norms: &[f64]) -> Array2<f64> {
    for (i, mut row) in a.rows_mut().into_iter().enumerate() {
        row.mapv_inplace(|v| v / norms[i]);
    }
    a
}
