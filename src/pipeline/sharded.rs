//! Model-parallel form of the fused head (SPEC.md §8.5): the C classes are split into k
//! contiguous shards, as partial_fc (insightface), Megatron's vocab-parallel cross-entropy and
//! Paddle's `c_softmax_with_cross_entropy` split them across devices.
//!
//! Per shard and row: (max, Σ exp(z − max)) over the shard's columns, and the target margin
//! logit if the shard holds the row's target ([`ShardPartials`], public so that a distributed
//! implementation can be checked shard by shard). Combine: M = max_k m_k,
//! S = Σ_k S_k·exp(m_k − M), lse = M + ln S, loss_i = lse_i − z_i,y_i. Backward per shard:
//! d loss / d cos = s·(exp(z − lse) − onehot)/N_valid, times the margin factor at the target.

use super::fused::{row_grad, row_loss, target_logit, Real, Stream, TargetLogit};
use super::LossConfig;
use crate::error::{Error, Result};
use crate::layer;
use crate::margin::Constants;
use crate::params::Params;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// One row's partial on one shard.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowPartial<T> {
    /// max and Σ exp(z − max) over the shard's columns (max = −inf, sum = 0 when it has none).
    pub stream: Stream<T>,
    /// The target's margin logit z_y = s·margin(c_y), if this shard holds the target.
    pub target: Option<TargetLogit<T>>,
}

/// Everything one shard sends to the combine step.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardPartials<T> {
    /// The shard's first class (global column index).
    pub col_start: usize,
    /// Number of classes in the shard (may be 0).
    pub cols: usize,
    pub rows: Vec<RowPartial<T>>,
}

/// The combined result, shared with every shard for its backward.
#[derive(Clone, Debug, PartialEq)]
pub struct Combined<T> {
    pub lse: Vec<T>,
    pub row_loss: Vec<Option<T>>,
    /// Target logit and factor per valid row.
    pub targets: Vec<Option<TargetLogit<T>>>,
    pub valid: usize,
    /// Mean row loss over the valid rows (nats).
    pub loss: f64,
}

fn check_labels(
    labels: &[i64],
    n: usize,
    classes: usize,
    cfg: &LossConfig,
) -> Result<Vec<Option<usize>>> {
    layer::targets(n, classes, labels, &cfg.profile)
}

fn check_shard<T>(cos: &ArrayView2<T>, col_start: usize, classes: usize) -> Result<()> {
    if !cos.is_standard_layout() {
        return Err(Error::Invalid(
            "shard cos must be row-major contiguous".into(),
        ));
    }
    if col_start + cos.ncols() > classes {
        return Err(Error::Invalid(format!(
            "shard columns [{col_start}, {}) exceed the {classes} classes",
            col_start + cos.ncols()
        )));
    }
    Ok(())
}

/// The partials of one shard: `cos` [N, cols] holds global columns
/// [col_start, col_start + cols) of a C = `classes` problem.
pub fn shard_forward<T: Real>(
    cos: ArrayView2<T>,
    col_start: usize,
    classes: usize,
    labels: &[i64],
    cfg: &LossConfig,
) -> Result<ShardPartials<T>> {
    cfg.validate()?;
    check_shard(&cos, col_start, classes)?;
    let (n, cols) = cos.dim();
    let targets = check_labels(labels, n, classes, cfg)?;
    let unscaled = Params {
        s: 1.0,
        ..cfg.params
    };
    let k = Constants::new(&cfg.profile, &unscaled, cfg.dtype);
    let s = T::of(cfg.params.s);
    let data = cos.as_slice().expect("standard layout checked");
    let chunk = cols.max(1);
    let rows: Vec<RowPartial<T>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let row = if cols == 0 {
                &data[0..0]
            } else {
                &data[i * chunk..(i + 1) * chunk]
            };
            let local = targets[i]
                .filter(|&y| y >= col_start && y < col_start + cols)
                .map(|y| y - col_start);
            match (targets[i], local) {
                (None, _) => RowPartial {
                    stream: Stream::empty(),
                    target: None,
                },
                (Some(_), Some(j)) => {
                    let t = target_logit(row[j], j, &unscaled, &k, cfg);
                    let stream = super::fused::row_stream(row, s, &t);
                    RowPartial {
                        stream,
                        target: Some(TargetLogit {
                            column: j + col_start,
                            ..t
                        }),
                    }
                }
                (Some(_), None) => {
                    let mut acc = Stream::empty();
                    super::fused::stream_scaled(row, s, &mut acc);
                    RowPartial {
                        stream: acc,
                        target: None,
                    }
                }
            }
        })
        .collect();
    Ok(ShardPartials {
        col_start,
        cols,
        rows,
    })
}

