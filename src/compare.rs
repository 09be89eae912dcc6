//! Comparing one implementation's layer outputs with the reference under a profile.
//!
//! Every element gets an error fraction `|actual − reference| / budget` (SPEC.md §5): ≤ 1
//! passes. Target entries use [`tolerance::target_budget_for`]; every other entry (non-target
//! columns and every entry of an ignored row) is a pass-through, `s·x` forward and
//! `s·top_diff` backward, with [`tolerance::passthrough_budget`]. The scale s applies only
//! where the dump's `params` carry it (the implementation scales inside the layer).
//!
//! This module only measures. Naming what went wrong is [`crate::deviation`]'s job; the CLI
//! and the tests share both.

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::fixture::LayerCase;
use crate::kinks::{self, Kink};
use crate::layer::{self, Row};
use crate::margin::{self, Constants, Entry};
use crate::modulation::{Modulation, Treatment};
use crate::params::Params;
use crate::profile::Profile;
use crate::tolerance::{self, Budget};

/// Forward output or backward gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Forward,
    Backward,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Forward => "forward",
            Side::Backward => "backward",
        }
    }
}

/// A target entry (the labelled column of a non-ignored row) or a pass-through entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Target,
    PassThrough,
}

/// One compared element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Element {
    pub side: Side,
    pub role: Role,
    pub row: usize,
    pub col: usize,
    /// The input cos at this element.
    pub input: f64,
    /// The row's label as written in the dump.
    pub label: i64,
    /// The upstream gradient (1 where the dump has no backward).
    pub top_diff: f64,
    pub actual: f64,
    pub reference: f64,
    pub budget: f64,
    /// `|actual − reference| / budget` ([`tolerance::error_fraction`]).
    pub fraction: f64,
}

impl Element {
    /// Flat row-major index.
    pub fn index(&self, classes: usize) -> usize {
        self.row * classes + self.col
    }
    pub fn passed(&self) -> bool {
        self.fraction <= 1.0
    }
}

/// Counts over one (side, role) group and its worst element.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    pub count: usize,
    pub within: usize,
    pub worst: Option<Element>,
}

impl Tally {
    fn add(&mut self, e: &Element) {
        self.count += 1;
        if e.passed() {
            self.within += 1;
        }
        if self.worst.is_none_or(|w| worse(e, &w)) {
            self.worst = Some(*e);
        }
    }
    pub fn max_fraction(&self) -> f64 {
        self.worst.map_or(0.0, |w| w.fraction)
    }

    /// Adds the tally of elements that come after this one's: of equal worst fractions the
    /// earlier (this one's) stays, as [`Tally::add`] would keep it.
    fn merge(&mut self, later: &Tally) {
        self.count += later.count;
        self.within += later.within;
        if let Some(w) = later.worst {
            if self.worst.is_none_or(|s| worse(&w, &s)) {
                self.worst = Some(w);
            }
        }
    }
}

/// One row of one side of a comparison (merged in row order into the report's tallies).
#[derive(Default)]
struct RowPart {
    target: Tally,
    passthrough: Tally,
    /// The elements the comparison's detail keeps, in column order.
    elements: Vec<Element>,
    /// Out-of-budget pass-through elements, kept or not.
    failing_passthrough: usize,
    non_finite_within: usize,
    /// Every element's (fraction, budget) in column order, where the arrays are kept.
    arrays: Vec<(f64, f64)>,
}

/// Every element's error fraction and budget, per side, row-major [N·C] (`None` for a side
/// without outputs): what the Python package hands back, kept without an element record each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ElementArrays {
    /// (fractions, budgets) of the forward side, where the case has one.
    pub forward: Option<(Vec<f64>, Vec<f64>)>,
    pub backward: Option<(Vec<f64>, Vec<f64>)>,
}

/// The pass-through elements of one bounded comparison, tallied in one pass and reused
/// (SPEC.md §8.5). `--profile auto`'s search passes over every non-target for its own tally;
/// it fills one of these on the way ([`PassThroughPart::add_row`]), and the check of the
/// profile it finds takes its pass-through tallies from it instead of a second pass over every
/// non-target ([`Extras::reuse`]). Reused only where the two passes are the same pass: the
/// same target columns, output scale and dtype, a profile that leaves non-targets untouched
/// (their reference `s·x`, `s·top_diff` and budget depend on nothing else), no modulation and no
/// per-row margins, and every pass-through element within budget (nothing to list).
#[derive(Clone, Debug)]
pub struct PassThroughPart {
    targets: Vec<Option<usize>>,
    s_bits: u64,
    dtype: Dtype,
    forward: Tally,
    backward: Tally,
    non_finite_within: usize,
    failing: usize,
    /// The rows with an out-of-budget pass-through element, in order.
    failing_rows: Vec<usize>,
}

/// One row of a [`PassThroughPart`], filled column by column.
#[derive(Default)]
pub struct PassThroughRow {
    forward: Tally,
    backward: Tally,
    non_finite_within: usize,
    failing: usize,
}

