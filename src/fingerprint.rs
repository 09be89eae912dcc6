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
//! Ranking: the share of elements within budget, then, among candidates that fit every
//! element, the simpler description (a preset before a variant, fewer changed axes), then the
//! worst error fraction. Candidates that fit as well as the best are reported as
//! indistinguishable on these inputs, each with an input (from the edge catalogue and the
//! kinks) that would tell it apart.

use crate::catalogue::edge_cases;
use crate::compare::{self, Reference};
use crate::dtype::Dtype;
use crate::error::Result;
use crate::fixture::LayerCase;
use crate::kinks;
use crate::layer::{self, Row};
use crate::params::Params;
use crate::profile::{preset_names, ClampScope, GradientMode, InputDomain, Profile};
use crate::space::{self, Axis};
use crate::tolerance;
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
}

/// Whether a profile's name is a preset's.
fn is_preset(p: &Profile) -> bool {
    preset_names().any(|n| n == p.name)
}

/// Best first (see the module doc).
fn order(a: &Fit, b: &Fit) -> std::cmp::Ordering {
    b.share.total_cmp(&a.share).then_with(|| {
        if a.share == 1.0 && b.share == 1.0 {
            (!is_preset(&a.profile))
                .cmp(&!is_preset(&b.profile))
                .then(a.changed.cmp(&b.changed))
                .then(a.worst.total_cmp(&b.worst))
        } else {
            a.worst.total_cmp(&b.worst)
        }
    })
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
    if !all && !p.round_trip.non_targets {
        return None;
    }
    let grad = match p.gradient {
        GradientMode::Exact { pole, .. } => format!("exact {pole:?}"),
        GradientMode::FormulaAtClamped { .. } | GradientMode::Detached => "one".into(),
    };
    Some(format!(
        "{:?} {} {grad} {:?}",
        if all { Some(p.domain) } else { None },
        p.round_trip.non_targets,
        p.labels
    ))
}

/// A tally of (within budget, compared, worst fraction).
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    within: usize,
    total: usize,
    worst: f64,
}

impl Tally {
    fn add(&mut self, fraction: f64) {
        self.total += 1;
        if fraction <= 1.0 {
            self.within += 1;
        }
        self.worst = self.worst.max(fraction);
    }
    fn merge(&mut self, o: Tally) {
        self.within += o.within;
        self.total += o.total;
        self.worst = self.worst.max(o.worst);
    }
}

/// Scores candidates on a set of cases, caching non-target tallies.
pub struct Scorer<'a> {
    cases: &'a [LayerCase],
    dtype: Dtype,
    cache: HashMap<(usize, Option<String>), Tally>,
    /// Candidates scored so far.
    pub evaluated: usize,
}

