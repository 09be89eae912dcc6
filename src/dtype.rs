//! The floating-point type an implementation ran in, and its unit in the last place.
//!
//! The reference always computes in f64. A [`Dtype`] says which precision the
//! implementation under test used, so that (a) the profile's comparison constants
//! (clamp bounds, thresholds) are represented exactly as that implementation holds
//! them, and (b) the tolerance model can size its budgets in that type's ULPs.
//!
//! The half types (IEEE binary16 `f16`, and `bf16`, the upper 16 bits of an f32) are
//! storage types: PyTorch and CUDA compute each operation on them in f32 ("opmath") and
//! round the result to the storage type (SPEC.md §5.6). Their rounding here is
//! [`Dtype::round`], correctly rounded from f64 in one step (no double rounding through f32).

use serde::{Deserialize, Serialize};

/// Precision of the implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    F64,
    /// IEEE 754 binary16: 11 significant bits, normal exponents [−14, 15], max 65504.
    F16,
    /// bfloat16: 8 significant bits, the exponent range of f32 (normal [−126, 127]).
    BF16,
}

/// The parameters of a binary format: significant bits p (with the implicit one), the
/// minimum normal exponent emin, and the largest finite value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Format {
    pub precision: i32,
    pub emin: i32,
    pub max: f64,
}

impl Dtype {
    /// Every dtype, widest first.
    pub const ALL: [Dtype; 4] = [Dtype::F64, Dtype::F32, Dtype::F16, Dtype::BF16];

    /// The binary format's parameters (p, emin, max).
    pub fn format(self) -> Format {
        match self {
            Dtype::F64 => Format {
                precision: 53,
                emin: -1022,
                max: f64::MAX,
            },
            Dtype::F32 => Format {
                precision: 24,
                emin: -126,
                max: f32::MAX as f64,
            },
            Dtype::F16 => Format {
                precision: 11,
                emin: -14,
                max: 65504.0,
            },
            Dtype::BF16 => Format {
                precision: 8,
                emin: -126,
                // (2 − 2⁻⁷)·2¹²⁷, the f32 whose low 16 bits are zero: exact, unlike a decimal literal.
                max: f32::from_bits(0x7f7f_0000) as f64,
            },
        }
    }

    /// Whether this is a 16-bit storage type (arithmetic happens in f32, see the module doc).
    pub fn is_half(self) -> bool {
        match self {
            Dtype::F16 | Dtype::BF16 => true,
            Dtype::F32 | Dtype::F64 => false,
        }
    }

    /// Round an f64 to this type (round-to-nearest-even, overflow to ±inf) and widen it back.
    /// NaN stays NaN; −0 keeps its sign.
    #[inline]
    pub fn round(self, x: f64) -> f64 {
        match self {
            Dtype::F32 => x as f32 as f64,
            Dtype::F64 => x,
            Dtype::F16 | Dtype::BF16 => round_to_format(x, self.format()),
        }
    }

    /// Unit roundoff u = 2^-p (half the spacing of the floats in [1, 2)).
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Dtype::F32 => f32::EPSILON as f64 / 2.0,
            Dtype::F64 => f64::EPSILON / 2.0,
            Dtype::F16 | Dtype::BF16 => (2.0f64).powi(-self.format().precision),
        }
    }

    /// Spacing of this type's floats at |x| (the gap to the next float away from zero),
    /// computed without rounding |x| to the type first. Subnormal spacing at 0.
    pub fn ulp(self, x: f64) -> f64 {
        let ax = x.abs();
        if !ax.is_finite() {
            return f64::INFINITY;
        }
        match self {
            Dtype::F32 | Dtype::F16 | Dtype::BF16 => quantum(ax, self.format()),
            Dtype::F64 => {
                if ax < f64::MIN_POSITIVE {
                    return f64::from_bits(1);
                }
                let bits = ax.to_bits();
                let next = f64::from_bits(bits + 1);
                next - ax
            }
        }
    }

    /// The neighbour of x (rounded to this type first) one step up (`dir > 0`) or down, for
    /// the 16-bit types; ±0 step to the smallest subnormal, ±max steps to ±inf.
    /// (f32/f64 step through their bit patterns in `catalogue::next_float`.)
    pub fn next_half(self, x: f64, dir: i32) -> f64 {
        let f = self.format();
        let v = self.round(x);
        if !v.is_finite() {
            return v;
        }
        let tiny = (2.0f64).powi(f.emin - (f.precision - 1));
        if v == 0.0 {
            return if dir > 0 { tiny } else { -tiny };
        }
        let a = v.abs();
        let away = (v > 0.0) == (dir > 0);
        let q = quantum(a, f);
        // Toward zero from a power of two the spacing halves (except at the subnormal edge).
        let step = if !away && a == q * (2.0f64).powi(f.precision - 1) && q > tiny {
            q / 2.0
        } else {
            q
        };
        let n = if away { a + step } else { a - step };
        let n = if n > f.max { f64::INFINITY } else { n };
        n.copysign(v)
    }

    /// Whether x is a value of this type (finite values only; ±0 are).
    pub fn is_exact(self, x: f64) -> bool {
        x.is_finite() && self.round(x).to_bits() == x.to_bits()
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
            Dtype::F16 => "f16",
            Dtype::BF16 => "bf16",
        }
    }

    pub fn parse(s: &str) -> Option<Dtype> {
        match s {
            "f32" | "float32" | "float" => Some(Dtype::F32),
            "f64" | "float64" | "double" => Some(Dtype::F64),
            "f16" | "float16" | "half" => Some(Dtype::F16),
            "bf16" | "bfloat16" => Some(Dtype::BF16),
            _ => None,
        }
    }
}

