//! Detectors that read the outputs as numbers: non-finite values, a scale applied wrongly
//! (everywhere, or on one side), outputs of a narrower format, an f64 file computed in f32.

use super::{example, key, median, Deviation, Key, Kind};
use crate::compare::{self, CaseReport, Element, Side};
use crate::dtype::Dtype;
use crate::error::Result;
use crate::fixture::LayerCase;
use crate::params::Params;
use crate::tolerance;
use std::collections::HashSet;

/// The side (forward or backward) all out-of-budget elements are on, if only one.
pub(super) fn one_failing_side(r: &CaseReport) -> Option<Side> {
    let mut sides = r.failing().map(|e| e.side);
    let first = sides.next()?;
    sides.all(|s| s == first).then_some(first)
}

/// One side carries the scale s and the other does not (or both are off by s on one side):
/// every out-of-budget element is on one side and passes there with s = 1.
pub(super) fn scale_one_side(case: &LayerCase, r: &CaseReport) -> Result<Option<Deviation>> {
    let s = r.params.s;
    let Some(side) = one_failing_side(r) else {
        return Ok(None);
    };
    if s == 1.0 {
        return Ok(None);
    }
    let q = Params { s: 1.0, ..r.params };
    let Ok(vr) = compare::compare_with_params(case, &r.profile, &q, r.dtype) else {
        return Ok(None);
    };
    let failing: Vec<Key> = r.failing().map(|e| key(e, r.c)).collect();
    let fits = vr
        .elements
        .iter()
        .filter(|e| e.side == side)
        .all(Element::passed);
    if !fits {
        return Ok(None);
    }
    Ok(Some(Deviation {
        kind: Kind::ScaleMissingOneSide,
        detail: format!(
            "the {} carries no scale: it matches the reference with s = 1 while the {} is scaled by s = {} ({} out-of-budget elements fit)",
            side.name(),
            match side {
                Side::Forward => Side::Backward.name(),
                Side::Backward => Side::Forward.name(),
            },
            compare::num(s),
            failing.len()
        ),
        explains: failing.into_iter().collect(),
    }))
}

/// An f64 case whose outputs are all f32 values and that passes as an f32 implementation
/// (inputs rounded to f32 on the way in): the computation ran in f32.
pub(super) fn computed_in_f32(case: &LayerCase, r: &CaseReport) -> Result<Option<Deviation>> {
    if r.dtype != Dtype::F64 || r.passed() {
        return Ok(None);
    }
    let all_f32 = r
        .elements
        .iter()
        .filter(|e| e.actual.is_finite())
        .all(|e| e.actual == Dtype::F32.round(e.actual));
    if !all_f32 {
        return Ok(None);
    }
    let rounded = case.clone().rounded_inputs(Dtype::F32);
    let Ok(vr) = compare::compare_with_params(&rounded, &r.profile, &r.params, Dtype::F32) else {
        return Ok(None);
    };
    if !vr.passed() {
        return Ok(None);
    }
    let failing: HashSet<Key> = r.failing().map(|e| key(e, r.c)).collect();
    Ok(Some(Deviation {
        kind: Kind::ComputedInF32,
        detail: format!(
            "the file says f64, but all {} finite outputs are f32 values and the case passes as an f32 implementation of {} ({} out-of-budget elements fit); declare \"compute_dtype\": \"f32\"",
            r.elements.iter().filter(|e| e.actual.is_finite()).count(),
            r.profile.name,
            failing.len()
        ),
        explains: failing,
    }))
}

/// Non-finite outputs for finite inputs that the profile does not predict. Where the profile
/// itself gives the same NaN or ±inf (`passed()`: equal non-finite values have error 0), the
/// implementation agrees with it: that is no deviation (e.g. an unclamped implementation
/// under `analytic` at |c| > 1).
pub(super) fn non_finite_output(r: &CaseReport) -> Option<Deviation> {
    let hits: Vec<&Element> = r
        .elements
        .iter()
        .filter(|e| {
            !e.actual.is_finite()
                && !e.passed()
                && e.input.is_finite()
                && (e.side == Side::Forward || e.top_diff.is_finite())
        })
        .collect();
    if hits.is_empty() {
        return None;
    }
    let nf = hits.iter().filter(|e| e.side == Side::Forward).count();
    let first = hits[0];
    Some(Deviation {
        kind: Kind::NonFiniteOutput,
        detail: format!(
            "{} forward and {} backward outputs are NaN/inf for finite inputs where {} predicts other values; e.g. {}",
            nf,
            hits.len() - nf,
            r.profile.name,
            example(r, first)
        ),
        explains: hits.iter().map(|e| key(e, r.c)).collect(),
    })
}

