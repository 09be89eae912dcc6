//! Fitting the continuous constants of a point of the policy space (SPEC.md §3.8).
//!
//! The stated parameters m1, m2, m3, s are claims; the outputs say what they were. Each is
//! estimated from the elements it governs, in closed form, per element, and summarised by the
//! median (robust to the few elements another branch or a kink sends elsewhere):
//!
//! - s from the pass-through entries of a scaled layer: `out / c` forward, `out / top_diff`
//!   backward;
//! - on margin-branch target entries (θ = acos c̃ under the profile, y = out / s):
//!   m2 = acos(y + m3) − m1·θ, m3 = cos(m1·θ + m2) − y, m1 = (acos(y + m3) − m2) / θ.
//!
//! The uncertainty is three times the larger of the spread term (1.2533·1.4826·MAD / √n, the
//! standard error of a median) and the rounding term (the median of each estimate's
//! propagated rounding error in the implementation's dtype, / √n), so "differs beyond its
//! uncertainty" is a 3σ statement.
//!
//! Any other constant of a form (the clamp ε today; sine-guard ε, fallback κ, clip bounds for
//! the new forms) has no closed form in general: [`fit_constant`] solves for it in one
//! dimension on the target entries (a grid over the bracket, then golden-section refinement
//! of the residual on the common scale of [`super::rank`]), and its uncertainty is the
//! half-width of the interval of values at which every target element is within budget.

use super::rank::{self, Cost};
use crate::compare::{self, Reference};
use crate::dtype::Dtype;
use crate::fixture::LayerCase;
use crate::layer::{self, Row};
use crate::margin::{self, Branch, Constants};
use crate::params::Params;
use crate::profile::Profile;
use crate::tolerance;
use serde::Serialize;

/// A stated parameter of the combined margin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Param {
    M1,
    M2,
    M3,
    S,
}

impl Param {
    pub const ALL: [Param; 4] = [Param::M1, Param::M2, Param::M3, Param::S];

    pub fn name(self) -> &'static str {
        match self {
            Param::M1 => "m1",
            Param::M2 => "m2",
            Param::M3 => "m3",
            Param::S => "s",
        }
    }

    pub fn get(self, p: &Params) -> f64 {
        match self {
            Param::M1 => p.m1,
            Param::M2 => p.m2,
            Param::M3 => p.m3,
            Param::S => p.s,
        }
    }

    pub fn set(self, p: &mut Params, v: f64) {
        match self {
            Param::M1 => p.m1 = v,
            Param::M2 => p.m2 = v,
            Param::M3 => p.m3 = v,
            Param::S => p.s = v,
        }
    }

    /// The value at which the term does nothing (m1 = 1, m2 = m3 = 0, s = 1).
    pub fn neutral(self) -> f64 {
        match self {
            Param::M1 | Param::S => 1.0,
            Param::M2 | Param::M3 => 0.0,
        }
    }
}

/// One fitted constant: its value, the uncertainty (a 3σ half-width), and the value that
/// was stated for it (`None` for a constant of a form nobody states, e.g. a clamp ε).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fitted {
    pub name: String,
    pub value: f64,
    pub uncertainty: f64,
    pub stated: Option<f64>,
    /// Elements (or per-element estimates) the fit used.
    pub samples: usize,
    /// Whether the stated value leaves some element out of budget that the fitted one
    /// explains: then a difference is a finding that fails the case. `false` where the
    /// stated value is within budget everywhere (the difference is a note).
    pub resolved: bool,
}

impl Fitted {
    /// Whether the fitted value differs from the stated one beyond its uncertainty and the
    /// budget resolves the difference (a stated-parameter deviation).
    pub fn fails(&self) -> bool {
        self.differs() && self.resolved
    }

    /// Whether the fitted value differs from the stated one beyond its uncertainty.
    pub fn differs(&self) -> bool {
        match self.stated {
            Some(s) => (self.value - s).abs() > self.uncertainty,
            None => false,
        }
    }

