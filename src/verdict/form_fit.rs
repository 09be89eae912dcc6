//! Closed-form fits of the continuous constants of a form, from the target entries.
//!
//! A form's constant that real code chooses freely (the fallback offset κ, the sine guard's ε,
//! the output clip bound b) is not listed: [`crate::space`] seeds it, and [`refine`] replaces
//! the seed by the value the implementation's outputs imply, so the `--profile auto` search
//! scores the form at the implementation's own constant. Each estimate inverts the form at
//! every target entry where the constant acts, and takes the median (robust to the entries
//! where another policy decides); its uncertainty is the spread of the middle half.
//!
//! - κ (fallback `c̃ − κ`): on the fallback branch, κ = c̃ − out.
//! - ε (`sqrt(1 − c² + ε)`): on the margin branch, sinθ = (c̃·cos m2 − out − m3) / sin m2, and
//!   ε = sinθ² − (1 − c̃²); the entries nearest |c̃| = 1 (sinθ within 4× the smallest, at least
//!   five) determine it, as the error of ε is 2·sinθ·δsinθ.
//! - b (clip to [−b, b]): the |out| of the entries whose unclipped reference exceeds it.

use crate::compare;
use crate::dtype::Dtype;
use crate::fixture::LayerCase;
use crate::layer::{self, Row};
use crate::margin::{self, Branch};
use crate::profile::{AnglePolicy, EvalForm, Fallback, Profile, SineGuard};

/// One fitted constant: its value and the half-width of the middle half of the estimates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fitted {
    pub value: f64,
    pub uncertainty: f64,
    /// How many target entries determined it.
    pub support: usize,
}

impl Fitted {
    /// The value to state: the shortest decimal within the uncertainty (a constant written
    /// `1e-6` in the source is stated as 1e-6, not as the median of its estimates, whose
    /// error the gradient near |c| = 1 magnifies by 1/ε).
    pub fn stated(&self) -> f64 {
        crate::verdict::fit::shortest_within(self.value, self.uncertainty)
    }
}

/// The median and the half interquartile range of finite estimates; `None` if there are none.
pub fn robust_center(mut xs: Vec<f64>) -> Option<Fitted> {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let q = |f: f64| xs[((xs.len() - 1) as f64 * f).round() as usize];
    Some(Fitted {
        value: q(0.5),
        uncertainty: 0.5 * (q(0.75) - q(0.25)),
        support: xs.len(),
    })
}

/// (c, unscaled output, case parameters) of every target entry with a forward output.
fn targets(cases: &[LayerCase], profile: &Profile) -> Vec<(f64, f64, crate::params::Params)> {
    let mut out = Vec::new();
    for case in cases {
        let Some(fw) = &case.forward else { continue };
        let Ok(rows) = layer::rows(case.n, case.c, &case.labels, profile) else {
            continue;
        };
        let p = compare::output_params(case);
        for (row, r) in rows.iter().enumerate() {
            if let Row::Target(col) = *r {
                let k = row * case.c + col;
                out.push((case.cos[k], fw[k] / p.s, p));
            }
        }
    }
    out
}

/// The fallback offset κ implied by the fallback-branch targets.
pub fn fit_kappa(cases: &[LayerCase], profile: &Profile, dtype: Dtype) -> Option<Fitted> {
    let est = targets(cases, profile)
        .into_iter()
        .filter_map(|(c, y, p)| {
            let e = margin::eval(c, &p, profile, dtype);
            let base = if profile.round_trip.fallback {
                e.c_eff.acos().cos()
            } else {
                e.c_eff
            };
            (e.branch == Branch::Fallback).then_some(base - y)
        })
        .collect();
    robust_center(est)
}

/// The sine guard's ε implied by the margin-branch targets nearest |c| = 1: those whose
/// sinθ is at most 4× the smallest (at least 5 of them), as δε = 2·sinθ·δsinθ.
pub fn fit_sine_eps(cases: &[LayerCase], profile: &Profile, dtype: Dtype) -> Option<Fitted> {
    let mut est: Vec<(f64, f64)> = targets(cases, profile)
        .into_iter()
        .filter_map(|(c, y, p)| {
            let p = profile.params.apply(&p);
            let e = margin::eval(c, &p, profile, dtype);
            let (cos_m, sin_m) = (p.m2.cos(), p.m2.sin());
            if e.branch != Branch::Margin || p.m1 != 1.0 || sin_m.abs() < 1e-3 {
                return None;
            }
            let s = (e.c_eff * cos_m - y - p.m3) / sin_m;
            let x = (1.0 - e.c_eff) * (1.0 + e.c_eff);
            (s.is_finite() && s >= 0.0).then_some((s, s * s - x))
        })
        .collect();
    est.sort_by(|a, b| a.0.total_cmp(&b.0));
    let s_min = est.first()?.0;
    let near = est.iter().filter(|e| e.0 <= 4.0 * s_min).count();
    let keep = near.max(5).min(est.len());
    robust_center(est[..keep].iter().map(|e| e.1).collect())
}

/// The output clip bound b implied by the targets whose unclipped reference exceeds |out|.
pub fn fit_clip(cases: &[LayerCase], profile: &Profile, dtype: Dtype) -> Option<Fitted> {
    let bare = Profile {
        output_clip: None,
        ..profile.clone()
    };
    let est = targets(cases, &bare)
        .into_iter()
        .filter_map(|(c, y, p)| {
            let u = margin::eval(c, &p, &bare, dtype).out;
            let tol = 1e-4 * u.abs().max(1.0);
            (u.abs() > y.abs() + tol).then_some(y.abs())
        })
        .collect();
    robust_center(est)
}

/// `profile` with each continuous constant of its forms replaced by its fit (the seed stays
/// where no target entry determines it).
pub fn refine(profile: &Profile, cases: &[LayerCase], dtype: Dtype) -> Profile {
    let mut out = profile.clone();
    if let AnglePolicy::Threshold {
        test,
        fallback: Fallback::Offset { .. },
    } = profile.angle
    {
        if let Some(f) = fit_kappa(cases, profile, dtype) {
            out.angle = AnglePolicy::Threshold {
                test,
                fallback: Fallback::Offset { kappa: f.stated() },
            };
        }
    }
    if let EvalForm::TrigIdentity {
        guard: SineGuard::Epsilon { .. },
        whole_matrix,
    } = profile.eval
    {
        if let Some(f) = fit_sine_eps(cases, profile, dtype) {
            if f.value > 0.0 {
                out.eval = EvalForm::TrigIdentity {
                    guard: SineGuard::Epsilon { eps: f.stated() },
                    whole_matrix,
                };
            }
        }
    }
    if profile.output_clip.is_some() {
        // No clipped entry: a bound above every output, so the clip never acts.
        let b = fit_clip(cases, profile, dtype)
            .map(|f| f.stated())
            .unwrap_or_else(|| {
                let bare = Profile {
                    output_clip: None,
                    ..profile.clone()
                };
                targets(cases, &bare)
                    .into_iter()
                    .map(|(c, _, p)| margin::eval(c, &p, &bare, dtype).out.abs())
                    .fold(crate::space::OUTPUT_CLIP_SEED, f64::max)
                    * 2.0
            });
        out.output_clip = Some(b);
    }
    out
}
