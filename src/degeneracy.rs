//! What a profile's constants become in a narrow dtype: clamps that become no-ops, thresholds
//! that round across the exact kink, and which inputs of the dtype's grid fall on the wrong side.
//!
//! A profile names its comparison constants in exact arithmetic (the clamp bound 1 − ε, the
//! th/mm threshold cos((π − m2)/m1), the angle bound π − 1e-4); an implementation holds them
//! rounded to its dtype (SPEC.md §2.4), and the reference does too. In f16 and bf16 the
//! rounding is coarse enough to change what the constant does:
//!
//! * a domain clamp bound 1 − ε that rounds to 1 (ε < ulp/2: 1e-4 in f16, 1e-3 in bf16)
//!   clamps nothing in [−1, 1]: the pole it was meant to keep away is reachable (**no-op**);
//! * a threshold that rounds to the other side of the exact kink sends the grid inputs
//!   between the two to the other branch (**wrong side**; the th/mm branches differ by a
//!   jump, 64·(cos m + m·sin m − 1) = 7.5 at m = 0.5, s = 64);
//! * an angle bound moves its kink in cos-space (**moved**), or past π (**past π**).
//!
//! "Exact" is the constant evaluated in f64: it resolves f32 and the half types, not f64
//! itself (an f64 constant is its own f64 evaluation), so for `Dtype::F64` nothing is reported.
//! The table in SPEC.md §4.3 is [`table`]'s output (tests/spec.rs checks it).

use crate::catalogue::next_float;
use crate::dtype::Dtype;
use crate::margin::Constants;
use crate::params::Params;
use crate::profile::{AnglePolicy, InputDomain, Profile, ThresholdTest};
use std::f64::consts::PI;

/// Which constant of a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constant {
    /// The lower input clamp bound −1 + ε.
    DomainLow,
    /// The upper input clamp bound 1 − ε.
    DomainHigh,
    /// The lower angle clamp bound (radians).
    AngleLow,
    /// The upper angle clamp bound (radians).
    AngleHigh,
    /// The th/mm threshold: margin branch iff c > th.
    Threshold,
}

impl Constant {
    pub fn name(self) -> &'static str {
        match self {
            Constant::DomainLow => "domain clamp low",
            Constant::DomainHigh => "domain clamp high",
            Constant::AngleLow => "angle clamp low",
            Constant::AngleHigh => "angle clamp high",
            Constant::Threshold => "th/mm threshold",
        }
    }
}

/// What rounding did to a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The dtype holds the exact value (to f64 resolution).
    Exact,
    /// Rounded, but no input of the grid lies between the exact and the rounded value.
    Moved,
    /// Rounded across the exact value: the grid inputs between take the other branch or are
    /// not clamped where the exact constant would clamp them.
    WrongSide,
    /// A domain clamp whose rounded bound is ±1 or beyond: it clamps nothing in [−1, 1].
    NoOp,
    /// An upper angle bound ≤ π that rounds above π: φ can pass π again.
    PastPi,
}

impl Effect {
    pub fn name(self) -> &'static str {
        match self {
            Effect::Exact => "exact",
            Effect::Moved => "moved",
            Effect::WrongSide => "wrong side",
            Effect::NoOp => "no-op",
            Effect::PastPi => "past pi",
        }
    }
}

/// One constant of a profile in one dtype.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Degeneracy {
    pub constant: Constant,
    /// The constant in exact arithmetic (evaluated in f64); radians for angle bounds.
    pub exact: f64,
    /// As the dtype holds it.
    pub rounded: f64,
    pub effect: Effect,
    /// The inputs c (cos-space) treated differently from the exact constant: c in (lo, hi]
    /// (a `c > bound` comparison: upper clamps, the threshold), or in [lo, hi) (`c < bound`:
    /// lower clamp, and angle bounds, where φ > bound means c < cos((bound − m2)/m1)). For
    /// angle bounds the band is between the two kink positions, evaluated in f64 (the
    /// implementation's own rounding of φ can move an input by an ulp either way).
    pub band: Option<(f64, f64)>,
    /// Whether the band is [lo, hi) rather than (lo, hi].
    pub closed_low: bool,
    /// How many values of the input grid lie in `band`.
    pub inputs: usize,
}

impl Degeneracy {
    /// Whether `c` (an input in cos-space) is in the band that rounding moved.
    pub fn affects(&self, c: f64) -> bool {
        match self.band {
            Some((lo, hi)) if self.closed_low => c >= lo && c < hi,
            Some((lo, hi)) => c > lo && c <= hi,
            None => false,
        }
    }
}

