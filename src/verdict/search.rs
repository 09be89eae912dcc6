//! `--profile auto`: which point of the policy space an implementation's outputs behave like.
//!
//! The search is over the whole space of [`crate::space`], pruned: every preset is scored,
//! then from the best one a coordinate search moves along one axis at a time (every value
//! real code uses) while the fit improves. A candidate is scored on the target entries it
//! changes and on cached non-target tallies: non-target entries are evaluated once per
//! distinct non-target treatment, and the axes that change only non-targets are searched only
//! when some non-target entry is out of budget. So a candidate costs O(N) target
//! evaluations, not a full O(N·C) comparison.
//!
//! Ranking ([`crate::verdict::rank`]): a candidate that fits every element within its own
//! budget before one that does not; then the cost on one scale common to all candidates (bits
//! of disagreement on the dtype's grid) plus a description length (axes changed from the
//! preset, fitted constants that differ from the stated ones); then the tighter budget. A
//! looser budget never wins a tie. Candidates that fit as well as the best are reported as
//! indistinguishable on these inputs, each with an input (from the edge catalogue and the
//! kinks) that would tell it apart.
//!
//! Fitting ([`crate::verdict::fit`]): where no preset fits, the stated parameters are fitted
//! (s from the pass-through entries, m1, m2 or m3 in closed form from the margin-branch
//! targets) and the search runs at the fitted point; where still nothing fits, the input
//! clamp ε is fitted as a continuous constant. The point found carries its fitted constants.

use crate::catalogue::edge_cases;
use crate::compare::{self, Reference};
use crate::dtype::Dtype;
use crate::error::Result;
use crate::fixture::LayerCase;
use crate::kinks;
use crate::layer::{self, Row};
use crate::params::Params;
use crate::profile::{
    preset_names, AnglePolicy, ClampScope, EvalForm, Fallback, GradientMode, InputDomain, Profile,
    SineGuard,
};
use crate::space::{self, Axis};
use crate::tolerance;
use crate::verdict::fit::{self, Fitted, Overrides, StatedFit};
use crate::verdict::rank::{self, Cost};
use std::collections::HashMap;

/// How well one candidate profile fits the outputs.
#[derive(Clone, Debug)]
pub struct Fit {
    /// Share of elements within budget, in [0, 1].
    pub share: f64,
    /// The largest error fraction over all elements (+inf for a non-finite mismatch).
    pub worst: f64,
    pub profile: Profile,
    /// Axes on which the candidate differs from the preset it was reached from.
    pub changed: usize,
    /// Cost on the common scale ([`rank::Cost`]): residual, budget, description length.
    pub cost: Cost,
    /// Elements compared.
    pub elements: usize,
    /// Fitted stated parameters this candidate was scored at (empty: as stated).
    pub overrides: Overrides,
    /// Fitted constants of the candidate's form (e.g. the clamp ε), with uncertainties.
    pub constants: Vec<Fitted>,
}

impl Fit {
    /// Whether every element is within the candidate's own budget.
    pub fn fits_all(&self) -> bool {
        self.share == 1.0
    }
}

/// Whether a profile's name is a preset's.
fn is_preset(p: &Profile) -> bool {
    preset_names().any(|n| n == p.name)
}

/// Best first (see the module doc and [`rank::order`]).
fn order(a: &Fit, b: &Fit) -> std::cmp::Ordering {
    rank::order((a.share, &a.cost), (b.share, &b.cost))
        .then_with(|| (!is_preset(&a.profile)).cmp(&!is_preset(&b.profile)))
        .then(a.changed.cmp(&b.changed))
}

/// The non-target treatment of a profile, as a cache key: two profiles with equal keys give
/// every non-target entry the same reference and budget.
fn non_target_key(p: &Profile) -> Option<String> {
    let all = matches!(
        p.domain,
        InputDomain::Clamp {
            scope: ClampScope::AllEntries,
            ..
        }
    );
    // The whole-matrix trig identity reaches non-targets through its guard's singular points.
    let whole = p.eval_whole_matrix().then_some((p.eval, p.constants));
    if !all && !p.round_trip.non_targets && whole.is_none() {
        return None;
    }
    let grad = match p.gradient {
        GradientMode::Exact { pole, .. } => format!("exact {pole:?}"),
        GradientMode::FormulaAtClamped { .. } | GradientMode::Detached => "one".into(),
    };
    Some(format!(
        "{:?} {} {grad} {:?} {whole:?}",
        if all { Some(p.domain) } else { None },
        p.round_trip.non_targets,
        p.labels
    ))
}

/// `p` with its non-target treatment removed: non-targets pass through untouched.
fn untouched_non_targets(p: &Profile) -> Profile {
    let mut plain = p.clone();
    plain.round_trip.non_targets = false;
    match &mut plain.domain {
        InputDomain::Clamp { scope, .. } => *scope = ClampScope::Target,
        InputDomain::Raw => {}
    }
    plain
}

