//! Named deviations: where an implementation departs from the semantics it claims.
//!
//! A deviation is found by a detector that looks only at the implementation's outputs, the
//! case's inputs and claims, and the reference; it never consults a list of expected answers.
//! Each detected deviation carries the elements it accounts for, so that a report can say
//! whether every out-of-budget element has a named cause (SPEC.md §6).
//!
//! The set of kinds is closed ([`Kind::ALL`]); each kind's doc comment is its detector's rule.

use crate::compare::{self, CaseReport, Element, Side};
use crate::dtype::Dtype;
use crate::error::Result;
use crate::fixture::{Dump, FixtureError, LayerCase};
use crate::profile::Profile;
use std::collections::HashSet;

mod constants;
mod fitted;
mod modulation;
mod outputs;
mod row_margins;
mod rows;
mod subcenters;
mod variants;

use constants::*;
use fitted::*;
use outputs::*;
use rows::*;
use variants::*;

/// The closed set of deviation kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An output is NaN or ±inf although its input (and upstream gradient) is finite.
    NonFiniteOutput,
    /// A pass-through entry (non-target column, or any entry of an ignored row that the
    /// margin did not reach) is not `s·x` forward / `s·top_diff` backward within budget.
    NonTargetAltered,
    /// An ignored row was processed: an entry matches the margin transform instead of the
    /// pass-through, or a non-finite value appears at an entry whose input is in [−1, 1];
    /// or the dump declares ignored rows that its recording could not execute as the
    /// original code would (`forward_rows_not_executed`).
    IgnoreLabelNotHonoured,
    /// The labelled column is passed through while another column of the row carries the margin.
    WrongTargetColumn,
    /// The outputs are a constant multiple k ≠ 1 of the reference (e.g. the scale applied twice).
    ScaleMismatch,
    /// Every finite output is representable in a narrower format (f16, bf16) than the dtype,
    /// and the out-of-budget errors are within that format's rounding.
    ReducedPrecision,
    /// The targets match the reference with m1 := 1, m2 := 0 or m3 := 0 (or a pair of these)
    /// and not with the claimed parameters.
    MarginTermIgnored,
    /// The case claims `easy_margin = true`, but the targets follow a policy without it.
    EasyMarginIgnored,
    /// At (m1, m2) = (1, 0) the targets match the profile with the algebraic shortcut
    /// `c − m3` toggled (e.g. computed through acos/cos when the profile promises `c − m3`).
    IdentityShortcutDiffers,
    /// The targets match the profile with a different input clamp (none, one of the widths
    /// real code uses, or an ε fitted as a continuous constant).
    InputClampDiffers,
    /// The targets match the profile with θ in the other precision (native vs f32). In f64,
    /// also when within budget but the errors are ≥ 1000× smaller under the other precision.
    ThetaPrecisionDiffers,
    /// The targets match the profile with a different angle policy (raw, clamp, th/mm).
    AnglePolicyDiffers,
    /// The backward targets match the profile with a different factor clip.
    FactorClipDiffers,
    /// The backward targets equal `s·top_diff` (factor 1) while the profile's factor differs.
    GradientDetached,
    /// The backward targets match the negated reference.
    GradientSignFlipped,
    /// The backward targets match a different gradient mode (exact, formula at the clamped
    /// values, f32 rsqrt).
    GradientModeDiffers,
    /// The outputs match the profile with the acos/cos round trip placed differently (on the
    /// fallback branch, on non-target entries).
    RoundTripDiffers,
    /// The targets match the profile with the margin parameters held in another precision
    /// (f32 parameters in an f64 computation).
    ParamPrecisionDiffers,
    /// Rows without a target follow another label policy (e.g. −1 rows given the non-target
    /// treatment, or out-of-range labels ignored).
    LabelPolicyDiffers,
    /// The fitted m2 is radians(stated m2) (or degrees), to within a rounded conversion
    /// factor (π written as 3.14): the margin was given in degrees and converted (or the
    /// other way round).
    MarginUnits,
    /// One side carries the scale and the other does not: the forward matches with s and the
    /// backward with s = 1, or the reverse.
    ScaleMissingOneSide,
    /// The dtype is f64 but every output is an f32 value and the case passes as an f32
    /// implementation: the computation ran in f32.
    ComputedInF32,
    /// The outputs fit a profile two or more policy axes away from the claimed one; the
    /// detail says "behaves like X except Y".
    PolicyDiffers,
    /// A threshold or clamp constant of the profile, rounded to the dtype, lies on the wrong
    /// side of its exact value, and target inputs of the case fall between the two (the th/mm
    /// threshold sends them to the other branch; a clamp bound rounded to ±1 leaves the pole
    /// unclamped), where the outputs follow the rounded constant (`crate::degeneracy`).
    ConstantRoundedWrongSide,
    /// The targets match the profile with cos(θ + m2) evaluated another way: the trig
    /// identity `c·cos m − sinθ·sin m` (with its sine guard, on the target or over the whole
    /// matrix) instead of acos/cos, or the reverse.
    EvalFormDiffers,
    /// The targets match the profile with the target logit clipped to [−b, b] (b fitted), or
    /// without the clip it claims.
    OutputClipDiffers,
    /// The targets match the profile with the derived constants (th, mm, cos m, sin m)
    /// computed in another precision (f32 constants in an f64 computation).
    ConstantPrecisionDiffers,
    /// A stated parameter (m1, m2, m3 or s), fitted from the outputs
    /// ([`crate::verdict::fit`]), differs from the stated value beyond its uncertainty, and
    /// the profile at the fitted value explains the out-of-budget elements; the detail gives
    /// `m2 fits 0.499164 ± 2e-7 (28.6°), stated 0.5`.
    ParameterDiffers,
    /// Per-row margins (SPEC.md §11.1): the targets follow the profile with the rows'
    /// margins assigned otherwise: one (m1, m2, m3) for every row (the rows' mean, or row
    /// 0's), or every row given row i + k's (off by k rows); every failing element no
    /// earlier detector took must pass under that assignment.
    RowMarginsDiffer,
    /// Non-target modulation (SPEC.md §11.3) or A-Softmax's λ annealing (§11.4): the outputs
    /// follow the case's head with another of its inputs: CurricularFace's other recorded t
    /// (`t_before_forward`), a t fitted from the hard negatives, the mask against the target
    /// logit after the fallback, the gradient t + c (one factor detached), or no modulation;
    /// inter-top-k active/inactive toggled, k ± 1, or no penalty; no λ, or λ fitted from the
    /// targets. Every failing element no earlier detector took must pass under that variant,
    /// and every passing element still pass.
    ModulationDiffers,
    /// Sub-centres recorded as `cos_subcenters` (SPEC.md §11.2): the outputs follow another
    /// reduction over K than the max (one sub-centre alone, the mean, the min). Every failing
    /// element no earlier detector took must pass under it, and every passing element still
    /// pass.
    SubcenterReductionDiffers,
}