impl<'a> Scorer<'a> {
    pub fn new(cases: &'a [LayerCase], dtype: Dtype) -> Scorer<'a> {
        Scorer {
            cases,
            dtype,
            cache: HashMap::new(),
            evaluated: 0,
        }
    }

    /// Non-target tally of case `i` under `profile`'s treatment (cached by key).
    fn non_targets(&mut self, i: usize, profile: &Profile, rows: &[Row]) -> Tally {
        let key = (i, non_target_key(profile));
        if let Some(t) = self.cache.get(&key) {
            return *t;
        }
        let case = &self.cases[i];
        let reference = Reference::new(profile, &compare::output_params(case), self.dtype);
        let top = |k: usize| case.top_diff.as_ref().map_or(1.0, |t| t[k]);
        let mut t = Tally::default();
        for (row, &r) in rows.iter().enumerate() {
            for col in 0..case.c {
                if matches!(r, Row::Target(j) if j == col) {
                    continue;
                }
                let k = row * case.c + col;
                let (_, f, b, bud) = reference.entry(r, col, case.cos[k], top(k));
                if let Some(fw) = &case.forward {
                    t.add(tolerance::error_fraction(fw[k], f, bud.forward));
                }
                if let Some(bw) = &case.backward {
                    t.add(tolerance::error_fraction(bw[k], b, bud.backward));
                }
            }
        }
        self.cache.insert(key, t);
        t
    }

    /// Whether every non-target element passes under the untouched treatment.
    pub fn non_targets_pass(&mut self, base: &Profile) -> Result<bool> {
        for i in 0..self.cases.len() {
            let case = &self.cases[i];
            let Ok(rows) = layer::rows(case.n, case.c, &case.labels, base) else {
                return Ok(false);
            };
            let mut plain = base.clone();
            plain.round_trip.non_targets = false;
            match &mut plain.domain {
                InputDomain::Clamp { scope, .. } => *scope = ClampScope::Target,
                InputDomain::Raw => {}
            }
            let t = self.non_targets(i, &plain, &rows);
            if t.within != t.total {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The fit of one candidate; `None` where its label policy refuses a label of the cases.
    pub fn score(&mut self, profile: &Profile, changed: usize) -> Result<Option<Fit>> {
        self.evaluated += 1;
        let mut t = Tally::default();
        for i in 0..self.cases.len() {
            let case = &self.cases[i];
            let Ok(rows) = layer::rows(case.n, case.c, &case.labels, profile) else {
                return Ok(None);
            };
            let p: Params = compare::output_params(case);
            p.validate()?;
            let reference = Reference::new(profile, &p, self.dtype);
            let top = |k: usize| case.top_diff.as_ref().map_or(1.0, |t| t[k]);
            for (row, r) in rows.iter().enumerate() {
                let Row::Target(col) = *r else { continue };
                let k = row * case.c + col;
                let tr = reference.target(case.cos[k], top(k));
                if let Some(fw) = &case.forward {
                    t.add(tolerance::error_fraction(
                        fw[k],
                        tr.forward,
                        tr.budget.forward,
                    ));
                }
                if let Some(bw) = &case.backward {
                    t.add(tolerance::error_fraction(
                        bw[k],
                        tr.backward,
                        tr.budget.backward,
                    ));
                }
            }
            t.merge(self.non_targets(i, profile, &rows));
        }
        Ok(Some(Fit {
            share: t.within as f64 / t.total.max(1) as f64,
            worst: t.worst,
            profile: profile.clone(),
            changed,
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
}

impl Search {
    pub fn best(&self) -> &Fit {
        &self.ranked[0]
    }
}

/// Maximum rounds of the coordinate search (each round tries every value of every axis).
pub const MAX_ROUNDS: usize = 4;

/// Searches the policy space for the profile `cases` (outputs of an implementation in `dtype`)
/// behave like.
pub fn search(cases: &[LayerCase], dtype: Dtype) -> Result<Search> {
    let mut scorer = Scorer::new(cases, dtype);
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
    let mut current = ranked[0].clone();
    let searched_non_targets = !scorer.non_targets_pass(&current.profile)?;
    let axes: Vec<Axis> = Axis::ALL
        .into_iter()
        .filter(|a| a.touches_targets() || searched_non_targets)
        // Op math changes nothing in f32 and f64.
        .filter(|a| *a != Axis::OpMath || !matches!(dtype, Dtype::F32 | Dtype::F64))
        .collect();
    let origin = current.profile.clone();
    for _ in 0..MAX_ROUNDS {
        let mut moved = false;
        for &axis in &axes {
            for cand in axis.values(&current.profile).into_iter().skip(1) {
                if ranked.iter().any(|f| f.profile.same_policies(&cand)) {
                    continue;
                }
                let changed = space::differences(&origin, &cand).len();
                let mut named = cand.clone();
                named.name = space::describe_as_neighbour(&origin, &cand)
                    .replacen("behaves like ", "", 1)
                    .replacen(" except: ", " with ", 1);
                if let Some(f) = scorer.score(&named, changed)? {
                    ranked.push(f);
                }
            }
            ranked.sort_by(order);
            if !ranked[0].profile.same_policies(&current.profile) {
                current = ranked[0].clone();
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    ranked.sort_by(order);
    let best = ranked[0].clone();
    let ties = ranked
        .iter()
        .skip(1)
        .filter(|f| f.share == best.share && f.share == 1.0)
        .map(|f| Tie {
            profile: f.profile.clone(),
            separating_input: separating_input(cases, &best.profile, &f.profile, dtype),
        })
        .collect();
    Ok(Search {
        ranked,
        ties,
        searched_non_targets,
    })
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

/// Cases grouped by parameter set (m1, m2, m3, s), in first-appearance order: a file that
/// mixes code paths by parameters is fingerprinted per group.
pub fn groups(cases: &[LayerCase]) -> Vec<(Params, Vec<LayerCase>)> {
    let mut out: Vec<(Params, Vec<LayerCase>)> = Vec::new();
    for c in cases {
        let p = compare::output_params(c);
        match out.iter_mut().find(|(q, _)| *q == p) {
            Some((_, v)) => v.push(c.clone()),
            None => out.push((p, vec![c.clone()])),
        }
    }
    out
}
