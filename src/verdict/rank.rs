//! One scale for ranking candidates: bits of disagreement on the dtype's grid, plus the bits
//! it takes to describe the candidate (SPEC.md §3.8).
//!
//! Each candidate profile carries its own budget, so ranking by "fraction of its own budget"
//! lets a looser profile win a tie (θ rounded to f32 fits an f64 layer with room to spare).
//! Here every element's error is measured in ulps of the dtype at the element's magnitude,
//! the same unit for every candidate, and costs `log2(1 + max(0, e − 1))` bits: an error
//! within one ulp is rounding and costs nothing, an error of 2^k ulps costs about k bits, a
//! non-finite mismatch costs [`MAX_BITS`]. A candidate's cost is the sum over the elements
//! plus a description length: [`AXIS_BITS`] per policy axis on which it differs from the
//! preset it was reached from, and [`constant_bits`] per fitted constant that differs from
//! the stated one (a constant equal to the stated one costs nothing). A looser budget never
//! lowers the cost; among equal costs the tighter budget (summed on the same scale) wins.

use crate::dtype::Dtype;

/// The cost of one element whose output and reference disagree on finiteness: the whole
/// mantissa and exponent of an f64, "nothing in common".
pub const MAX_BITS: f64 = 64.0;

/// The description length of one policy axis changed from the preset (about log2 of the
/// number of values an axis takes).
pub const AXIS_BITS: f64 = 4.0;

/// Bits of disagreement of one element: `|actual − reference|` in ulps of `dtype` at
/// `max(|reference|, magnitude)`, the first ulp free. `magnitude` is the element's natural
/// size, the same for every candidate (s for a forward entry, s·|top_diff| for a backward one),
/// so a reference near 0 by cancellation is not measured on a finer grid than its neighbours.
pub fn residual_bits(actual: f64, reference: f64, magnitude: f64, dtype: Dtype) -> f64 {
    // Equal values cost nothing (the formula below gives log2(1) = 0): most pass-through
    // entries, skipped without an ulp or a log.
    if actual == reference {
        return 0.0;
    }
    if !actual.is_finite() || !reference.is_finite() {
        let same = (actual.is_nan() && reference.is_nan()) || actual == reference;
        return if same { 0.0 } else { MAX_BITS };
    }
    let unit = dtype.ulp(reference.abs().max(magnitude.abs()));
    if unit <= 0.0 || !unit.is_finite() {
        return if actual == reference { 0.0 } else { MAX_BITS };
    }
    let e = (actual - reference).abs() / unit;
    (1.0 + (e - 1.0).max(0.0)).log2().min(MAX_BITS)
}

/// A budget on the same scale: `log2(1 + budget / ulp)` (0 for a bit-exact budget, and a
/// non-finite budget counts as [`MAX_BITS`]).
pub fn budget_bits(budget: f64, reference: f64, magnitude: f64, dtype: Dtype) -> f64 {
    // A bit-exact budget (a pass-through copy) is log2(1) = 0 bits.
    if budget == 0.0 {
        return 0.0;
    }
    if !budget.is_finite() {
        return MAX_BITS;
    }
    if !reference.is_finite() {
        return 0.0;
    }
    let unit = dtype.ulp(reference.abs().max(magnitude.abs()));
    if unit <= 0.0 || !unit.is_finite() {
        return 0.0;
    }
    (1.0 + budget / unit).log2().min(MAX_BITS)
}

/// The description length of a fitted constant that differs from the stated one, on
/// `elements` compared elements: the MDL price of a real parameter, ½·log2(n) bits, plus
/// one axis' worth for saying which constant it is.
pub fn constant_bits(elements: usize) -> f64 {
    AXIS_BITS + 0.5 * (elements.max(2) as f64).log2()
}

/// The cost a candidate is ranked by.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    /// Σ [`residual_bits`] over the compared elements.
    pub residual: f64,
    /// Σ [`budget_bits`]: how loose the candidate's budget is, on the same scale.
    pub budget: f64,
    /// Description length of the candidate (axes changed, constants fitted).
    pub description: f64,
}

impl Cost {
    /// What the ranking minimises: residual plus description.
    pub fn total(&self) -> f64 {
        self.residual + self.description
    }
}

/// Best first: a candidate that fits every element within its own budget before one that
/// does not; among candidates that do not, the larger share within budget (the search's
/// guide towards the structure: more elements explained is nearer); then the smaller total
/// cost on the common scale; then the tighter budget (a looser budget never wins a tie).
/// `a` and `b` are (share within budget, cost).
pub fn order(a: (f64, &Cost), b: (f64, &Cost)) -> std::cmp::Ordering {
    let (a_fits, b_fits) = (a.0 == 1.0, b.0 == 1.0);
    (!a_fits)
        .cmp(&!b_fits)
        .then_with(|| {
            if a_fits {
                std::cmp::Ordering::Equal
            } else {
                b.0.total_cmp(&a.0)
            }
        })
        .then(a.1.total().total_cmp(&b.1.total()))
        .then(a.1.budget.total_cmp(&b.1.budget))
}

/// Whether two candidates that both fit every element are indistinguishable on these
/// inputs: their residuals differ by less than half a bit per element on average.
pub fn tied(a: &Cost, b: &Cost, elements: usize) -> bool {
    (a.residual - b.residual).abs() <= 0.5 * elements.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ulp_is_free_and_each_doubling_is_a_bit() {
        let u = Dtype::F64.ulp(1.0);
        assert_eq!(residual_bits(1.0, 1.0, 1.0, Dtype::F64), 0.0);
        assert_eq!(residual_bits(1.0 + u, 1.0, 1.0, Dtype::F64), 0.0);
        let b = residual_bits(1.0 + 1024.0 * u, 1.0, 1.0, Dtype::F64);
        assert!((b - 10.0).abs() < 1e-9, "{b}");
        assert_eq!(residual_bits(f64::NAN, 1.0, 1.0, Dtype::F64), MAX_BITS);
        assert_eq!(residual_bits(f64::NAN, f64::NAN, 1.0, Dtype::F64), 0.0);
        assert_eq!(
            residual_bits(f64::INFINITY, f64::NEG_INFINITY, 1.0, Dtype::F64),
            MAX_BITS
        );
    }

    #[test]
    fn a_looser_budget_never_wins_a_tie() {
        let tight = Cost {
            residual: 3.0,
            budget: 10.0,
            description: 0.0,
        };
        let loose = Cost {
            budget: 500.0,
            ..tight
        };
        assert_eq!(
            order((1.0, &tight), (1.0, &loose)),
            std::cmp::Ordering::Less
        );
    }
}