impl PassThroughRow {
    /// Pass-through element (row, col) of `case`, with its references and budget: the
    /// element [`compare`] builds there, on each side the case has.
    pub fn add(&mut self, case: &LayerCase, row: usize, col: usize, want: (f64, f64), bud: Budget) {
        let i = row * case.c + col;
        for (side, out, reference, budget) in [
            (Side::Forward, &case.forward, want.0, bud.forward),
            (Side::Backward, &case.backward, want.1, bud.backward),
        ] {
            let Some(out) = out else { continue };
            let e = Element {
                side,
                role: Role::PassThrough,
                row,
                col,
                input: case.cos[i],
                label: case.labels[row],
                top_diff: case.top_diff.as_ref().map_or(1.0, |t| t[i]),
                actual: out[i],
                reference,
                budget,
                fraction: tolerance::error_fraction(out[i], reference, budget),
            };
            if !e.actual.is_finite() && e.passed() {
                self.non_finite_within += 1;
            }
            self.failing += usize::from(!e.passed());
            match side {
                Side::Forward => self.forward.add(&e),
                Side::Backward => self.backward.add(&e),
            }
        }
    }
}

impl PassThroughPart {
    /// An empty part for a case whose rows have target columns `targets`, at output scale `s`.
    pub fn new(targets: Vec<Option<usize>>, s: f64, dtype: Dtype) -> PassThroughPart {
        PassThroughPart {
            targets,
            s_bits: s.to_bits(),
            dtype,
            forward: Tally::default(),
            backward: Tally::default(),
            non_finite_within: 0,
            failing: 0,
            failing_rows: Vec::new(),
        }
    }
    /// Adds row `row`, the next (rows in order: of equal worst fractions the earlier stays).
    pub fn add_row(&mut self, row: usize, r: &PassThroughRow) {
        self.forward.merge(&r.forward);
        self.backward.merge(&r.backward);
        self.non_finite_within += r.non_finite_within;
        self.failing += r.failing;
        if r.failing > 0 {
            self.failing_rows.push(row);
        }
    }
    /// The rows with an out-of-budget pass-through element, in order.
    pub fn failing_rows(&self) -> &[usize] {
        &self.failing_rows
    }
    /// Whether a comparison of `case` under `profile` at `p`, `dtype`, `detail` with target
    /// columns `targets` makes exactly this pass, with nothing to list.
    fn reusable(
        &self,
        case: &LayerCase,
        profile: &Profile,
        p: &Params,
        dtype: Dtype,
        detail: Detail,
        targets: &[Option<usize>],
    ) -> bool {
        detail == Detail::Bounded
            && self.failing == 0
            && self.s_bits == p.s.to_bits()
            && self.dtype == dtype
            && self.targets == targets
            && !profile.transforms_non_targets()
            && !case.modulation.is_active()
            && case.row_params.is_none()
    }
}

/// Strictly worse: larger fraction (NaN fractions never occur: non-finite mismatch is +inf).
fn worse(a: &Element, b: &Element) -> bool {
    a.fraction > b.fraction
}

/// The reference of one target entry as an implementation in `dtype` under `profile` would
/// produce it: scaled forward and backward, and their budgets.
#[derive(Clone, Copy, Debug)]
pub struct TargetRef {
    pub entry: Entry,
    pub forward: f64,
    pub backward: f64,
    pub budget: Budget,
}

/// Evaluates target references for one (profile, params, dtype): hoists the constants.
/// `p.s` is the scale the outputs carry (1 for an unscaled layer).
#[derive(Clone, Debug)]
pub struct Reference {
    pub profile: Profile,
    pub params: Params,
    pub dtype: Dtype,
    /// A-Softmax's annealing weight λ (SPEC.md §11.4): the target is
    /// `(λ·c̃ + ψ(θ)) / (1 + λ)`; `None` for the plain head.
    pub lambda: Option<f64>,
    k: Constants,
}

impl Reference {
    pub fn new(profile: &Profile, params: &Params, dtype: Dtype) -> Reference {
        Reference {
            profile: profile.clone(),
            params: *params,
            dtype,
            lambda: None,
            k: Constants::new(profile, params, dtype),
        }
    }

    /// The reference a case is judged by: `profile` at `p`, with the case's own λ (one place,
    /// so no scorer of targets forgets it).
    pub fn for_case(profile: &Profile, p: &Params, dtype: Dtype, case: &LayerCase) -> Reference {
        Reference::new(profile, p, dtype).with_lambda(case.lambda)
    }

    /// The same reference with A-Softmax's annealing weight λ (SPEC.md §11.4).
    pub fn with_lambda(mut self, lambda: Option<f64>) -> Reference {
        self.lambda = lambda;
        self
    }

    /// A target entry: the profile's margin ψ at c, or under λ (SPEC.md §11.4)
    /// `(λ·c̃ + ψ)/(1 + λ)` with derivative `(λ·[c̃ not clamped] + ψ′)/(1 + λ)`, c̃ the
    /// input after the domain clamp. Its budget is ψ's over (1 + λ) plus the combination's
    /// roundings (the product λ·c̃, the sum, the division: one ulp each).
    pub fn target(&self, c: f64, top_diff: f64) -> TargetRef {
        let plain = self.target_plain(c, top_diff);
        let Some(l) = self.lambda else { return plain };
        let s = self.params.s;
        let e = plain.entry;
        let through = if e.domain_clamped { 0.0 } else { 1.0 };
        let forward = (l * s * e.c_eff + plain.forward) / (1.0 + l);
        let backward = (l * s * top_diff * through + plain.backward) / (1.0 + l);
        let u = |v: f64| self.dtype.ulp(v);
        TargetRef {
            entry: e,
            forward,
            backward,
            budget: Budget {
                forward: plain.budget.forward / (1.0 + l) + u(l * s * e.c_eff) + 2.0 * u(forward),
                backward: plain.budget.backward / (1.0 + l)
                    + u(l * s * top_diff)
                    + 2.0 * u(backward),
            },
        }
    }