/// Which non-target entries a tally covers: all, those with |c| < 1, or the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Region {
    All,
    Inside,
    Outside,
}

/// A tally of (within budget, compared, worst fraction) and the common-scale bits.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    within: usize,
    total: usize,
    worst: f64,
    residual: f64,
    budget: f64,
}

impl Tally {
    /// One element: output, reference, budget, and its natural magnitude (s forward,
    /// s·|top_diff| backward).
    fn add(&mut self, actual: f64, reference: f64, budget: f64, magnitude: f64, dt: Dtype) {
        let fraction = tolerance::error_fraction(actual, reference, budget);
        self.total += 1;
        if fraction <= 1.0 {
            self.within += 1;
        }
        self.worst = self.worst.max(fraction);
        self.residual += rank::residual_bits(actual, reference, magnitude, dt);
        self.budget += rank::budget_bits(budget, reference, magnitude, dt);
    }
    fn merge(&mut self, o: Tally) {
        self.within += o.within;
        self.total += o.total;
        self.worst = self.worst.max(o.worst);
        self.residual += o.residual;
        self.budget += o.budget;
    }
}

/// Scores candidates on a set of cases, caching non-target tallies.
pub struct Scorer<'a> {
    cases: &'a [LayerCase],
    dtype: Dtype,
    cache: HashMap<(usize, Option<String>, u64, Region), Tally>,
    /// Per case, the flat indices of the entries with |c| ≥ 1 (or NaN), where a sine guard
    /// can be singular.
    outside: HashMap<usize, Vec<usize>>,
    /// Candidates scored so far.
    pub evaluated: usize,
    /// Fitted stated parameters every candidate is scored at (empty: as stated).
    pub overrides: Overrides,
    /// Every non-target entry is within budget untouched: candidates are scored on their
    /// targets, with the untouched non-target tally (one O(N·C) pass in all, not one per
    /// non-target treatment). The final check verifies the point found on every element.
    pub freeze_plain_non_targets: bool,
    /// Per case, the comparison's pass-through tallies, filled by the first untouched pass
    /// over a bounded case's non-targets (the check of the point found reuses them:
    /// [`compare::PassThroughPart`]).
    parts: HashMap<usize, compare::PassThroughPart>,
}

