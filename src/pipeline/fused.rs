//! The fused head over cos [N, C]: margin + scale + softmax cross-entropy, forward and
//! backward, streaming, generic over f32/f64, parallel across rows (SPEC.md §8.5).
//!
//! Passes over each row of C logits (blocks of 512 columns):
//! 1. read cos once; per block, the max m_b of z = s·c and Σ exp(z − m_b), merged online into
//!    the row's (max, Σ); each e_j = exp(z_j − m_b) is stored, in the gradient row or (for
//!    gradients of [`STREAM_MIN_BYTES`] or more) in a per-thread scratch row. The next block
//!    is prefetched meanwhile. The target column is left out of the stream and enters as its
//!    margin logit;
//! 2. rescale the stored row: d loss / d cos_j = e_j · (s/N_valid)·exp(m_b − lse), one exp per
//!    block, in place or from the scratch row with non-temporal stores; the target entry is
//!    s·(p_y − 1)/N_valid times the margin factor.
//!
//! One exp per element. Bytes per element: pass 1 reads 4 (f32) and writes 4 to a row
//! (4·C bytes: 723 KB at C = 180,855) that stays in cache; pass 2 reads those and writes 4.
//! So the memory traffic is one read of cos and one write of the gradient, 2·4·N·C bytes:
//! that of a memcpy of the cos matrix, the floor the benchmark compares with (in place, the
//! first store to each gradient line also reads it: 3·4·N·C). The forward alone
//! ([`forward`]) reads cos once (4·N·C bytes) and writes nothing.
//!
//! Kernels are built three times (baseline, AVX2, AVX-512F) from one generic body and chosen
//! at run time; the same IEEE operations in the same order, so the same bits.
//!
//! The margin of each row's target is [`crate::margin::eval_with`] (once per row, in f64, the
//! result rounded to T); nothing here restates the formula.

use super::LossConfig;
use crate::error::{Error, Result};
use crate::layer;
use crate::margin::{self, Constants};
use crate::params::Params;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;
use std::sync::Mutex;

/// A floating-point type the fast path runs in.
pub trait Real: crate::dtype::Float {
    /// e^x with ≤ 2 ulp error on the whole range (tested; f32 measured at ≤ 1.18 ulp over
    /// every float in [−104, 89]), NaN in NaN out, written so that the compiler can vectorize
    /// it: Cody–Waite reduction x = k·ln2 + r, |r| ≤ ln2/2, a polynomial for e^r (minimax of
    /// degree 6 in f32, Taylor of degree 13 in f64), and 2^k applied in two halves so that
    /// results in the subnormal range are rounded once.
    fn exp_fast(self) -> Self;
    /// The lower end of [`Real::exp_narrow`]'s domain: −87 (f32), −708 (f64), where
    /// e^x is still normal (k ≥ −126, resp. −1022, in the reduction below).
    const EXP_NARROW_MIN: f64;
    /// [`Real::exp_fast`] for x in [EXP_NARROW_MIN, 0] or NaN, equal to it bit for bit there
    /// with fewer operations: no clamp (the domain needs none) and 2^k applied by one multiply
    /// (exact, since p·2^k is rounded once either way and 2^k is a normal number). A block whose
    /// smallest s·c − max is at least EXP_NARROW_MIN takes it (SPEC §8.5). NaN in, NaN out.
    fn exp_narrow(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn exp_fast(self) -> f32 {
        let x = self;
        // Below −104 the result rounds to 0; above 89 it overflows to inf (2^128 step).
        // Comparisons rather than clamp(): the same selects; a NaN x fails both and passes
        // through unchanged.
        #[allow(clippy::manual_clamp)]
        let xc = if x < -104.0 {
            -104.0
        } else if x > 89.0 {
            89.0
        } else {
            x
        };
        let (p, ki) = exp_core_f32(xc);
        let k1 = ki >> 1;
        let k2 = ki - k1;
        let two1 = f32::from_bits(((k1 + 127) as u32) << 23);
        let two2 = f32::from_bits(((k2 + 127) as u32) << 23);
        // NaN needs no select: the clamp's comparisons are false for it, so it reaches r and
        // p, and NaN times any scale is NaN.
        p * two1 * two2
    }
    const EXP_NARROW_MIN: f64 = -87.0;
    #[inline(always)]
    fn exp_narrow(self) -> f32 {
        // x ≥ −87: x·log2e ≥ −125.52, so k ≥ −126 and 2^k is normal; p·2^k is then the
        // single rounding that p·2^k1·2^k2 also makes (p·2^k1 is exact).
        let (p, ki) = exp_core_f32(self);
        p * f32::from_bits((ki.wrapping_add(127) as u32) << 23)
    }
}

/// Cody–Waite reduction x = k·ln2 + r, |r| ≤ ln2/2, and p = e^r: returns (p, k). Shared by
/// [`Real::exp_fast`] and [`Real::exp_narrow`] so that both compute the same p.
#[inline(always)]
fn exp_core_f32(x: f32) -> (f32, i32) {
    // ln2 split so that k·LN2_HI is exact for |k| < 2^15.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5·2^23: adding and subtracting it rounds to the nearest integer (ties to even).
    const ROUND: f32 = 12_582_912.0;
    let kr = x * LOG2E + ROUND;
    let k = kr - ROUND;
    // k sits in the low mantissa bits of kr: no float-to-int conversion (whose saturating
    // semantics keep the loop from vectorizing).
    let ki = (kr.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // e^r = 1 + r·Q(r), Q of degree 5: a minimax fit of (e^r − 1)/r in relative error on
    // |r| ≤ ln2/2 with the f32 coefficients chosen one at a time (each rounded, the rest
    // refitted). Approximation error 0.053 u (3.1e-9), against 0.08 u for Taylor to degree
    // 7 with one multiply-add more; the rounding of the Horner steps dominates (SPEC §8.5).
    let q = 0.001_381_826_7;
    let q = q * r + 0.008_368_531;
    let q = q * r + 0.041_668_292;
    let q = q * r + 0.166_665_23;
    let q = q * r + 0.499_999_94;
    let q = q * r + 1.0;
    (q * r + 1.0, ki)
}

impl Real for f64 {
    #[inline(always)]
    fn exp_fast(self) -> f64 {
        let x = self;
        #[allow(clippy::manual_clamp)]
        let xc = if x < -746.0 {
            -746.0
        } else if x > 710.0 {
            710.0
        } else {
            x
        };
        let (p, ki) = exp_core_f64(xc);
        let k1 = ki >> 1;
        let k2 = ki - k1;
        let two1 = f64::from_bits(((k1 + 1023) as u64) << 52);
        let two2 = f64::from_bits(((k2 + 1023) as u64) << 52);
        // NaN passes the clamp unchanged and propagates (see the f32 version).
        p * two1 * two2
    }
    const EXP_NARROW_MIN: f64 = -708.0;
    #[inline(always)]
    fn exp_narrow(self) -> f64 {
        // x ≥ −708: x·log2e ≥ −1021.4, so k ≥ −1021 and 2^k is normal (see the f32 version).
        let (p, ki) = exp_core_f64(self);
        p * f64::from_bits((ki.wrapping_add(1023) as u64) << 52)
    }
}

/// The f64 Cody–Waite reduction and e^r: returns (p, k), as [`exp_core_f32`].
#[inline(always)]
fn exp_core_f64(x: f64) -> (f64, i64) {
    // fdlibm's split of ln2: the high part has 32 significant bits.
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let kr = x * LOG2E + ROUND;
    let k = kr - ROUND;
    let ki = (kr.to_bits() as i64).wrapping_sub(ROUND.to_bits() as i64);
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor to degree 13: truncation (ln2/2)^14/14! = 4e-18, below u = 1.1e-16.
    let mut q = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
    ] {
        q = q * r + c;
    }
    (q * r + 1.0, ki)
}

/// Independent accumulators per block loop: 16 f32 lanes fill one AVX-512 register (two AVX2
/// ones). Every build sums in this same lane order, so all builds round identically.
const LANES: usize = 16;
const BLOCK: usize = 512;

/// Running (max, Σ exp(z − max)) of a stream of logits z = s·c. `nan` records a NaN input
/// (max comparisons skip NaN, so it is carried separately and poisons the result).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stream<T> {
    pub max: T,
    pub sum: T,
    pub nan: bool,
}