    fn target_plain(&self, c: f64, top_diff: f64) -> TargetRef {
        let e = margin::eval_with(c, &self.params, &self.profile, &self.k);
        let s = self.params.s;
        TargetRef {
            entry: e,
            forward: s * e.out,
            backward: s * top_diff * e.factor,
            budget: tolerance::target_budget_for(
                &e,
                top_diff,
                &self.params,
                &self.profile,
                self.dtype,
            ),
        }
    }

    /// Reference and budget of an untouched entry: (forward, backward, budget).
    pub fn passthrough(&self, c: f64, top_diff: f64) -> (f64, f64, Budget) {
        let s = self.params.s;
        (
            s * c,
            s * top_diff,
            tolerance::passthrough_budget(c, top_diff, s, self.dtype),
        )
    }

    /// Reference and budget of a non-target entry under the profile's non-target treatment
    /// ([`margin::non_target`]): (forward, backward, budget).
    pub fn non_target(&self, c: f64, top_diff: f64) -> (f64, f64, Budget) {
        let (out, factor, transformed) = margin::non_target(c, &self.profile, &self.k);
        if !transformed {
            return self.passthrough(c, top_diff);
        }
        let s = self.params.s;
        (
            s * out,
            s * top_diff * factor,
            tolerance::non_target_budget(c, out, top_diff * factor, s, &self.profile, self.dtype),
        )
    }

    /// The profile's own treatment of a non-target input `c` (clamp, round trip; §2.5):
    /// (c̃, d c̃ / d c). The modulation of SPEC.md §11.3 acts on c̃.
    pub fn non_target_input(&self, c: f64) -> (f64, f64) {
        let (ct, f, _) = margin::non_target(c, &self.profile, &self.k);
        (ct, f)
    }

    /// Reference and budget of a non-target entry that the row's modulation changes
    /// (SPEC.md §11.3): the profile's non-target treatment c̃ (factor f), then the
    /// modulation's value v(c̃) with derivative v′: forward `s·v(c̃)`, backward
    /// `s·top_diff·f·v′(c̃)` (0 where the treatment blocks the gradient, as a clamp's
    /// backward masks it).
    pub fn modulated(&self, m: &Modulation, c: f64, top_diff: f64) -> (f64, f64, Budget) {
        let (ct, f, transformed) = margin::non_target(c, &self.profile, &self.k);
        let (v, d) = m.value(ct);
        let s = self.params.s;
        let g = top_diff * f;
        let grad = if f == 0.0 { 0.0 } else { g * d };
        let base = if transformed {
            tolerance::non_target_budget(c, ct, g, 1.0, &self.profile, self.dtype)
        } else {
            Budget {
                forward: 0.0,
                backward: 0.0,
            }
        };
        let own = m.budget(ct, g, self.dtype);
        let scale = |v: f64| {
            if s == 1.0 {
                0.0
            } else {
                tolerance::consts::PASSTHROUGH_ULP * self.dtype.ulp(v)
            }
        };
        // The treatment's error carried through the modulation's slope; none carries none,
        // also where the slope is infinite (|c̃| = 1 under inter-top-k: 0·inf would be NaN).
        let carried = |b: f64| if b == 0.0 { 0.0 } else { b * d.abs() };
        (
            s * v,
            s * grad,
            Budget {
                forward: s * (carried(base.forward) + own.forward) + scale(s * v),
                backward: s * (carried(base.backward) + own.backward) + scale(s * grad),
            },
        )
    }

    /// The treatment of each column of row `row` (kind `kind`, inputs `cos_row`) under the
    /// modulation `m`: `None` where nothing is modulated (no modulation, or no target).
    pub fn row_plan(&self, m: &Modulation, kind: Row, cos_row: &[f64]) -> Option<Vec<Treatment>> {
        let Row::Target(t) = kind else { return None };
        if !m.is_active() {
            return None;
        }
        let c_nt: Vec<f64> = cos_row
            .iter()
            .map(|&c| margin::non_target(c, &self.profile, &self.k).0)
            .collect();
        let e = margin::eval_with(cos_row[t], &self.params, &self.profile, &self.k);
        Some(m.plan(&c_nt, t, &e, &self.params, self.dtype))
    }

    /// The reference of a non-target entry under its treatment `tr`; for
    /// [`Treatment::Either`], the value nearer to `actual` (the forward output where the
    /// case has one, else the backward): (forward, backward, budget).
    pub fn treated(
        &self,
        m: &Modulation,
        tr: Treatment,
        c: f64,
        top_diff: f64,
        actual: (Option<f64>, Option<f64>),
    ) -> (f64, f64, Budget) {
        match tr {
            Treatment::Unchanged => self.non_target(c, top_diff),
            Treatment::Modulated => self.modulated(m, c, top_diff),
            Treatment::Either => {
                let a = self.non_target(c, top_diff);
                let b = self.modulated(m, c, top_diff);
                let dist = |r: &(f64, f64, Budget)| match actual {
                    (Some(f), _) => (f - r.0).abs(),
                    (None, Some(bw)) => (bw - r.1).abs(),
                    (None, None) => 0.0,
                };
                if dist(&b) < dist(&a) {
                    b
                } else {
                    a
                }
            }
        }
    }

