//! Fitting a margin family's own constants (SPEC.md §11.5): CurricularFace's t, inter-top-k's
//! k and m′, A-Softmax's λ. Like the stated parameters of [`super::fit`], each is a claim the
//! case records and the outputs can contradict; each is estimated in closed form per element
//! (per row for k) and summarised by [`fit::robust`] (the median, with a 3σ uncertainty from
//! the spread and from each estimate's rounding), so it reads as `t fits 0.13125 ± 3e-9,
//! stated 0.125 (differs by …)`.
//!
//! Closed forms, each on the entries the constant governs, unscaled (y = out / s, d = the
//! backward over s·g with g the upstream gradient times the non-target treatment's factor):
//!
//! ```text
//! t    hard negatives (c̃ > τ; the mask does not involve t)
//!        forward  y = c̃·(t + c̃)          ⇒ t = y / c̃ − c̃        (c̃ ≠ 0)
//!        backward d = t + 2c̃              ⇒ t = d − 2c̃           (only without a forward)
//! k    per row: how many of the row's non-targets, in decreasing c̃, are out of budget of
//!      their unmodulated value (forward, else backward); they must be the row's leading
//!      ones, and a row whose every
//!      non-target is modulated bounds k only from below (left out)
//! m′   the k̂ leading non-targets (k̂ the fitted k)
//!        forward  y = cos(θ − m′), θ = acos c̃      ⇒ m′ = θ − acos y   (|c̃|, |y| ≤ 0.999)
//!        backward d = sin(θ − m′) / sin θ          ⇒ m′ = θ − asin(d·sin θ), the branch
//!                                                    nearer θ (only without a forward)
//! λ    target entries, ψ the profile's margin at c, c̃ the clamped input
//!        forward  y = (λ·c̃ + ψ)/(1 + λ)   ⇒ λ = (ψ − y)/(y − c̃)      (|y − c̃| ≥ 1e-3)
//!        backward d = (λ·[c̃ not clamped] + ψ′)/(1 + λ) ⇒ λ = (ψ′ − d)/(d − 1)
//! ```
//!
//! A fitted value is only a candidate: [`super::super::deviation`] names it
//! (`modulation-differs`) only where the case at that value has every element within budget,
//! and [`family_resolves`] says the same for the search's table. A wrong fit is never used.

use super::fit::{self, Fitted};
use crate::compare::{self, Reference};
use crate::dtype::Dtype;
use crate::fixture::LayerCase;
use crate::layer::{self, Row};
use crate::modulation::{CurricularGradient, InterTopK, Modulation, Treatment};
use crate::profile::Profile;

/// What a family constant is fitted on: the cases (one parameter group), the profile they
/// are checked under, the implementation's dtype, and the output scale where one was fitted
/// (`None`: each case's own).
#[derive(Clone, Copy)]
pub struct FitOn<'a> {
    pub cases: &'a [LayerCase],
    pub profile: &'a Profile,
    pub dtype: Dtype,
    pub s: Option<f64>,
}

/// Names of the family constants, as reports print them.
pub const T: &str = "t";
pub const K: &str = "k";
pub const M_PRIME: &str = "m′";
pub const LAMBDA: &str = "λ";

/// Each target row of each case: `visit(case, reference, row, target column)` with the
/// reference at the row's own parameters (per-row margins), the output scale `s` where given
/// (a fitted one) else the case's, and the case's λ.
fn each_target_row(on: FitOn, mut visit: impl FnMut(&LayerCase, &Reference, usize, usize)) {
    let FitOn {
        cases,
        profile,
        dtype,
        s,
    } = on;
    for case in cases {
        let mut p = compare::output_params(case);
        if let Some(s) = s {
            p.s = s;
        }
        let Ok(rows) = layer::rows(case.n, case.c, &case.labels, profile) else {
            continue;
        };
        let shared = Reference::for_case(profile, &p, dtype, case);
        for (row, r) in rows.iter().enumerate() {
            let Row::Target(t) = *r else { continue };
            if case.row_params.is_some() {
                let q = case.params_for_row(row, &p);
                visit(case, &Reference::for_case(profile, &q, dtype, case), row, t);
            } else {
                visit(case, &shared, row, t);
            }
        }
    }
}