impl<T: Real> Stream<T> {
    pub fn empty() -> Self {
        Stream {
            max: T::neg_infinity(),
            sum: T::zero(),
            nan: false,
        }
    }

    /// One logit.
    pub fn push(&mut self, z: T) {
        self.merge(Stream {
            max: if z.is_nan() { T::neg_infinity() } else { z },
            sum: if z.is_nan() { T::zero() } else { T::one() },
            nan: z.is_nan(),
        });
    }

    /// Combines two partial streams: the smaller max is rescaled to the larger.
    pub fn merge(&mut self, o: Stream<T>) {
        self.nan |= o.nan;
        if o.max == T::neg_infinity() {
            return;
        }
        if self.max == T::neg_infinity() {
            self.max = o.max;
            self.sum = o.sum;
        } else if o.max == self.max {
            // Also the case of two +inf maxima, where exp(inf − inf) would be NaN.
            self.sum = self.sum + o.sum;
        } else if o.max > self.max {
            self.sum = self.sum * (self.max - o.max).exp_fast() + o.sum;
            self.max = o.max;
        } else {
            self.sum = self.sum + o.sum * (o.max - self.max).exp_fast();
        }
    }

    /// ln Σ exp(z) = max + ln(sum); NaN if any input was NaN.
    pub fn lse(&self) -> T {
        if self.nan {
            T::nan()
        } else {
            self.max + self.sum.ln()
        }
    }
}