impl Kind {
    pub const ALL: [Kind; 31] = [
        Kind::NonFiniteOutput,
        Kind::NonTargetAltered,
        Kind::IgnoreLabelNotHonoured,
        Kind::WrongTargetColumn,
        Kind::ScaleMismatch,
        Kind::ReducedPrecision,
        Kind::MarginTermIgnored,
        Kind::EasyMarginIgnored,
        Kind::IdentityShortcutDiffers,
        Kind::InputClampDiffers,
        Kind::ThetaPrecisionDiffers,
        Kind::AnglePolicyDiffers,
        Kind::FactorClipDiffers,
        Kind::GradientDetached,
        Kind::GradientSignFlipped,
        Kind::GradientModeDiffers,
        Kind::RoundTripDiffers,
        Kind::ParamPrecisionDiffers,
        Kind::LabelPolicyDiffers,
        Kind::MarginUnits,
        Kind::ScaleMissingOneSide,
        Kind::ComputedInF32,
        Kind::PolicyDiffers,
        Kind::ConstantRoundedWrongSide,
        Kind::EvalFormDiffers,
        Kind::OutputClipDiffers,
        Kind::ConstantPrecisionDiffers,
        Kind::ParameterDiffers,
        Kind::RowMarginsDiffer,
        Kind::ModulationDiffers,
        Kind::SubcenterReductionDiffers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::NonFiniteOutput => "non-finite-output",
            Kind::NonTargetAltered => "non-target-altered",
            Kind::IgnoreLabelNotHonoured => "ignore-label-not-honoured",
            Kind::WrongTargetColumn => "wrong-target-column",
            Kind::ScaleMismatch => "scale-mismatch",
            Kind::ReducedPrecision => "reduced-precision",
            Kind::MarginTermIgnored => "margin-term-ignored",
            Kind::EasyMarginIgnored => "easy-margin-ignored",
            Kind::IdentityShortcutDiffers => "identity-shortcut-differs",
            Kind::InputClampDiffers => "input-clamp-differs",
            Kind::ThetaPrecisionDiffers => "theta-precision-differs",
            Kind::AnglePolicyDiffers => "angle-policy-differs",
            Kind::FactorClipDiffers => "factor-clip-differs",
            Kind::GradientDetached => "gradient-detached",
            Kind::GradientSignFlipped => "gradient-sign-flipped",
            Kind::GradientModeDiffers => "gradient-mode-differs",
            Kind::RoundTripDiffers => "round-trip-differs",
            Kind::ParamPrecisionDiffers => "param-precision-differs",
            Kind::LabelPolicyDiffers => "label-policy-differs",
            Kind::MarginUnits => "margin-units",
            Kind::ScaleMissingOneSide => "scale-missing-one-side",
            Kind::ComputedInF32 => "computed-in-f32",
            Kind::PolicyDiffers => "policy-differs",
            Kind::ConstantRoundedWrongSide => "constant-rounded-wrong-side",
            Kind::EvalFormDiffers => "eval-form-differs",
            Kind::OutputClipDiffers => "output-clip-differs",
            Kind::ConstantPrecisionDiffers => "constant-precision-differs",
            Kind::ParameterDiffers => "parameter-differs",
            Kind::RowMarginsDiffer => "row-margins-differ",
            Kind::ModulationDiffers => "modulation-differs",
            Kind::SubcenterReductionDiffers => "subcenter-reduction-differs",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An element key: side and flat row-major index.
pub type Key = (Side, usize);

/// One detected deviation.
#[derive(Clone, Debug)]
pub struct Deviation {
    pub kind: Kind,
    /// What was found, with numbers, for people.
    pub detail: String,
    /// The out-of-budget elements this deviation accounts for.
    pub explains: HashSet<Key>,
}

/// What a dump declares about its own recording, beyond the outputs.
#[derive(Clone, Debug, Default)]
pub struct Declared {
    /// Rows whose forward the recording harness did not execute (Caffe GPU emulation).
    pub forward_rows_not_executed: Vec<usize>,
}

/// The full check of one case: comparison, deviations, and what is left unexplained.
#[derive(Clone, Debug)]
pub struct CaseCheck {
    pub report: CaseReport,
    pub deviations: Vec<Deviation>,
    /// Out-of-budget elements no deviation accounts for (of the diagnosed rows).
    pub unexplained: Vec<Element>,
    /// `None`: the detectors saw every element. `Some`: the comparison was bounded
    /// ([`compare::Detail::Bounded`]) and the detectors ran on a subset of the rows.
    pub subset: Option<Box<Subset>>,
}

/// The rows a bounded check diagnosed (SPEC.md §8.5): the detectors read every element, so a
/// case too large to keep them all is diagnosed on its first rows with out-of-budget elements
/// then its first other rows, as many as [`compare::DIAGNOSED_MAX`] entries allow.
#[derive(Clone, Debug)]
pub struct Subset {
    /// The rows of the case, ascending; row i of `report` is `rows[i]` of the case.
    pub rows: Vec<usize>,
    /// The complete comparison of those rows.
    pub report: CaseReport,
    /// Out-of-budget elements outside `rows`: not diagnosed.
    pub undiagnosed: usize,
}

impl Subset {
    /// The case's key of the subset report's element key.
    fn case_key(&self, (side, i): Key, c: usize) -> Key {
        (side, self.rows[i / c] * c + i % c)
    }
}

/// A case's verdict (SPEC.md §6.5, the one rule): FAIL iff an element (or the loss) is out of
/// budget, a non-finite mismatch included; otherwise DEVIATES iff a deviation accounts for
/// elements (a finding), else PASS. A deviation that accounts for no out-of-budget element is
/// a *note* ([`CaseCheck::is_note`]): listed, never a reason to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every element within budget, and no deviation other than notes.
    Pass,
    /// Within budget under the compared point, but a deviation accounts for elements of the
    /// case (a claim the outputs contradict, e.g. a stated constant the fit moves).
    Deviates,
    /// Some element is out of budget (or a non-finite output where a finite one is due).
    Fail,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Deviates => "DEVIATES",
            Verdict::Fail => "FAIL",
        }
    }
}