/// The row's inputs.
fn row_of(case: &LayerCase, row: usize) -> &[f64] {
    &case.cos[row * case.c..(row + 1) * case.c]
}

fn top(case: &LayerCase, k: usize) -> f64 {
    case.top_diff.as_ref().map_or(1.0, |t| t[k])
}

/// How many of the best-known estimates [`summarise`] keeps at least.
const BEST_KNOWN: usize = 5;

/// The fitted value from per-element estimates (value, rounding σ), with the stated one;
/// held in the dtype, it is known to no better than half its ulp there. The estimates' σ
/// spans decades (t from c̃ = 1e-3 is known 100 times better than from c̃ = 0.1), and the
/// median of all of them is as noisy as the worst: only those within 4× of the best σ are
/// summarised (at least [`BEST_KNOWN`] of them).
fn summarise(
    name: &str,
    mut est: Vec<(f64, f64)>,
    stated: Option<f64>,
    dtype: Dtype,
) -> Option<Fitted> {
    est.retain(|(v, s)| v.is_finite() && s.is_finite());
    est.sort_by(|a, b| a.1.total_cmp(&b.1));
    let best = est.first()?.1;
    let keep = est
        .iter()
        .take_while(|e| e.1 <= 4.0 * best)
        .count()
        .max(BEST_KNOWN);
    est.truncate(keep);
    let (v, unc) = fit::robust(&mut est)?;
    Some(Fitted {
        name: name.into(),
        value: v,
        uncertainty: unc.max(0.5 * dtype.ulp(v)),
        stated,
        samples: est.len(),
        resolved: true,
    })
}

/// A constant fitted per element: `visit(case, reference, row, target, estimates)` pushes
/// each usable entry's (estimate, rounding σ) of the row and returns the value the case
/// states (`None` where the case does not record the constant); then [`summarise`].
fn fit_per_entry(
    on: FitOn,
    name: &str,
    mut visit: impl FnMut(&LayerCase, &Reference, usize, usize, &mut Vec<(f64, f64)>) -> Option<f64>,
) -> Option<Fitted> {
    let mut est = Vec::new();
    let mut stated = None;
    each_target_row(on, |case, reference, row, target| {
        if let Some(v) = visit(case, reference, row, target, &mut est) {
            stated = Some(v);
        }
    });
    summarise(name, est, stated, on.dtype)
}

/// CurricularFace's t from the hard negatives of `cases` (those recording the modulation),
/// forward where recorded, else backward (module doc). `None` where no case records it or no
/// hard negative is usable.
pub fn fit_curricular_t(on: FitOn) -> Option<Fitted> {
    let u = on.dtype.unit_roundoff();
    fit_per_entry(on, T, |case, reference, row, target, est| {
        let Modulation::Curricular(cv) = case.modulation else {
            return None;
        };
        let stated = Some(cv.t);
        let Some(plan) =
            reference.row_plan(&case.modulation, Row::Target(target), row_of(case, row))
        else {
            return stated;
        };
        let sc = reference.params.s;
        for (col, tr) in plan.iter().enumerate() {
            if *tr != Treatment::Modulated {
                continue;
            }
            let k = row * case.c + col;
            let (ct, f) = reference.non_target_input(case.cos[k]);
            if let Some(fw) = &case.forward {
                let y = fw[k] / sc;
                // y/c̃ carries the relative rounding of y whatever |c̃|: any c̃ ≠ 0 will do.
                if ct.abs() >= 1e-30 && y.is_finite() {
                    let t = y / ct - ct;
                    est.push((t, 4.0 * u * ((y / ct).abs() + t.abs() + ct.abs())));
                }
            } else if let Some(bw) = &case.backward {
                let g = top(case, k) * f;
                if g.abs() >= 1e-6 && bw[k].is_finite() {
                    let d = bw[k] / (sc * g);
                    let t = match cv.gradient {
                        CurricularGradient::Full => d - 2.0 * ct,
                        CurricularGradient::OneFactor => d - ct,
                    };
                    est.push((t, 4.0 * u * (d.abs() + 2.0 * ct.abs())));
                }
            }
        }
        stated
    })
}