/// One block: its max of s·c, Σ exp(s·c − max), and whether it held a NaN. With `store`,
/// also writes e_j = exp(s·c_j − max) there (0 for an all −inf block, NaN for a NaN block).
///
/// NaN is not tested element by element: the max comparisons skip it, exp_fast returns it,
/// and it then poisons the block's sum, which is checked once.
#[inline(always)]
fn block_stream<T: Real>(block: &[T], s: T, store: Option<&mut [T]>, next: &[T]) -> Stream<T> {
    let mut mx = [T::neg_infinity(); LANES];
    // The smallest s·c as well (NaN skipped, as by the max): if the block's
    // s·c − max stays above EXP_NARROW_MIN its exps take `exp_narrow`, the same bits in
    // fewer operations.
    let mut mn = [T::infinity(); LANES];
    let chunks = block.chunks_exact(LANES);
    let rest = chunks.remainder();
    for ch in chunks {
        for l in 0..LANES {
            let z = s * ch[l];
            mx[l] = if z > mx[l] { z } else { mx[l] };
            mn[l] = if z < mn[l] { z } else { mn[l] };
        }
    }
    let mut bm = T::neg_infinity();
    let mut bmin = T::infinity();
    for &c in rest {
        let z = s * c;
        bm = if z > bm { z } else { bm };
        bmin = if z < bmin { z } else { bmin };
    }
    for (v, w) in mx.into_iter().zip(mn) {
        bm = if v > bm { v } else { bm };
        bmin = if w < bmin { w } else { bmin };
    }
    if bm == T::infinity() {
        // A +inf logit (rare): the row's lse is +inf, as in the reference, and p_j =
        // exp(z_j − inf) is 0 for every finite z_j and NaN (inf − inf) for each +inf one. The
        // block reports (max +inf, Σ = their count) and stores NaN there and 0 elsewhere;
        // pass 2 multiplies by scale (not exp(inf − inf)) for such a block.
        let nan = block.iter().any(|c| c.is_nan());
        let mut count = T::zero();
        for &c in block {
            if s * c == T::infinity() {
                count = count + T::one();
            }
        }
        if let Some(out) = store {
            for (o, &c) in out.iter_mut().zip(block) {
                *o = if s * c == T::infinity() {
                    T::nan()
                } else {
                    T::zero()
                };
            }
        }
        return Stream {
            max: bm,
            sum: count,
            nan,
        };
    }
    if bm == T::neg_infinity() {
        // Every element is −inf or NaN (rare): look.
        let nan = block.iter().any(|c| c.is_nan());
        if let Some(out) = store {
            let fill = if nan { T::nan() } else { T::zero() };
            out.iter_mut().for_each(|o| *o = fill);
        }
        return Stream {
            max: T::neg_infinity(),
            sum: T::zero(),
            nan,
        };
    }
    // x = s·c − bm is monotone in s·c, so the block's smallest x is bmin − bm (a −inf
    // element makes it −inf: the full exp).
    let (sm, bs) = if bmin - bm >= T::of(T::EXP_NARROW_MIN) {
        block_exps::<T, true>(block, s, bm, store, next)
    } else {
        block_exps::<T, false>(block, s, bm, store, next)
    };
    let mut sm = sm;
    // Pairwise over the lanes.
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            sm[l] = sm[l] + sm[l + w];
        }
    }
    let sum = sm[0] + bs;
    if sum.is_nan() {
        return Stream {
            max: T::neg_infinity(),
            sum: T::zero(),
            nan: true,
        };
    }
    Stream {
        max: bm,
        sum,
        nan: false,
    }
}

/// The exp loop of [`block_stream`]: per-lane sums of e_j = exp(s·c_j − bm) (and the rest's
/// sum), storing e_j when asked. NARROW: every s·c_j − bm lies in [EXP_NARROW_MIN, 0] or is
/// NaN, so [`Real::exp_narrow`] gives exp_fast's bits.
#[inline(always)]
fn block_exps<T: Real, const NARROW: bool>(
    block: &[T],
    s: T,
    bm: T,
    store: Option<&mut [T]>,
    next: &[T],
) -> ([T; LANES], T) {
    let exp = |x: T| if NARROW { x.exp_narrow() } else { x.exp_fast() };
    let mut sm = [T::zero(); LANES];
    let mut bs = T::zero();
    match store {
        None => {
            let chunks = block.chunks_exact(LANES);
            let rest = chunks.remainder();
            for (i, ch) in chunks.enumerate() {
                prefetch(next, i);
                for l in 0..LANES {
                    sm[l] = sm[l] + exp(s * ch[l] - bm);
                }
            }
            for &c in rest {
                bs = bs + exp(s * c - bm);
            }
        }
        Some(out) => {
            let chunks = block.chunks_exact(LANES);
            let rest = chunks.remainder();
            let (oc, orest) = out.split_at_mut(block.len() - rest.len());
            for (i, (ch, o)) in chunks.zip(oc.chunks_exact_mut(LANES)).enumerate() {
                prefetch(next, i);
                for l in 0..LANES {
                    let e = exp(s * ch[l] - bm);
                    o[l] = e;
                    sm[l] = sm[l] + e;
                }
            }
            for (&c, o) in rest.iter().zip(orest) {
                let e = exp(s * c - bm);
                *o = e;
                bs = bs + e;
            }
        }
    }
    (sm, bs)
}

/// Asks for the lines of chunk `i` (LANES elements) of the next block while this block's exps
/// are computed: the max loop over a block otherwise waits for memory (it was 30 % of pass 1's
/// samples in `perf`), and the exp loop leaves the memory system idle. No effect on results.
#[inline(always)]
fn prefetch<T>(next: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let size = std::mem::size_of::<T>();
        let bytes = std::mem::size_of_val(next);
        let mut off = i * LANES * size;
        let end = ((i + 1) * LANES * size).min(bytes);
        while off < end {
            // SAFETY: prefetch is a hint that never faults; the address lies within `next`.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>((next.as_ptr() as *const i8).add(off));
            }
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (next, i);
}