impl CaseCheck {
    /// The verdict: the rule of SPEC.md §6.5, in this one place.
    pub fn verdict(&self) -> Verdict {
        if !self.report.passed() {
            Verdict::Fail
        } else if self.findings().next().is_some() {
            Verdict::Deviates
        } else {
            Verdict::Pass
        }
    }

    /// Whether `d` is a note: it accounts for no element that is out of budget in this case
    /// (e.g. `constant-rounded-wrong-side` on a faithful port, `theta-precision-differs` on a
    /// case within budget). Notes are listed and never fail a case.
    pub fn is_note(&self, d: &Deviation) -> bool {
        let c = self.report.c;
        // A bounded report may not list every failing element; the subset report does.
        let failing: Box<dyn Iterator<Item = Key> + '_> = match &self.subset {
            None => Box::new(self.report.failing().map(move |e| key(e, c))),
            Some(sub) => Box::new(
                sub.report
                    .failing()
                    .map(move |e| sub.case_key(key(e, c), c)),
            ),
        };
        !failing.into_iter().any(|k| d.explains.contains(&k))
    }

    /// Out-of-budget elements outside the diagnosed rows of a bounded check (0 otherwise).
    pub fn undiagnosed(&self) -> usize {
        self.subset.as_ref().map_or(0, |s| s.undiagnosed)
    }

    /// The deviations that account for out-of-budget elements.
    pub fn findings(&self) -> impl Iterator<Item = &Deviation> {
        self.deviations.iter().filter(|d| !self.is_note(d))
    }

    /// The deviations that are notes ([`CaseCheck::is_note`]).
    pub fn notes(&self) -> impl Iterator<Item = &Deviation> {
        self.deviations.iter().filter(|d| self.is_note(d))
    }

    pub fn kinds(&self) -> Vec<Kind> {
        let mut k: Vec<Kind> = self.deviations.iter().map(|d| d.kind).collect();
        k.sort();
        k.dedup();
        k
    }

    /// Accepted when every out-of-budget element is explained and every finding (notes need
    /// no allowance) is of a kind in `allowed`.
    pub fn accepted_with(&self, allowed: &[Kind]) -> bool {
        self.unexplained.is_empty()
            && self.undiagnosed() == 0
            && !self.report.scalars_failing()
            && self.findings().all(|d| allowed.contains(&d.kind))
    }
}