/// Spacing 2^(max(e, emin) − (p − 1)) of the format's values at |a| (a ≥ 0, finite), where
/// 2^e ≤ a < 2^(e+1); subnormal spacing below the smallest normal.
fn quantum(a: f64, f: Format) -> f64 {
    let e = if a == 0.0 {
        f.emin
    } else if a < f64::MIN_POSITIVE {
        // f64 subnormal: far below every narrower format's range.
        -1075
    } else {
        ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023
    };
    pow2(e.max(f.emin) - (f.precision - 1))
}

/// 2^k exactly, for −1074 ≤ k ≤ 1023, from the bits (what `powi(2, k)` returns, without its
/// loop of multiplications: `quantum` runs once per budget term of every swept input).
fn pow2(k: i32) -> f64 {
    debug_assert!((-1074..=1023).contains(&k));
    if k >= -1022 {
        f64::from_bits(((k + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (k + 1074))
    }
}

/// Correctly rounded (nearest, ties to even) conversion of an f64 to a narrower binary format.
/// a / q is exact (q is a power of two and the quotient has at most 53 bits), so one
/// `round_ties_even` of it is the only rounding; a result above `max` overflows to ±inf,
/// which is IEEE's rule because the rounding already happened on an unbounded exponent.
fn round_to_format(x: f64, f: Format) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let a = x.abs();
    let q = quantum(a, f);
    let r = (a / q).round_ties_even() * q;
    let r = if r > f.max { f64::INFINITY } else { r };
    r.copysign(x)
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The one trait of the float types the crate computes in natively (f32, f64): the reference
/// pipeline's fast path ([`crate::pipeline::fused::Real`]) and the kernels
/// ([`crate::cuda::KernelFloat`]) extend it. `of` rounds an f64 to the type
/// (round-to-nearest-even, as `as` does); `f64` widens exactly.
pub trait Float: num_traits::Float + Default + std::fmt::Debug + Send + Sync + 'static {
    /// The [`Dtype`] this type is.
    const DTYPE: Dtype;
    /// `x` rounded to this type (round to nearest, ties to even).
    fn of(x: f64) -> Self;
    /// The value as an f64 (exact).
    fn f64(self) -> f64;
}

impl Float for f32 {
    const DTYPE: Dtype = Dtype::F32;
    #[inline(always)]
    fn of(x: f64) -> f32 {
        x as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Float for f64 {
    const DTYPE: Dtype = Dtype::F64;
    #[inline(always)]
    fn of(x: f64) -> f64 {
        x
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow2_from_bits_is_powi() {
        // Every normal exponent against the multiplication loop of powi (which overflows
        // below 2^-1023), the subnormal ones by exact halving.
        for k in -1022..=1023 {
            assert_eq!(pow2(k).to_bits(), 2f64.powi(k).to_bits(), "2^{k}");
        }
        for k in -1074..-1022 {
            assert_eq!(pow2(k), pow2(k + 1) / 2.0, "2^{k}");
        }
        assert_eq!(pow2(-1074), f64::from_bits(1));
    }

    /// Every f16 and bf16 value, from the `half` crate's bit patterns (an independent decoder).
    fn all_half(dt: Dtype) -> Vec<f64> {
        (0..=u16::MAX)
            .map(|b| match dt {
                Dtype::F16 => half::f16::from_bits(b).to_f64(),
                Dtype::BF16 => half::bf16::from_bits(b).to_f64(),
                Dtype::F32 | Dtype::F64 => unreachable!("half types only"),
            })
            .filter(|x| x.is_finite())
            .collect()
    }

    #[test]
    fn half_round_is_exact_on_the_grid_and_nearest_even_between() {
        for dt in [Dtype::F16, Dtype::BF16] {
            let mut v = all_half(dt);
            v.sort_by(|a, b| a.total_cmp(b));
            v.dedup();
            for w in v.windows(2) {
                let (a, b) = (w[0], w[1]);
                assert_eq!(dt.round(a).to_bits(), a.to_bits(), "{dt} {a}");
                assert!(dt.is_exact(a));
                // The midpoint ties to the neighbour with an even last bit; one f64 ulp off
                // it goes to the nearer one. Both are exact f64 values.
                let mid = a + (b - a) / 2.0;
                // a is exact, so the half crate's truncating from_f64 converts it exactly.
                let bits = match dt {
                    Dtype::F16 => half::f16::from_f64(a).to_bits(),
                    Dtype::BF16 => half::bf16::from_f64(a).to_bits(),
                    Dtype::F32 | Dtype::F64 => unreachable!("half types only"),
                };
                let even = bits.is_multiple_of(2);
                let want = if even { a } else { b };
                assert_eq!(dt.round(mid), want, "{dt} tie between {a} and {b}");
                if mid != 0.0 {
                    let below = f64::from_bits(mid.to_bits() - 1);
                    let above = f64::from_bits(mid.to_bits() + 1);
                    let (lo, hi) = if mid > 0.0 {
                        (below, above)
                    } else {
                        (above, below)
                    };
                    assert_eq!(dt.round(lo), a, "{dt} just below the tie {a}..{b}");
                    assert_eq!(dt.round(hi), b, "{dt} just above the tie {a}..{b}");
                }
                assert_eq!(dt.next_half(a, 1), b, "{dt} next up from {a}");
                assert_eq!(dt.next_half(b, -1), a, "{dt} next down from {b}");
                if a >= 0.0 {
                    assert_eq!(dt.ulp(a), b - a, "{dt} ulp at {a}");
                }
            }
        }
    }

    #[test]
    fn half_round_matches_the_half_crate_from_f32() {
        // From f32 the half crate rounds with a sticky bit (correct); from f64 it truncates
        // the low 32 bits first, so the f64 comparison is made only through f32 values.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f32::from_bits(x as u32);
            if !f.is_finite() {
                continue;
            }
            let v = f as f64;
            assert_eq!(
                Dtype::F16.round(v).to_bits(),
                half::f16::from_f32(f).to_f64().to_bits(),
                "f16 of {f:e}"
            );
            assert_eq!(
                Dtype::BF16.round(v).to_bits(),
                half::bf16::from_f32(f).to_f64().to_bits(),
                "bf16 of {f:e}"
            );
        }
    }

    #[test]
    fn half_constants_of_the_readme() {
        // fixtures/golden/insightface-torch-half/README.md, "The grid" and the constants table.
        assert_eq!(Dtype::F16.next_half(1.0, -1), 0.99951171875);
        assert_eq!(Dtype::BF16.next_half(1.0, -1), 0.99609375);
        assert_eq!(Dtype::F16.next_half(1.0, 1), 1.0009765625);
        assert_eq!(Dtype::BF16.next_half(1.0, 1), 1.0078125);
        assert_eq!(Dtype::F16.ulp(0.75), 0.00048828125);
        assert_eq!(Dtype::BF16.ulp(0.75), 0.00390625);
        assert_eq!(Dtype::F16.ulp(3.0), 0.001953125);
        assert_eq!(Dtype::BF16.ulp(3.0), 0.015625);
        let th = (std::f64::consts::PI - 0.5).cos();
        assert_eq!(Dtype::F16.round(th), -0.877441406250);
        assert_eq!(Dtype::BF16.round(th), -0.87890625);
        for eps in [1e-4, 1e-5, 1e-7] {
            assert_eq!(Dtype::F16.round(1.0 - eps), 1.0, "1 - {eps}");
        }
        assert_eq!(Dtype::BF16.round(1.0 - 1e-3), 1.0);
        assert_eq!(Dtype::F16.round(70000.0), f64::INFINITY);
        assert_eq!(Dtype::F16.round(65504.0), 65504.0);
        assert_eq!(Dtype::F16.unit_roundoff(), 2f64.powi(-11));
        assert_eq!(Dtype::BF16.unit_roundoff(), 2f64.powi(-8));
        assert_eq!(Dtype::F16.round(-0.0).to_bits(), (-0.0f64).to_bits());
        assert!(Dtype::F16.round(f64::NAN).is_nan());
    }

    #[test]
    fn ulp_matches_next_float() {
        for &x in &[
            1.0f32,
            0.5,
            0.999_9,
            std::f32::consts::PI,
            1e-3,
            64.0,
            1.5e30,
        ] {
            let next = f32::from_bits(x.to_bits() + 1);
            assert_eq!(Dtype::F32.ulp(x as f64), (next - x) as f64, "x = {x}");
        }
        for &x in &[1.0f64, 0.5, 0.9999, std::f64::consts::PI, 1e-300] {
            let next = f64::from_bits(x.to_bits() + 1);
            assert_eq!(Dtype::F64.ulp(x), next - x, "x = {x}");
        }
    }
}
