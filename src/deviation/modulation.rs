//! Non-target modulation (SPEC.md §11.3) and A-Softmax's λ annealing (§11.4) with other
//! inputs: the detector behind [`Kind::ModulationDiffers`].

use super::{Deviation, Key, Kind};
use crate::compare::CaseReport;
use crate::fixture::LayerCase;
use crate::modulation::{Curricular, CurricularGradient, CurricularMask, InterTopK, Modulation};
use crate::verdict::family_fit;
use crate::verdict::fit::Fitted;
use std::collections::HashSet;

/// The variants tried, in order: (modulation, words).
fn variants(case: &LayerCase, r: &CaseReport) -> Vec<(Modulation, String)> {
    let m = &case.modulation;
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
            // t fitted from every hard negative (SPEC.md §11.5), tried at its value and its
            // neighbours in the dtype (the statistic is a tensor of the dtype).
            let fits = family_fit::fit_curricular_t(fit_on(case, r));
            out.extend(modulations(fitted_variants(
                case,
                fits,
                r,
                "from the hard negatives",
            )));
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
            // k and m′ fitted from the rows (SPEC.md §11.5), m′ on the fitted k's entries;
            // after the toggle, which names an inactive penalty (every row's k fits 0).
            let k = family_fit::fit_intertopk_k(fit_on(case, r));
            let k_hat = k
                .as_ref()
                .filter(|f| f.uncertainty == 0.0)
                .map(|f| f.value as usize);
            let m = family_fit::fit_intertopk_m(fit_on(case, r), k_hat);
            let m_at_k = match (k_hat, &m) {
                (Some(kh), Some(m)) if kh != x.k && m.differs() => {
                    let at = LayerCase {
                        modulation: Modulation::InterTopK(InterTopK { k: kh, ..*x }),
                        ..case.clone()
                    };
                    fitted_variants(&at, Some(m.clone()), r, "with k at its fitted value")
                        .into_iter()
                        .map(|(v, w)| (v.modulation, format!("k fits {kh} and {w}")))
                        .collect()
                }
                _ => Vec::new(),
            };
            out.extend(modulations(fitted_variants(
                case,
                k,
                r,
                "from the rows' modulated entries",
            )));
            out.extend(modulations(fitted_variants(
                case,
                m,
                r,
                "from the modulated entries",
            )));
            out.extend(m_at_k);
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

/// The λ variants tried (SPEC.md §11.4): no annealing where the case states a λ, and λ
/// fitted from the targets.
fn lambda_variants(case: &LayerCase, r: &CaseReport) -> Vec<(Option<f64>, String)> {
    let Some(stated) = case.lambda else {
        return Vec::new();
    };
    let mut out = vec![(
        None,
        format!(
            "no λ annealing: the target is ψ(θ) alone, although the case states λ = {stated:?}"
        ),
    )];
    let fit = family_fit::fit_lambda(fit_on(case, r));
    out.extend(
        fitted_variants(case, fit, r, "from the targets")
            .into_iter()
            .map(|(c, w)| (c.lambda, w)),
    );
    out
}

/// The case at each of a fitted family constant's [`family_fit::tries`], where the fit
/// differs from the stated value beyond its uncertainty: the case to compare with, and words that give the fit (`t fits 0.131 ± 3e-9, stated 0.125
/// (differs by …) from the hard negatives`). The caller keeps a variant only where it
/// explains every failing element and breaks no passing one.
fn fitted_variants(
    case: &LayerCase,
    fit: Option<Fitted>,
    r: &CaseReport,
    whence: &str,
) -> Vec<(LayerCase, String)> {
    let Some(f) = fit.filter(Fitted::differs) else {
        return Vec::new();
    };
    family_fit::tries(&f, r.dtype)
        .into_iter()
        .filter_map(|v| family_fit::with_constant(case, &f.name, v))
        .map(|c| {
            (
                c,
                format!("the fitted {}: {} {whence}", f.name, f.describe()),
            )
        })
        .collect()
}

/// The modulations of [`fitted_variants`]' cases.
fn modulations(v: Vec<(LayerCase, String)>) -> impl Iterator<Item = (Modulation, String)> {
    v.into_iter().map(|(c, w)| (c.modulation, w))
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
    let modulations = variants(case, r).into_iter().map(|(m, words)| {
        (
            LayerCase {
                modulation: m,
                ..case.clone()
            },
            words,
        )
    });
    let lambdas = lambda_variants(case, r).into_iter().map(|(lambda, words)| {
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

/// The family fits on one case, under the profile and scale it is compared at.
fn fit_on<'a>(case: &'a LayerCase, r: &'a CaseReport) -> family_fit::FitOn<'a> {
    family_fit::FitOn {
        cases: std::slice::from_ref(case),
        profile: &r.profile,
        dtype: r.dtype,
        s: Some(r.params.s),
    }
}