/// Compares `case` with `profile` and runs every detector. A case of more than
/// [`compare::EVERY_ELEMENT_MAX`] entries per side is compared bounded and diagnosed on a
/// [`Subset`] of its rows.
pub fn check(
    case: &LayerCase,
    profile: &Profile,
    dtype: Dtype,
    declared: &Declared,
) -> Result<CaseCheck> {
    check_with(
        case,
        profile,
        dtype,
        declared,
        compare::Detail::for_shape(case.n, case.c),
    )
}

/// [`check`] with the comparison keeping the elements `detail` asks for.
pub fn check_with(
    case: &LayerCase,
    profile: &Profile,
    dtype: Dtype,
    declared: &Declared,
    detail: compare::Detail,
) -> Result<CaseCheck> {
    check_reusing(case, profile, dtype, declared, detail, None)
}

/// [`check_with`] taking the pass-through tallies from `part` where that is the same pass
/// ([`compare::Extras`]): `--profile auto` checks the point found this way.
pub fn check_reusing(
    case: &LayerCase,
    profile: &Profile,
    dtype: Dtype,
    declared: &Declared,
    detail: compare::Detail,
    part: Option<&compare::PassThroughPart>,
) -> Result<CaseCheck> {
    let p = compare::output_params(case);
    let extras = compare::Extras {
        reuse: part,
        arrays: false,
    };
    let report = compare::compare_extras(case, profile, &p, dtype, detail, extras)?;
    check_report_bounded(case, profile, dtype, declared, report)
}