/// The AVX2 and AVX-512F builds of a generic kernel body: the same source compiled with wider
/// vectors (callers check the CPU first).
macro_rules! isa_builds {
    ($body:ident => $avx2:ident, $avx512:ident, ($($a:ident: $t:ty),*) -> $r:ty) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $avx2<T: Real>($($a: $t),*) -> $r {
            $body($($a),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn $avx512<T: Real>($($a: $t),*) -> $r {
            $body($($a),*)
        }
    };
}

#[inline(always)]
fn stream_scaled_body<T: Real>(cos: &[T], s: T, acc: &mut Stream<T>) {
    for (b, block) in cos.chunks(BLOCK).enumerate() {
        let next = cos.get((b + 1) * BLOCK..).unwrap_or(&[]);
        acc.merge(block_stream(block, s, None, &next[..next.len().min(BLOCK)]));
    }
}

isa_builds!(stream_scaled_body => stream_scaled_avx2, stream_scaled_avx512,
    (cos: &[T], s: T, acc: &mut Stream<T>) -> ());

/// Whether the AVX-512 builds of the kernels may run (16 f32 lanes per instruction, 32
/// vector registers: the exp's constants stay in registers). As for AVX2, the same IEEE
/// operations in the same order: the choice changes speed, not results.
#[inline]
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the AVX2 builds of the kernels may run. Rust never contracts a·b + c into an FMA,
/// so both builds round identically: the choice changes speed, not results.
#[inline]
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Streams s·c over `cos` in blocks into `acc` (pass 1 without storing, as a shard does).
pub fn stream_scaled<T: Real>(cos: &[T], s: T, acc: &mut Stream<T>) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU supports AVX-512F (checked at run time).
        return unsafe { stream_scaled_avx512(cos, s, acc) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU supports AVX2 (checked at run time).
        return unsafe { stream_scaled_avx2(cos, s, acc) };
    }
    stream_scaled_body(cos, s, acc)
}

#[inline(always)]
fn write_probs_body<T: Real>(cos: &[T], s: T, lse: T, scale: T, out: &mut [T]) {
    for (o, &c) in out.iter_mut().zip(cos) {
        *o = scale * (s * c - lse).exp_fast();
    }
}

isa_builds!(write_probs_body => write_probs_avx2, write_probs_avx512,
    (cos: &[T], s: T, lse: T, scale: T, out: &mut [T]) -> ());