/// Inter-top-k's k: per row, how many leading non-targets the outputs modulate (module doc).
/// The uncertainty is the largest distance of a row's count from the median (0 where every
/// informative row agrees). `None` where no case records an active penalty, no row is
/// informative, or some row's modulated entries are not its leading ones.
pub fn fit_intertopk_k(on: FitOn) -> Option<Fitted> {
    let mut counts: Vec<f64> = Vec::new();
    let mut stated = None;
    let mut consistent = true;
    each_target_row(on, |case, reference, row, target| {
        let Modulation::InterTopK(x) = case.modulation else {
            return;
        };
        if !x.active {
            return;
        }
        stated = Some(x.k as f64);
        // Forward where recorded, else the backward (a modulated entry's factor differs
        // from the unmodulated one's as its value does).
        let (actual, forward) = match (&case.forward, &case.backward) {
            (Some(f), _) => (f, true),
            (None, Some(b)) => (b, false),
            (None, None) => return,
        };
        let cos = row_of(case, row);
        let c_nt: Vec<f64> = cos
            .iter()
            .map(|&c| reference.non_target_input(c).0)
            .collect();
        let mut order: Vec<usize> = (0..case.c).filter(|&j| j != target).collect();
        order.sort_by(|&a, &b| c_nt[b].total_cmp(&c_nt[a]));
        let moved: Vec<bool> = order
            .iter()
            .map(|&j| {
                let k = row * case.c + j;
                let (f, b, bud) = reference.non_target(cos[j], top(case, k));
                let (want, budget) = if forward {
                    (f, bud.forward)
                } else {
                    (b, bud.backward)
                };
                crate::tolerance::error_fraction(actual[k], want, budget) > 1.0
            })
            .collect();
        let n = moved.iter().filter(|&&m| m).count();
        if n == moved.len() && n > 0 {
            return; // every non-target modulated: k ≥ n only
        }
        // The modulated ones must lead (ties within the mask band aside, which are rare).
        if moved.iter().take(n).any(|&m| !m) {
            consistent = false;
        }
        counts.push(n as f64);
    });
    if !consistent || counts.is_empty() {
        return None;
    }
    counts.sort_by(f64::total_cmp);
    let med = counts[counts.len() / 2];
    let spread = counts.iter().map(|c| (c - med).abs()).fold(0.0, f64::max);
    Some(Fitted {
        name: K.into(),
        value: med,
        uncertainty: spread,
        stated,
        samples: counts.len(),
        resolved: true,
    })
}

/// Inter-top-k's m′ from the `k` leading non-targets of each row (`k` = the fitted k where
/// there is one, else the case's), forward where recorded, else backward (module doc).
pub fn fit_intertopk_m(on: FitOn, k: Option<usize>) -> Option<Fitted> {
    let u = on.dtype.unit_roundoff();
    fit_per_entry(on, M_PRIME, |case, reference, row, target, est| {
        let Modulation::InterTopK(x) = case.modulation else {
            return None;
        };
        if !x.active {
            return None;
        }
        let stated = Some(x.m);
        let m = Modulation::InterTopK(InterTopK {
            k: k.unwrap_or(x.k),
            ..x
        });
        let Some(plan) = reference.row_plan(&m, Row::Target(target), row_of(case, row)) else {
            return stated;
        };
        let sc = reference.params.s;
        for (col, tr) in plan.iter().enumerate() {
            if *tr != Treatment::Modulated {
                continue;
            }
            let i = row * case.c + col;
            let (ct, f) = reference.non_target_input(case.cos[i]);
            if ct.abs() > 0.999 {
                continue;
            }
            let theta = ct.acos();
            let sin_t = (1.0 - ct * ct).sqrt();
            if let Some(fw) = &case.forward {
                let y = fw[i] / sc;
                if y.is_finite() && y.abs() <= 0.999 {
                    let sigma = 4.0 * u * (1.0 / sin_t + 1.0 / (1.0 - y * y).sqrt());
                    est.push((theta - y.acos(), sigma));
                }
            } else if let Some(bw) = &case.backward {
                let g = top(case, i) * f;
                if g.abs() < 1e-6 || !bw[i].is_finite() {
                    continue;
                }
                let z = bw[i] / (sc * g) * sin_t;
                if z.abs() > 0.999 {
                    continue;
                }
                let a = z.asin();
                let phi = if (theta - a).abs() <= (theta - (std::f64::consts::PI - a)).abs() {
                    a
                } else {
                    std::f64::consts::PI - a
                };
                let sigma = 4.0 * u * (z.abs() + 1.0) / (1.0 - z * z).sqrt();
                est.push((theta - phi, sigma));
            }
        }
        stated
    })
}

