//! The floating-point type an implementation ran in, and its unit in the last place.
//!
//! The reference always computes in f64. A [`Dtype`] says which precision the
//! implementation under test used, so that (a) the profile's comparison constants
//! (clamp bounds, thresholds) are represented exactly as that implementation holds
//! them, and (b) the tolerance model can size its budgets in that type's ULPs.

use serde::{Deserialize, Serialize};

/// Precision of the implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    F64,
}

impl Dtype {
    /// Round an f64 to this type (round-to-nearest-even) and widen it back.
    #[inline]
    pub fn round(self, x: f64) -> f64 {
        match self {
            Dtype::F32 => x as f32 as f64,
            Dtype::F64 => x,
        }
    }

    /// Unit roundoff u = 2^-p (half the spacing of the floats in [1, 2)).
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Dtype::F32 => f32::EPSILON as f64 / 2.0,
            Dtype::F64 => f64::EPSILON / 2.0,
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
            Dtype::F32 => {
                let min_normal = f32::MIN_POSITIVE as f64;
                if ax < min_normal {
                    return (2.0f64).powi(-149);
                }
                // ax ≥ 2^-126 is a normal f64: floor(log2 ax) is its biased exponent − 1023,
                // read from the bits (exact, and ~10× faster than log2 in `cmargin sweep`).
                let e = ((ax.to_bits() >> 52) & 0x7ff) as i64 - 1023;
                // 2^(e − 23) with e ≥ −126, so e − 23 ≥ −149: a normal f64, built from its bits.
                f64::from_bits(((e - 23 + 1023) as u64) << 52)
            }
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

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }

    pub fn parse(s: &str) -> Option<Dtype> {
        match s {
            "f32" | "float32" | "float" => Some(Dtype::F32),
            "f64" | "float64" | "double" => Some(Dtype::F64),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
