//! What the out-of-budget elements no cause names have in common (SPEC.md §6.5): when
//! nothing fits, the report describes the residual instead of guessing a cause. Per side and
//! role it says where in c the elements sit (an interval, the poles |c| = 1, a kink), and
//! the shape of `got − want` over them:
//!
//! - NaN (or ±inf) where the formula is finite, or a finite value where it is not;
//! - a constant offset: `got − want` is the same δ for all (spread ≤ 10% of |δ|);
//! - a scale: `got / want` is the same k ≠ 1 for all (spread ≤ 10% of |k − 1|);
//! - a jump at a threshold: sorted by c, the side's target elements are out of budget on
//!   exactly one side of a c* (every one at or above it, none below, or the reverse), as a
//!   branch test at the wrong place gives.
//!
//! Each statement is made only where it holds for every element it covers; otherwise the
//! line says the residual has no simple shape.

use crate::compare::{CaseReport, Element, Role, Side};
use std::fmt::Write as _;

/// Relative spread under which a residual counts as one constant (offset or scale).
pub const CONSTANT_SPREAD: f64 = 0.1;

/// Distance in c within which elements count as sitting at a pole or a kink.
pub const NEAR: f64 = 1e-3;

/// One line per (side, role) group of `unexplained`, describing its residual.
pub fn describe(report: &CaseReport, unexplained: &[Element]) -> Vec<String> {
    let mut lines = Vec::new();
    for side in [Side::Forward, Side::Backward] {
        for role in [Role::Target, Role::PassThrough] {
            let group: Vec<&Element> = unexplained
                .iter()
                .filter(|e| e.side == side && e.role == role)
                .collect();
            if group.is_empty() {
                continue;
            }
            lines.push(group_line(report, side, role, &group));
        }
    }
    lines
}

fn group_line(report: &CaseReport, side: Side, role: Role, group: &[&Element]) -> String {
    let side_name = crate::report::side_name(side);
    let role_name = match role {
        Role::Target => "target",
        Role::PassThrough => "pass-through",
    };
    let mut out = format!("{} {side_name} {role_name}: ", group.len());
    let (lo, hi) = group
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), e| {
            (a.min(e.input), b.max(e.input))
        });
    let _ = write!(out, "c in [{}, {}]", num(lo), num(hi));
    if group.iter().all(|e| 1.0 - e.input.abs() <= NEAR) {
        out.push_str(", all within 1e-3 of |c| = 1");
    } else if let Some(k) = report
        .kinks
        .iter()
        .find(|k| k.c.is_finite() && group.iter().all(|e| (e.input - k.c).abs() <= NEAR))
    {
        let _ = write!(out, ", all within 1e-3 of the kink at c = {}", num(k.c));
    }
    out.push_str("; ");
    out.push_str(&shape(report, side, role, group));
    out
}

/// The shape of `got − want` over `group`.
fn shape(report: &CaseReport, side: Side, role: Role, group: &[&Element]) -> String {
    let nan_where_finite = group
        .iter()
        .filter(|e| !e.actual.is_finite() && e.reference.is_finite())
        .count();
    let finite_where_nan = group
        .iter()
        .filter(|e| e.actual.is_finite() && !e.reference.is_finite())
        .count();
    if nan_where_finite + finite_where_nan > 0 {
        let mut parts = Vec::new();
        if nan_where_finite > 0 {
            parts.push(format!(
                "{nan_where_finite} non-finite where the formula is finite"
            ));
        }
        if finite_where_nan > 0 {
            parts.push(format!(
                "{finite_where_nan} finite where the formula is not"
            ));
        }
        return parts.join(", ");
    }
    let diffs: Vec<f64> = group.iter().map(|e| e.actual - e.reference).collect();
    if let Some(d) = one_constant(&diffs, |m| m.abs()) {
        return format!("a constant offset, got − want = {}", sig4(d));
    }
    let ratios: Vec<f64> = group
        .iter()
        .filter(|e| e.reference != 0.0)
        .map(|e| e.actual / e.reference)
        .collect();
    if ratios.len() == group.len() {
        if let Some(k) = one_constant(&ratios, |m| (m - 1.0).abs()) {
            return format!("a scale, got / want = {}", sig4(k));
        }
    }
    if role == Role::Target {
        if let Some(j) = jump(report, side, group) {
            return j;
        }
    }
    "no simple shape (neither one offset, one scale, nor a jump at one c)".to_string()
}

/// The common value of `xs` where their spread is within [`CONSTANT_SPREAD`] of `size(median)`.
fn one_constant(xs: &[f64], size: impl Fn(f64) -> f64) -> Option<f64> {
    if xs.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    let spread = v[v.len() - 1] - v[0];
    let s = size(median);
    (s > 0.0 && spread <= CONSTANT_SPREAD * s).then_some(median)
}

/// A jump at a threshold: the side's target elements, sorted by c, out of budget exactly on
/// one side of some c* (and at least one in budget on the other side).
fn jump(report: &CaseReport, side: Side, group: &[&Element]) -> Option<String> {
    let mut all: Vec<&Element> = report
        .elements
        .iter()
        .filter(|e| e.side == side && e.role == Role::Target)
        .collect();
    all.sort_by(|a, b| a.input.total_cmp(&b.input));
    let out = |e: &Element| {
        group
            .iter()
            .any(|g| g.row == e.row && g.col == e.col && g.side == e.side)
    };
    let flags: Vec<bool> = all.iter().map(|e| out(e)).collect();
    let k = flags.iter().filter(|&&f| f).count();
    if k == 0 || k == flags.len() {
        return None;
    }
    let above = flags[flags.len() - k..].iter().all(|&f| f);
    let below = flags[..k].iter().all(|&f| f);
    let (edge, inside, words) = if above {
        let i = flags.len() - k;
        (all[i - 1].input, all[i].input, "at and above")
    } else if below {
        (all[k].input, all[k - 1].input, "at and below")
    } else {
        return None;
    };
    Some(format!(
        "a jump at a threshold: every target {words} c = {} is out of budget and none past it (c* between {} and {})",
        num(inside),
        num(edge.min(inside)),
        num(edge.max(inside))
    ))
}

/// `x` to four significant digits, as a plain decimal where Display gives one (0.00101,
/// 1.003): a fitted offset or scale is known no better than its spread.
fn sig4(x: f64) -> String {
    format!("{x:.3e}")
        .parse::<f64>()
        .map_or_else(|_| num(x), |r| format!("{r}"))
}

fn num(x: f64) -> String {
    crate::compare::num(x)
}
