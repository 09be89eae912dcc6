//! Where a profile's forward or backward is not smooth, in cos-space, for given (m1, m2, m3).
//!
//! Finite-difference checks must not straddle these points, property tests sample them on
//! purpose, reports name the nearest one, and plots mark them. The positions are computed
//! from the profile's policies and the parameters, never typed in.

use crate::dtype::Dtype;
use crate::margin::{self, Branch, Constants};
use crate::params::Params;
use crate::profile::{AnglePolicy, InputDomain, Profile, ThresholdTest};
use serde::Serialize;
use std::f64::consts::PI;

/// What kind of non-smooth point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KinkKind {
    /// The input clamp c̃ = clamp(c, −1+ε, 1−ε) starts acting: the forward has a corner.
    DomainClampLow,
    DomainClampHigh,
    /// c = ±1 on the margin branch: the derivative `m1·sin φ / sqrt(1 − c²)` is unbounded.
    PoleLow,
    PoleHigh,
    /// c = ±1 with a raw domain and no pole (sin φ = 0 there): the function is smooth up to
    /// the end of its domain and NaN beyond, so a stencil must not cross it.
    DomainEndLow,
    DomainEndHigh,
    /// φ = m1·θ + m2 reaches the angle clamp's upper / lower bound: a corner.
    AngleClampHigh,
    AngleClampLow,
    /// The th/mm threshold (or 0 with easy_margin): the forward jumps.
    Threshold,
    /// The backward factor reaches the clip's upper / lower bound: the gradient has a corner.
    FactorClipHigh,
    FactorClipLow,
    /// φ = kπ on the raw angle: a smooth extremum where the gradient changes sign
    /// (for k = 1 the curve turns back up). Not a kink; listed because it matters.
    Turn,
    /// φ = kπ under the monotone extension: two pieces join with zero slope (the second
    /// derivative jumps).
    MonotoneJoin,
    /// The target logit reaches the output clip's bound ±b: a corner (flat beyond).
    OutputClipHigh,
    OutputClipLow,
}