/// [`check`] whose report also holds every element's fraction and budget
/// ([`compare::CaseReport::arrays`]) where the comparison is bounded: the Python package's
/// check at 10^5–10^6 classes (its per-element outputs without a record per element). A case
/// at most [`compare::EVERY_ELEMENT_MAX`] entries per side is compared with every element, as
/// [`check`] does, and has no arrays (its elements are all there).
pub fn check_keeping_arrays(
    case: &LayerCase,
    profile: &Profile,
    dtype: Dtype,
    declared: &Declared,
) -> Result<CaseCheck> {
    let p = compare::output_params(case);
    let report = match compare::Detail::for_shape(case.n, case.c) {
        compare::Detail::Every => {
            compare::compare_with_detail(case, profile, &p, dtype, compare::Detail::Every)?
        }
        compare::Detail::Bounded => compare::compare_keeping_arrays(case, profile, &p, dtype)?,
    };
    check_report_bounded(case, profile, dtype, declared, report)
}

/// The check of `report` ([`check_report`]), its diagnosis on a [`Subset`] of rows where the
/// report is bounded.
fn check_report_bounded(
    case: &LayerCase,
    profile: &Profile,
    dtype: Dtype,
    declared: &Declared,
    report: CaseReport,
) -> Result<CaseCheck> {
    let p = compare::output_params(case);
    if report.is_complete() {
        return check_report(case, report, declared);
    }
    // The first rows with an out-of-budget element, then the first other rows (where notes
    // are found), as many as compare::DIAGNOSED_MAX entries.
    let c = case.c.max(1);
    let failing: Vec<usize> = report.failing().map(|e| e.row).collect();
    let rows = compare::diagnosed_rows(&failing, case.n, case.c);
    let sub_case = case.select_rows(&rows);
    let position = |r: usize| rows.binary_search(&r).ok();
    let sub_declared = Declared {
        forward_rows_not_executed: declared
            .forward_rows_not_executed
            .iter()
            .filter_map(|&r| position(r))
            .collect(),
    };
    let sub_report =
        compare::compare_with_detail(&sub_case, profile, &p, dtype, compare::Detail::Every)?;
    let failing = |r: &CaseReport| r.count() - r.within();
    // Each row compares alike in the case and in the subset (its reference, plan and kinks
    // are its own), so the subset's failures are the case's in those rows.
    let undiagnosed = failing(&report).saturating_sub(failing(&sub_report));
    let sub_check = check_report(&sub_case, sub_report, &sub_declared)?;
    let subset = Subset {
        rows,
        report: sub_check.report,
        undiagnosed,
    };
    // The detectors' words number rows within the subset; where those are not the case's
    // own numbers, say how they map (the elements they explain are mapped back exactly).
    let moved: Vec<(usize, usize)> = subset
        .rows
        .iter()
        .copied()
        .enumerate()
        .filter(|&(i, r)| i != r)
        .collect();
    let mapping = {
        let shown: Vec<String> = moved
            .iter()
            .take(6)
            .map(|(i, r)| format!("{i} is row {r}"))
            .collect();
        format!(
            " [rows in this text are numbered within the diagnosed subset: {}{}]",
            shown.join(", "),
            if moved.len() > 6 { ", …" } else { "" }
        )
    };
    let deviations = sub_check
        .deviations
        .into_iter()
        .map(|mut d| {
            d.explains = d.explains.iter().map(|&k| subset.case_key(k, c)).collect();
            if !moved.is_empty() {
                d.detail.push_str(&mapping);
            }
            d
        })
        .collect();
    let unexplained = sub_check
        .unexplained
        .into_iter()
        .map(|mut e| {
            e.row = subset.rows[e.row];
            e
        })
        .collect();
    Ok(CaseCheck {
        report,
        deviations,
        unexplained,
        subset: Some(Box::new(subset)),
    })
}