pub(super) fn scale_mismatch(r: &CaseReport) -> Option<Deviation> {
    if r.passed() {
        return None;
    }
    let ratios: Vec<f64> = r
        .elements
        .iter()
        .filter(|e| e.actual.is_finite() && e.reference.is_finite() && e.reference != 0.0)
        .map(|e| e.actual / e.reference)
        .collect();
    let k = median(ratios)?;
    if !k.is_finite() || k == 0.0 || (k - 1.0).abs() <= 1e-3 {
        return None;
    }
    let failing: Vec<&Element> = r
        .failing()
        .filter(|e| e.actual.is_finite() && e.reference.is_finite())
        .collect();
    let fits = |e: &Element| {
        (e.actual - k * e.reference).abs()
            <= k.abs() * e.budget + tolerance::consts::ROUNDING_ULP * r.dtype.ulp(e.actual)
    };
    if failing.is_empty() || !failing.iter().all(|e| fits(e)) {
        return None;
    }
    let s = r.params.s;
    let named = if (k - s).abs() <= 1e-9 * s && s != 1.0 {
        " = s: the scale is applied twice".to_string()
    } else if (k * s - 1.0).abs() <= 1e-9 && s != 1.0 {
        " = 1/s: the scale is missing".to_string()
    } else if s != 1.0 {
        // A scaled layer off by another factor: the stated s differs, which the parameter
        // fit names with the fitted value (`parameter-differs`).
        return None;
    } else {
        String::new()
    };
    Some(Deviation {
        kind: Kind::ScaleMismatch,
        detail: format!(
            "outputs are k x the reference with k = {}{named} ({} out-of-budget elements fit)",
            compare::num(k),
            failing.len()
        ),
        explains: failing.iter().map(|e| key(e, r.c)).collect(),
    })
}

/// Whether x is a value of a binary format with `p` significant bits, minimum normal
/// exponent `emin` and largest finite value `max`.
pub fn representable(x: f64, p: i32, emin: i32, max: f64) -> bool {
    if x == 0.0 || !x.is_finite() {
        return x == 0.0;
    }
    let a = x.abs();
    if a > max {
        return false;
    }
    let q = quantum(a, p, emin);
    (a / q).fract() == 0.0
}

/// Spacing of the format's values at |x| (power of two).
pub(super) fn quantum(a: f64, p: i32, emin: i32) -> f64 {
    let e = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    let e = if a < f64::MIN_POSITIVE {
        a.log2().floor() as i32
    } else {
        e
    };
    2f64.powi(e.max(emin) - (p - 1))
}

/// (name, significant bits, minimum normal exponent, largest finite value).
pub(super) const NARROW_FORMATS: [(&str, i32, i32, f64); 2] = [
    ("f16", 11, -14, 65504.0),
    ("bf16", 8, -126, 3.389_531_389_251_535e38),
];

pub(super) fn reduced_precision(r: &CaseReport) -> Option<Deviation> {
    // A half dtype's outputs are half values by definition: nothing narrower to detect.
    if r.passed() || r.dtype.is_half() {
        return None;
    }
    let outs: Vec<&Element> = r
        .elements
        .iter()
        .filter(|e| e.actual.is_finite() && e.actual != 0.0)
        .collect();
    if outs.len() < 16 {
        return None;
    }
    for (name, p, emin, max) in NARROW_FORMATS {
        if !outs.iter().all(|e| representable(e.actual, p, emin, max)) {
            continue;
        }
        // Only informative if the reference itself is mostly not of that format.
        let refs_in = outs
            .iter()
            .filter(|e| representable(e.reference, p, emin, max))
            .count();
        if 2 * refs_in >= outs.len() {
            continue;
        }
        let failing: Vec<&Element> = r
            .failing()
            .filter(|e| e.actual.is_finite() && e.reference.is_finite())
            .collect();
        let fits = |e: &Element| {
            (e.actual - e.reference).abs() <= quantum(e.reference.abs(), p, emin) + e.budget
        };
        if failing.is_empty() || !failing.iter().all(|e| fits(e)) {
            continue;
        }
        return Some(Deviation {
            kind: Kind::ReducedPrecision,
            detail: format!(
                "all {} finite non-zero outputs are {name} values ({p} significant bits) although the dtype is {}; {} out-of-budget elements are within {name} rounding",
                outs.len(),
                r.dtype,
                failing.len()
            ),
            explains: failing.iter().map(|e| key(e, r.c)).collect(),
        });
    }
    None
}