/// Count the values of `grid` in (lo, hi]; the band is a few ulps wide where it matters, and
/// the count stops at `CAP` (a band that wide is reported as "≥ CAP").
pub const CAP: usize = 10_000;

fn grid_count(lo: f64, hi: f64, closed_low: bool, grid: Dtype) -> usize {
    if grid == Dtype::F64 || hi <= lo {
        return 0;
    }
    let inside = |x: f64| {
        if closed_low {
            x >= lo && x < hi
        } else {
            x > lo && x <= hi
        }
    };
    // Start one grid value below lo and walk up: every grid value in the band is visited.
    let mut x = next_float(grid.round(lo), grid, -1);
    let mut n = 0;
    while x <= hi && n < CAP {
        if inside(x) {
            n += 1;
        }
        x = next_float(x, grid, 1);
    }
    n
}

/// The band between an exact and a rounded constant, as (lo, hi] in the comparison's sense.
fn band_between(exact: f64, rounded: f64) -> Option<(f64, f64)> {
    if rounded == exact {
        None
    } else {
        Some((exact.min(rounded), exact.max(rounded)))
    }
}

/// Every comparison constant of `profile` at `p`, as `dtype` holds it, with the inputs of
/// the grid `grid` (usually `dtype` itself; f16 for autocast-style inputs to an f32 code)
/// that rounding moves.
pub fn degeneracies(profile: &Profile, p: &Params, dtype: Dtype, grid: Dtype) -> Vec<Degeneracy> {
    let k = Constants::new(profile, p, dtype);
    let mut out = Vec::new();
    if dtype == Dtype::F64 {
        return out;
    }
    let shortcut = profile.shortcut && p.is_angle_identity();
    // The f64 evaluation of an exact constant is off by a few f64 ulps; a rounded value that
    // close is the exact one (cos(π/1.5) evaluates to −0.49999999999999978, not −0.5).
    let same = |exact: f64, rounded: f64| {
        (rounded - exact).abs() <= 8.0 * f64::EPSILON * exact.abs().max(1.0)
    };
    let classify =
        |exact: f64, rounded: f64, band: Option<(f64, f64)>, closed_low: bool, jump: bool| {
            if same(exact, rounded) {
                return (Effect::Exact, None, 0);
            }
            let inputs = band.map_or(0, |(lo, hi)| grid_count(lo, hi, closed_low, grid));
            // Only a jump (the threshold) has a wrong side: a clamp that moves is still continuous.
            let effect = if jump && inputs > 0 {
                Effect::WrongSide
            } else {
                Effect::Moved
            };
            (effect, band, inputs)
        };

    let clamp_eps = match profile.domain {
        InputDomain::Clamp { eps, .. } => Some(eps),
        InputDomain::Raw => None,
    };
    if let Some(eps) = clamp_eps {
        for (constant, exact, rounded, closed_low) in [
            (Constant::DomainLow, -1.0 + eps, k.c_lo, true),
            (Constant::DomainHigh, 1.0 - eps, k.c_hi, false),
        ] {
            // Inputs between the bounds, limited to [−1, 1] (beyond, both clamp); an input
            // of exactly ±1 counts, it is the pole the clamp is there for.
            let band = band_between(exact, rounded).map(|(lo, hi)| (lo.max(-1.0), hi.min(1.0)));
            let (effect, band, inputs) = classify(exact, rounded, band, closed_low, false);
            let no_op = eps > 0.0 && rounded.abs() >= 1.0;
            out.push(Degeneracy {
                constant,
                exact,
                rounded,
                effect: if no_op { Effect::NoOp } else { effect },
                band,
                closed_low,
                inputs,
            });
        }
    }

    if let (AnglePolicy::Clamp { lo, hi }, false) = (profile.angle, shortcut) {
        for (constant, exact, rounded) in [
            (Constant::AngleLow, lo, k.phi_lo),
            (Constant::AngleHigh, hi, k.phi_hi),
        ] {
            // The kink in cos-space: θ = (bound − m2)/m1, where it lies in [0, π].
            let at = |b: f64| {
                let t = (b - p.m2) / p.m1;
                (0.0..=PI).contains(&t).then(|| t.cos())
            };
            let band = match (at(exact), at(rounded)) {
                (Some(a), Some(b)) => band_between(a, b),
                _ => None,
            };
            let (effect, band, inputs) = classify(exact, rounded, band, true, false);
            let past_pi = constant == Constant::AngleHigh && exact <= PI && rounded > PI;
            out.push(Degeneracy {
                constant,
                exact,
                rounded,
                effect: if past_pi { Effect::PastPi } else { effect },
                band,
                closed_low: true,
                inputs,
            });
        }
    }

    // The th/mm threshold in cos units (the angle form's threshold is in radians, and its
    // branch decision is on θ, which no cos-space band describes).
    let cos_threshold = match profile.angle {
        AnglePolicy::Threshold {
            test: ThresholdTest::OnCos,
            ..
        } => k.threshold,
        AnglePolicy::Threshold {
            test: ThresholdTest::OnAngle,
            ..
        }
        | AnglePolicy::EasyMargin
        | AnglePolicy::Raw
        | AnglePolicy::Clamp { .. }
        | AnglePolicy::Monotone => None,
    };
    if let (Some(th), false) = (cos_threshold, shortcut) {
        let exact = ((PI - p.m2) / p.m1).cos();
        // Margin iff c > th: the inputs in (min, max] of the two take different branches.
        let band = band_between(exact, th);
        let (effect, band, inputs) = classify(exact, th, band, false, true);
        out.push(Degeneracy {
            constant: Constant::Threshold,
            exact,
            rounded: th,
            effect,
            band,
            closed_low: false,
            inputs,
        });
    }
    out
}