    /// `m2 fits 0.499164 ± 2e-7 (28.6°), stated 0.5`.
    pub fn describe(&self) -> String {
        let deg = if self.name == "m2" || self.name == super::family_fit::M_PRIME {
            format!(" ({}°)", plain(self.value.to_degrees(), 4))
        } else {
            String::new()
        };
        let stated = match self.stated {
            Some(s) if self.differs() => format!(
                ", stated {} (differs by {}{}{})",
                plain(s, 9),
                sci(self.value - s),
                if s != 0.0 {
                    format!(", {}%", plain(100.0 * (self.value - s) / s, 3))
                } else {
                    String::new()
                },
                if self.resolved {
                    ""
                } else {
                    "; the stated value is within budget everywhere"
                }
            ),
            Some(s) => format!(", stated {} (agrees)", plain(s, 9)),
            None => String::new(),
        };
        format!(
            "{} fits {} ± {}{deg}{stated}",
            self.name,
            plain(self.value, digits_for(self.value, self.uncertainty)),
            sci(self.uncertainty)
        )
    }
}

/// Significant decimals worth printing for `v` known to ±`unc`.
pub fn digits_for(v: f64, unc: f64) -> usize {
    if unc.is_nan() || unc <= 0.0 || !v.is_finite() {
        return 9;
    }
    (-(unc.log10())).floor().clamp(1.0, 18.0) as usize
}

/// A plain decimal with at most `decimals` decimals, trailing zeros trimmed.
pub fn plain(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return compare::num(x);
    }
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// A short scientific form for uncertainties and differences: `2e-7`, `1.3e-4`.
pub fn sci(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let s = format!("{x:.1e}");
    s.replace(".0e", "e")
}

/// Overrides of the stated parameters: the point's fitted values where they differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Overrides {
    pub m1: Option<f64>,
    pub m2: Option<f64>,
    pub m3: Option<f64>,
    pub s: Option<f64>,
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.m1.is_none() && self.m2.is_none() && self.m3.is_none() && self.s.is_none()
    }

    pub fn get(&self, which: Param) -> Option<f64> {
        match which {
            Param::M1 => self.m1,
            Param::M2 => self.m2,
            Param::M3 => self.m3,
            Param::S => self.s,
        }
    }

    pub fn with(mut self, which: Param, v: f64) -> Overrides {
        match which {
            Param::M1 => self.m1 = Some(v),
            Param::M2 => self.m2 = Some(v),
            Param::M3 => self.m3 = Some(v),
            Param::S => self.s = Some(v),
        }
        self
    }

    /// `p` with the overridden fields replaced (s only where the outputs carry a scale).
    pub fn apply(&self, p: &Params) -> Params {
        let mut q = *p;
        for w in Param::ALL {
            if let Some(v) = self.get(w) {
                w.set(&mut q, v);
            }
        }
        q
    }

    /// How many constants are overridden.
    pub fn count(&self) -> usize {
        Param::ALL
            .iter()
            .filter(|w| self.get(**w).is_some())
            .count()
    }
}

/// Robust summary of per-element estimates: (median, 3σ uncertainty) from the spread and
/// from each estimate's propagated rounding error `sigma`.
pub fn robust(estimates: &mut Vec<(f64, f64)>) -> Option<(f64, f64)> {
    estimates.retain(|(v, s)| v.is_finite() && s.is_finite());
    let n = estimates.len();
    if n == 0 {
        return None;
    }
    let mut v: Vec<f64> = estimates.iter().map(|e| e.0).collect();
    v.sort_by(f64::total_cmp);
    let med = v[n / 2];
    let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad = dev[n / 2];
    let mut sig: Vec<f64> = estimates.iter().map(|e| e.1).collect();
    sig.sort_by(f64::total_cmp);
    let rounding = sig[n / 2];
    let root = (n as f64).sqrt();
    let spread = 1.2533 * 1.4826 * mad / root;
    Some((med, 3.0 * spread.max(rounding / root)))
}

