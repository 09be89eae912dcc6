//! Random-initialization inputs for `cmargin loss --synthetic` and the estimate's test
//! (SPEC.md §8.6): features and class weights drawn from isotropic normals and normalized,
//! labels uniform. Deterministic for a seed, whatever the thread count: every row draws from
//! its own splitmix64 stream keyed by (seed, what, row).
//!
//! The generator is the crate's one splitmix64 ([`crate::rng`]), re-exported here for the
//! pipeline's callers; a row's normals come from its `normal_pair` (both Box–Muller values).

use crate::error::{Error, Result};
use ndarray::{Array2, Axis};
use rayon::prelude::*;

pub use crate::rng::SplitMix64;

/// The stream of row `row` of array `what` (0: features, 1: weights, 2: labels) for `seed`.
pub fn stream(seed: u64, what: u64, row: u64) -> SplitMix64 {
    let mut k = SplitMix64::new(seed ^ what.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let base = k.next_u64();
    let mut r = SplitMix64::new(base ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    r.next_u64();
    r
}

/// Rows [first, first + rows) of a [·, d] array of unit rows in f32: normals, then divided by
/// their norm in f64 (eps = 0), then rounded.
pub fn unit_rows(seed: u64, what: u64, first: usize, rows: usize, d: usize) -> Array2<f32> {
    let mut a = Array2::<f32>::zeros((rows, d));
    a.as_slice_mut()
        .expect("fresh arrays are contiguous")
        .par_chunks_mut(d)
        .enumerate()
        .for_each(|(i, row)| {
            let mut rng = stream(seed, what, (first + i) as u64);
            let mut v = Vec::with_capacity(d + 1);
            while v.len() < d {
                let (a, b) = rng.normal_pair();
                v.push(a);
                v.push(b);
            }
            v.truncate(d);
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            for (o, x) in row.iter_mut().zip(v) {
                *o = (x / n) as f32;
            }
        });
    a
}

/// Uniform labels in [0, c).
pub fn labels(seed: u64, n: usize, c: usize) -> Vec<i64> {
    let mut rng = stream(seed, 2, 0);
    (0..n).map(|_| rng.below(c as u64) as i64).collect()
}

/// A synthetic problem at random initialization, as cos [N, C] (f32) and labels.
#[derive(Clone, Debug)]
pub struct Synthetic {
    pub features: Array2<f32>,
    pub cos: Array2<f32>,
    pub labels: Vec<i64>,
    /// Thread-seconds spent drawing and normalizing the weights, and in the cos matmul
    /// (summed over the blocks; wall time is lower by up to the thread count).
    pub draw_thread_s: f64,
    pub matmul_thread_s: f64,
}

/// Class rows per matmul block: 4096·512·4 bytes = 8 MiB of weights in flight per thread.
const CLASS_BLOCK: usize = 4096;

/// Draws N features and C class weights in D dimensions and computes cos = x̂·ŵᵀ in f32 with
/// ndarray's `dot` (matrixmultiply), one block of classes at a time in parallel, so the
/// C×D weight matrix is never held whole.
pub fn generate(n: usize, c: usize, d: usize, seed: u64) -> Result<Synthetic> {
    if n == 0 || c == 0 || d == 0 {
        return Err(Error::Invalid(format!(
            "synthetic sizes must be positive, got N = {n}, C = {c}, D = {d}"
        )));
    }
    let elements = (n as u128) * (c as u128);
    if elements > (1u128 << 31) {
        return Err(Error::Invalid(format!(
            "N·C = {elements} cos entries exceed the 2^31 this command holds in memory"
        )));
    }
    let features = unit_rows(seed, 0, 0, n, d);
    let blocks: Vec<(usize, usize)> = (0..c)
        .step_by(CLASS_BLOCK)
        .map(|a| (a, (a + CLASS_BLOCK).min(c)))
        .collect();
    // cosᵀ [C, N] is filled block by block (rows of it are contiguous), then transposed.
    let mut cos_t = Array2::<f32>::zeros((c, n));
    let slabs: Vec<_> = cos_t
        .axis_chunks_iter_mut(Axis(0), CLASS_BLOCK)
        .zip(blocks.iter())
        .collect();
    let times: Vec<(f64, f64)> = slabs
        .into_par_iter()
        .map(|(mut slab, &(a, b))| {
            let t0 = std::time::Instant::now();
            let w = unit_rows(seed, 1, a, b - a, d);
            let t1 = std::time::Instant::now();
            slab.assign(&w.dot(&features.t()));
            (
                (t1 - t0).as_secs_f64(),
                (std::time::Instant::now() - t1).as_secs_f64(),
            )
        })
        .collect();
    let mut cos = Array2::<f32>::zeros((n, c));
    cos.as_slice_mut()
        .expect("fresh arrays are contiguous")
        .par_chunks_mut(c)
        .enumerate()
        .for_each(|(i, row)| {
            for (o, v) in row.iter_mut().zip(cos_t.column(i)) {
                *o = *v;
            }
        });
    Ok(Synthetic {
        features,
        cos,
        labels: labels(seed, n, c),
        draw_thread_s: times.iter().map(|t| t.0).sum(),
        matmul_thread_s: times.iter().map(|t| t.1).sum(),
    })
}
