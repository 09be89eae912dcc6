//! The edge-case catalogue: inputs where implementations of the combined margin differ.
//!
//! Used by the property tests, by `cmargin generate --inputs edges`, and by the CUDA checks.
//! Every value is representable in the requested dtype (rounded to it), so that fixture
//! files and the implementations that read them agree on the input exactly.

use crate::dtype::Dtype;
use crate::kinks::kinks;
use crate::params::Params;
use crate::profile::Profile;

/// Step one float of `dtype` up (`dir > 0`) or down from x.
pub fn next_float(x: f64, dtype: Dtype, dir: i32) -> f64 {
    match dtype {
        Dtype::F32 => {
            let v = x as f32;
            let b = v.to_bits();
            let up = dir > 0;
            let nb = if v == 0.0 {
                if up {
                    1
                } else {
                    0x8000_0001
                }
            } else if (v > 0.0) == up {
                b + 1
            } else {
                b - 1
            };
            f32::from_bits(nb) as f64
        }
        Dtype::F64 => {
            let b = x.to_bits();
            let up = dir > 0;
            let nb = if x == 0.0 {
                if up {
                    1
                } else {
                    0x8000_0000_0000_0001
                }
            } else if (x > 0.0) == up {
                b + 1
            } else {
                b - 1
            };
            f64::from_bits(nb)
        }
        Dtype::F16 | Dtype::BF16 => dtype.next_half(x, dir),
    }
}

/// The fixed part of the catalogue, independent of profile and parameters.
pub fn fixed_edges(dtype: Dtype) -> Vec<f64> {
    let mut v = vec![
        1.0,
        -1.0,
        0.0,
        -0.0,
        0.5,
        -0.5,
        0.9,
        0.99,
        0.999,
        -0.9,
        -0.99,
        -0.999,
        1.0 - 1e-4,
        -1.0 + 1e-4,
        1.0 - 5e-5,
        -1.0 + 5e-5,
        1.0 - 1e-3,
        -1.0 + 1e-3,
        1e-7,
        -1e-7,
    ];
    // One float inside and outside ±1, and a few floats just outside the domain.
    v.push(next_float(1.0, dtype, -1));
    v.push(next_float(-1.0, dtype, 1));
    v.push(next_float(1.0, dtype, 1));
    v.push(next_float(-1.0, dtype, -1));
    v.extend([1.0 + 1e-7, -1.0 - 1e-7, 1.0 + 1e-3, -1.0 - 1e-3]);
    v.iter().map(|&x| dtype.round(x)).collect()
}

/// The full catalogue for a profile at given parameters: the fixed edges, every kink,
/// the floats on either side of each kink, and points 1e-6 and 1e-3 away from it.
/// Sorted, without duplicates (−0 and +0 are kept apart).
pub fn edge_cases(profile: &Profile, p: &Params, dtype: Dtype) -> Vec<f64> {
    let mut v = fixed_edges(dtype);
    for k in kinks(profile, p, dtype) {
        let c = dtype.round(k.c);
        v.push(c);
        v.push(next_float(c, dtype, 1));
        v.push(next_float(c, dtype, -1));
        for d in [1e-6, 1e-3] {
            v.push(dtype.round(c + d));
            v.push(dtype.round(c - d));
        }
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v.dedup_by(|a, b| a.to_bits() == b.to_bits());
    v
}