/// A-Softmax's λ from the target entries of `cases` that state one, forward where recorded,
/// else backward (module doc).
pub fn fit_lambda(on: FitOn) -> Option<Fitted> {
    let u = on.dtype.unit_roundoff();
    fit_per_entry(on, LAMBDA, |case, reference, row, target, est| {
        let l0 = case.lambda?;
        let stated = Some(l0);
        let plain = reference.clone().with_lambda(None);
        let i = row * case.c + target;
        let g = top(case, i);
        let tr = plain.target(case.cos[i], g);
        let sc = plain.params.s;
        let ct = tr.entry.c_eff;
        if let Some(fw) = &case.forward {
            let (y, psi) = (fw[i] / sc, tr.forward / sc);
            let gap = y - ct;
            if gap.abs() >= 1e-3 && y.is_finite() {
                let l = (psi - y) / gap;
                let err = 4.0 * u * (y.abs() + ct.abs()) + tr.budget.forward / sc;
                est.push((l, (1.0 + l.abs()) * err / gap.abs()));
            }
        } else if let Some(bw) = &case.backward {
            if g.abs() < 1e-6 || tr.entry.domain_clamped {
                return stated;
            }
            let (d, dpsi) = (bw[i] / (sc * g), tr.backward / (sc * g));
            let gap = d - 1.0;
            if gap.abs() >= 1e-3 && d.is_finite() {
                let l = (dpsi - d) / gap;
                let err = 4.0 * u * (d.abs() + 1.0) + tr.budget.backward / (sc * g).abs();
                est.push((l, (1.0 + l.abs()) * err / gap.abs()));
            }
        }
        stated
    })
}

/// Every family constant the cases record, fitted: t; k, then m′ on the fitted k's entries;
/// λ. Empty for plain cases.
pub fn fit_family(on: FitOn) -> Vec<Fitted> {
    let mut out = Vec::new();
    out.extend(fit_curricular_t(on));
    let k = fit_intertopk_k(on);
    let k_hat = k
        .as_ref()
        .filter(|f| f.uncertainty == 0.0)
        .map(|f| f.value as usize);
    out.extend(k);
    out.extend(fit_intertopk_m(on, k_hat));
    out.extend(fit_lambda(on));
    out
}

/// `case` with the family constant `name` set to `v` (the value a variant is checked at);
/// `None` where the case does not record that constant.
pub fn with_constant(case: &LayerCase, name: &str, v: f64) -> Option<LayerCase> {
    let modulation = match (name, case.modulation) {
        (T, Modulation::Curricular(cv)) => {
            Modulation::Curricular(crate::modulation::Curricular { t: v, ..cv })
        }
        (K, Modulation::InterTopK(x)) if v >= 0.0 && v.fract() == 0.0 => {
            Modulation::InterTopK(InterTopK { k: v as usize, ..x })
        }
        (M_PRIME, Modulation::InterTopK(x)) => Modulation::InterTopK(InterTopK { m: v, ..x }),
        (LAMBDA, _) if case.lambda.is_some() && v >= 0.0 => {
            return Some(LayerCase {
                lambda: Some(v),
                ..case.clone()
            })
        }
        _ => return None,
    };
    Some(LayerCase {
        modulation,
        ..case.clone()
    })
}

