//! Non-target modulation (SPEC.md §11.3) and A-Softmax's λ annealing (§11.4) with other
//! inputs: the detector behind [`Kind::ModulationDiffers`].

use super::{key, Deviation, Key, Kind};
use crate::compare::{self, CaseReport, Role, Side};
use crate::fixture::LayerCase;
use crate::modulation::{Curricular, CurricularGradient, CurricularMask, InterTopK, Modulation};
use std::collections::HashSet;

/// CurricularFace's t fitted from the out-of-budget forward non-targets: each modulated
/// entry gives t = out/c − c (unscaled), known to about ulp(out)/|c| + ulp(t + c); the
/// entry that knows it best.
fn fitted_t(r: &CaseReport, remaining: &HashSet<Key>) -> Option<f64> {
    let s = r.params.s;
    r.elements
        .iter()
        .filter(|e| e.side == Side::Forward && e.role == Role::PassThrough)
        .filter(|e| remaining.contains(&key(e, r.c)) && e.input != 0.0)
        .filter_map(|e| {
            let out = e.actual / s;
            let t = out / e.input - e.input;
            let err = r.dtype.ulp(out) / e.input.abs() + r.dtype.ulp(t + e.input);
            (t.is_finite() && err.is_finite()).then_some((err, t))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, t)| t)
}

/// The variants tried, in order: (modulation, words).
fn variants(m: &Modulation, r: &CaseReport, remaining: &HashSet<Key>) -> Vec<(Modulation, String)> {
    let mut out = Vec::new();
    match m {
        Modulation::None => {}
        Modulation::Curricular(cv) => {
            if let Some(b) = cv.t_other {
                out.push((
                    Modulation::Curricular(Curricular { t: b, ..*cv }),
                    format!(
                        "t = {b:?}, the other recorded value (t_before_forward), not {:?}: the running statistic was used before its update",
                        cv.t
                    ),
                ));
            }
            let other_mask = match cv.mask {
                CurricularMask::MarginBranch => CurricularMask::AfterFallback,
                CurricularMask::AfterFallback => CurricularMask::MarginBranch,
            };
            out.push((
                Modulation::Curricular(Curricular {
                    mask: other_mask,
                    ..*cv
                }),
                match other_mask {
                    CurricularMask::AfterFallback => "hard negatives chosen against the target logit after the th/mm fallback, not cos(m1·θ + m2) − m3".into(),
                    CurricularMask::MarginBranch => "hard negatives chosen against cos(m1·θ + m2) − m3, not the target logit after the fallback".into(),
                },
            ));
            let other_gradient = match cv.gradient {
                CurricularGradient::Full => CurricularGradient::OneFactor,
                CurricularGradient::OneFactor => CurricularGradient::Full,
            };
            out.push((
                Modulation::Curricular(Curricular {
                    gradient: other_gradient,
                    ..*cv
                }),
                match other_gradient {
                    CurricularGradient::OneFactor => "the hard negatives' gradient t + c (one factor of c·(t + c) detached), not t + 2c".into(),
                    CurricularGradient::Full => "the hard negatives' gradient t + 2c, not t + c".into(),
                },
            ));
            // The fit recovers t to about an ulp: it and its neighbours in the dtype (the
            // statistic is a tensor of the dtype), nearest first.
            if let Some(t0) = fitted_t(r, remaining) {
                let t0 = r.dtype.round(t0);
                let mut ts = vec![t0];
                for k in 1..=3 {
                    let (mut up, mut down) = (t0, t0);
                    for _ in 0..k {
                        up = crate::catalogue::next_float(up, r.dtype, 1);
                        down = crate::catalogue::next_float(down, r.dtype, -1);
                    }
                    ts.extend([up, down]);
                }
                for t in ts {
                    out.push((
                        Modulation::Curricular(Curricular { t, ..*cv }),
                        format!("t fits {t:?} from the hard negatives, recorded {:?}", cv.t),
                    ));
                }
            }
            out.push((
                Modulation::None,
                "no modulation: the hard negatives are left as c".into(),
            ));
        }
        Modulation::InterTopK(x) => {
            out.push((
                Modulation::InterTopK(InterTopK {
                    active: !x.active,
                    ..*x
                }),
                if x.active {
                    "the penalty inactive (m′ = 0) although the case says it was active".into()
                } else {
                    format!(
                        "the penalty active (m′ = {:?}) although the case says it was not",
                        x.m
                    )
                },
            ));
            for k in [x.k.saturating_sub(1), x.k + 1] {
                if k != x.k {
                    out.push((
                        Modulation::InterTopK(InterTopK { k, ..*x }),
                        format!("k = {k} hardest non-targets penalized, not {}", x.k),
                    ));
                }
            }
            out.push((
                Modulation::None,
                "no penalty: the hardest non-targets are left as c".into(),
            ));
        }
    }
    out
}

