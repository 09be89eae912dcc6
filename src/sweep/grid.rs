//! The float grid a sweep walks: every value of a dtype, addressed by an integer *ordinal*
//! that is monotone in the value and keeps both zeros.
//!
//! Ordinal of a float with sign bit `s` and magnitude bits `b` (the bit pattern without the
//! sign): `b` if s = 0, `−b − 1` if s = 1. So +0 ↦ 0, −0 ↦ −1, and consecutive ordinals are
//! adjacent floats: the distance of two ordinals is their distance in ulps (the two zeros
//! count as one ulp apart). f32 has 2·0x3f80_0000 + 2 = 2,130,706,434 ordinals in [−1, 1]
//! (2,130,706,433 values, the zero counted twice).
//!
//! [`Grid`] is a trait so that half-precision grids (f16, bf16) plug in with their own
//! ordinal map: a sweep of every one of their ≤ 65,536 values is then complete by construction.

use crate::dtype::Dtype;

/// A floating-point grid: its values, ordinals, rounding and spacing. Every value of every
/// grid is exact in f64, so values travel as f64.
pub trait Grid: Send + Sync + std::fmt::Debug {
    /// The grid's name as the CLI spells it (`f32`, `f64`).
    fn name(&self) -> &'static str;
    /// The dtype whose rounding of profile constants, parameters and budgets applies.
    fn dtype(&self) -> Dtype;
    /// The value at an ordinal (see the module doc); finite for every ordinal in
    /// [`Grid::ordinal_of_finite_extremes`].
    fn value(&self, ord: i64) -> f64;
    /// The ordinal of a grid value (not NaN). Values not on the grid are rounded first.
    fn ordinal(&self, x: f64) -> i64;
    /// Round-to-nearest-even onto the grid.
    fn round(&self, x: f64) -> f64;
    /// Spacing of the grid at |x|: the gap from |x| (rounded down onto the grid) to the next
    /// value away from zero; the smallest subnormal below the normal range.
    fn ulp(&self, x: f64) -> f64;
    /// The shortest decimal that reads back as this grid value.
    fn decimal(&self, x: f64) -> String;
    /// The bit pattern of a grid value, `0x…` with the dtype's width.
    fn hex(&self, x: f64) -> String;
    /// Ordinals of the most negative and most positive finite values.
    fn ordinal_of_finite_extremes(&self) -> (i64, i64);
}

fn ordinal_from_bits(bits: u64, sign_bit: u64) -> i64 {
    if bits & sign_bit == 0 {
        bits as i64
    } else {
        -((bits & !sign_bit) as i64) - 1
    }
}

fn bits_from_ordinal(ord: i64, sign_bit: u64) -> u64 {
    if ord >= 0 {
        ord as u64
    } else {
        ((-(ord + 1)) as u64) | sign_bit
    }
}

/// 2^e as an f64, exactly, for −1074 ≤ e ≤ 1023.
fn pow2(e: i32) -> f64 {
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074))
    }
}

/// Binary exponent of a positive normal f64 (floor(log2 x)), from its bits.
fn exponent(x: f64) -> i32 {
    ((x.to_bits() >> 52) & 0x7ff) as i32 - 1023
}

/// IEEE binary32.
#[derive(Clone, Copy, Debug, Default)]
pub struct F32Grid;

/// IEEE binary64 (a complete sweep is out of reach; ranges and strides are not).
#[derive(Clone, Copy, Debug, Default)]
pub struct F64Grid;

impl Grid for F32Grid {
    fn name(&self) -> &'static str {
        "f32"
    }
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn value(&self, ord: i64) -> f64 {
        f32::from_bits(bits_from_ordinal(ord, 1 << 31) as u32) as f64
    }
    fn ordinal(&self, x: f64) -> i64 {
        ordinal_from_bits((x as f32).to_bits() as u64, 1 << 31)
    }
    fn round(&self, x: f64) -> f64 {
        x as f32 as f64
    }
    fn ulp(&self, x: f64) -> f64 {
        let ax = x.abs();
        if !ax.is_finite() {
            return f64::INFINITY;
        }
        if ax < f32::MIN_POSITIVE as f64 {
            return pow2(-149);
        }
        // ax is a normal f64 here; its exponent is that of the f32 binade holding it.
        pow2(exponent(ax) - 23)
    }
    fn decimal(&self, x: f64) -> String {
        format!("{:?}", x as f32)
    }
    fn hex(&self, x: f64) -> String {
        format!("0x{:08x}", (x as f32).to_bits())
    }
    fn ordinal_of_finite_extremes(&self) -> (i64, i64) {
        let max = f32::MAX.to_bits() as u64;
        (ordinal_from_bits(max | 1 << 31, 1 << 31), max as i64)
    }
}