    /// The reference of any entry of a row: target, non-target or untouched.
    pub fn entry(&self, row: Row, col: usize, c: f64, top_diff: f64) -> (Role, f64, f64, Budget) {
        match row {
            Row::Target(t) if t == col => {
                let r = self.target(c, top_diff);
                (Role::Target, r.forward, r.backward, r.budget)
            }
            Row::Target(_) | Row::NoTarget => {
                let (f, b, bud) = self.non_target(c, top_diff);
                (Role::PassThrough, f, b, bud)
            }
            Row::Untouched => {
                let (f, b, bud) = self.passthrough(c, top_diff);
                (Role::PassThrough, f, b, bud)
            }
        }
    }
}

/// The parameters the outputs were produced with, carrying the output scale: the effective
/// parameters, with s = 1 where the implementation does not scale inside the layer.
pub fn output_params(case: &LayerCase) -> Params {
    let mut p = case.params_effective;
    if !case.scaled {
        p.s = 1.0;
    }
    p
}

/// The comparison of one case under one profile.
#[derive(Clone, Debug)]
pub struct CaseReport {
    pub name: String,
    pub profile: Profile,
    pub dtype: Dtype,
    /// Parameters with the output scale (see [`output_params`]).
    pub params: Params,
    pub n: usize,
    pub c: usize,
    /// Target column per row (`None` for ignored rows).
    pub targets: Vec<Option<usize>>,
    /// Each row under the label policy.
    pub rows: Vec<Row>,
    pub forward_targets: Tally,
    pub forward_passthrough: Tally,
    pub backward_targets: Tally,
    pub backward_passthrough: Tally,
    /// The compared elements, forward first, row-major within a side: every one under
    /// [`Detail::Every`]; under [`Detail::Bounded`] the targets and the out-of-budget
    /// pass-through elements (at most [`LISTED_MAX`] of those).
    pub elements: Vec<Element>,
    /// Which elements `elements` holds.
    pub detail: Detail,
    /// Elements whose output is not finite and within budget: the reference predicts the
    /// non-finite value there (agreement), counted whatever the detail.
    pub non_finite_within: usize,
    /// Out-of-budget pass-through elements a [`Detail::Bounded`] comparison counted but did
    /// not list (beyond [`LISTED_MAX`]); 0 under [`Detail::Every`].
    pub unlisted: usize,
    /// Scalars compared besides the elements (the loss of a loss-only dump); usually empty.
    pub scalars: Vec<Scalar>,
    pub kinks: Vec<Kink>,
    /// Per-row margins (FORMAT.md "Margin families"): each row's parameters (s = the output
    /// scale) and kinks; empty when every row has `params`.
    pub row_params: Vec<Params>,
    pub row_kinks: Vec<Vec<Kink>>,
    /// A-Softmax's annealing weight λ the targets were compared under (SPEC.md §11.4).
    pub lambda: Option<f64>,
    /// Every element's fraction and budget, where asked for ([`compare_keeping_arrays`]).
    pub arrays: Option<ElementArrays>,
}

/// A scalar compared besides the [N, C] grid: the loss of a loss-only dump (SPEC.md §8.7).
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    /// What it is ("loss").
    pub name: &'static str,
    pub actual: f64,
    pub reference: f64,
    pub budget: f64,
    /// `|actual − reference| / budget` ([`tolerance::error_fraction`]).
    pub fraction: f64,
}

impl Scalar {
    pub fn new(name: &'static str, actual: f64, reference: f64, budget: f64) -> Scalar {
        Scalar {
            name,
            actual,
            reference,
            budget,
            fraction: tolerance::error_fraction(actual, reference, budget),
        }
    }
    pub fn passed(&self) -> bool {
        self.fraction <= 1.0
    }
}

/// How many element records a comparison keeps (SPEC.md §8.5). The tallies (counts, the
/// worst element of each group) are exact either way; only the per-element list differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Every compared element: what the deviation detectors and the per-element outputs
    /// (fractions and budgets of the Python package) read.
    Every,
    /// Every target element (N per side), and out-of-budget pass-through elements up to
    /// [`LISTED_MAX`]; pass-through elements within budget are only counted. The memory of a
    /// check at 10^5–10^6 classes is then the arrays', not 88 bytes per element and side.
    Bounded,
}

/// The most entries per side (N·C) a comparison keeps every element of under
/// [`Detail::for_shape`]: 2 × 2^20 records of 88 bytes, 185 MB. Every shipped golden dump is
/// far below it, so their comparisons are [`Detail::Every`].
pub const EVERY_ELEMENT_MAX: usize = 1 << 20;

/// The most entries a bounded check diagnoses (at least one row): the detectors read every
/// element of the rows they are given, and try variants on each, so their time grows with
/// the out-of-budget elements they see (SPEC.md §8.5).
pub const DIAGNOSED_MAX: usize = 1 << 17;

/// The most out-of-budget pass-through elements a [`Detail::Bounded`] comparison lists; the
/// rest are counted in [`CaseReport::unlisted`].
pub const LISTED_MAX: usize = 1 << 16;

impl Detail {
    /// [`Detail::Every`] up to [`EVERY_ELEMENT_MAX`] entries per side, else [`Detail::Bounded`].
    pub fn for_shape(n: usize, c: usize) -> Detail {
        if n.saturating_mul(c) <= EVERY_ELEMENT_MAX {
            Detail::Every
        } else {
            Detail::Bounded
        }
    }
}