/// The scale s the outputs carry, from the untouched pass-through entries of a scaled case
/// (`out / c` forward, `out / top_diff` backward). `None` for an unscaled layer or where no
/// pass-through entry is usable.
pub fn fit_scale(cases: &[LayerCase], profile: &Profile, dtype: Dtype) -> Option<Fitted> {
    let mut est = Vec::new();
    let mut stated = None;
    let u = dtype.unit_roundoff();
    for case in cases {
        if !case.scaled {
            continue;
        }
        let s0 = compare::output_params(case).s;
        stated = Some(s0);
        let Ok(rows) = layer::rows(case.n, case.c, &case.labels, profile) else {
            continue;
        };
        let transforms = profile.transforms_non_targets();
        for (row, r) in rows.iter().enumerate() {
            for col in 0..case.c {
                let untouched = match *r {
                    Row::Target(j) => j != col && !transforms,
                    Row::NoTarget => !transforms,
                    Row::Untouched => true,
                };
                if !untouched {
                    continue;
                }
                let k = row * case.c + col;
                let x = case.cos[k];
                if let Some(f) = &case.forward {
                    if x.is_finite() && x.abs() >= 1e-3 && f[k].is_finite() {
                        est.push((f[k] / x, 2.0 * u * (f[k] / x).abs()));
                    }
                }
                if let (Some(b), Some(t)) = (&case.backward, &case.top_diff) {
                    if t[k].is_finite() && t[k].abs() >= 1e-30 && b[k].is_finite() {
                        est.push((b[k] / t[k], 2.0 * u * (b[k] / t[k]).abs()));
                    }
                }
            }
        }
        // Bound the work: a few thousand entries pin s far below any budget.
        if est.len() > 4096 {
            break;
        }
    }
    let (v, unc) = robust(&mut est)?;
    Some(Fitted {
        name: "s".into(),
        value: v,
        uncertainty: unc,
        stated,
        samples: est.len(),
        resolved: true,
    })
}

/// One margin parameter (m1, m2 or m3) in closed form from the margin-branch target entries
/// of `cases` under `profile`, the other parameters as stated (with `s` the output scale to
/// divide by, e.g. a fitted one).
pub fn fit_margin_param(
    cases: &[LayerCase],
    profile: &Profile,
    dtype: Dtype,
    which: Param,
    s: Option<f64>,
) -> Option<Fitted> {
    if which == Param::S {
        return fit_scale(cases, profile, dtype);
    }
    let u = dtype.unit_roundoff();
    let mut est = Vec::new();
    let mut stated = None;
    for case in cases {
        let Some(fw) = &case.forward else { continue };
        let mut p = compare::output_params(case);
        stated = Some(which.get(&p));
        let scale = s.unwrap_or(p.s);
        p.s = 1.0;
        let Ok(rows) = layer::rows(case.n, case.c, &case.labels, profile) else {
            continue;
        };
        let k = Constants::new(profile, &p, dtype);
        let held = profile.params.apply(&p);
        for (row, r) in rows.iter().enumerate() {
            let Row::Target(col) = *r else { continue };
            let i = row * case.c + col;
            let c = case.cos[i];
            if c.is_nan() || c.abs() >= 1.0 || !fw[i].is_finite() {
                continue;
            }
            let e = margin::eval_with(c, &p, profile, &k);
            if e.branch != Branch::Margin || e.domain_clamped || e.angle_clamped {
                continue;
            }
            if e.phi_raw > std::f64::consts::PI || e.phi_raw < 0.0 {
                continue;
            }
            let y = fw[i] / scale;
            let theta = e.theta;
            let sin_t = (1.0 - c * c).sqrt().max(1e-300);
            // Rounding of y (a few ulp) and of θ (a few ulp of acos, amplified by 1/sin θ).
            let dy = 4.0 * u * y.abs().max(1.0);
            let dtheta = 4.0 * u * (theta.abs() + 1.0 / sin_t);
            let (v, sigma) = match which {
                Param::M2 => {
                    let z = y + held.m3;
                    if z.abs() > 0.98 {
                        continue;
                    }
                    let dz = 1.0 / (1.0 - z * z).sqrt();
                    (z.acos() - held.m1 * theta, dy * dz + held.m1 * dtheta)
                }
                Param::M3 => {
                    let phi = held.m1 * theta + held.m2;
                    (phi.cos() - y, dy + phi.sin().abs() * held.m1 * dtheta)
                }
                Param::M1 => {
                    let z = y + held.m3;
                    if z.abs() > 0.98 || theta < 0.1 {
                        continue;
                    }
                    let dz = 1.0 / (1.0 - z * z).sqrt();
                    (
                        (z.acos() - held.m2) / theta,
                        (dy * dz + held.m1 * dtheta) / theta,
                    )
                }
                Param::S => unreachable!("handled above"),
            };
            est.push((v, sigma));
        }
    }
    let (v, unc) = robust(&mut est)?;
    // A parameter held in a narrower precision than its estimate is known to no better than
    // its own rounding in the dtype.
    let unc = unc.max(0.5 * dtype.ulp(v));
    Some(Fitted {
        name: which.name().into(),
        value: v,
        uncertainty: unc,
        stated,
        samples: est.len(),
        resolved: true,
    })
}