/// [`check`] on a comparison already made (a loss-only case's, `crate::loss_only`).
pub fn check_report(
    case: &LayerCase,
    report: CaseReport,
    declared: &Declared,
) -> Result<CaseCheck> {
    let deviations = detect(case, &report, declared)?;
    let explained: HashSet<Key> = deviations
        .iter()
        .flat_map(|d| d.explains.iter().copied())
        .collect();
    let unexplained = report
        .failing()
        .filter(|e| !explained.contains(&(e.side, e.index(report.c))))
        .copied()
        .collect();
    Ok(CaseCheck {
        report,
        deviations,
        unexplained,
        subset: None,
    })
}

fn key(e: &Element, c: usize) -> Key {
    (e.side, e.index(c))
}

/// The out-of-budget elements of `r` that no deviation in `taken` accounts for.
fn untaken_failures(r: &CaseReport, taken: &HashSet<Key>) -> HashSet<Key> {
    r.failing()
        .map(|e| key(e, r.c))
        .filter(|k| !taken.contains(k))
        .collect()
}

/// Whether every element that passes in `r` still passes in the variant's comparison `vr`
/// (the same case shape: the same elements in the same order).
fn none_broken(vr: &CaseReport, r: &CaseReport) -> bool {
    vr.elements
        .iter()
        .zip(&r.elements)
        .all(|(v, o)| v.passed() || !o.passed())
}

/// Whether every element of `remaining` passes in the variant's comparison `vr`.
fn all_pass_in(vr: &CaseReport, remaining: &HashSet<Key>) -> bool {
    vr.elements
        .iter()
        .filter(|e| remaining.contains(&key(e, vr.c)))
        .all(|e| e.passed())
}

/// Whether every passing element must still pass under a variant ([`first_explaining`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// The variant must also break no element that passes as recorded.
    Passing,
    /// Only the failures are asked about (a per-row assignment moves every row).
    FailuresOnly,
}

/// The first of `variants` (a changed case and its words) under which every element of
/// `remaining` passes (and, with [`Keep::Passing`], no element `r` passes breaks): its words.
/// Variants the comparison refuses are skipped.
fn first_explaining(
    variants: impl IntoIterator<Item = (LayerCase, String)>,
    r: &CaseReport,
    remaining: &HashSet<Key>,
    keep: Keep,
) -> Option<String> {
    variants.into_iter().find_map(|(variant, words)| {
        let vr =
            crate::compare::compare_with_params(&variant, &r.profile, &r.params, r.dtype).ok()?;
        let explained =
            all_pass_in(&vr, remaining) && (keep == Keep::FailuresOnly || none_broken(&vr, r));
        explained.then_some(words)
    })
}