/// Combines the partials of shards that tile [0, classes) exactly (in any order).
pub fn combine<T: Real>(
    parts: &[ShardPartials<T>],
    classes: usize,
    labels: &[i64],
    cfg: &LossConfig,
) -> Result<Combined<T>> {
    let n = labels.len();
    let targets = check_labels(labels, n, classes, cfg)?;
    let mut spans: Vec<(usize, usize)> = parts.iter().map(|p| (p.col_start, p.cols)).collect();
    spans.sort();
    let mut next = 0;
    for &(start, cols) in &spans {
        if start != next {
            return Err(Error::Invalid(format!(
                "shards do not tile the classes: a shard starts at {start}, expected {next}"
            )));
        }
        next = start + cols;
    }
    if next != classes || classes == 0 {
        return Err(Error::Invalid(format!(
            "shards cover {next} classes, expected {classes} (at least one)"
        )));
    }
    if let Some(p) = parts.iter().find(|p| p.rows.len() != n) {
        return Err(Error::ShapeMismatch {
            what: format!("rows of the shard starting at column {}", p.col_start),
            expected: n,
            got: p.rows.len(),
        });
    }
    let mut lse = Vec::with_capacity(n);
    let mut row_losses = Vec::with_capacity(n);
    let mut tl = Vec::with_capacity(n);
    let mut total = 0.0;
    for (i, row_target) in targets.iter().enumerate() {
        let mut acc = Stream::empty();
        let mut target = None;
        for p in parts {
            acc.merge(p.rows[i].stream);
            if let Some(t) = p.rows[i].target {
                target = Some(t);
            }
        }
        match *row_target {
            None => {
                lse.push(T::nan());
                row_losses.push(None);
                tl.push(None);
            }
            Some(y) => {
                let t = target.filter(|t| t.column == y).ok_or_else(|| {
                    Error::Invalid(format!("row {i}: no shard reported its target class {y}"))
                })?;
                let l = acc.lse();
                let rl = row_loss(l, t.logit, cfg);
                total += rl.f64();
                lse.push(l);
                row_losses.push(Some(rl));
                tl.push(Some(t));
            }
        }
    }
    let valid = targets.iter().filter(|t| t.is_some()).count();
    Ok(Combined {
        lse,
        row_loss: row_losses,
        targets: tl,
        valid,
        loss: total / valid.max(1) as f64,
    })
}

/// Backward of one shard: writes d loss / d cos for its columns into `grad` [N, cols].
pub fn shard_backward<T: Real>(
    cos: ArrayView2<T>,
    col_start: usize,
    cfg: &LossConfig,
    combined: &Combined<T>,
    mut grad: ArrayViewMut2<T>,
) -> Result<()> {
    let (n, cols) = cos.dim();
    if grad.dim() != (n, cols) || !grad.is_standard_layout() || !cos.is_standard_layout() {
        return Err(Error::ShapeMismatch {
            what: "shard grad (row-major, same shape as the shard's cos)".into(),
            expected: cos.len(),
            got: grad.len(),
        });
    }
    if combined.lse.len() != n {
        return Err(Error::ShapeMismatch {
            what: "combined rows".into(),
            expected: n,
            got: combined.lse.len(),
        });
    }
    if cols == 0 {
        return Ok(());
    }
    let s = T::of(cfg.params.s);
    let scale = T::of(cfg.params.s / combined.valid.max(1) as f64);
    let data = cos.as_slice().expect("checked");
    let out = grad.as_slice_mut().expect("checked");
    data.par_chunks(cols)
        .zip(out.par_chunks_mut(cols))
        .enumerate()
        .for_each(|(i, (row, g))| match &combined.targets[i] {
            None => g.iter_mut().for_each(|v| *v = T::zero()),
            Some(t) => {
                let local =
                    (t.column >= col_start && t.column < col_start + cols).then(|| TargetLogit {
                        column: t.column - col_start,
                        ..*t
                    });
                row_grad(row, s, combined.lse[i], scale, local.as_ref(), g);
            }
        });
    Ok(())
}