/// Target-entry cost of `profile` at the cases' stated parameters with `over` applied:
/// (residual on the common scale, every target element within budget, elements compared).
pub fn target_cost(
    cases: &[LayerCase],
    profile: &Profile,
    dtype: Dtype,
    over: &Overrides,
) -> (f64, bool, usize) {
    let (bits, within, n) = target_measure(cases, profile, dtype, over, rank::residual_bits);
    (bits, within == n, n)
}

/// Cap of one element's distance in [`target_distance`]: a non-finite mismatch, or an error
/// so large that its size says nothing about the constant.
const DISTANCE_CAP: f64 = 1e12;

/// Like [`target_cost`], but each element counts its error in ulps linearly (capped at
/// 1e12): the objective of the 1-D solves. The bits of [`target_cost`] are the right scale to
/// rank on but almost flat away from the answer (a constant 1% off and one 100% off cost
/// nearly the same bits), so a grid over a wide bracket cannot see where the minimum is.
pub fn target_distance(
    cases: &[LayerCase],
    profile: &Profile,
    dtype: Dtype,
    over: &Overrides,
) -> (f64, bool, usize) {
    let (d, within, n) = target_distance_counts(cases, profile, dtype, over);
    (d, within == n, n)
}

/// [`target_distance`] with the count of target elements within budget: (distance, within,
/// compared).
pub fn target_distance_counts(
    cases: &[LayerCase],
    profile: &Profile,
    dtype: Dtype,
    over: &Overrides,
) -> (f64, usize, usize) {
    target_measure(cases, profile, dtype, over, |a, r, mag, dt| {
        if !a.is_finite() || !r.is_finite() {
            let same = (a.is_nan() && r.is_nan()) || a == r;
            return if same { 0.0 } else { DISTANCE_CAP };
        }
        let unit = dt.ulp(r.abs().max(mag.abs()));
        if unit > 0.0 && unit.is_finite() {
            ((a - r).abs() / unit).min(DISTANCE_CAP)
        } else if a == r {
            0.0
        } else {
            DISTANCE_CAP
        }
    })
}