/// Writes out[j] = scale·exp(s·cos[j] − lse) (a shard's backward: one exp per element).
pub fn write_probs_scaled<T: Real>(cos: &[T], s: T, lse: T, scale: T, out: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU supports AVX-512F (checked at run time).
        return unsafe { write_probs_avx512(cos, s, lse, scale, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU supports AVX2 (checked at run time).
        return unsafe { write_probs_avx2(cos, s, lse, scale, out) };
    }
    write_probs_body(cos, s, lse, scale, out)
}

/// Pass 1 of the fused row: the stream over every column but the target (which enters as its
/// margin logit), storing e_j = exp(s·c_j − m_b) in `out` and each block's max m_b in `maxes`.
#[inline(always)]
fn row_pass1_body<T: Real>(
    row: &[T],
    s: T,
    t: &TargetLogit<T>,
    mut out: Option<&mut [T]>,
    mut maxes: Option<&mut Vec<T>>,
) -> Stream<T> {
    let mut acc = Stream::empty();
    let tb = t.column / BLOCK;
    for (b, block) in row.chunks(BLOCK).enumerate() {
        let next = row.get((b + 1) * BLOCK..).unwrap_or(&[]);
        let next = &next[..next.len().min(BLOCK)];
        let o = out
            .as_deref_mut()
            .map(|o| &mut o[b * BLOCK..b * BLOCK + block.len()]);
        let st = if b == tb {
            // The target's own s·c_y must not enter the sum (subtracting it later would
            // cancel catastrophically when it dominates): −inf stands in for it.
            let mut buf = [T::zero(); BLOCK];
            buf[..block.len()].copy_from_slice(block);
            buf[t.column % BLOCK] = T::neg_infinity();
            block_stream(&buf[..block.len()], s, o, next)
        } else {
            block_stream(block, s, o, next)
        };
        if let Some(m) = maxes.as_deref_mut() {
            m.push(st.max);
        }
        acc.merge(st);
    }
    acc.push(t.logit);
    acc
}

isa_builds!(row_pass1_body => row_pass1_avx2, row_pass1_avx512,
    (row: &[T], s: T, t: &TargetLogit<T>, out: Option<&mut [T]>, maxes: Option<&mut Vec<T>>) -> Stream<T>);

fn row_pass1<T: Real>(
    row: &[T],
    s: T,
    t: &TargetLogit<T>,
    out: &mut [T],
    maxes: &mut Vec<T>,
) -> Stream<T> {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU supports AVX-512F (checked at run time).
        return unsafe { row_pass1_avx512(row, s, t, Some(out), Some(maxes)) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU supports AVX2 (checked at run time).
        return unsafe { row_pass1_avx2(row, s, t, Some(out), Some(maxes)) };
    }
    row_pass1_body(row, s, t, Some(out), Some(maxes))
}

/// Pass 2 of the fused row: out_j ← e_j · scale·exp(m_b − lse), one exp per block; then the
/// target's entry scale·(exp(z_y − lse) − 1)·factor.
#[inline(always)]
fn row_pass2_body<T: Real>(out: &mut [T], maxes: &[T], lse: T, scale: T, t: &TargetLogit<T>) {
    for (o, &m) in out.chunks_mut(BLOCK).zip(maxes) {
        let f = block_factor(m, lse, scale);
        for v in o.iter_mut() {
            *v = *v * f;
        }
    }
    out[t.column] = target_grad(t, lse, scale);
}

isa_builds!(row_pass2_body => row_pass2_avx2, row_pass2_avx512,
    (out: &mut [T], maxes: &[T], lse: T, scale: T, t: &TargetLogit<T>) -> ());

/// scale·exp(m_b − lse), the factor that turns a block's stored e_j = exp(z_j − m_b) into
/// scale·p_j. A +inf block in a +inf row stored NaN at its +inf logits and 0 elsewhere
/// (see [`block_stream`]): its factor is scale, not exp(inf − inf) = NaN.
#[inline(always)]
fn block_factor<T: Real>(m: T, lse: T, scale: T) -> T {
    if m == T::infinity() && lse == T::infinity() {
        scale
    } else {
        scale * (m - lse).exp_fast()
    }
}

/// The target's entry: scale·(p_y − 1)·factor, p_y = exp(z_y − lse).
#[inline(always)]
fn target_grad<T: Real>(t: &TargetLogit<T>, lse: T, scale: T) -> T {
    let p = (t.logit - lse).exp_fast();
    scale * (p - T::one()) * T::of(t.factor)
}

/// Pass 2 from a scratch row `e` (pass 1's stores) into `out` with non-temporal stores: the
/// gradient is written once and not read here again, so its cache lines are not fetched
/// before being overwritten (a normal store first reads the line: 4 more bytes per f32
/// element from memory). Same products as [`row_pass2_body`], so the same bits.
///
/// # Safety
/// The CPU must support AVX-512F; T must be 4 or 8 bytes (checked by the caller).
// AVX-512 target features and intrinsics are stable since Rust 1.89, above Cargo.toml's
// rust-version (1.80, which the locked clap 4.6 (1.85) already exceeds): it must be raised.
#[allow(clippy::incompatible_msrv)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_pass2_stream_avx512<T: Real>(
    e: &[T],
    out: &mut [T],
    maxes: &[T],
    lse: T,
    scale: T,
    t: &TargetLogit<T>,
) {
    use std::arch::x86_64::{__m512i, _mm512_loadu_si512, _mm512_stream_si512, _mm_sfence};
    let size = std::mem::size_of::<T>();
    // Every block starts 4·512 or 8·512 bytes after the row, so all share the row's offset
    // from a 64-byte line: the first `head` elements of each block complete a line that
    // the previous block began (normal stores), the rest go out in whole lines.
    let head = ((64 - out.as_ptr() as usize % 64) % 64) / size;
    for ((eb, ob), &m) in e.chunks(BLOCK).zip(out.chunks_mut(BLOCK)).zip(maxes) {
        let f = block_factor(m, lse, scale);
        let h = head.min(ob.len());
        for (o, &v) in ob[..h].iter_mut().zip(&eb[..h]) {
            *o = v * f;
        }
        let body = (ob.len() - h) / LANES * LANES;
        let (ebody, etail) = eb[h..].split_at(body);
        let (obody, otail) = ob[h..].split_at_mut(body);
        for (ec, oc) in ebody.chunks_exact(LANES).zip(obody.chunks_exact_mut(LANES)) {
            let mut v = [T::zero(); LANES];
            for l in 0..LANES {
                v[l] = ec[l] * f;
            }
            let src = v.as_ptr() as *const u8;
            let dst = oc.as_mut_ptr() as *mut u8;
            let mut k = 0;
            while k < LANES * size {
                // SAFETY: dst + k is 64-byte aligned (head skipped, LANES·size a multiple
                // of 64) and the 64 bytes lie within oc; src + k within v.
                _mm512_stream_si512(
                    dst.add(k) as *mut __m512i,
                    _mm512_loadu_si512(src.add(k) as *const __m512i),
                );
                k += 64;
            }
        }
        for (o, &v) in otail.iter_mut().zip(etail) {
            *o = v * f;
        }
    }
    // Non-temporal stores are weakly ordered: fence them before the target's ordinary store
    // to the same row and before another thread may read the gradient.
    _mm_sfence();
    out[t.column] = target_grad(t, lse, scale);
}

fn row_pass2<T: Real>(out: &mut [T], maxes: &[T], lse: T, scale: T, t: &TargetLogit<T>) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU supports AVX-512F (checked at run time).
        return unsafe { row_pass2_avx512(out, maxes, lse, scale, t) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU supports AVX2 (checked at run time).
        return unsafe { row_pass2_avx2(out, maxes, lse, scale, t) };
    }
    row_pass2_body(out, maxes, lse, scale, t)
}

/// What each row's target contributes: its margin logit z_y = s·margin(c_y) in T and the
/// backward factor d margin / d c at c_y (f64, from the profile).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetLogit<T> {
    pub column: usize,
    pub logit: T,
    pub factor: f64,
}

/// The margin of one target under the configuration, via [`margin::eval_with`].
pub fn target_logit<T: Real>(
    c: T,
    column: usize,
    unscaled: &Params,
    k: &Constants,
    cfg: &LossConfig,
) -> TargetLogit<T> {
    let e = margin::eval_with(c.f64(), unscaled, &cfg.profile, k);
    let m = T::of(e.out);
    TargetLogit {
        column,
        logit: T::of(cfg.params.s) * m,
        factor: e.factor,
    }
}