/// How many ulps of the dtype on each side of a fitted constant [`tries`] reaches.
pub const TRY_ULPS: usize = 16;

/// The values a fitted constant is tried at, nearest first: the fit itself, then (for a
/// continuous constant held in the dtype, as a running statistic or a tensor-side factor
/// is) its rounding to the dtype and that value's neighbours up to [`TRY_ULPS`] ulp away
/// (the fit is known to a few ulps of the dtype: its best-known estimates come from
/// outputs rounded there).
pub fn tries(f: &Fitted, dtype: Dtype) -> Vec<f64> {
    if f.name == K {
        return vec![f.value];
    }
    let r = dtype.round(f.value);
    let mut out = vec![f.value, r];
    let (mut up, mut down) = (r, r);
    for _ in 0..TRY_ULPS {
        up = crate::catalogue::next_float(up, dtype, 1);
        down = crate::catalogue::next_float(down, dtype, -1);
        out.extend([up, down]);
    }
    out.dedup();
    out
}

/// Whether the fitted constant `f` resolves the cases: some element is out of budget as
/// stated, and at one of its [`tries`] every element of every case is within budget. The
/// value found, or `None`.
pub fn family_resolves(
    cases: &[LayerCase],
    profile: &Profile,
    dtype: Dtype,
    f: &Fitted,
) -> Option<f64> {
    let passes = |cs: &[LayerCase]| {
        cs.iter()
            .all(|c| compare::compare(c, profile, dtype).is_ok_and(|r| r.passed()))
    };
    if !f.differs() || passes(cases) {
        return None;
    }
    tries(f, dtype).into_iter().find(|&v| {
        // A case of the group that does not record the constant stays as it is.
        let moved: Vec<LayerCase> = cases
            .iter()
            .map(|c| with_constant(c, &f.name, v).unwrap_or_else(|| c.clone()))
            .collect();
        passes(&moved)
    })
}

/// What the rows' margins say about the law that produced them ([`adaface_law`]).
#[derive(Clone, Debug)]
pub struct RowLaw {
    /// The law's constants fitted from the rows, each with the stated value.
    pub fits: Vec<Fitted>,
    /// Rows the law cannot produce.
    pub outside: Vec<usize>,
}