fn target_measure(
    cases: &[LayerCase],
    profile: &Profile,
    dtype: Dtype,
    over: &Overrides,
    measure: fn(f64, f64, f64, Dtype) -> f64,
) -> (f64, usize, usize) {
    let (mut bits, mut within, mut n) = (0.0, 0usize, 0usize);
    for case in cases {
        let p = over.apply(&compare::output_params(case));
        if p.validate().is_err() {
            return (f64::INFINITY, 0, 1);
        }
        let Ok(rows) = layer::rows(case.n, case.c, &case.labels, profile) else {
            return (f64::INFINITY, 0, 1);
        };
        let reference = Reference::for_case(profile, &p, dtype, case);
        let top = |k: usize| case.top_diff.as_ref().map_or(1.0, |t| t[k]);
        for (row, r) in rows.iter().enumerate() {
            let Row::Target(col) = *r else { continue };
            let k = row * case.c + col;
            let tr = reference.target(case.cos[k], top(k));
            if let Some(fw) = &case.forward {
                bits += measure(fw[k], tr.forward, p.s, dtype);
                within += usize::from(
                    tolerance::error_fraction(fw[k], tr.forward, tr.budget.forward) <= 1.0,
                );
                n += 1;
            }
            if let Some(bw) = &case.backward {
                let mag = p.s * top(k).abs();
                bits += measure(bw[k], tr.backward, mag, dtype);
                within += usize::from(
                    tolerance::error_fraction(bw[k], tr.backward, tr.budget.backward) <= 1.0,
                );
                n += 1;
            }
        }
    }
    (bits, within, n)
}

/// The stated parameters as the outputs have them: each of m1, m2, m3 (where stated away
/// from its neutral value, or where the outputs need it) and s (for a scaled layer) fitted
/// under `profile`; `overrides` holds the fitted values that explain the targets better than
/// the stated ones by more than their description length. The search appends a family's own
/// constants (t, k, m′, λ; [`super::family_fit::fit_claims`]) to `fitted`, with no override:
/// it ranks the case's modulation as recorded, and the table shows what the outputs say.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatedFit {
    pub fitted: Vec<Fitted>,
    pub overrides: Overrides,
}

impl StatedFit {
    /// The fitted constants that differ from the stated ones.
    pub fn differing(&self) -> impl Iterator<Item = &Fitted> {
        self.fitted.iter().filter(|f| f.differs())
    }
}

/// Fits the stated parameters of `cases` (one parameter group) under `profile`: s from the
/// pass-through entries, then each margin parameter alone (the others as stated); a fitted
/// value replaces the stated one only where it lowers the target cost on the common scale by
/// more than [`rank::constant_bits`].
pub fn fit_stated(cases: &[LayerCase], profile: &Profile, dtype: Dtype) -> StatedFit {
    let mut out = StatedFit::default();
    let Some(first) = cases.first() else {
        return out;
    };
    let stated = compare::output_params(first);
    if let Some(mut s) = fit_scale(cases, profile, dtype) {
        // s is a plain product: a difference within a few roundings of s is no finding.
        s.uncertainty = s
            .uncertainty
            .max(16.0 * dtype.unit_roundoff() * s.value.abs());
        if s.differs() {
            out.overrides.s = Some(s.value);
        }
        out.fitted.push(s);
    }
    let (base_bits, base_all, n) = target_cost(cases, profile, dtype, &out.overrides);
    let mut best: Option<(f64, Param, f64)> = None;
    let mut candidates = Vec::new();
    for which in [Param::M2, Param::M3, Param::M1] {
        let Some(f) = fit_margin_param(cases, profile, dtype, which, out.overrides.s) else {
            continue;
        };
        let listed = which.get(&stated) != which.neutral();
        if f.differs() && !base_all {
            let over = out.overrides.with(which, f.value);
            let (bits, _, _) = target_cost(cases, profile, dtype, &over);
            if bits + rank::constant_bits(n) < base_bits && best.is_none_or(|(b, _, _)| bits < b) {
                best = Some((bits, which, f.value));
            }
        }
        candidates.push((which, listed, f));
    }
    for (which, listed, mut f) in candidates {
        let chosen = best.is_some_and(|(_, w, _)| w == which);
        if chosen {
            f = polish(cases, profile, dtype, &out.overrides, which, &f);
            out.overrides = out.overrides.with(which, f.value);
        }
        if listed || chosen {
            out.fitted.push(f);
        }
    }
    // Where the stated point already explains every target, a difference the fit sees is
    // below what the budget resolves: a note, not a finding.
    let stated_all = target_cost(cases, profile, dtype, &Overrides::default()).1;
    for f in &mut out.fitted {
        f.resolved = !stated_all;
    }
    out
}