/// Per-row result of the fused forward.
#[derive(Clone, Debug, PartialEq)]
pub struct FusedOutput<T> {
    /// Mean row loss over the valid rows (nats), accumulated in f64 from the T row losses.
    pub loss: f64,
    /// lse_i − z_i,y_i per row (floored if configured), `None` for ignored rows.
    pub row_loss: Vec<Option<T>>,
    /// ln Σ_j exp(z_ij) per row; NaN for ignored rows (not computed).
    pub lse: Vec<T>,
    pub valid: usize,
}

pub(crate) fn check_rows<T>(cos: &ArrayView2<T>) -> Result<()> {
    if cos.ncols() == 0 {
        return Err(Error::Invalid(
            "cos has no columns: need at least one class".into(),
        ));
    }
    if !cos.is_standard_layout() {
        return Err(Error::Invalid(
            "cos must be a row-major contiguous array (C order)".into(),
        ));
    }
    Ok(())
}

/// Row loss from its lse and target logit, with the optional floor −ln(floor).
pub(crate) fn row_loss<T: Real>(lse: T, z_y: T, cfg: &LossConfig) -> T {
    let l = lse - z_y;
    match cfg.prob_floor {
        Some(f) => {
            let cap = T::of(-f.ln());
            if l > cap {
                cap
            } else {
                l
            }
        }
        None => l,
    }
}

/// One row, pass 1 without storing (the forward alone, and a shard holding the target): the
/// same blocks as the fused forward+backward, so both give bit-identical losses.
pub(crate) fn row_stream<T: Real>(row: &[T], s: T, t: &TargetLogit<T>) -> Stream<T> {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU supports AVX-512F (checked at run time).
        return unsafe { row_pass1_avx512(row, s, t, None, None) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU supports AVX2 (checked at run time).
        return unsafe { row_pass1_avx2(row, s, t, None, None) };
    }
    row_pass1_body(row, s, t, None, None)
}

/// One row, pass 2: d loss / d cos with `scale` = s / N_valid.
pub(crate) fn row_grad<T: Real>(
    row: &[T],
    s: T,
    lse: T,
    scale: T,
    t: Option<&TargetLogit<T>>,
    out: &mut [T],
) {
    write_probs_scaled(row, s, lse, scale, out);
    if let Some(t) = t {
        out[t.column] = target_grad(t, lse, scale);
    }
}

fn targets_of<T: Real>(
    cos: &ArrayView2<T>,
    labels: &[i64],
    cfg: &LossConfig,
) -> Result<Vec<Option<TargetLogit<T>>>> {
    if !supports(&cfg.profile) {
        return Err(Error::Invalid(format!(
            "profile {}: the fused path computes s·c for every non-target, so it takes only profiles that leave non-targets unchanged (no clamp of every entry, no round trip of non-targets); use the reference pipeline",
            cfg.profile.name
        )));
    }
    let (n, c) = cos.dim();
    let cols = layer::targets(n, c, labels, &cfg.profile)?;
    let unscaled = Params {
        s: 1.0,
        ..cfg.params
    };
    let k = Constants::new(&cfg.profile, &unscaled, cfg.dtype);
    Ok(cols
        .into_iter()
        .enumerate()
        .map(|(i, col)| col.map(|j| target_logit(cos[[i, j]], j, &unscaled, &k, cfg)))
        .collect())
}

fn finish<T: Real>(per_row: Vec<Option<(T, T)>>) -> FusedOutput<T> {
    let valid = per_row.iter().filter(|r| r.is_some()).count();
    let total: f64 = per_row.iter().flatten().map(|(_, l)| l.f64()).sum();
    FusedOutput {
        loss: total / valid.max(1) as f64,
        row_loss: per_row.iter().map(|r| r.map(|(_, l)| l)).collect(),
        lse: per_row
            .iter()
            .map(|r| r.map_or(T::nan(), |(lse, _)| lse))
            .collect(),
        valid,
    }
}

/// Whether the fused path takes `profile`: it computes s·c for every non-target entry, so
/// only profiles that leave non-targets unchanged.
pub fn supports(profile: &crate::profile::Profile) -> bool {
    !profile.transforms_non_targets()
}

/// Fused forward: the loss and per-row lse, one pass over cos.
pub fn forward<T: Real>(
    cos: ArrayView2<T>,
    labels: &[i64],
    cfg: &LossConfig,
) -> Result<FusedOutput<T>> {
    cfg.validate()?;
    check_rows(&cos)?;
    let c = cos.ncols();
    let targets = targets_of(&cos, labels, cfg)?;
    let data = cos.as_slice().expect("standard layout checked");
    let s = T::of(cfg.params.s);
    let per_row: Vec<Option<(T, T)>> = data
        .par_chunks(c)
        .zip(targets.par_iter())
        .map(|(row, t)| {
            t.as_ref().map(|t| {
                let lse = row_stream(row, s, t).lse();
                (lse, row_loss(lse, t.logit, cfg))
            })
        })
        .collect();
    Ok(finish(per_row))
}