/// Runs every detector on a comparison already made. Order matters only for attribution:
/// structural causes (scale, precision, rows, columns) are found first, and the policy
/// variants are asked only about the target failures left over.
pub fn detect(case: &LayerCase, r: &CaseReport, declared: &Declared) -> Result<Vec<Deviation>> {
    let mut out = Vec::new();
    out.extend(non_finite_output(r));
    out.extend(scale_mismatch(r));
    out.extend(scale_one_side(case, r)?);
    out.extend(reduced_precision(r));
    out.extend(computed_in_f32(case, r)?);
    out.extend(ignore_label(case, r, declared));
    out.extend(wrong_target_column(case, r));
    let structural = |d: &&Deviation| {
        matches!(
            d.kind,
            Kind::IgnoreLabelNotHonoured
                | Kind::WrongTargetColumn
                | Kind::ScaleMismatch
                | Kind::ScaleMissingOneSide
                | Kind::ReducedPrecision
                | Kind::ComputedInF32
        )
    };
    let taken: HashSet<Key> = out
        .iter()
        .filter(structural)
        .flat_map(|d| d.explains.iter().copied())
        .collect();
    // The stated parameters, fitted: a wrong s, m1, m2 or m3 (before the non-target and
    // policy detectors, which would otherwise take its elements for theirs). Non-finite
    // outputs where the profile is finite are named already and are not its to explain.
    let not_finite: HashSet<Key> = out
        .iter()
        .filter(|d| d.kind == Kind::NonFiniteOutput)
        .flat_map(|d| d.explains.iter().copied())
        .chain(taken.iter().copied())
        .collect();
    out.extend(subcenters::subcenter_reduction(case, r, &not_finite));
    let not_finite: HashSet<Key> = not_finite
        .into_iter()
        .chain(
            out.iter()
                .filter(|d| d.kind == Kind::SubcenterReductionDiffers)
                .flat_map(|d| d.explains.iter().copied()),
        )
        .collect();
    out.extend(row_margins::row_margins(case, r, &not_finite));
    let not_finite: HashSet<Key> = not_finite
        .into_iter()
        .chain(
            out.iter()
                .filter(|d| d.kind == Kind::RowMarginsDiffer)
                .flat_map(|d| d.explains.iter().copied()),
        )
        .collect();
    out.extend(stated_parameters(case, r, &not_finite));
    let taken: HashSet<Key> = out
        .iter()
        .filter(|d| structural(d) || fitted_kind(d.kind))
        .flat_map(|d| d.explains.iter().copied())
        .collect();
    // The modulation's other inputs, before the non-target detector takes their elements.
    out.extend(modulation::modulation_differs(case, r, &taken));
    let taken: HashSet<Key> = out
        .iter()
        .filter(|d| structural(d) || fitted_kind(d.kind) || d.kind == Kind::ModulationDiffers)
        .flat_map(|d| d.explains.iter().copied())
        .collect();
    out.extend(non_target_altered(case, r, &taken));
    let taken: HashSet<Key> = out
        .iter()
        .flat_map(|d| d.explains.iter().copied())
        .collect();
    out.extend(target_variant(case, r, &taken)?);
    out.extend(easy_margin_claim(case, r, &out)?);
    out.extend(theta_closer_fit(case, r)?);
    let taken: HashSet<Key> = out
        .iter()
        .flat_map(|d| d.explains.iter().copied())
        .collect();
    out.extend(nearest_point(case, r, &taken)?);
    out.extend(wrong_side_deviation(r));
    Ok(out)
}