/// Fits one continuous constant of a form: `set(&mut profile, v)` puts the value `v` into a
/// copy of `base`; the value is searched in `bracket` (log-spaced where the bracket spans
/// more than two decades and is positive) to minimise the target residual on the common
/// scale, then refined by golden section. Returns `None` where no value in the bracket makes
/// every target element within budget. The uncertainty is the half-width of the interval
/// around the value where every target element stays within budget. `name` labels it.
pub fn fit_constant(
    cases: &[LayerCase],
    dtype: Dtype,
    base: &Profile,
    set: &dyn Fn(&mut Profile, f64),
    bracket: (f64, f64),
    name: &str,
) -> Option<Fitted> {
    fit_constant_at(
        cases,
        dtype,
        base,
        set,
        bracket,
        name,
        &Overrides::default(),
    )
}

/// [`fit_constant`] at parameters with `over` applied.
pub fn fit_constant_at(
    cases: &[LayerCase],
    dtype: Dtype,
    base: &Profile,
    set: &dyn Fn(&mut Profile, f64),
    bracket: (f64, f64),
    name: &str,
    over: &Overrides,
) -> Option<Fitted> {
    let eval = |v: f64| {
        let mut p = base.clone();
        set(&mut p, v);
        target_distance_counts(cases, &p, dtype, over)
    };
    let (value, uncertainty, samples) = solve_1d(&eval, bracket, 48, true)?;
    Some(Fitted {
        name: name.into(),
        value: shortest_within(value, uncertainty),
        uncertainty,
        stated: None,
        samples,
        resolved: true,
    })
}

/// The value with the fewest significant decimal digits in `[value − half_width, value +
/// half_width]` (`value` itself where the interval is empty or not finite). Every point of the
/// interval explains the elements equally, so the point reported is the shortest to state: a
/// clamp written `1e-6` in the source fits to 1e-6, not to the interval's centre
/// 1.0000000002e-6, whose worst element then sits needlessly near its budget.
pub fn shortest_within(value: f64, half_width: f64) -> f64 {
    if !value.is_finite() || !half_width.is_finite() || half_width <= 0.0 {
        return value;
    }
    for digits in 1..=17usize {
        let v: f64 = format!("{:.*e}", digits - 1, value)
            .parse()
            .unwrap_or(value);
        if (v - value).abs() <= half_width {
            return v;
        }
    }
    value
}