/// Fused forward and backward: writes d loss / d cos into `grad` (same shape as cos; ignored
/// rows get 0) and returns the loss.
pub fn forward_backward<T: Real>(
    cos: ArrayView2<T>,
    labels: &[i64],
    cfg: &LossConfig,
    mut grad: ArrayViewMut2<T>,
) -> Result<FusedOutput<T>> {
    cfg.validate()?;
    check_rows(&cos)?;
    if grad.dim() != cos.dim() || !grad.is_standard_layout() {
        return Err(Error::ShapeMismatch {
            what: "grad (row-major, same shape as cos)".into(),
            expected: cos.len(),
            got: grad.len(),
        });
    }
    let (_, c) = cos.dim();
    let targets = targets_of(&cos, labels, cfg)?;
    let valid = targets.iter().filter(|t| t.is_some()).count();
    let data = cos.as_slice().expect("standard layout checked");
    let out = grad.as_slice_mut().expect("standard layout checked");
    let s = T::of(cfg.params.s);
    let scale = T::of(cfg.params.s / valid.max(1) as f64);
    let stream = streamed::<T>(out.len());
    // One scratch row per pool thread (and one for a caller outside the pool), locked by the
    // row being processed on that thread: never contended, since a row's work spawns none.
    let threads = rayon::current_num_threads();
    let scratch: Vec<Mutex<Vec<T>>> = if stream {
        (0..=threads).map(|_| Mutex::new(Vec::new())).collect()
    } else {
        Vec::new()
    };
    let per_row: Vec<Option<(T, T)>> = data
        .par_chunks(c)
        .zip(out.par_chunks_mut(c))
        .zip(targets.par_iter())
        .map(|((row, g), t)| match t {
            None => {
                g.iter_mut().for_each(|v| *v = T::zero());
                None
            }
            Some(t) => {
                let mut maxes = Vec::with_capacity(c.div_ceil(BLOCK));
                let lse = if stream {
                    let slot = rayon::current_thread_index().map_or(threads, |i| i.min(threads));
                    let mut e = scratch[slot].lock().unwrap_or_else(|p| p.into_inner());
                    e.resize(c, T::zero());
                    let lse = row_pass1(row, s, t, &mut e, &mut maxes).lse();
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `streamed` checked AVX-512F and the size of T.
                    unsafe {
                        row_pass2_stream_avx512(&e, g, &maxes, lse, scale, t)
                    };
                    #[cfg(not(target_arch = "x86_64"))]
                    {
                        g.copy_from_slice(&e);
                        row_pass2(g, &maxes, lse, scale, t);
                    }
                    lse
                } else {
                    let lse = row_pass1(row, s, t, g, &mut maxes).lse();
                    row_pass2(g, &maxes, lse, scale, t);
                    lse
                };
                Some((lse, row_loss(lse, t.logit, cfg)))
            }
        })
        .collect();
    Ok(finish(per_row))
}

/// Gradients of at least this many bytes are written with non-temporal stores from a
/// per-thread scratch row. Far above the L2 of a core (2 MB here), such a gradient leaves the
/// caches before anyone reads it, so fetching its lines ahead of the stores (what a normal
/// store does) only adds memory traffic: 12 bytes per f32 element instead of memcpy's 8.
/// Below it the gradient may stay cached for its consumer, and normal stores are kept.
pub const STREAM_MIN_BYTES: usize = 16 << 20;