/// The kinds the parameter fit names ([`fitted`]).
fn fitted_kind(k: Kind) -> bool {
    matches!(
        k,
        Kind::ParameterDiffers
            | Kind::MarginUnits
            | Kind::MarginTermIgnored
            | Kind::RowMarginsDiffer
            | Kind::SubcenterReductionDiffers
    )
}

fn example(r: &CaseReport, e: &Element) -> String {
    r.describe(e)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

/// Checks every case of a dump: under `profile`, or under the profile SPEC.md §6 maps the
/// dump's implementation to (per case, as `easy_margin` selects). Returns one result per
/// case, in file order; errors are located by file, case and field.
pub fn check_dump(
    dump: &Dump,
    profile: Option<&Profile>,
) -> std::result::Result<Vec<CaseCheck>, FixtureError> {
    let per_case: Option<Vec<Profile>> = profile.map(|p| vec![p.clone(); dump.cases.len()]);
    check_dump_per_case(dump, per_case.as_deref())
}

/// [`check_dump`] with one profile per case (`--profile auto` on a file whose parameter sets
/// take different code paths), or the mapped profile where `profiles` is `None`.
pub fn check_dump_per_case(
    dump: &Dump,
    profiles: Option<&[Profile]>,
) -> std::result::Result<Vec<CaseCheck>, FixtureError> {
    dump.cases
        .iter()
        .enumerate()
        .map(|(i, raw)| check_raw(dump, raw, profiles.and_then(|ps| ps.get(i))))
        .collect()
}

/// One case of a dump read as a combined margin (its layer view): under `profile`, or the
/// mapped one where `None` (an error naming the field `implementation` when none is mapped).
pub fn check_raw(
    dump: &Dump,
    raw: &crate::fixture::RawCase,
    profile: Option<&Profile>,
) -> std::result::Result<CaseCheck, FixtureError> {
    let case = dump.layer_view(raw)?;
    let declared = Declared {
        forward_rows_not_executed: raw.indices_opt("forward_rows_not_executed", case.n)?,
    };
    let prof = match profile {
        Some(p) => p.clone(),
        None => crate::profile::mapped_profile(&dump.implementation, case.easy_margin).ok_or_else(
            || {
                FixtureError::new(
                    &dump.file,
                    format!(
                    "no profile is mapped to implementation {:?} (SPEC.md §6); pass --profile NAME",
                    dump.implementation
                ),
                )
                .in_field("implementation")
            },
        )?,
    };
    // A case may declare that it computed in a narrower dtype than its file
    // (`compute_dtype`: SpeechBrain's `outputs.float()`); then its inputs were rounded
    // to that dtype on the way in, and it is checked as an implementation in it.
    let (case, dtype) = match raw.dtype_opt("compute_dtype")? {
        Some(d) if d.unit_roundoff() > dump.dtype.unit_roundoff() => (case.rounded_inputs(d), d),
        Some(_) | None => (case, dump.dtype),
    };
    check(&case, &prof, dtype, &declared).map_err(|e| {
        let field = match e {
            crate::Error::LabelOutOfRange { .. } => "labels",
            crate::Error::ShapeMismatch { .. } => "shape",
            crate::Error::InvalidParam { .. } => "params",
            _ => "cases",
        };
        FixtureError::new(&dump.file, e.to_string())
            .in_case(&case.name)
            .in_field(field)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
    }

    #[test]
    fn representable_formats() {
        assert!(representable(1.0, 11, -14, 65504.0));
        assert!(representable(1.0 + 1.0 / 1024.0, 11, -14, 65504.0));
        assert!(!representable(1.0 + 1.0 / 2048.0, 11, -14, 65504.0));
        assert!(!representable(70000.0, 11, -14, 65504.0));
        assert!(representable(2f64.powi(-24), 11, -14, 65504.0));
        assert!(!representable(1.5 * 2f64.powi(-24), 11, -14, 65504.0));
    }
}