/// The 1-D solve behind [`fit_constant`]: `eval(v)` = (distance, elements within budget,
/// elements). A grid of `grid` + 1 points over the bracket (log-spaced where it is positive
/// and spans more than two decades), golden-section refinement around the best grid point
/// down to the resolution of f64, a probe outwards for more elements within budget, then the
/// interval around the point where as many elements stay within budget (expansion, then
/// bisection). Returns (centre of that interval, its half-width, elements); `None` where
/// `require_all` and no point puts every element within budget (without it, elements no
/// value of the constant can explain, such as a NaN where the formula is finite, are left
/// out of the interval's definition).
pub fn solve_1d(
    eval: &dyn Fn(f64) -> (f64, usize, usize),
    bracket: (f64, f64),
    grid: usize,
    require_all: bool,
) -> Option<(f64, f64, usize)> {
    let (lo, hi) = (bracket.0.min(bracket.1), bracket.0.max(bracket.1));
    let log = lo > 0.0 && hi / lo > 100.0;
    let to = |t: f64| {
        if log {
            (lo.ln() + t * (hi.ln() - lo.ln())).exp()
        } else {
            lo + t * (hi - lo)
        }
    };
    let grid = grid.max(2);
    let mut best = (f64::INFINITY, 0usize);
    for i in 0..=grid {
        let (b, _, _) = eval(to(i as f64 / grid as f64));
        if b < best.0 {
            best = (b, i);
        }
    }
    // Golden section on t ∈ [t_best − 1/grid, t_best + 1/grid], to f64 resolution.
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (
        (best.1 as f64 - 1.0).max(0.0) / grid as f64,
        (best.1 as f64 + 1.0).min(grid as f64) / grid as f64,
    );
    let (mut x1, mut x2) = (b - g * (b - a), a + g * (b - a));
    let (mut f1, mut f2) = (eval(to(x1)).0, eval(to(x2)).0);
    for _ in 0..120 {
        if b - a <= 4.0 * f64::EPSILON * b.abs().max(1e-300) {
            break;
        }
        if f1 <= f2 {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - g * (b - a);
            f1 = eval(to(x1)).0;
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + g * (b - a);
            f2 = eval(to(x2)).0;
        }
    }
    let mut v = to(if f1 <= f2 { x1 } else { x2 });
    if best.0 < f1.min(f2) {
        v = to(best.1 as f64 / grid as f64);
    }
    let (_, mut within, mut n) = eval(v);
    // The objective is a staircase at the finest scale (the constant meets the data through
    // roundings), and golden section steps the wrong way on a flat stair: probe outwards
    // from v on a geometric ladder of offsets for values with more elements within budget.
    let mut k = 0;
    while within < n && k < 160 {
        let d = v.abs().max(f64::MIN_POSITIVE) * f64::EPSILON * 1.25f64.powi(k);
        for w in [v - d, v + d] {
            if (lo..=hi).contains(&w) {
                let (_, c, m) = eval(w);
                if c > within {
                    (v, within, n) = (w, c, m);
                    if require_all && within == n {
                        break;
                    }
                }
            }
        }
        k += 1;
    }
    if require_all && within < n {
        return None;
    }
    let holds = |w: f64| eval(w).1 >= within;
    let edge = |dir: f64| -> f64 {
        let room = if dir > 0.0 { hi - v } else { v - lo };
        let mut step = (v.abs() * 1e-15).max(f64::MIN_POSITIVE).min(room);
        let mut pass = 0.0;
        let mut fail = None;
        for _ in 0..120 {
            if step > room {
                fail = Some(room);
                break;
            }
            if holds(v + dir * step) {
                pass = step;
                step *= 2.0;
            } else {
                fail = Some(step);
                break;
            }
        }
        let Some(mut f) = fail else { return pass };
        for _ in 0..30 {
            let mid = 0.5 * (pass + f);
            if holds(v + dir * mid) {
                pass = mid;
            } else {
                f = mid;
            }
        }
        pass
    };
    let (down, up) = (edge(-1.0), edge(1.0));
    Some((v + 0.5 * (up - down), 0.5 * (up + down), n))
}

/// A stated parameter's closed-form estimate, polished by [`solve_1d`] in a bracket of ten
/// uncertainties around it (a median of per-element estimates is as precise as the elements;
/// the budget near a pole can ask for more). The uncertainty becomes the half-width of the
/// interval where every target is within budget, where that is wider than the closed form's.
pub fn polish(
    cases: &[LayerCase],
    profile: &Profile,
    dtype: Dtype,
    over: &Overrides,
    which: Param,
    f: &Fitted,
) -> Fitted {
    let half = (10.0 * f.uncertainty).max(64.0 * f64::EPSILON * f.value.abs());
    let eval = |v: f64| target_distance_counts(cases, profile, dtype, &over.with(which, v));
    match solve_1d(&eval, (f.value - half, f.value + half), 16, false) {
        Some((v, unc, n)) => Fitted {
            value: v,
            uncertainty: unc.max(f.uncertainty.min(half)),
            samples: n.max(f.samples),
            ..f.clone()
        },
        None => f.clone(),
    }
}

/// Cost of a candidate for ranking, as [`super::rank::Cost`] with only the residual: a
/// convenience for callers that score a fitted point on the target entries.
pub fn target_rank_cost(cases: &[LayerCase], profile: &Profile, dtype: Dtype) -> Cost {
    let (residual, _, _) = target_cost(cases, profile, dtype, &Overrides::default());
    Cost {
        residual,
        ..Cost::default()
    }
}