/// The rows of an `n` × `c` case that a bounded check diagnoses, or a search scores, on
/// (SPEC.md §8.5): the first of `failing` (rows with an out-of-budget element, in order), then
/// the first other rows, as many as [`DIAGNOSED_MAX`] entries (at least one row), in order.
pub fn diagnosed_rows(failing: &[usize], n: usize, c: usize) -> Vec<usize> {
    let most = (DIAGNOSED_MAX / c.max(1)).max(1);
    let mut rows: Vec<usize> = failing.to_vec();
    rows.sort_unstable();
    rows.dedup();
    rows.truncate(most);
    let failing_rows = rows.clone();
    rows.extend(
        (0..n)
            .filter(|r| failing_rows.binary_search(r).is_err())
            .take(most - failing_rows.len()),
    );
    rows.sort_unstable();
    rows
}

/// Radius in cos-space within which a report says "near <kink>".
pub const REGION_RADIUS: f64 = 1e-3;

impl CaseReport {
    /// Every element (and every scalar) within budget.
    pub fn passed(&self) -> bool {
        self.tallies().iter().all(|(_, t)| t.within == t.count) && !self.scalars_failing()
    }

    /// Whether the case has outputs on `side` (some element of it was compared).
    pub fn has_side(&self, side: Side) -> bool {
        let [ft, fp, bt, bp] = self.tallies();
        let n = match side {
            Side::Forward => ft.1.count + fp.1.count,
            Side::Backward => bt.1.count + bp.1.count,
        };
        n > 0
    }

    /// Whether `elements` holds every compared element ([`Detail::Every`]).
    pub fn is_complete(&self) -> bool {
        self.detail == Detail::Every
    }

    /// Sets every element's budget to `budget(element)` and recomputes its fraction and the
    /// tallies (a loss-only case widens the layer budgets by the softmax's, `crate::loss_only`).
    /// Only a [`Detail::Every`] report can be re-budgeted: a bounded one has not kept the
    /// elements within budget.
    pub fn rebudget(&mut self, budget: impl Fn(&Element) -> f64) -> Result<()> {
        if self.detail != Detail::Every {
            return Err(Error::Invalid(format!(
                "case {:?}: a bounded comparison ({} entries per side) cannot be re-budgeted",
                self.name,
                self.n * self.c
            )));
        }
        self.forward_targets = Tally::default();
        self.forward_passthrough = Tally::default();
        self.backward_targets = Tally::default();
        self.backward_passthrough = Tally::default();
        self.non_finite_within = 0;
        for e in &mut self.elements {
            e.budget = budget(e);
            e.fraction = tolerance::error_fraction(e.actual, e.reference, e.budget);
            if !e.actual.is_finite() && e.passed() {
                self.non_finite_within += 1;
            }
            match (e.side, e.role) {
                (Side::Forward, Role::Target) => self.forward_targets.add(e),
                (Side::Forward, Role::PassThrough) => self.forward_passthrough.add(e),
                (Side::Backward, Role::Target) => self.backward_targets.add(e),
                (Side::Backward, Role::PassThrough) => self.backward_passthrough.add(e),
            }
        }
        Ok(())
    }

    /// Some scalar (the loss of a loss-only dump) is out of budget.
    pub fn scalars_failing(&self) -> bool {
        self.scalars.iter().any(|x| !x.passed())
    }

    /// Compared elements, both sides.
    pub fn count(&self) -> usize {
        self.tallies().iter().map(|(_, t)| t.count).sum()
    }

    /// Compared elements within budget, both sides.
    pub fn within(&self) -> usize {
        self.tallies().iter().map(|(_, t)| t.within).sum()
    }

    pub fn failing(&self) -> impl Iterator<Item = &Element> {
        self.elements.iter().filter(|e| !e.passed())
    }

    /// The element with the largest error fraction; of equals, the first in element order
    /// (forward first, row-major). From the tallies, so a bounded report has it too.
    pub fn worst(&self) -> Option<&Element> {
        let order = |e: &Element| (e.side, e.row, e.col);
        // `e` replaces `w` when worse, or as bad and earlier.
        let replaces = |e: &Element, w: &Element| {
            worse(e, w) || e.fraction == w.fraction && order(e) < order(w)
        };
        self.tallies()
            .into_iter()
            .filter_map(|(_, t)| t.worst.as_ref())
            .fold(None, |w: Option<&Element>, e| match w {
                Some(w) if !replaces(e, w) => Some(w),
                _ => Some(e),
            })
    }

    pub fn max_fraction(&self) -> f64 {
        self.worst().map_or(0.0, |w| w.fraction)
    }