impl<'a> Scorer<'a> {
    pub fn new(cases: &'a [LayerCase], dtype: Dtype) -> Scorer<'a> {
        Scorer {
            cases,
            dtype,
            cache: HashMap::new(),
            outside: HashMap::new(),
            evaluated: 0,
            overrides: Overrides::default(),
            freeze_plain_non_targets: false,
            parts: HashMap::new(),
        }
    }

    /// The pass-through parts filled so far, one slot per case.
    fn take_parts(&mut self) -> Vec<Option<compare::PassThroughPart>> {
        (0..self.cases.len())
            .map(|i| self.parts.remove(&i))
            .collect()
    }

    /// Non-target tally of case `i` under `profile`'s treatment (cached by key). A
    /// whole-matrix trig form that is the only non-target treatment changes non-targets only
    /// where its sine guard is singular, which is at |c| ≥ 1 for every guard: its tally is the
    /// untouched one inside (|c| < 1, one pass shared by every candidate) merged with its own
    /// at the few entries outside, so the four whole-matrix guards cost no pass of their own.
    fn non_targets(&mut self, i: usize, profile: &Profile, rows: &[Row]) -> Tally {
        let frozen;
        let profile = if self.freeze_plain_non_targets && non_target_key(profile).is_some() {
            frozen = untouched_non_targets(profile);
            &frozen
        } else {
            profile
        };
        // A modulated row's non-targets depend on its target's treatment too (SPEC.md
        // §11.3): a pass of their own, not cached.
        if self.cases[i].modulation.is_active() {
            return self.modulated(i, profile, rows);
        }
        let key = non_target_key(profile);
        let all = matches!(
            profile.domain,
            InputDomain::Clamp {
                scope: ClampScope::AllEntries,
                ..
            }
        );
        if all || profile.round_trip.non_targets {
            return self.tally(i, key, profile, rows, Region::All);
        }
        let mut inside_profile = profile.clone();
        if let EvalForm::TrigIdentity { whole_matrix, .. } = &mut inside_profile.eval {
            *whole_matrix = false;
        }
        let mut t = self.tally(i, None, &inside_profile, rows, Region::Inside);
        t.merge(self.tally(i, key, profile, rows, Region::Outside));
        t
    }

    /// The non-target tally of case `i`, whose rows are modulated (CurricularFace,
    /// inter-top-k): each row's plan from its target, then every non-target under it.
    fn modulated(&self, i: usize, profile: &Profile, rows: &[Row]) -> Tally {
        let case = &self.cases[i];
        let p = self.overrides.apply(&compare::output_params(case));
        let reference = Reference::for_case(profile, &p, self.dtype, case);
        let top = |k: usize| case.top_diff.as_ref().map_or(1.0, |t| t[k]);
        let mut t = Tally::default();
        for (row, &r) in rows.iter().enumerate() {
            let plan = reference.row_plan(
                &case.modulation,
                r,
                &case.cos[row * case.c..(row + 1) * case.c],
            );
            for col in 0..case.c {
                if matches!(r, Row::Target(j) if j == col) {
                    continue;
                }
                let k = row * case.c + col;
                let actual = (
                    case.forward.as_ref().map(|v| v[k]),
                    case.backward.as_ref().map(|v| v[k]),
                );
                let (f, b, bud) = match plan.as_ref().map(|pl| pl[col]) {
                    Some(tr) => {
                        reference.treated(&case.modulation, tr, case.cos[k], top(k), actual)
                    }
                    None => {
                        let (_, f, b, bud) = reference.entry(r, col, case.cos[k], top(k));
                        (f, b, bud)
                    }
                };
                if let Some(fw) = &case.forward {
                    t.add(fw[k], f, bud.forward, p.s, self.dtype);
                }
                if let Some(bw) = &case.backward {
                    t.add(bw[k], b, bud.backward, p.s * top(k).abs(), self.dtype);
                }
            }
        }
        t
    }

    /// The tally of `region`'s non-target entries of case `i` under `profile` (cached by
    /// case, key, s and region).
    fn tally(
        &mut self,
        i: usize,
        key: Option<String>,
        profile: &Profile,
        rows: &[Row],
        region: Region,
    ) -> Tally {
        let case = &self.cases[i];
        let p = self.overrides.apply(&compare::output_params(case));
        let cache_key = (i, key, p.s.to_bits(), region);
        if let Some(t) = self.cache.get(&cache_key) {
            return *t;
        }
        let reference = Reference::for_case(profile, &p, self.dtype, case);
        let dtype = self.dtype;
        let top = |k: usize| case.top_diff.as_ref().map_or(1.0, |t| t[k]);
        let add = |t: &mut Tally, row: usize, col: usize, r: Row| {
            if matches!(r, Row::Target(j) if j == col) {
                return;
            }
            let k = row * case.c + col;
            let (_, f, b, bud) = reference.entry(r, col, case.cos[k], top(k));
            if let Some(fw) = &case.forward {
                t.add(fw[k], f, bud.forward, p.s, dtype);
            }
            if let Some(bw) = &case.backward {
                t.add(bw[k], b, bud.backward, p.s * top(k).abs(), dtype);
            }
        };
        let row_tally = |t: &mut Tally, row: usize, r: Row| {
            for col in 0..case.c {
                let inside = case.cos[row * case.c + col].abs() < 1.0;
                if region == Region::All || inside {
                    add(t, row, col, r);
                }
            }
        };
        let mut t = Tally::default();
        match region {
            // A case the comparison bounds (SPEC.md §8.5) is tallied row by row in parallel,
            // merged in row order (the sums do not depend on the threads); a smaller one in
            // one sequence, as before, so that its sums keep their bits.
            Region::All | Region::Inside
                if case.n.saturating_mul(case.c) > compare::EVERY_ELEMENT_MAX =>
            {
                use rayon::prelude::*;
                // The untouched pass fills the comparison's pass-through part on the way, on
                // every non-target (inside and outside): each is `s·x`, `s·top_diff` there.
                let fill = cache_key.1.is_none()
                    && !profile.transforms_non_targets()
                    && case.row_params.is_none()
                    && !self.parts.contains_key(&i);
                let parts: Vec<(Tally, Option<compare::PassThroughRow>)> = rows
                    .par_iter()
                    .enumerate()
                    .map(|(row, &r)| {
                        let mut t = Tally::default();
                        if !fill {
                            row_tally(&mut t, row, r);
                            return (t, None);
                        }
                        let mut pass = compare::PassThroughRow::default();
                        for col in 0..case.c {
                            if matches!(r, Row::Target(j) if j == col) {
                                continue;
                            }
                            let k = row * case.c + col;
                            let (f, b, bud) = reference.passthrough(case.cos[k], top(k));
                            pass.add(case, row, col, (f, b), bud);
                            if region == Region::All || case.cos[k].abs() < 1.0 {
                                if let Some(fw) = &case.forward {
                                    t.add(fw[k], f, bud.forward, p.s, dtype);
                                }
                                if let Some(bw) = &case.backward {
                                    t.add(bw[k], b, bud.backward, p.s * top(k).abs(), dtype);
                                }
                            }
                        }
                        (t, Some(pass))
                    })
                    .collect();
                let targets = rows.iter().map(|r| r.target()).collect();
                let mut whole = compare::PassThroughPart::new(targets, p.s, dtype);
                for (row, (part, pass)) in parts.into_iter().enumerate() {
                    t.merge(part);
                    if let Some(pass) = pass {
                        whole.add_row(row, &pass);
                    }
                }
                if fill {
                    self.parts.insert(i, whole);
                }
            }
            Region::All | Region::Inside => {
                for (row, &r) in rows.iter().enumerate() {
                    row_tally(&mut t, row, r);
                }
            }
            Region::Outside => {
                let outside = self.outside.entry(i).or_insert_with(|| {
                    (0..case.cos.len())
                        .filter(|&k| case.cos[k].is_nan() || case.cos[k].abs() >= 1.0)
                        .collect()
                });
                for &k in outside.iter() {
                    let row = k / case.c;
                    add(&mut t, row, k % case.c, rows[row]);
                }
            }
        }
        self.cache.insert(cache_key, t);
        t
    }

    /// Whether every non-target element passes under the untouched treatment.
    pub fn non_targets_pass(&mut self, base: &Profile) -> Result<bool> {
        for i in 0..self.cases.len() {
            let case = &self.cases[i];
            let Ok(rows) = layer::rows(case.n, case.c, &case.labels, base) else {
                return Ok(false);
            };
            let plain = untouched_non_targets(base);
            let t = self.non_targets(i, &plain, &rows);
            if t.within != t.total {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The fit of one candidate; `None` where its label policy refuses a label of the cases.
    pub fn score(&mut self, profile: &Profile, changed: usize) -> Result<Option<Fit>> {
        self.score_with(profile, changed, Vec::new())
    }

    /// [`Scorer::score`] of a candidate whose form carries fitted `constants` (each one
    /// costs [`rank::constant_bits`] of description).
    pub fn score_with(
        &mut self,
        profile: &Profile,
        changed: usize,
        constants: Vec<Fitted>,
    ) -> Result<Option<Fit>> {
        self.evaluated += 1;
        let mut t = Tally::default();
        for i in 0..self.cases.len() {
            let case = &self.cases[i];
            let Ok(rows) = layer::rows(case.n, case.c, &case.labels, profile) else {
                return Ok(None);
            };
            let p: Params = self.overrides.apply(&compare::output_params(case));
            p.validate()?;
            let reference = Reference::for_case(profile, &p, self.dtype, case);
            let top = |k: usize| case.top_diff.as_ref().map_or(1.0, |t| t[k]);
            for (row, r) in rows.iter().enumerate() {
                let Row::Target(col) = *r else { continue };
                let k = row * case.c + col;
                let tr = reference.target(case.cos[k], top(k));
                if let Some(fw) = &case.forward {
                    t.add(fw[k], tr.forward, tr.budget.forward, p.s, self.dtype);
                }
                if let Some(bw) = &case.backward {
                    let mag = p.s * top(k).abs();
                    t.add(bw[k], tr.backward, tr.budget.backward, mag, self.dtype);
                }
            }
            t.merge(self.non_targets(i, profile, &rows));
        }
        let n = t.total.max(1);
        let description = changed as f64 * rank::AXIS_BITS
            + (self.overrides.count() + constants.len()) as f64 * rank::constant_bits(n);
        Ok(Some(Fit {
            share: t.within as f64 / n as f64,
            worst: t.worst,
            profile: profile.clone(),
            changed,
            cost: Cost {
                residual: t.residual,
                budget: t.budget,
                description,
            },
            elements: t.total,
            overrides: self.overrides,
            constants,
        }))
    }
}

/// A candidate that fits as well as the best, and an input that would tell the two apart.
#[derive(Clone, Debug)]
pub struct Tie {
    pub profile: Profile,
    /// An input c (target entry, top_diff 1) where the two references differ beyond both
    /// budgets, forward or backward; `None` if no catalogue or kink input does.
    pub separating_input: Option<f64>,
}

/// The result of the search.
#[derive(Clone, Debug)]
pub struct Search {
    /// Every candidate scored, best first.
    pub ranked: Vec<Fit>,
    /// Candidates as good as the best (fitting every element where the best does).
    pub ties: Vec<Tie>,
    /// Whether the non-target axes were searched (only when some non-target is out of budget).
    pub searched_non_targets: bool,
    /// The stated parameters fitted under the best candidate's structure: each fitted value,
    /// its uncertainty and the stated value ([`fit::fit_stated`]), then a family's own
    /// constants ([`super::family_fit::fit_claims`]).
    pub stated: StatedFit,
    /// Per case, the pass-through tallies of the search's untouched pass over a bounded
    /// case's non-targets, for the check of the point found ([`compare::Extras`]);
    /// `None` where that pass was not made.
    pub passthrough: Vec<Option<compare::PassThroughPart>>,
    /// Per case, the rows the candidates were scored on where not all of them: a bounded
    /// case with out-of-budget non-targets is searched on [`compare::diagnosed_rows`]
    /// (SPEC.md §8.5); empty where every case was searched whole.
    pub scored_rows: Vec<Option<ScoredRows>>,
}

/// The rows of one case a search scored its candidates on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoredRows {
    /// The rows, in order.
    pub rows: Vec<usize>,
    /// The case's row count.
    pub n: usize,
}

impl Search {
    pub fn best(&self) -> &Fit {
        &self.ranked[0]
    }
}

/// How many of the leading candidates get their input clamp ε fitted when none fits every
/// element (each fit is a 1-D search over the cases, run only on that failure path).
pub const FITTED_CLAMP_STRUCTURES: usize = 6;

/// How many of the best presets that behave differently on the cases the coordinate search
/// starts from when no preset fits every element.
pub const SEARCH_STARTS: usize = 3;

/// Maximum rounds of the coordinate search (each round tries every value of every axis).
pub const MAX_ROUNDS: usize = 4;

/// Searches the policy space for the profile `cases` (outputs of an implementation in `dtype`)
/// behave like.
pub fn search(cases: &[LayerCase], dtype: Dtype) -> Result<Search> {
    let mut scorer = Scorer::new(cases, dtype);
    // Where every non-target is within budget untouched, no candidate needs its own pass
    // over the non-targets (the cost bound of SPEC.md §3.8).
    let freeze = scorer.non_targets_pass(&Profile::preset("analytic")?)?;
    scorer.freeze_plain_non_targets = freeze;
    let passthrough = scorer.take_parts();
    // A bounded case with out-of-budget non-targets is searched on the rows a check
    // diagnoses: every non-target candidate would otherwise cost a pass over 10^7-10^8
    // entries, hundreds of them. The check of the point found still tallies every element.
    if !freeze {
        let scored_rows: Vec<Option<ScoredRows>> = cases
            .iter()
            .zip(&passthrough)
            .map(|(case, part)| {
                let part = part.as_ref()?;
                if case.n.saturating_mul(case.c) <= compare::EVERY_ELEMENT_MAX
                    || part.failing_rows().is_empty()
                {
                    return None;
                }
                let rows = compare::diagnosed_rows(part.failing_rows(), case.n, case.c);
                // Only a strictly smaller case (one row of more than 2^20 classes is its own
                // subset: searched whole, so that the search never recurses on itself).
                (rows.len() < case.n).then_some(ScoredRows { rows, n: case.n })
            })
            .collect();
        if scored_rows.iter().any(Option::is_some) {
            let subset: Vec<LayerCase> = cases
                .iter()
                .zip(&scored_rows)
                .map(|(case, rows)| match rows {
                    Some(r) => case.select_rows(&r.rows),
                    None => case.clone(),
                })
                .collect();
            let mut found = search(&subset, dtype)?;
            found.passthrough = passthrough;
            found.scored_rows = scored_rows;
            return Ok(found);
        }
    }
    let mut ranked = score_presets(&mut scorer)?;
    // The scorer at the stated parameters, kept where the search moved to fitted ones.
    let mut at_stated: Option<Scorer> = None;
    // Nothing fits at the stated parameters: fit them under the best structure (closed
    // forms on the target and pass-through entries, O(N)) and search at the fitted point.
    if !ranked[0].fits_all() {
        let stated = fit::fit_stated(cases, &ranked[0].profile, dtype);
        if !stated.overrides.is_empty() {
            let mut refit = Scorer::new(cases, dtype);
            refit.overrides = stated.overrides;
            refit.freeze_plain_non_targets = freeze;
            let alt = score_presets(&mut refit)?;
            if order(&alt[0], &ranked[0]).is_lt() {
                at_stated = Some(std::mem::replace(&mut scorer, refit));
                ranked = alt;
            }
        }
    }
    let current = ranked[0].clone();
    let searched_non_targets = !scorer.non_targets_pass(&current.profile)?;
    let axes: Vec<Axis> = Axis::ALL
        .into_iter()
        .filter(|a| a.touches_targets() || searched_non_targets)
        // Op math changes nothing in f32 and f64.
        .filter(|a| *a != Axis::OpMath || !matches!(dtype, Dtype::F32 | Dtype::F64))
        // θ rounded to f32 is a policy of f64 code only (Caffe's `float theta` in double
        // arithmetic): code at f32 or below computes θ in f32 whatever it intends, so in those
        // dtypes the axis names nothing about the implementation, and as a move it would
        // only trade the budget's θ term for a closer reference (every honest f32 layer
        // became "… with theta rounded to f32").
        .filter(|a| *a != Axis::Theta || dtype == Dtype::F64)
        .collect();
    let origin = current.profile.clone();
    // A coordinate search from each of the best few presets that behave differently on these
    // cases (multi-start): an implementation two axes away from every preset, where neither
    // single move improves on the best preset's neighbours, is reached from another preset
    // (speechbrain-aam plus a clip, then its sine guard, while recommended plus the clip
    // ranks higher after one move). Each path moves to its own best point after every axis.
    // Where a preset fits every element the search only ranks its ties: one start.
    let starts = if ranked[0].fits_all() {
        1
    } else {
        SEARCH_STARTS
    };
    {
        let mut seen: HashMap<String, Option<Fit>> = ranked
            .iter()
            .map(|f| (policy_key(&f.profile), Some(f.clone())))
            .collect();
        let mut visit =
            |start: &Profile, cand: Profile, ranked: &mut Vec<Fit>| -> Result<Option<Fit>> {
                // A form's continuous constants at the implementation's values, not the seeds.
                let cand = crate::verdict::form_fit::refine(&cand, cases, dtype);
                let key = policy_key(&cand);
                if let Some(f) = seen.get(&key) {
                    return Ok(f.clone());
                }
                let changed = space::differences(start, &cand).len();
                let mut named = cand.clone();
                named.name = space::describe_as_neighbour(start, &cand)
                    .replacen("behaves like ", "", 1)
                    .replacen(" except: ", " with ", 1);
                let f = scorer.score(&named, changed)?;
                if let Some(f) = &f {
                    ranked.push(f.clone());
                }
                seen.insert(key, f.clone());
                Ok(f)
            };
        for start in distinct_leaders(&ranked, starts) {
            let mut current_fit = ranked
                .iter()
                .find(|f| f.profile.same_policies(&start))
                .cloned()
                .expect("a start is a scored preset");
            let mut current = start.clone();
            // The points the pair sweep has run from (once per point: a point it moved
            // from is not revisited, so the rounds bound it).
            let mut paired: Vec<String> = Vec::new();
            for _ in 0..MAX_ROUNDS {
                let mut moved = false;
                for &axis in &axes {
                    for cand in axis.values(&current).into_iter().skip(1) {
                        keep_better(&mut current_fit, visit(&start, cand, &mut ranked)?);
                    }
                    if !current_fit.profile.same_policies(&current) {
                        current = current_fit.profile.clone();
                        moved = true;
                    }
                }
                // Stuck short of a fit: every pair of moves from this point (two axes whose
                // effects mask each other, such as a sine guard and a gradient form, or a
                // whole-matrix form and the rows without a target, are found together or
                // not at all). Only on this failure path, so a fitting search costs no more;
                // a pair that moves the point is followed by another round (up to
                // MAX_ROUNDS), so two pairs in a row are reached.
                if !moved && !current_fit.fits_all() && !paired.contains(&policy_key(&current)) {
                    paired.push(policy_key(&current));
                    for (i, &a) in axes.iter().enumerate() {
                        for first in a.values(&current).into_iter().skip(1) {
                            for &b in &axes[i + 1..] {
                                for cand in b.values(&first).into_iter().skip(1) {
                                    keep_better(
                                        &mut current_fit,
                                        visit(&start, cand, &mut ranked)?,
                                    );
                                }
                            }
                        }
                    }
                    if !current_fit.profile.same_policies(&current) {
                        current = current_fit.profile.clone();
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
    }
    // The search ran at fitted parameters, which a form the presets lack can mislead (a
    // sine guard's ε absorbed into a fitted m3): its leading structures are scored at the
    // stated parameters too, and a point with the stated parameters ranks first where it
    // fits as well (fewer constants to state).
    if let Some(stated_scorer) = at_stated.as_mut() {
        ranked.sort_by(order);
        for lead in distinct_leaders(&ranked, FITTED_CLAMP_STRUCTURES) {
            let cand = crate::verdict::form_fit::refine(&lead, cases, dtype);
            let changed = ranked
                .iter()
                .find(|f| f.profile.same_policies(&lead))
                .map_or(0, |f| f.changed);
            if let Some(f) = stated_scorer.score(&cand, changed)? {
                ranked.push(f);
            }
        }
    }
    ranked.sort_by(order);
    // Still nothing fits: the input clamp ε as a continuous constant of the best forms. The
    // coordinate search can settle on a structure whose other constants absorbed the clamp's
    // effect (a fallback offset fitted to it), so ε is fitted under each of the leading
    // structures, not only the first.
    if !ranked[0].fits_all() {
        let mut keys: Vec<String> = Vec::new();
        let mut leading: Vec<Fit> = Vec::new();
        for f in &ranked {
            let key = forward_structure(&f.profile);
            if !keys.contains(&key) {
                keys.push(key);
                leading.push(f.clone());
            }
            if leading.len() == FITTED_CLAMP_STRUCTURES {
                break;
            }
        }
        for lead in &leading {
            if let Some(f) = fitted_clamp(&mut scorer, lead, &origin)? {
                ranked.push(f);
            }
        }
        ranked.sort_by(order);
    }
    let best = ranked[0].clone();
    let ties = ranked
        .iter()
        .skip(1)
        .filter(|f| f.fits_all() && best.fits_all())
        .filter(|f| rank::tied(&f.cost, &best.cost, best.elements))
        .map(|f| Tie {
            profile: f.profile.clone(),
            separating_input: separating_input(cases, &best.profile, &f.profile, dtype),
        })
        .collect();
    let mut stated = fit::fit_stated(cases, &best.profile, dtype);
    // The family's own constants (SPEC.md §11.5), for the table of the point found.
    let family = super::family_fit::fit_claims(cases, &best.profile, dtype, stated.overrides.s);
    stated.fitted.extend(family);
    Ok(Search {
        ranked,
        ties,
        searched_non_targets,
        stated,
        passthrough,
        scored_rows: Vec::new(),
    })
}

/// Replaces `current` by `f` where `f` ranks better.
fn keep_better(current: &mut Fit, f: Option<Fit>) {
    if let Some(f) = f {
        if order(&f, current).is_lt() {
            *current = f;
        }
    }
}

/// A profile's policies as a map key (its name left out).
fn policy_key(p: &Profile) -> String {
    format!(
        "{:?}",
        Profile {
            name: String::new(),
            ..p.clone()
        }
    )
}

/// The first `n` candidates of `ranked` that behave differently on the cases: candidates with
/// the same share and residual (a scope or a pole rule these inputs never exercise) are one
/// point of the search's beam.
fn distinct_leaders(ranked: &[Fit], n: usize) -> Vec<Profile> {
    let mut out: Vec<Profile> = Vec::new();
    let mut seen: Vec<(f64, f64)> = Vec::new();
    for f in ranked {
        let key = (f.share, f.cost.residual);
        if !seen.contains(&key) {
            seen.push(key);
            out.push(f.profile.clone());
        }
        if out.len() == n {
            break;
        }
    }
    out
}

/// The policies that shape the forward values, without their fitted constants: candidates
/// with one key differ only in a constant (a fallback offset that absorbed a clamp's effect)
/// or in the gradient, so the clamp ε is fitted under one of each.
fn forward_structure(p: &Profile) -> String {
    let angle = match p.angle {
        AnglePolicy::Threshold { test, fallback } => {
            let fallback = match fallback {
                Fallback::MSinM => "m sin m",
                Fallback::Offset { .. } => "offset",
                Fallback::Plain => "plain",
            };
            format!("threshold {test:?}, fallback {fallback}")
        }
        AnglePolicy::Clamp { .. } => "angle clamp".to_string(),
        AnglePolicy::Raw | AnglePolicy::EasyMargin | AnglePolicy::Monotone => {
            format!("{:?}", p.angle)
        }
    };
    let eval = match p.eval {
        EvalForm::AcosCos => "acos/cos".to_string(),
        EvalForm::TrigIdentity {
            guard,
            whole_matrix,
        } => {
            let guard = match guard {
                SineGuard::Unguarded => "unguarded",
                SineGuard::Clamp => "clamp",
                SineGuard::Epsilon { .. } => "epsilon",
                SineGuard::Safe => "safe",
            };
            format!("trig {guard} whole={whole_matrix}")
        }
    };
    let scope = match p.domain {
        InputDomain::Raw => None,
        InputDomain::Clamp { scope, .. } => Some(scope),
    };
    format!(
        "{angle}|{eval}|{scope:?}|{:?}|{:?}|{:?}|{}",
        p.round_trip,
        p.theta,
        p.constants,
        p.output_clip.is_some()
    )
}

/// Every preset scored by `scorer`, best first.
fn score_presets(scorer: &mut Scorer) -> Result<Vec<Fit>> {
    let mut ranked: Vec<Fit> = Vec::new();
    for p in Profile::presets() {
        if let Some(f) = scorer.score(&p, 0)? {
            ranked.push(f);
        }
    }
    if ranked.is_empty() {
        return Err(crate::Error::Invalid(
            "no preset accepts the labels of these cases".into(),
        ));
    }
    ranked.sort_by(order);
    Ok(ranked)
}

/// Bracket of the fitted input-clamp ε: from far below f64's resolution of 1 − ε up to 1e-2.
pub const CLAMP_EPS_BRACKET: (f64, f64) = (1e-9, 1e-2);

/// The first client of [`fit::fit_constant`]: the best candidate with its input clamp ε
/// fitted (scope and bound gradient as the candidate has them, or the target's with the
/// gradient passing at the bound where it has no clamp). `None` where no ε fits.
fn fitted_clamp(scorer: &mut Scorer, best: &Fit, origin: &Profile) -> Result<Option<Fit>> {
    let (scope, at_bound) = match best.profile.domain {
        InputDomain::Clamp {
            scope, at_bound, ..
        } => (scope, at_bound),
        InputDomain::Raw => (ClampScope::Target, crate::profile::BoundGradient::Pass),
    };
    // The form's other constants are refitted under each ε: a fallback offset fitted under
    // the preset's ε has absorbed the clamp's effect on the clamped fallback entries.
    let (cases, dtype) = (scorer.cases, scorer.dtype);
    let set = move |p: &mut Profile, eps: f64| {
        p.domain = InputDomain::Clamp {
            eps,
            scope,
            at_bound,
        };
        *p = crate::verdict::form_fit::refine(p, cases, dtype);
    };
    let Some(mut eps) = fit::fit_constant_at(
        scorer.cases,
        scorer.dtype,
        &best.profile,
        &set,
        CLAMP_EPS_BRACKET,
        "input clamp eps",
        &scorer.overrides,
    ) else {
        return Ok(None);
    };
    let mut cand = best.profile.clone();
    set(&mut cand, eps.value);
    // A constant nobody stated describes the point (no stated value); the name says how it
    // departs from the preset it was reached from.
    eps.stated = None;
    // The lead's other departures from the preset stay in the name.
    let mut lead = cand.clone();
    lead.domain = origin.domain;
    let departures = if lead.same_policies(origin) {
        origin.name.clone()
    } else {
        space::describe_as_neighbour(origin, &lead)
            .replacen("behaves like ", "", 1)
            .replacen(" except: ", " with ", 1)
    };
    cand.name = format!(
        "{departures}; {} (eps fitted; preset: {})",
        space::describe_domain(cand.domain),
        space::describe_domain(origin.domain)
    );
    let changed = space::differences(origin, &cand).len().max(1);
    scorer.score_with(&cand, changed, vec![eps])
}

/// Every candidate's fit, best first ([`search`]'s ranking).
pub fn rank(cases: &[LayerCase], dtype: Dtype) -> Result<Vec<Fit>> {
    Ok(search(cases, dtype)?.ranked)
}

/// An input where `a` and `b` give target references that differ beyond both budgets, at the
/// first case's parameters: from the edge catalogue of both profiles and ±4 ulp around their
/// kinks.
pub fn separating_input(
    cases: &[LayerCase],
    a: &Profile,
    b: &Profile,
    dtype: Dtype,
) -> Option<f64> {
    let p = compare::output_params(cases.first()?);
    let unit = Params { s: 1.0, ..p };
    let mut xs = edge_cases(a, &unit, dtype);
    xs.extend(edge_cases(b, &unit, dtype));
    for prof in [a, b] {
        for k in kinks::kinks(prof, &unit, dtype) {
            let mut x = dtype.round(k.c);
            for _ in 0..4 {
                x = dtype.round(x - dtype.ulp(x));
            }
            for _ in 0..9 {
                xs.push(x);
                x = dtype.round(x + dtype.ulp(x));
            }
        }
    }
    let (ra, rb) = (
        Reference::new(a, &unit, dtype),
        Reference::new(b, &unit, dtype),
    );
    xs.into_iter().find(|&x| {
        let (ta, tb) = (ra.target(x, 1.0), rb.target(x, 1.0));
        let differs = |u: f64, v: f64, bu: f64, bv: f64| {
            tolerance::error_fraction(u, v, bv) > 1.0 && tolerance::error_fraction(v, u, bu) > 1.0
        };
        differs(ta.forward, tb.forward, ta.budget.forward, tb.budget.forward)
            || differs(
                ta.backward,
                tb.backward,
                ta.budget.backward,
                tb.budget.backward,
            )
    })
}

/// Cases grouped by parameter set (m1, m2, m3, s) and `easy_margin` claim, in
/// first-appearance order: a file that mixes code paths by parameters (or by the claim, under
/// the same parameters) is fingerprinted per group.
pub fn groups(cases: &[LayerCase]) -> Vec<(Params, Vec<LayerCase>)> {
    group_indices(cases)
        .into_iter()
        .map(|(p, ix)| (p, ix.into_iter().map(|i| cases[i].clone()).collect()))
        .collect()
}

/// [`groups`] as indices into `cases`.
pub fn group_indices(cases: &[LayerCase]) -> Vec<(Params, Vec<usize>)> {
    let mut out: Vec<(Params, Option<bool>, Vec<usize>)> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let p = compare::output_params(c);
        match out
            .iter_mut()
            .find(|(q, e, _)| *q == p && *e == c.easy_margin)
        {
            Some((_, _, v)) => v.push(i),
            None => out.push((p, c.easy_margin, vec![i])),
        }
    }
    out.into_iter().map(|(p, _, v)| (p, v)).collect()
}

/// Whether the cases of a group disagree: the group's best candidate leaves some element out
/// of budget while every case alone is fitted by some candidate. Then the group is reported
/// per case instead of as a mixture.
pub fn cases_disagree(
    group: &[LayerCase],
    best: &Fit,
    dtype: Dtype,
) -> Result<Option<Vec<Search>>> {
    if group.len() < 2 || best.fits_all() {
        return Ok(None);
    }
    let mut per = Vec::new();
    for c in group {
        let s = search(std::slice::from_ref(c), dtype)?;
        if !s.best().fits_all() {
            return Ok(None);
        }
        per.push(s);
    }
    Ok(Some(per))
}