/// Whether [`forward_backward`] streams a gradient of `len` elements of T.
fn streamed<T: Real>(len: usize) -> bool {
    let size = std::mem::size_of::<T>();
    (size == 4 || size == 8) && len.saturating_mul(size) >= STREAM_MIN_BYTES && avx512()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// exp_narrow is exp_fast bit for bit on its domain: every 7th f32 in [−87, 0] with every
    /// float of [−87, −86] and [−1, −0.5], and 10^6 f64 draws with the ends. The
    /// exhaustive f32 sweep is `exp_narrow_is_exp_fast_on_every_f32` (ignored).
    #[test]
    fn exp_narrow_is_exp_fast_on_its_domain() {
        let same = |b: u32| {
            let x = f32::from_bits(b);
            assert_eq!(x.exp_narrow().to_bits(), x.exp_fast().to_bits(), "{x:e}");
        };
        let lo = (-87.0f32).to_bits();
        (0x8000_0000..=lo).step_by(7).for_each(same);
        ((-86.0f32).to_bits()..=lo).for_each(same);
        ((-0.5f32).to_bits()..=(-1.0f32).to_bits()).for_each(same);
        same(0);
        assert!(f32::NAN.exp_narrow().is_nan());
        assert!((-f32::NAN).exp_narrow().is_nan());
        let mut rng = crate::pipeline::synthetic::SplitMix64::new(5);
        for i in 0..1_000_000 {
            let x = match i {
                0 => -708.0,
                1 => 0.0,
                2 => -0.0,
                _ => -708.0 * rng.uniform(),
            };
            assert_eq!(x.exp_narrow().to_bits(), x.exp_fast().to_bits(), "{x:e}");
        }
        assert!(f64::NAN.exp_narrow().is_nan());
    }

    #[test]
    #[ignore]
    fn exp_narrow_is_exp_fast_on_every_f32() {
        let lo = (-87.0f32).to_bits();
        let bad = (0x8000_0000..=lo)
            .into_par_iter()
            .filter(|&b| {
                let x = f32::from_bits(b);
                x.exp_narrow().to_bits() != x.exp_fast().to_bits()
            })
            .count();
        println!(
            "exp_narrow vs exp_fast over {} floats: {bad} differ",
            lo - 0x8000_0000 + 1
        );
        assert_eq!(bad, 0);
    }

    /// A block's exps through exp_narrow store and sum the same bits as through exp_fast, in
    /// f32 and f64, with a NaN among them.
    #[test]
    fn narrow_and_full_block_exps_agree_bitwise() {
        fn check<T: Real>(nan_at: Option<usize>) {
            let mut rng = crate::pipeline::synthetic::SplitMix64::new(13);
            for len in [BLOCK, 333, 7] {
                let mut block: Vec<T> = (0..len).map(|_| T::of(rng.uniform() - 0.5)).collect();
                if let Some(j) = nan_at {
                    block[j % len] = T::nan();
                }
                let s = T::of(64.0);
                let bm = block
                    .iter()
                    .fold(T::neg_infinity(), |m, &c| if s * c > m { s * c } else { m });
                let (mut o1, mut o2) = (vec![T::zero(); len], vec![T::zero(); len]);
                let a = block_exps::<T, true>(&block, s, bm, Some(&mut o1), &[]);
                let b = block_exps::<T, false>(&block, s, bm, Some(&mut o2), &[]);
                let bits = |v: &[T]| v.iter().map(|x| x.f64().to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a.0), bits(&b.0));
                assert_eq!(a.1.f64().to_bits(), b.1.f64().to_bits());
                assert_eq!(bits(&o1), bits(&o2));
                let c = block_exps::<T, true>(&block, s, bm, None, &[]);
                assert_eq!(bits(&c.0), bits(&a.0));
            }
        }
        check::<f32>(None);
        check::<f64>(None);
        check::<f32>(Some(100));
        check::<f64>(Some(5));
    }

    /// The AVX2 and baseline builds of the kernels round identically (no FMA contraction).
    #[test]
    fn avx2_and_baseline_builds_agree_bitwise() {
        if !avx2() {
            return;
        }
        let mut rng = crate::pipeline::synthetic::SplitMix64::new(9);
        let row: Vec<f32> = (0..1999)
            .map(|_| (2.0 * rng.uniform() - 1.0) as f32)
            .collect();
        let t = TargetLogit {
            column: 700,
            logit: -20.0f32,
            factor: 0.9,
        };
        let (mut o1, mut o2) = (vec![0f32; row.len()], vec![0f32; row.len()]);
        let (mut m1, mut m2) = (Vec::new(), Vec::new());
        let a = row_pass1_body(&row, 64.0, &t, Some(&mut o1), Some(&mut m1));
        // SAFETY: avx2() was checked above.
        let b = unsafe { row_pass1_avx2(&row, 64.0, &t, Some(&mut o2), Some(&mut m2)) };
        assert_eq!(a, b);
        assert_eq!(m1, m2);
        row_pass2_body(&mut o1, &m1, a.lse(), 0.5, &t);
        // SAFETY: as above.
        unsafe { row_pass2_avx2(&mut o2, &m2, b.lse(), 0.5, &t) };
        assert!(o1.iter().zip(&o2).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    /// The AVX-512 build rounds like the baseline build, and the streamed pass 2 (non-temporal
    /// stores, at every offset of the row from a 64-byte line) writes the same bits as the
    /// in-place one, in f32 and f64, with a +inf block among them.
    #[test]
    fn avx512_and_streamed_builds_agree_bitwise() {
        if !avx512() {
            return;
        }
        fn check<T: Real>(inf_at: Option<usize>) {
            let mut rng = crate::pipeline::synthetic::SplitMix64::new(11);
            let c = 1999;
            let mut row: Vec<T> = (0..c).map(|_| T::of(2.0 * rng.uniform() - 1.0)).collect();
            if let Some(j) = inf_at {
                row[j] = T::infinity();
            }
            let t = TargetLogit {
                column: 700,
                logit: T::of(-20.0),
                factor: 0.9,
            };
            let s = T::of(64.0);
            let (mut o1, mut o2) = (vec![T::zero(); c], vec![T::zero(); c]);
            let (mut m1, mut m2) = (Vec::new(), Vec::new());
            let a = row_pass1_body(&row, s, &t, Some(&mut o1), Some(&mut m1));
            // SAFETY: avx512() was checked above.
            let b = unsafe { row_pass1_avx512(&row, s, &t, Some(&mut o2), Some(&mut m2)) };
            assert_eq!(a, b);
            assert_eq!(m1, m2);
            let e = o1.clone();
            let scale = T::of(0.5);
            row_pass2_body(&mut o1, &m1, a.lse(), scale, &t);
            let same = |x: &[T], y: &[T]| {
                x.iter()
                    .zip(y)
                    .all(|(p, q)| p.f64().to_bits() == q.f64().to_bits())
            };
            for off in 0..16 {
                let mut buf = vec![T::nan(); c + 16];
                let out = &mut buf[off..off + c];
                // SAFETY: as above; T is f32 or f64.
                unsafe { row_pass2_stream_avx512(&e, out, &m1, a.lse(), scale, &t) };
                assert!(same(&o1, out), "offset {off}");
            }
        }
        check::<f32>(None);
        check::<f64>(None);
        check::<f32>(Some(1500));
        check::<f64>(Some(3));
    }
}