    /// The four tallies with their labels, in report order.
    pub fn tallies(&self) -> [(&'static str, &Tally); 4] {
        [
            ("forward targets", &self.forward_targets),
            ("forward pass-through", &self.forward_passthrough),
            ("backward targets", &self.backward_targets),
            ("backward pass-through", &self.backward_passthrough),
        ]
    }

    /// The parameters row `row` was compared at (s = the output scale).
    pub fn params_of_row(&self, row: usize) -> Params {
        self.row_params.get(row).copied().unwrap_or(self.params)
    }

    /// The reference of row `row` (its own margins where they are per row).
    pub fn reference_of_row(&self, row: usize) -> Reference {
        Reference::new(&self.profile, &self.params_of_row(row), self.dtype).with_lambda(self.lambda)
    }

    /// The kinks of row `row` (its own margins' where they are per row).
    pub fn kinks_of_row(&self, row: usize) -> &[Kink] {
        self.row_kinks.get(row).map_or(&self.kinks, |k| k)
    }

    /// Where an element's input sits: "interior", "near <kink> (dc = …)", or "pass-through".
    pub fn region(&self, e: &Element) -> String {
        match e.role {
            Role::Target => kinks::region(e.input, self.kinks_of_row(e.row), REGION_RADIUS),
            Role::PassThrough => {
                if self.targets[e.row].is_none() {
                    "ignored row".into()
                } else {
                    "non-target".into()
                }
            }
        }
    }

    /// One line describing an element, for reports.
    pub fn describe(&self, e: &Element) -> String {
        let role = match e.role {
            Role::Target => "target",
            Role::PassThrough => "pass-through",
        };
        format!(
            "{} {role} ({}, {}) cos = {} label {}: got {}, want {} (budget {:.2e}, {}); {}",
            e.side.name(),
            e.row,
            e.col,
            num(e.input),
            e.label,
            num(e.actual),
            num(e.reference),
            e.budget,
            if e.fraction.is_infinite() && e.actual.is_finite() && e.reference.is_finite() {
                "differs where bit equality is required".to_string()
            } else {
                fraction_text(e.fraction)
            },
            self.region(e)
        )
    }
}

/// A number as reports print it: the shortest round-trip form.
pub fn num(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else {
        format!("{x:?}")
    }
}

/// An error fraction for people: "0.37 of budget", "inf (non-finite mismatch)".
pub fn fraction_text(f: f64) -> String {
    if f.is_infinite() {
        "non-finite mismatch".into()
    } else if f >= 1e4 {
        format!("{f:.2e} x budget")
    } else {
        format!("{f:.3} of budget")
    }
}

/// Compares `case` (outputs of an implementation that ran in `dtype`) with the reference
/// under `profile`, at the case's effective parameters.
///
/// Errors: labels outside [0, C) other than the ignore value, a backward without a
/// `top_diff`, or a case with neither forward nor backward.
pub fn compare(case: &LayerCase, profile: &Profile, dtype: Dtype) -> Result<CaseReport> {
    compare_with_params(case, profile, &output_params(case), dtype)
}

/// [`compare`] at explicit parameters (`p.s` = the output scale). The deviation detectors
/// use it to evaluate variants of the claimed parameters.
pub fn compare_with_params(
    case: &LayerCase,
    profile: &Profile,
    p: &Params,
    dtype: Dtype,
) -> Result<CaseReport> {
    compare_with_detail(case, profile, p, dtype, Detail::for_shape(case.n, case.c))
}

/// [`compare_with_params`] keeping the elements `detail` asks for.
pub fn compare_with_detail(
    case: &LayerCase,
    profile: &Profile,
    p: &Params,
    dtype: Dtype,
    detail: Detail,
) -> Result<CaseReport> {
    compare_extras(case, profile, p, dtype, detail, Extras::default())
}

/// A [`Detail::Bounded`] comparison that also keeps every element's fraction and budget in
/// [`CaseReport::arrays`] (16 bytes per element and side instead of a record of 88): the
/// Python package's per-element outputs at 10^5–10^6 classes.
pub fn compare_keeping_arrays(
    case: &LayerCase,
    profile: &Profile,
    p: &Params,
    dtype: Dtype,
) -> Result<CaseReport> {
    let extras = Extras {
        reuse: None,
        arrays: true,
    };
    compare_extras(case, profile, p, dtype, Detail::Bounded, extras)
}

/// What a comparison may reuse and what it keeps besides its [`Detail`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras<'a> {
    /// The pass-through tallies of the same pass made before ([`PassThroughPart`]): where
    /// that is the same pass, only the target entries are evaluated, and the report is the
    /// one the full pass gives (`tests/bounded.rs` compares them).
    pub reuse: Option<&'a PassThroughPart>,
    /// Keep every element's fraction and budget ([`CaseReport::arrays`]); no reuse then.
    pub arrays: bool,
}