fn fmt_cell(d: Option<&Degeneracy>, angle: bool) -> String {
    let Some(d) = d else {
        return "-".into();
    };
    let v = |x: f64| {
        if angle {
            format!("{x:.9}")
        } else {
            format!("{x:+.9}")
        }
    };
    let mut s = format!("{} -> {} {}", v(d.exact), v(d.rounded), d.effect.name());
    if d.inputs > 0 {
        let n = if d.inputs >= CAP {
            format!(">={CAP}")
        } else {
            d.inputs.to_string()
        };
        s.push_str(&format!(" ({n} in"));
        if let Some((lo, hi)) = d.band {
            let (a, b) = if d.closed_low { ('[', ')') } else { ('(', ']') };
            s.push_str(&format!(" {a}{lo:+.9}, {hi:+.9}{b}"));
        }
        s.push(')');
    }
    s
}

/// The degeneracy table: one row per configuration, profile with constants, and dtype.
/// Profiles without a clamp or threshold (nothing to round) are left out.
pub fn table(profiles: &[Profile], configs: &[(f64, f64, f64)], dtypes: &[Dtype]) -> String {
    let header = [
        "(m1, m2, m3)",
        "profile",
        "dtype",
        "domain clamp high (low: mirrored)",
        "angle clamp high",
        "th/mm threshold",
    ];
    let mut rows: Vec<[String; 6]> = Vec::new();
    for &(m1, m2, m3) in configs {
        let p = Params::new(m1, m2, m3);
        for profile in profiles {
            for &dt in dtypes {
                let d = degeneracies(profile, &p, dt, dt);
                if d.is_empty() {
                    continue;
                }
                let find = |c: Constant| d.iter().find(|x| x.constant == c);
                // Rounding is odd-symmetric and so are the bounds: the high one stands for both.
                let domain = fmt_cell(find(Constant::DomainHigh), false);
                rows.push([
                    format!("({m1}, {m2}, {m3})"),
                    profile.name.clone(),
                    dt.name().into(),
                    domain,
                    fmt_cell(find(Constant::AngleHigh), true),
                    fmt_cell(find(Constant::Threshold), false),
                ]);
            }
        }
    }
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            s.push_str(&format!(" {c:<width$} |", width = w[i]));
        }
        s.push('\n');
        s
    };
    let mut out = line(&header);
    let dashes: Vec<String> = w.iter().map(|&n| "-".repeat(n)).collect();
    out.push_str(&line(
        &dashes.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    for r in &rows {
        out.push_str(&line(&r.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    out
}

/// Whether a domain clamp of `profile` clamps nothing in `dtype` (its bound rounds to ±1).
pub fn clamp_collapses(profile: &Profile, p: &Params, dtype: Dtype) -> bool {
    degeneracies(profile, p, dtype, dtype)
        .iter()
        .any(|d| d.effect == Effect::NoOp)
}

/// [`Profile::promises_finite`] in `dtype`: the promise rests on the domain clamp keeping c
/// away from ±1 (or on the factor clip), and a clamp that collapses to a no-op brings the
/// pole back: caffe-gpu in f16/bf16 at c = ±1 with sin φ = 0 there (m2 = 0) evaluates
/// 0·∞ = NaN, which its `d > 2 ? 2 : d` clip keeps.
pub fn promises_finite_in(profile: &Profile, p: &Params, dtype: Dtype) -> bool {
    profile.promises_finite() && !clamp_collapses(profile, p, dtype)
}