impl Grid for F64Grid {
    fn name(&self) -> &'static str {
        "f64"
    }
    fn dtype(&self) -> Dtype {
        Dtype::F64
    }
    fn value(&self, ord: i64) -> f64 {
        f64::from_bits(bits_from_ordinal(ord, 1 << 63))
    }
    fn ordinal(&self, x: f64) -> i64 {
        ordinal_from_bits(x.to_bits(), 1 << 63)
    }
    fn round(&self, x: f64) -> f64 {
        x
    }
    fn ulp(&self, x: f64) -> f64 {
        let ax = x.abs();
        if !ax.is_finite() {
            return f64::INFINITY;
        }
        if ax < f64::MIN_POSITIVE {
            return pow2(-1074);
        }
        pow2(exponent(ax) - 52)
    }
    fn decimal(&self, x: f64) -> String {
        format!("{x:?}")
    }
    fn hex(&self, x: f64) -> String {
        format!("0x{:016x}", x.to_bits())
    }
    fn ordinal_of_finite_extremes(&self) -> (i64, i64) {
        let max = f64::MAX.to_bits();
        (ordinal_from_bits(max | 1 << 63, 1 << 63), max as i64)
    }
}

/// IEEE binary16 or bfloat16: 16-bit patterns, every value a sweep can try in well under a
/// second. Rounding is [`Dtype::round`] (correctly rounded from f64).
#[derive(Clone, Copy, Debug)]
pub struct HalfGrid(pub Dtype);

impl HalfGrid {
    fn value_of(&self, bits: u16) -> f64 {
        match self.0 {
            Dtype::BF16 => half::bf16::from_bits(bits).to_f64(),
            Dtype::F16 | Dtype::F32 | Dtype::F64 => half::f16::from_bits(bits).to_f64(),
        }
    }
    /// The bits of a value already on the grid (the conversion is exact there).
    fn bits(&self, x: f64) -> u16 {
        let r = self.0.round(x);
        match self.0 {
            Dtype::BF16 => half::bf16::from_f64(r).to_bits(),
            Dtype::F16 | Dtype::F32 | Dtype::F64 => half::f16::from_f64(r).to_bits(),
        }
    }
}

impl Grid for HalfGrid {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn dtype(&self) -> Dtype {
        self.0
    }
    fn value(&self, ord: i64) -> f64 {
        self.value_of(bits_from_ordinal(ord, 1 << 15) as u16)
    }
    fn ordinal(&self, x: f64) -> i64 {
        ordinal_from_bits(self.bits(x) as u64, 1 << 15)
    }
    fn round(&self, x: f64) -> f64 {
        self.0.round(x)
    }
    fn ulp(&self, x: f64) -> f64 {
        self.0.ulp(x)
    }
    fn decimal(&self, x: f64) -> String {
        format!("{:?}", self.0.round(x))
    }
    fn hex(&self, x: f64) -> String {
        format!("0x{:04x}", self.bits(x))
    }
    fn ordinal_of_finite_extremes(&self) -> (i64, i64) {
        let max = match self.0 {
            Dtype::BF16 => half::bf16::MAX.to_bits(),
            Dtype::F16 | Dtype::F32 | Dtype::F64 => half::f16::MAX.to_bits(),
        } as u64;
        (ordinal_from_bits(max | 1 << 15, 1 << 15), max as i64)
    }
}

static F16_GRID: HalfGrid = HalfGrid(Dtype::F16);
static BF16_GRID: HalfGrid = HalfGrid(Dtype::BF16);

/// The grid of a dtype. Exhaustive over [`Dtype`]: a new dtype must say what its grid is.
pub fn grid_of(dtype: Dtype) -> &'static dyn Grid {
    match dtype {
        Dtype::F32 => &F32Grid,
        Dtype::F64 => &F64Grid,
        Dtype::F16 => &F16_GRID,
        Dtype::BF16 => &BF16_GRID,
    }
}

/// One run of ordinals `lo, lo + stride, …, ≤ hi` (inclusive bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Segment {
    pub lo: i64,
    pub hi: i64,
    pub stride: u64,
    /// What the segment is, for reports (`[-1, 1]`, `below -1`, `above 1`, `range`).
    #[serde(skip)]
    pub what: &'static str,
}