/// [`compare_with_detail`] with [`Extras`].
pub fn compare_extras(
    case: &LayerCase,
    profile: &Profile,
    p: &Params,
    dtype: Dtype,
    detail: Detail,
    extras: Extras,
) -> Result<CaseReport> {
    let (part, keep_arrays) = (extras.reuse, extras.arrays);
    p.validate()?;
    let (n, c) = (case.n, case.c);
    if case.forward.is_none() && case.backward.is_none() {
        return Err(Error::Invalid(
            "the case has neither \"forward\" nor \"backward\": nothing to compare".into(),
        ));
    }
    if case.backward.is_some() && case.top_diff.is_none() {
        return Err(Error::Invalid(
            "\"backward\" is given without the \"top_diff\" it was computed from".into(),
        ));
    }
    for (what, v) in [
        ("forward", &case.forward),
        ("backward", &case.backward),
        ("top_diff", &case.top_diff),
    ] {
        if let Some(v) = v {
            if v.len() != n * c {
                return Err(Error::ShapeMismatch {
                    what: what.into(),
                    expected: n * c,
                    got: v.len(),
                });
            }
        }
    }
    let rows = layer::rows(n, c, &case.labels, profile)?;
    let targets: Vec<Option<usize>> = rows.iter().map(|r| r.target()).collect();
    // Per-row margins: one reference (constants, threshold, budget) and one kink list per row.
    let row_params: Vec<Params> = match &case.row_params {
        Some(_) => (0..n).map(|row| case.params_for_row(row, p)).collect(),
        None => Vec::new(),
    };
    for q in &row_params {
        q.validate()?;
    }
    let reference = Reference::for_case(profile, p, dtype, case);
    let row_refs: Vec<Reference> = row_params
        .iter()
        .map(|q| Reference::for_case(profile, q, dtype, case))
        .collect();
    let reference_of = |row: usize| row_refs.get(row).unwrap_or(&reference);
    let row_kinks = row_params
        .iter()
        .map(|q| kinks::kinks(profile, &Params { s: 1.0, ..*q }, dtype))
        .collect();
    let mut report = CaseReport {
        name: case.name.clone(),
        profile: profile.clone(),
        dtype,
        params: *p,
        n,
        c,
        targets: targets.clone(),
        rows: rows.clone(),
        forward_targets: Tally::default(),
        forward_passthrough: Tally::default(),
        backward_targets: Tally::default(),
        backward_passthrough: Tally::default(),
        elements: Vec::with_capacity(match detail {
            Detail::Every => 2 * n * c,
            Detail::Bounded => 2 * n,
        }),
        detail,
        non_finite_within: 0,
        unlisted: 0,
        scalars: Vec::new(),
        kinks: kinks::kinks(profile, &Params { s: 1.0, ..*p }, dtype),
        row_params: row_params.clone(),
        row_kinks,
        lambda: case.lambda,
        arrays: keep_arrays.then(ElementArrays::default),
    };
    // Evaluate each target once for both sides.
    let top = |i: usize| case.top_diff.as_ref().map_or(1.0, |t| t[i]);
    let refs: Vec<Option<TargetRef>> = (0..n)
        .map(|row| {
            targets[row]
                .map(|col| reference_of(row).target(case.cos[row * c + col], top(row * c + col)))
        })
        .collect();
    // Non-target modulation (SPEC.md §11.3): each row's treatment of its non-targets, and
    // their references (both sides decided once, on the same branch).
    let plans: Vec<Option<Vec<Treatment>>> = (0..n)
        .map(|row| {
            reference_of(row).row_plan(
                &case.modulation,
                rows[row],
                &case.cos[row * c..(row + 1) * c],
            )
        })
        .collect();
    let modulated = |row: usize, col: usize| -> Option<(f64, f64, Budget)> {
        let tr = plans[row].as_ref()?[col];
        if tr == Treatment::Unchanged {
            return None;
        }
        let i = row * c + col;
        let actual = (
            case.forward.as_ref().map(|v| v[i]),
            case.backward.as_ref().map(|v| v[i]),
        );
        Some(reference_of(row).treated(&case.modulation, tr, case.cos[i], top(i), actual))
    };
    // One row of one side: its tallies, and the elements it keeps (every one, or under
    // Detail::Bounded its target and at most `room` out-of-budget pass-through elements).
    // Arrays need every element: no reuse then.
    let reused =
        part.filter(|pt| !keep_arrays && pt.reusable(case, profile, p, dtype, detail, &targets));
    let row_part = |side: Side, out: &[f64], row: usize, room: usize| -> RowPart {
        let mut part = RowPart::default();
        // With a reused pass-through part, only the row's target is compared here.
        let cols = match (reused, targets[row]) {
            (Some(_), Some(t)) => t..t + 1,
            (Some(_), None) => 0..0,
            (None, _) => 0..c,
        };
        for col in cols {
            let i = row * c + col;
            let x = case.cos[i];
            let md = match targets[row] {
                Some(t) if t != col => modulated(row, col),
                Some(_) | None => None,
            };
            let (role, want, budget) = match (targets[row], &refs[row]) {
                (Some(t), Some(r)) if t == col => match side {
                    Side::Forward => (Role::Target, r.forward, r.budget.forward),
                    Side::Backward => (Role::Target, r.backward, r.budget.backward),
                },
                _ => {
                    let (f, b, bud) = match md {
                        Some(r) => r,
                        None => {
                            let (_, f, b, bud) = reference_of(row).entry(rows[row], col, x, top(i));
                            (f, b, bud)
                        }
                    };
                    match side {
                        Side::Forward => (Role::PassThrough, f, bud.forward),
                        Side::Backward => (Role::PassThrough, b, bud.backward),
                    }
                }
            };
            let e = Element {
                side,
                role,
                row,
                col,
                input: x,
                label: case.labels[row],
                top_diff: top(i),
                actual: out[i],
                reference: want,
                budget,
                fraction: tolerance::error_fraction(out[i], want, budget),
            };
            if keep_arrays {
                part.arrays.push((e.fraction, e.budget));
            }
            match role {
                Role::Target => part.target.add(&e),
                Role::PassThrough => part.passthrough.add(&e),
            }
            if !e.actual.is_finite() && e.passed() {
                part.non_finite_within += 1;
            }
            let failing_passthrough = role == Role::PassThrough && !e.passed();
            part.failing_passthrough += usize::from(failing_passthrough);
            let keep = match detail {
                Detail::Every => true,
                Detail::Bounded => {
                    role == Role::Target || failing_passthrough && part.failing_passthrough <= room
                }
            };
            if keep {
                part.elements.push(e);
            }
        }
        part
    };
    // Rows are compared in parallel, a wave of ROWS_PER_WAVE at a time, and merged in row
    // order: the report (tallies, worst elements, the list) does not depend on the threads.
    use rayon::prelude::*;
    const ROWS_PER_WAVE: usize = 64;
    // Out-of-budget pass-through elements listed so far (Detail::Bounded lists LISTED_MAX).
    let mut listed = 0usize;
    for (side, out) in [
        (Side::Forward, &case.forward),
        (Side::Backward, &case.backward),
    ] {
        let Some(out) = out else { continue };
        let (targets_tally, passthrough_tally) = match side {
            Side::Forward => (&mut report.forward_targets, &mut report.forward_passthrough),
            Side::Backward => (
                &mut report.backward_targets,
                &mut report.backward_passthrough,
            ),
        };
        let mut start = 0;
        while start < n {
            let end = (start + ROWS_PER_WAVE).min(n);
            let room = LISTED_MAX - listed;
            let parts: Vec<RowPart> = (start..end)
                .into_par_iter()
                .map(|row| row_part(side, out, row, room))
                .collect();
            for (row, part) in (start..end).zip(parts) {
                if let Some(arrays) = &mut report.arrays {
                    let (f, b) = match side {
                        Side::Forward => &mut arrays.forward,
                        Side::Backward => &mut arrays.backward,
                    }
                    .get_or_insert_with(|| (vec![f64::NAN; n * c], vec![f64::NAN; n * c]));
                    for (col, &(x, y)) in part.arrays.iter().enumerate() {
                        f[row * c + col] = x;
                        b[row * c + col] = y;
                    }
                }
                targets_tally.merge(&part.target);
                passthrough_tally.merge(&part.passthrough);
                report.non_finite_within += part.non_finite_within;
                let mut kept_failing = 0;
                for e in part.elements {
                    let failing_passthrough = e.role == Role::PassThrough && !e.passed();
                    if detail == Detail::Bounded && failing_passthrough {
                        if listed == LISTED_MAX {
                            continue;
                        }
                        listed += 1;
                        kept_failing += 1;
                    }
                    report.elements.push(e);
                }
                if detail == Detail::Bounded {
                    report.unlisted += part.failing_passthrough - kept_failing;
                }
            }
            start = end;
        }
        if let Some(pt) = reused {
            *passthrough_tally = match side {
                Side::Forward => pt.forward,
                Side::Backward => pt.backward,
            };
        }
    }
    if let Some(pt) = reused {
        report.non_finite_within += pt.non_finite_within;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CosFace at s = 1 in f64: the target is c − m3 exactly (closed form, one rounding),
    /// every other entry a copy.
    fn cosface_case() -> LayerCase {
        let cos = vec![0.25, -0.5, 0.75, 0.125];
        let labels = vec![0, 1];
        let m3 = 0.35;
        let mut fwd = cos.clone();
        fwd[0] -= m3;
        fwd[3] -= m3;
        LayerCase {
            name: "cosface".into(),
            params: Params::new(1.0, 0.0, m3),
            params_effective: Params::new(1.0, 0.0, m3),
            scaled: false,
            easy_margin: None,
            n: 2,
            c: 2,
            cos,
            labels,
            top_diff: Some(vec![1.0, -1.0, 0.5, 2.0]),
            forward: Some(fwd),
            backward: Some(vec![1.0, -1.0, 0.5, 2.0]),
            row_params: None,
            modulation: Modulation::None,
            lambda: None,
            subcenters: None,
        }
    }

    #[test]
    fn closed_form_case_passes_and_a_one_ulp_copy_error_fails() {
        let case = cosface_case();
        let r = compare(&case, &Profile::preset("analytic").unwrap(), Dtype::F64).unwrap();
        assert!(r.passed(), "{:?}", r.worst());
        assert_eq!(
            (r.forward_targets.count, r.forward_passthrough.count),
            (2, 2)
        );
        // A copy must be exact at s = 1: one ulp off is rejected.
        let mut bad = case.clone();
        let x = bad.forward.as_ref().unwrap()[1];
        bad.forward.as_mut().unwrap()[1] = f64::from_bits(x.to_bits() + 1);
        let r = compare(&bad, &Profile::preset("analytic").unwrap(), Dtype::F64).unwrap();
        let w = r.worst().unwrap();
        assert_eq!((w.row, w.col, w.role), (0, 1, Role::PassThrough));
        assert!(!r.passed());
    }

    #[test]
    fn malformed_cases_are_errors() {
        let mut c = cosface_case();
        c.top_diff = None;
        assert!(matches!(
            compare(&c, &Profile::preset("analytic").unwrap(), Dtype::F64),
            Err(Error::Invalid(_))
        ));
        let mut c = cosface_case();
        c.forward = None;
        c.backward = None;
        assert!(compare(&c, &Profile::preset("analytic").unwrap(), Dtype::F64).is_err());
        let mut c = cosface_case();
        c.labels = vec![0, 2];
        assert!(matches!(
            compare(&c, &Profile::preset("analytic").unwrap(), Dtype::F64),
            Err(Error::LabelOutOfRange {
                row: 1,
                label: 2,
                ..
            })
        ));
    }
}