/// Per-row margins that follow AdaFace's law (SPEC.md §11.7; mk-minchul/AdaFace@c60eaa7
/// `head.py`, Kim et al. 2022 eq. 10–12): with ẑᵢ ∈ [−1, 1] the row's margin scaler,
/// `g_angle = −m·ẑ` (params.m2) and `g_add = m + m·ẑ` (params.m3), so
///
/// ```text
/// m  = m2ᵢ + m3ᵢ                       on every row (m1ᵢ = 1)
/// ẑᵢ = −m2ᵢ / m̂                        must lie in [−1, 1]
/// h  = ẑᵢ·(σ + ε) / (‖x‖ᵢ′ − μ)         ‖x‖ᵢ′ = clip(‖x‖ᵢ, 0.001, 100), on the rows the clip
///                                      of ẑ to [−1, 1] does not bind (|ẑ| < 1 − 1e-4) and
///                                      |‖x‖′ − μ| ≥ 1e-3·(σ + ε)
/// ```
///
/// μ, σ are the batch statistics the forward used (`batch_mean_after`, `batch_std_after`:
/// updated before use), ε = `params.eps`; h is fitted only where the case records `norms`
/// and those three. The stated m and h are `params.m`, `params.h`. `Ok(None)` where the case
/// has no per-row margins or does not state AdaFace's `params.m`; a recorded field of the
/// wrong shape is bad input naming it. [`RowLaw::outside`] lists the rows whose ẑ lies
/// outside [−1, 1] beyond the fit's uncertainty (the law cannot produce them).
pub fn adaface_law(
    raw: &crate::fixture::RawCase,
    case: &LayerCase,
    dtype: Dtype,
) -> Result<Option<RowLaw>, crate::fixture::FixtureError> {
    let Some(rows) = &case.row_params else {
        return Ok(None);
    };
    let hyper = |k: &str| -> Result<Option<f64>, crate::fixture::FixtureError> {
        match raw.obj.get("params").and_then(|p| p.get(k)) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                crate::fixture::FixtureError::new(
                    &raw.file,
                    format!("expected a number, found {v}"),
                )
                .in_case(&raw.name)
                .in_field(&format!("params.{k}"))
            }),
        }
    };
    let Some(m_stated) = hyper("m")? else {
        return Ok(None);
    };
    let u = dtype.unit_roundoff();
    // m from every row: the two roundings of g_angle and g_add (½ ulp each, one ulp taken).
    let est: Vec<(f64, f64)> = rows
        .iter()
        .map(|p| {
            (
                p.m2 + p.m3,
                dtype.ulp(p.m2) + dtype.ulp(p.m3) + 2.0 * u * p.m3.abs(),
            )
        })
        .collect();
    let Some(m) = summarise("m", est, Some(m_stated), dtype) else {
        return Ok(None);
    };
    let z: Vec<f64> = rows.iter().map(|p| -p.m2 / m.value).collect();
    let slack = (m.uncertainty / m.value.abs()).max(4.0 * u);
    let outside: Vec<usize> = (0..z.len())
        .filter(|&i| z[i].abs() > 1.0 + slack || rows[i].m1 != 1.0)
        .collect();
    let mut out = vec![m.clone()];
    let n = case.n;
    let stats = (
        raw.f64s_opt("norms", n, Dtype::F64)?,
        raw.f64s_opt("batch_mean_after", 1, Dtype::F64)?,
        raw.f64s_opt("batch_std_after", 1, Dtype::F64)?,
        hyper("eps")?,
    );
    if let (Some(norms), Some(mu), Some(sd), Some(eps)) = stats {
        let (mu, den) = (mu[0], sd[0] + eps);
        let mut est = Vec::new();
        for (i, &zi) in z.iter().enumerate() {
            let x = norms[i].clamp(0.001, 100.0) - mu;
            if zi.abs() >= 1.0 - 1e-4 || x.abs() < 1e-3 * den.abs() {
                continue;
            }
            let h = zi * den / x;
            // ẑ's rounding (m2's ulp over m) and the statistics' rounding in the dtype.
            let dz = dtype.ulp(rows[i].m2) / m.value.abs() + zi.abs() * slack;
            let sigma = (dz * den.abs()
                + zi.abs() * 4.0 * u * (den.abs() + norms[i].abs() + mu.abs()))
                / x.abs();
            est.push((h, sigma));
        }
        out.extend(summarise("h", est, hyper("h")?, dtype));
    }
    Ok(Some(RowLaw { fits: out, outside }))
}

/// Every family constant the `cases` claim, fitted for the table of the point found (SPEC.md
/// §11.5), each resolved only where the cases at the fitted value have every element within
/// budget and as stated do not ([`family_resolves`]). They are claims of each case
/// (CurricularFace's t is a running statistic): cases that state different ones are fitted
/// apart, each fit named with its case (`t (<case>)`).
pub fn fit_claims(
    cases: &[LayerCase],
    profile: &Profile,
    dtype: Dtype,
    s: Option<f64>,
) -> Vec<Fitted> {
    // A plain head claims none (and its cases, which may be large, are not copied).
    if cases
        .iter()
        .all(|c| c.modulation == Modulation::None && c.lambda.is_none())
    {
        return Vec::new();
    }
    let mut claims: Vec<(String, Vec<LayerCase>)> = Vec::new();
    for case in cases {
        let key = format!("{:?} {:?}", case.modulation, case.lambda);
        match claims.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(case.clone()),
            None => claims.push((key, vec![case.clone()])),
        }
    }
    let apart = claims.len() > 1;
    let mut out = Vec::new();
    for (_, group) in &claims {
        let on = FitOn {
            cases: group,
            profile,
            dtype,
            s,
        };
        for mut f in fit_family(on) {
            f.resolved = family_resolves(group, profile, dtype, &f).is_some();
            if apart {
                f.name = format!("{} ({})", f.name, group[0].name);
            }
            out.push(f);
        }
    }
    out
}