/// A-Softmax's λ (SPEC.md §11.4) fitted from the out-of-budget forward targets: with ψ the
/// profile's margin at c, out = (λ·c̃ + ψ)/(1 + λ) gives λ = (ψ − out)/(out − c̃); the entry
/// with the largest |out − c̃| (the best conditioned).
fn fitted_lambda(case: &LayerCase, r: &CaseReport, remaining: &HashSet<Key>) -> Option<f64> {
    let plain = compare::Reference::new(&r.profile, &r.params, r.dtype);
    let s = r.params.s;
    r.elements
        .iter()
        .filter(|e| e.side == Side::Forward && e.role == Role::Target)
        .filter(|e| remaining.contains(&key(e, r.c)))
        .filter_map(|e| {
            let t = plain.target(case.cos[e.index(r.c)], 1.0);
            let (out, ct, psi) = (e.actual / s, t.entry.c_eff, t.entry.out);
            let l = (psi - out) / (out - ct);
            (l.is_finite() && l >= 0.0).then_some(((out - ct).abs(), l))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, l)| l)
}

/// The λ variants tried (SPEC.md §11.4): no annealing where the case states a λ, and λ
/// fitted from the targets.
fn lambda_variants(
    case: &LayerCase,
    r: &CaseReport,
    remaining: &HashSet<Key>,
) -> Vec<(Option<f64>, String)> {
    let Some(stated) = case.lambda else {
        return Vec::new();
    };
    let mut out = vec![(
        None,
        format!(
            "no λ annealing: the target is ψ(θ) alone, although the case states λ = {stated:?}"
        ),
    )];
    if let Some(l) = fitted_lambda(case, r, remaining) {
        out.push((
            Some(l),
            format!("λ fits {l:.4e} from the targets, stated {stated:?}"),
        ));
    }
    out
}

/// The first variant of [`variants`] under which every failing element not in `taken`
/// passes and every passing element still passes, as a deviation explaining them.
pub(super) fn modulation_differs(
    case: &LayerCase,
    r: &CaseReport,
    taken: &HashSet<Key>,
) -> Option<Deviation> {
    if case.modulation == Modulation::None && case.lambda.is_none() {
        return None;
    }
    let remaining = super::untaken_failures(r, taken);
    if remaining.is_empty() {
        return None;
    }
    let modulations = variants(&case.modulation, r, &remaining)
        .into_iter()
        .map(|(m, words)| {
            (
                LayerCase {
                    modulation: m,
                    ..case.clone()
                },
                words,
            )
        });
    let lambdas = lambda_variants(case, r, &remaining)
        .into_iter()
        .map(|(lambda, words)| {
            (
                LayerCase {
                    lambda,
                    ..case.clone()
                },
                words,
            )
        });
    let words = super::first_explaining(
        modulations.chain(lambdas),
        r,
        &remaining,
        super::Keep::Passing,
    )?;
    Some(Deviation {
        kind: Kind::ModulationDiffers,
        detail: format!(
            "the outputs follow {words} ({} out-of-budget elements fit; the case records {})",
            remaining.len(),
            match case.lambda {
                Some(l) => format!("{}, λ = {l:?}", case.modulation.describe()),
                None => case.modulation.describe(),
            }
        ),
        explains: remaining,
    })
}