impl KinkKind {
    pub fn name(self) -> &'static str {
        match self {
            KinkKind::DomainClampLow => "domain clamp (low)",
            KinkKind::DomainClampHigh => "domain clamp (high)",
            KinkKind::PoleLow => "pole at c = -1",
            KinkKind::PoleHigh => "pole at c = +1",
            KinkKind::DomainEndLow => "end of domain at c = -1",
            KinkKind::DomainEndHigh => "end of domain at c = +1",
            KinkKind::AngleClampHigh => "angle clamp (phi = hi)",
            KinkKind::AngleClampLow => "angle clamp (phi = lo)",
            KinkKind::Threshold => "th/mm threshold",
            KinkKind::FactorClipHigh => "factor clip (high)",
            KinkKind::FactorClipLow => "factor clip (low)",
            KinkKind::Turn => "turn (phi = k*pi)",
            KinkKind::MonotoneJoin => "monotone join (phi = k*pi)",
            KinkKind::OutputClipHigh => "output clip (out = b)",
            KinkKind::OutputClipLow => "output clip (out = -b)",
        }
    }

    /// How the function fails to be smooth there.
    pub fn smoothness(self) -> Smoothness {
        match self {
            KinkKind::Threshold => Smoothness::Jump,
            KinkKind::PoleLow | KinkKind::PoleHigh => Smoothness::Pole,
            KinkKind::DomainEndLow | KinkKind::DomainEndHigh => Smoothness::Boundary,
            KinkKind::FactorClipHigh | KinkKind::FactorClipLow => Smoothness::GradientCorner,
            KinkKind::Turn => Smoothness::Smooth,
            KinkKind::DomainClampLow
            | KinkKind::DomainClampHigh
            | KinkKind::AngleClampHigh
            | KinkKind::AngleClampLow
            | KinkKind::MonotoneJoin
            | KinkKind::OutputClipHigh
            | KinkKind::OutputClipLow => Smoothness::Corner,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Smoothness {
    /// The forward jumps.
    Jump,
    /// The forward is continuous, its derivative jumps.
    Corner,
    /// The derivative is unbounded (c = ±1).
    Pole,
    /// The function is undefined (NaN) beyond this point.
    Boundary,
    /// The forward is smooth; the backward factor (after its clip) has a corner.
    GradientCorner,
    /// Smooth; informational.
    Smooth,
}

/// One non-smooth point in cos-space.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Kink {
    /// Position in cos-space, as the dtype represents it.
    pub c: f64,
    pub kind: KinkKind,
}

impl Kink {
    pub fn smoothness(&self) -> Smoothness {
        self.kind.smoothness()
    }
}

/// Every kink of `profile` at `params`, sorted by c. `dtype` rounds the profile's constants
/// as [`margin::eval`] does.
pub fn kinks(profile: &Profile, p: &Params, dtype: Dtype) -> Vec<Kink> {
    let k = Constants::new(profile, p, dtype);
    let mut out = Vec::new();
    let mut push = |c: f64, kind| {
        if c.is_finite() && (-1.0..=1.0).contains(&c) {
            out.push(Kink { c, kind });
        }
    };

    // With ε = 0 the clamp sits at ±1: still a corner (the function is flat beyond).
    match profile.domain {
        InputDomain::Clamp { .. } => {
            push(k.c_lo, KinkKind::DomainClampLow);
            push(k.c_hi, KinkKind::DomainClampHigh);
        }
        InputDomain::Raw => {}
    }
    // Before the shortcut's early return: the clip acts on `c − m3` too.
    if profile.output_clip.is_some() {
        // The unclipped target logit against ±b (b as the dtype holds it).
        let bare = Constants {
            out_clip: f64::INFINITY,
            ..k
        };
        let out = |theta: f64| margin::eval_with(theta.cos(), p, profile, &bare).out;
        for c in crossings(|t| out(t) - k.out_clip) {
            push(c, KinkKind::OutputClipHigh);
        }
        for c in crossings(|t| out(t) + k.out_clip) {
            push(c, KinkKind::OutputClipLow);
        }
    }

    if profile.shortcut && p.is_angle_identity() {
        out.sort_by(|a, b| a.c.total_cmp(&b.c));
        return out;
    }

    // Poles: the margin branch evaluated at c = ±1 with an unclamped formula and sin φ ≠ 0.
    // Where sin φ = 0 there (m2 = 0 at c = 1), cos(m1·θ + m2) is even in θ − θ_pole and
    // hence analytic in c: the derivative has the finite limit m1²·cos φ / cos θ, no pole.
    for (c, kind) in [(-1.0, KinkKind::PoleLow), (1.0, KinkKind::PoleHigh)] {
        let e = margin::eval_with(c, p, profile, &k);
        let unbounded_formula = e.branch == Branch::Margin
            && !e.domain_clamped
            && !e.angle_clamped
            && e.phi.sin().abs() > 1e-12
            && margin::inv_sin_theta(e.c_eff, false).is_infinite();
        if unbounded_formula {
            push(c, kind);
        } else if profile.domain == InputDomain::Raw
            && !margin::eval_with(2.0 * c, p, profile, &k).out.is_finite()
        {
            push(
                c,
                if c < 0.0 {
                    KinkKind::DomainEndLow
                } else {
                    KinkKind::DomainEndHigh
                },
            );
        }
    }

    // Angle clamp corners: θ where m1·θ + m2 meets a bound, if inside (0, π).
    let angle_clamp = match profile.angle {
        AnglePolicy::Clamp { .. } => true,
        AnglePolicy::Raw
        | AnglePolicy::Threshold { .. }
        | AnglePolicy::EasyMargin
        | AnglePolicy::Monotone => false,
    };
    if angle_clamp {
        for (bound, kind) in [
            (k.phi_hi, KinkKind::AngleClampHigh),
            (k.phi_lo, KinkKind::AngleClampLow),
        ] {
            let theta = (bound - p.m2) / p.m1;
            if theta > 0.0 && theta < PI {
                let c = theta.cos();
                if c > k.c_lo && c < k.c_hi {
                    push(c, kind);
                }
            }
        }
    }

    // The fallback test, in cos-space (the angle form's θ threshold maps to cos θ).
    match (profile.angle, k.threshold) {
        (
            AnglePolicy::Threshold {
                test: ThresholdTest::OnCos,
                ..
            }
            | AnglePolicy::EasyMargin,
            Some(th),
            // A threshold outside the clamped domain is never crossed: no kink.
        ) if th >= k.c_lo && th <= k.c_hi => push(th, KinkKind::Threshold),
        (
            AnglePolicy::Threshold {
                test: ThresholdTest::OnAngle,
                ..
            },
            Some(th),
        ) if (k.c_lo..=k.c_hi).contains(&dtype.round(th.cos())) => {
            push(dtype.round(th.cos()), KinkKind::Threshold)
        }
        (
            AnglePolicy::Threshold { .. }
            | AnglePolicy::EasyMargin
            | AnglePolicy::Raw
            | AnglePolicy::Clamp { .. }
            | AnglePolicy::Monotone,
            _,
        ) => {}
    }

    let join = match profile.angle {
        AnglePolicy::Raw => Some(KinkKind::Turn),
        AnglePolicy::Monotone => Some(KinkKind::MonotoneJoin),
        AnglePolicy::Clamp { .. } | AnglePolicy::Threshold { .. } | AnglePolicy::EasyMargin => None,
    };
    if let Some(kind) = join {
        let mut n = 1.0;
        loop {
            let theta = (n * PI - p.m2) / p.m1;
            if theta >= PI {
                break;
            }
            if theta > 0.0 {
                push(theta.cos(), kind);
            }
            n += 1.0;
        }
    }

    if let Some((lo, hi)) = profile.factor_clip {
        let g = |theta: f64| margin::eval_with(theta.cos(), p, profile, &k).factor_unclipped;
        for c in crossings(|t| g(t) - hi) {
            push(c, KinkKind::FactorClipHigh);
        }
        for c in crossings(|t| g(t) - lo) {
            push(c, KinkKind::FactorClipLow);
        }
    }

    out.sort_by(|a, b| a.c.total_cmp(&b.c));
    out
}

/// The c = cos θ where g(θ) changes sign (g: the unclipped factor or output minus a level),
/// found by a scan uniform in θ (which
/// resolves the region near c = ±1 that a scan uniform in c would miss) and bisection.
fn crossings(g: impl Fn(f64) -> f64) -> Vec<f64> {
    const STEPS: usize = 4096;
    let mut roots = Vec::new();
    let mut t0 = 0.0;
    let mut g0 = g(t0);
    for i in 1..=STEPS {
        let t1 = PI * i as f64 / STEPS as f64;
        let g1 = g(t1);
        // A crossing must be a sign change between finite values; the exact level (g = 0
        // on a flat clamped region touching level 0) is not a crossing.
        if g0.is_finite() && g1.is_finite() && (g0 < 0.0) != (g1 < 0.0) && g0 != 0.0 && g1 != 0.0 {
            let (mut a, mut b, ga) = (t0, t1, g0);
            for _ in 0..200 {
                let m = 0.5 * (a + b);
                if m <= a || m >= b {
                    break;
                }
                if (g(m) < 0.0) == (ga < 0.0) {
                    a = m;
                } else {
                    b = m;
                }
            }
            roots.push((0.5 * (a + b)).cos());
        } else if g0.is_infinite() != g1.is_infinite() && g1.is_finite() && g1 < 0.0 && g0 > 0.0 {
            roots.push(t1.cos());
        }
        t0 = t1;
        g0 = g1;
    }
    roots
}

/// The kink nearest to `c`, with its distance.
pub fn nearest(c: f64, kinks: &[Kink]) -> Option<(Kink, f64)> {
    kinks
        .iter()
        .map(|k| (*k, (c - k.c).abs()))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// A human label for where `c` sits: "outside [-1, 1]", "at <kink>", "near <kink> (dc = …)"
/// within `radius`, or "interior".
pub fn region(c: f64, kinks: &[Kink], radius: f64) -> String {
    if c.abs() > 1.0 {
        return format!("outside [-1, 1] (|c| - 1 = {:.1e})", c.abs() - 1.0);
    }
    match nearest(c, kinks) {
        Some((k, d)) if d <= radius => {
            if d == 0.0 {
                format!("at {}", k.kind.name())
            } else {
                format!("near {} (dc = {:+.1e})", k.kind.name(), c - k.c)
            }
        }
        _ => "interior".to_string(),
    }
}

/// The kink table of SPEC.md §4: one row per (configuration, profile), one column per kind
/// of kink, positions in cos-space (5 decimals; "-" where the profile has none). Markdown.
pub fn table(profiles: &[Profile], configs: &[(f64, f64, f64)], dtype: Dtype) -> String {
    type Col = (&'static str, &'static [KinkKind]);
    const COLS: [Col; 7] = [
        (
            "domain clamp",
            &[KinkKind::DomainClampLow, KinkKind::DomainClampHigh],
        ),
        (
            "angle clamp",
            &[KinkKind::AngleClampLow, KinkKind::AngleClampHigh],
        ),
        ("th/mm threshold", &[KinkKind::Threshold]),
        (
            "factor clip active beyond",
            &[KinkKind::FactorClipLow, KinkKind::FactorClipHigh],
        ),
        ("poles", &[KinkKind::PoleLow, KinkKind::PoleHigh]),
        (
            "domain ends",
            &[KinkKind::DomainEndLow, KinkKind::DomainEndHigh],
        ),
        (
            "turns / joins (phi = k*pi)",
            &[KinkKind::Turn, KinkKind::MonotoneJoin],
        ),
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for &(m1, m2, m3) in configs {
        let p = Params::new(m1, m2, m3);
        for prof in profiles {
            let ks = kinks(prof, &p, dtype);
            let mut row = vec![format!("({m1}, {m2}, {m3})"), prof.name.clone()];
            for (_, kinds) in COLS {
                let cs: Vec<String> = ks
                    .iter()
                    .filter(|k| kinds.contains(&k.kind))
                    .map(|k| format!("{:+.5}", k.c))
                    .collect();
                row.push(if cs.is_empty() {
                    "-".into()
                } else {
                    cs.join(", ")
                });
            }
            rows.push(row);
        }
    }
    let mut header = vec!["(m1, m2, m3)".to_string(), "profile".to_string()];
    header.extend(COLS.iter().map(|c| c.0.to_string()));
    let w: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            s.push_str(&format!(" {:<width$} |", c, width = w[i]));
        }
        s.push('\n');
        s
    };
    let mut out = line(&header);
    out.push_str(&line(&w.iter().map(|&n| "-".repeat(n)).collect::<Vec<_>>()));
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}