impl Segment {
    pub fn len(&self) -> u64 {
        if self.hi < self.lo {
            0
        } else {
            (self.hi - self.lo) as u64 / self.stride + 1
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The inputs of a sweep: segments of ordinals, enumerated in order (input index 0 is the
/// first segment's `lo`). Chunk boundaries are input indices, so a chunk's inputs depend on
/// the chunk size only, never on the thread that evaluates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSet {
    pub segments: Vec<Segment>,
    /// Every float of the grid in [−1, 1] and the whole outside band.
    pub complete: bool,
    /// Floats beyond ±1 on each side (0 with `--range`).
    pub band: u64,
    pub stride: u64,
}

/// Default width of the band beyond ±1, in ulps of the grid on each side.
pub const DEFAULT_BAND: u64 = 1024;

/// Largest band (and kink window) accepted: 2^31 floats a side, far from any overflow of
/// the ordinal arithmetic (f32 bands are capped at the largest finite float anyway).
pub const MAX_BAND: u64 = 1 << 31;

impl InputSet {
    /// Every `stride`-th float of `grid` in [−1, 1] (from −1 up, both zeros included when
    /// the stride reaches them) plus `band` consecutive floats beyond each of ±1; or, with
    /// `range`, every `stride`-th float in [lo, hi] and no band.
    pub fn new(
        grid: &dyn Grid,
        range: Option<(f64, f64)>,
        stride: u64,
        band: u64,
    ) -> crate::Result<InputSet> {
        if band > MAX_BAND {
            return Err(crate::Error::Invalid(format!(
                "--band {band}: at most {MAX_BAND} floats beyond each of -1 and 1"
            )));
        }
        if stride == 0 {
            return Err(crate::Error::Invalid(
                "--stride 0: the stride must be at least 1".into(),
            ));
        }
        let neg1 = grid.ordinal(-1.0);
        let pos1 = grid.ordinal(1.0);
        match range {
            None => {
                let (fmin, fmax) = grid.ordinal_of_finite_extremes();
                let band_lo = (neg1 - band as i64).max(fmin);
                let band_hi = (pos1 + band as i64).min(fmax);
                let segments = vec![
                    Segment {
                        lo: band_lo,
                        hi: neg1 - 1,
                        stride: 1,
                        what: "below -1",
                    },
                    Segment {
                        lo: neg1,
                        hi: pos1,
                        stride,
                        what: "[-1, 1]",
                    },
                    Segment {
                        lo: pos1 + 1,
                        hi: band_hi,
                        stride: 1,
                        what: "above 1",
                    },
                ];
                Ok(InputSet {
                    segments: segments.into_iter().filter(|s| !s.is_empty()).collect(),
                    complete: stride == 1,
                    band,
                    stride,
                })
            }
            Some((lo, hi)) => {
                if !lo.is_finite() || !hi.is_finite() || lo > hi {
                    return Err(crate::Error::Invalid(format!(
                        "--range {lo},{hi}: expected finite lo <= hi"
                    )));
                }
                // The first grid value ≥ lo and the last ≤ hi.
                let mut a = grid.ordinal(grid.round(lo));
                if grid.value(a) < lo {
                    a += 1;
                }
                let mut b = grid.ordinal(grid.round(hi));
                if grid.value(b) > hi {
                    b -= 1;
                }
                // −0 and +0 are both ≥ lo = 0 and ≤ hi = 0 (either sign): keep the pair.
                if lo == 0.0 {
                    a = a.min(grid.ordinal(-0.0));
                }
                if hi == 0.0 {
                    b = b.max(grid.ordinal(0.0));
                }
                let seg = Segment {
                    lo: a,
                    hi: b,
                    stride,
                    what: "range",
                };
                if seg.is_empty() {
                    return Err(crate::Error::Invalid(format!(
                        "--range {lo},{hi}: no {} value in it",
                        grid.name()
                    )));
                }
                Ok(InputSet {
                    segments: vec![seg],
                    complete: false,
                    band: 0,
                    stride,
                })
            }
        }
    }

    /// Makes every ordinal in the windows `[lo, hi]` an input (a strided sweep still sees
    /// every float near a kink), keeping each input exactly once: strided segments are cut
    /// around the windows, on their original lattice, and the windows enter at stride 1.
    /// Windows are clipped to the segments' span; overlapping windows merge.
    pub fn densify(&mut self, windows: &[(i64, i64)]) {
        if self.stride == 1 || windows.is_empty() {
            return;
        }
        let mut w: Vec<(i64, i64)> = windows.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
        w.sort();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (a, b) in w {
            match merged.last_mut() {
                Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let mut out = Vec::new();
        for seg in &self.segments {
            if seg.stride == 1 {
                out.push(*seg);
                continue;
            }
            let st = seg.stride as i64;
            // The first lattice point ≥ x.
            let up = |x: i64| {
                seg.lo
                    + (x - seg.lo).max(0).div_euclid(st) * st
                    + if (x - seg.lo).max(0).rem_euclid(st) == 0 {
                        0
                    } else {
                        st
                    }
            };
            let mut cur = seg.lo;
            for &(a, b) in &merged {
                let (a, b) = (a.max(seg.lo), b.min(seg.hi));
                if a > b || b < cur {
                    continue;
                }
                let piece = Segment {
                    lo: up(cur),
                    hi: a - 1,
                    ..*seg
                };
                if !piece.is_empty() {
                    out.push(piece);
                }
                out.push(Segment {
                    lo: a.max(cur),
                    hi: b,
                    stride: 1,
                    what: "near a kink",
                });
                cur = b + 1;
            }
            let rest = Segment {
                lo: up(cur),
                ..*seg
            };
            if !rest.is_empty() && cur <= seg.hi {
                out.push(rest);
            }
        }
        self.segments = out;
    }

    /// Number of inputs.
    pub fn len(&self) -> u64 {
        self.segments.iter().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the ordinals of inputs [start, start + n) to `out`.
    pub fn ordinals(&self, start: u64, n: u64, out: &mut Vec<i64>) {
        let mut skip = start;
        let mut left = n;
        for s in &self.segments {
            let len = s.len();
            if skip >= len {
                skip -= len;
                continue;
            }
            let take = (len - skip).min(left);
            let first = s.lo + (skip * s.stride) as i64;
            out.extend((0..take).map(|i| first + (i * s.stride) as i64));
            left -= take;
            skip = 0;
            if left == 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_are_adjacent_floats_and_keep_both_zeros() {
        let g = F32Grid;
        assert_eq!(g.ordinal(0.0), 0);
        assert_eq!(g.ordinal(-0.0), -1);
        assert!(g.value(-1).is_sign_negative() && g.value(-1) == 0.0);
        for x in [1.0f32, -1.0, 0.5, -1e-40, 1e-45, f32::MAX, -f32::MAX] {
            let o = g.ordinal(x as f64);
            assert_eq!(g.value(o), x as f64);
            let up = g.value(o + 1) as f32;
            // The next ordinal is the next float up (the two zeros are one step apart).
            assert!(up > x || (x == -1e-45 && up == 0.0) || x == f32::MAX);
        }
        // 2,130,706,433 values in [−1, 1], the zero counted twice as ordinals.
        assert_eq!(g.ordinal(1.0) - g.ordinal(-1.0) + 1, 2_130_706_434);
    }

    #[test]
    fn ulp_is_the_gap_to_the_next_float() {
        // Independent of the bit arithmetic: the next float up minus the value.
        for x in [
            1.0f32,
            0.999_9,
            1e-3,
            3.0e-39,
            0.0,
            0.75,
            1.5e30,
            f32::MIN_POSITIVE,
        ] {
            let next = f32::from_bits(x.to_bits() + 1);
            assert_eq!(F32Grid.ulp(x as f64), (next - x) as f64, "f32 at {x}");
            assert_eq!(F32Grid.ulp(-x as f64), (next - x) as f64, "f32 at -{x}");
        }
        for x in [1.0f64, 0.999_9, 1e-300, 0.0, 0.75, 1.5e300, 4e-320] {
            let next = f64::from_bits(x.to_bits() + 1);
            assert_eq!(F64Grid.ulp(x), next - x, "f64 at {x}");
        }
    }

    #[test]
    fn input_set_counts_and_chunks() {
        let s = InputSet::new(&F32Grid, None, 1, 1024).unwrap();
        assert_eq!(s.len(), 2_130_706_434 + 2048);
        let mut v = Vec::new();
        s.ordinals(1023, 2, &mut v);
        assert_eq!(v, vec![F32Grid.ordinal(-1.0) - 1, F32Grid.ordinal(-1.0)]);
        let r = InputSet::new(&F32Grid, Some((0.0, 0.0)), 1, 0).unwrap();
        assert_eq!(r.len(), 2, "both zeros");
        assert!(InputSet::new(&F32Grid, Some((0.5, 0.25)), 1, 0).is_err());
        assert!(InputSet::new(&F32Grid, None, 0, 0).is_err());
    }

    #[test]
    fn densify_keeps_each_input_once_and_the_lattice() {
        let mut s = InputSet::new(&F32Grid, Some((0.5, 0.5000305)), 7, 0).unwrap();
        let lo = s.segments[0].lo;
        let hi = s.segments[0].hi;
        let mut before = Vec::new();
        s.ordinals(0, s.len(), &mut before);
        s.densify(&[
            (lo + 20, lo + 30),
            (lo + 25, lo + 40),
            (hi - 3, hi + 50),
            (hi + 100, hi + 200),
        ]);
        let mut after = Vec::new();
        s.ordinals(0, s.len(), &mut after);
        let mut want: Vec<i64> = before
            .iter()
            .copied()
            .filter(|o| !(lo + 20..=lo + 40).contains(o) && !(hi - 3..=hi).contains(o))
            .chain(lo + 20..=lo + 40)
            .chain(hi - 3..=hi)
            .collect();
        want.sort();
        assert_eq!(after, want);
        assert!(
            after.windows(2).all(|w| w[0] < w[1]),
            "ascending, no duplicates"
        );
    }
}
