//! Named deviations: where an implementation departs from the semantics it claims.
//!
//! A deviation is found by a detector that looks only at the implementation's outputs, the
//! case's inputs and claims, and the reference; it never consults a list of expected answers.
//! Each detected deviation carries the elements it accounts for, so that a report can say
//! whether every out-of-budget element has a named cause (SPEC.md §6).
//!
//! The set of kinds is closed ([`Kind::ALL`]); each kind's doc comment is its detector's rule.

use crate::compare::{self, CaseReport, Element, Reference, Role, Side};
use crate::dtype::Dtype;
use crate::error::Result;
use crate::fixture::{Dump, FixtureError, LayerCase};
use crate::params::Params;
use crate::profile::{AnglePolicy, GradientMode, InputDomain, Profile, ThetaPrecision};
use crate::space::Axis;
use crate::tolerance;
use std::collections::{BTreeMap, HashSet};

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
    /// The targets match the profile with a different input clamp (none, or ε ∈ {0, 1e-5, 1e-4, 1e-3}).
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
    /// The targets match the reference with m2 := radians(m2): the margin was given in
    /// degrees and converted (or the other way round).
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
}

impl Kind {
    pub const ALL: [Kind; 24] = [
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
    /// Out-of-budget elements no deviation accounts for.
    pub unexplained: Vec<Element>,
}

/// A case's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every element within budget, no deviation.
    Pass,
    /// Within budget everywhere, but deviations were detected (e.g. non-finite outputs the
    /// profile predicts).
    Deviates,
    /// Some element is out of budget.
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
    pub fn verdict(&self) -> Verdict {
        if !self.report.passed() {
            Verdict::Fail
        } else if !self.deviations.is_empty() {
            Verdict::Deviates
        } else {
            Verdict::Pass
        }
    }

    pub fn kinds(&self) -> Vec<Kind> {
        let mut k: Vec<Kind> = self.deviations.iter().map(|d| d.kind).collect();
        k.sort();
        k.dedup();
        k
    }

    /// Accepted when every out-of-budget element is explained and every detected kind is in `allowed`.
    pub fn accepted_with(&self, allowed: &[Kind]) -> bool {
        self.unexplained.is_empty() && self.deviations.iter().all(|d| allowed.contains(&d.kind))
    }
}

/// Compares `case` with `profile` and runs every detector.
pub fn check(
    case: &LayerCase,
    profile: &Profile,
    dtype: Dtype,
    declared: &Declared,
) -> Result<CaseCheck> {
    let report = compare::compare(case, profile, dtype)?;
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
    })
}

fn key(e: &Element, c: usize) -> Key {
    (e.side, e.index(c))
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
    let taken: HashSet<Key> = out
        .iter()
        .filter(|d| {
            matches!(
                d.kind,
                Kind::IgnoreLabelNotHonoured
                    | Kind::WrongTargetColumn
                    | Kind::ScaleMismatch
                    | Kind::ScaleMissingOneSide
                    | Kind::ReducedPrecision
                    | Kind::ComputedInF32
            )
        })
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
    out.extend(crate::degeneracy::wrong_side_deviation(r));
    Ok(out)
}

/// The side (forward or backward) all out-of-budget elements are on, if only one.
fn one_failing_side(r: &CaseReport) -> Option<Side> {
    let mut sides = r.failing().map(|e| e.side);
    let first = sides.next()?;
    sides.all(|s| s == first).then_some(first)
}

/// One side carries the scale s and the other does not (or both are off by s on one side):
/// every out-of-budget element is on one side and passes there with s = 1.
fn scale_one_side(case: &LayerCase, r: &CaseReport) -> Result<Option<Deviation>> {
    let s = r.params.s;
    let Some(side) = one_failing_side(r) else {
        return Ok(None);
    };
    if s == 1.0 {
        return Ok(None);
    }
    let q = Params { s: 1.0, ..r.params };
    let Ok(vr) = compare::compare_with_params(case, &r.profile, &q, r.dtype) else {
        return Ok(None);
    };
    let failing: Vec<Key> = r.failing().map(|e| key(e, r.c)).collect();
    let fits = vr
        .elements
        .iter()
        .filter(|e| e.side == side)
        .all(Element::passed);
    if !fits {
        return Ok(None);
    }
    Ok(Some(Deviation {
        kind: Kind::ScaleMissingOneSide,
        detail: format!(
            "the {} carries no scale: it matches the reference with s = 1 while the {} is scaled by s = {} ({} out-of-budget elements fit)",
            side.name(),
            match side {
                Side::Forward => Side::Backward.name(),
                Side::Backward => Side::Forward.name(),
            },
            compare::num(s),
            failing.len()
        ),
        explains: failing.into_iter().collect(),
    }))
}

/// An f64 case whose outputs are all f32 values and that passes as an f32 implementation
/// (inputs rounded to f32 on the way in): the computation ran in f32.
fn computed_in_f32(case: &LayerCase, r: &CaseReport) -> Result<Option<Deviation>> {
    if r.dtype != Dtype::F64 || r.passed() {
        return Ok(None);
    }
    let all_f32 = r
        .elements
        .iter()
        .filter(|e| e.actual.is_finite())
        .all(|e| e.actual == Dtype::F32.round(e.actual));
    if !all_f32 {
        return Ok(None);
    }
    let rounded = case.clone().rounded_inputs(Dtype::F32);
    let Ok(vr) = compare::compare_with_params(&rounded, &r.profile, &r.params, Dtype::F32) else {
        return Ok(None);
    };
    if !vr.passed() {
        return Ok(None);
    }
    let failing: HashSet<Key> = r.failing().map(|e| key(e, r.c)).collect();
    Ok(Some(Deviation {
        kind: Kind::ComputedInF32,
        detail: format!(
            "the file says f64, but all {} finite outputs are f32 values and the case passes as an f32 implementation of {} ({} out-of-budget elements fit); declare \"compute_dtype\": \"f32\"",
            r.elements.iter().filter(|e| e.actual.is_finite()).count(),
            r.profile.name,
            failing.len()
        ),
        explains: failing,
    }))
}

/// Where out-of-budget targets remain unexplained: the nearest point of the policy space that
/// fits the whole case (the `--profile auto` search on this case), reported as "behaves like
/// <claimed> except: <axis values>".
fn nearest_point(
    case: &LayerCase,
    r: &CaseReport,
    taken: &HashSet<Key>,
) -> Result<Option<Deviation>> {
    let remaining: HashSet<Key> = r
        .failing()
        .filter(|e| e.role == Role::Target && !taken.contains(&key(e, r.c)))
        .map(|e| key(e, r.c))
        .collect();
    if remaining.is_empty() {
        return Ok(None);
    }
    let Ok(search) = crate::fingerprint::search(std::slice::from_ref(case), r.dtype) else {
        return Ok(None);
    };
    let best = search.best();
    if best.share < 1.0 {
        return Ok(None);
    }
    Ok(Some(Deviation {
        kind: Kind::PolicyDiffers,
        detail: format!(
            "{} ({} out-of-budget targets fit; nearest preset: {})",
            crate::space::describe_as_neighbour(&r.profile, &best.profile),
            remaining.len(),
            best.profile.name
        ),
        explains: remaining,
    }))
}

fn example(r: &CaseReport, e: &Element) -> String {
    r.describe(e)
}

/// Non-finite outputs for finite inputs that the profile does not predict. Where the profile
/// itself gives the same NaN or ±inf (`passed()`: equal non-finite values have error 0), the
/// implementation agrees with it: that is no deviation (e.g. an unclamped implementation
/// under `analytic` at |c| > 1).
fn non_finite_output(r: &CaseReport) -> Option<Deviation> {
    let hits: Vec<&Element> = r
        .elements
        .iter()
        .filter(|e| {
            !e.actual.is_finite()
                && !e.passed()
                && e.input.is_finite()
                && (e.side == Side::Forward || e.top_diff.is_finite())
        })
        .collect();
    if hits.is_empty() {
        return None;
    }
    let nf = hits.iter().filter(|e| e.side == Side::Forward).count();
    let first = hits[0];
    Some(Deviation {
        kind: Kind::NonFiniteOutput,
        detail: format!(
            "{} forward and {} backward outputs are NaN/inf for finite inputs where {} predicts other values; e.g. {}",
            nf,
            hits.len() - nf,
            r.profile.name,
            example(r, first)
        ),
        explains: hits.iter().map(|e| key(e, r.c)).collect(),
    })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

fn scale_mismatch(r: &CaseReport) -> Option<Deviation> {
    if r.passed() {
        return None;
    }
    let ratios: Vec<f64> = r
        .elements
        .iter()
        .filter(|e| e.actual.is_finite() && e.reference.is_finite() && e.reference != 0.0)
        .map(|e| e.actual / e.reference)
        .collect();
    let k = median(ratios)?;
    if !k.is_finite() || k == 0.0 || (k - 1.0).abs() <= 1e-3 {
        return None;
    }
    let failing: Vec<&Element> = r
        .failing()
        .filter(|e| e.actual.is_finite() && e.reference.is_finite())
        .collect();
    let fits = |e: &Element| {
        (e.actual - k * e.reference).abs()
            <= k.abs() * e.budget + tolerance::consts::ROUNDING_ULP * r.dtype.ulp(e.actual)
    };
    if failing.is_empty() || !failing.iter().all(|e| fits(e)) {
        return None;
    }
    let s = r.params.s;
    let named = if (k - s).abs() <= 1e-9 * s && s != 1.0 {
        " = s: the scale is applied twice".to_string()
    } else if (k * s - 1.0).abs() <= 1e-9 && s != 1.0 {
        " = 1/s: the scale is missing".to_string()
    } else {
        String::new()
    };
    Some(Deviation {
        kind: Kind::ScaleMismatch,
        detail: format!(
            "outputs are k x the reference with k = {}{named} ({} out-of-budget elements fit)",
            compare::num(k),
            failing.len()
        ),
        explains: failing.iter().map(|e| key(e, r.c)).collect(),
    })
}

/// Whether x is a value of a binary format with `p` significant bits, minimum normal
/// exponent `emin` and largest finite value `max`.
pub fn representable(x: f64, p: i32, emin: i32, max: f64) -> bool {
    if x == 0.0 || !x.is_finite() {
        return x == 0.0;
    }
    let a = x.abs();
    if a > max {
        return false;
    }
    let q = quantum(a, p, emin);
    (a / q).fract() == 0.0
}

/// Spacing of the format's values at |x| (power of two).
fn quantum(a: f64, p: i32, emin: i32) -> f64 {
    let e = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    let e = if a < f64::MIN_POSITIVE {
        a.log2().floor() as i32
    } else {
        e
    };
    2f64.powi(e.max(emin) - (p - 1))
}

/// (name, significant bits, minimum normal exponent, largest finite value).
const NARROW_FORMATS: [(&str, i32, i32, f64); 2] = [
    ("f16", 11, -14, 65504.0),
    ("bf16", 8, -126, 3.389_531_389_251_535e38),
];

fn reduced_precision(r: &CaseReport) -> Option<Deviation> {
    // A half dtype's outputs are half values by definition: nothing narrower to detect.
    if r.passed() || r.dtype.is_half() {
        return None;
    }
    let outs: Vec<&Element> = r
        .elements
        .iter()
        .filter(|e| e.actual.is_finite() && e.actual != 0.0)
        .collect();
    if outs.len() < 16 {
        return None;
    }
    for (name, p, emin, max) in NARROW_FORMATS {
        if !outs.iter().all(|e| representable(e.actual, p, emin, max)) {
            continue;
        }
        // Only informative if the reference itself is mostly not of that format.
        let refs_in = outs
            .iter()
            .filter(|e| representable(e.reference, p, emin, max))
            .count();
        if 2 * refs_in >= outs.len() {
            continue;
        }
        let failing: Vec<&Element> = r
            .failing()
            .filter(|e| e.actual.is_finite() && e.reference.is_finite())
            .collect();
        let fits = |e: &Element| {
            (e.actual - e.reference).abs() <= quantum(e.reference.abs(), p, emin) + e.budget
        };
        if failing.is_empty() || !failing.iter().all(|e| fits(e)) {
            continue;
        }
        return Some(Deviation {
            kind: Kind::ReducedPrecision,
            detail: format!(
                "all {} finite non-zero outputs are {name} values ({p} significant bits) although the dtype is {}; {} out-of-budget elements are within {name} rounding",
                outs.len(),
                r.dtype,
                failing.len()
            ),
            explains: failing.iter().map(|e| key(e, r.c)).collect(),
        });
    }
    None
}

/// The reference of an element's input evaluated as if it were the row's target.
fn as_target(reference: &Reference, e: &Element) -> (f64, f64) {
    let t = reference.target(e.input, e.top_diff);
    match e.side {
        Side::Forward => (t.forward, t.budget.forward),
        Side::Backward => (t.backward, t.budget.backward),
    }
}

/// Whether an out-of-budget pass-through element looks like the margin was applied to it,
/// and the margin differs from the pass-through (so the match is informative).
fn matches_margin(reference: &Reference, e: &Element) -> bool {
    let (want, budget) = as_target(reference, e);
    let distinct = !tolerance::within(want, e.reference, budget + e.budget);
    distinct
        && want.is_finite()
        && e.actual.is_finite()
        && tolerance::within(e.actual, want, budget)
}

fn elements_by_row(r: &CaseReport) -> BTreeMap<usize, Vec<&Element>> {
    let mut m: BTreeMap<usize, Vec<&Element>> = BTreeMap::new();
    for e in &r.elements {
        m.entry(e.row).or_default().push(e);
    }
    m
}

fn ignore_label(case: &LayerCase, r: &CaseReport, declared: &Declared) -> Option<Deviation> {
    let reference = Reference::new(&r.profile, &r.params, r.dtype);
    let mut explains = HashSet::new();
    let mut notes = Vec::new();
    let rows = elements_by_row(r);
    for (row, els) in &rows {
        if r.targets[*row].is_some() {
            continue;
        }
        let leak: Vec<&&Element> = els
            .iter()
            .filter(|e| {
                !e.actual.is_finite()
                    && (-1.0..=1.0).contains(&e.input)
                    && (e.side == Side::Forward || e.top_diff.is_finite())
            })
            .collect();
        if !leak.is_empty() {
            notes.push(format!(
                "row {row}: {} non-finite outputs at inputs inside [-1, 1] (the margin was evaluated for this ignored row)",
                leak.len()
            ));
            explains.extend(els.iter().filter(|e| !e.passed()).map(|e| key(e, r.c)));
            continue;
        }
        let cols: Vec<&&Element> = els
            .iter()
            .filter(|e| !e.passed() && matches_margin(&reference, e))
            .collect();
        if !cols.is_empty() {
            let mut cs: Vec<usize> = cols.iter().map(|e| e.col).collect();
            cs.sort();
            cs.dedup();
            notes.push(format!(
                "row {row}: column(s) {cs:?} transformed as if labelled (label {})",
                case.labels[*row]
            ));
            explains.extend(cols.iter().map(|e| key(e, r.c)));
        }
    }
    let declared_rows: Vec<usize> = declared
        .forward_rows_not_executed
        .iter()
        .copied()
        .filter(|&i| i < r.n && r.targets[i].is_none())
        .collect();
    if !declared_rows.is_empty() {
        notes.push(format!(
            "the dump declares forward rows {declared_rows:?} (label -1) not executed by its recording: the original forward has no ignore check there"
        ));
    }
    if notes.is_empty() {
        return None;
    }
    Some(Deviation {
        kind: Kind::IgnoreLabelNotHonoured,
        detail: notes.join("; "),
        explains,
    })
}

fn wrong_target_column(_case: &LayerCase, r: &CaseReport) -> Option<Deviation> {
    let reference = Reference::new(&r.profile, &r.params, r.dtype);
    let mut shifts: BTreeMap<usize, usize> = BTreeMap::new();
    let mut explains = HashSet::new();
    for (row, els) in elements_by_row(r) {
        let Some(t) = r.targets[row] else { continue };
        // The labelled column: out of budget as a target, but a plain pass-through.
        let label_passed_through = els.iter().any(|e| {
            e.col == t && !e.passed() && {
                let (f, b, bud) = reference.passthrough(e.input, e.top_diff);
                let (want, budget) = match e.side {
                    Side::Forward => (f, bud.forward),
                    Side::Backward => (b, bud.backward),
                };
                tolerance::within(e.actual, want, budget)
            }
        });
        if !label_passed_through {
            continue;
        }
        let moved: Vec<&&Element> = els
            .iter()
            .filter(|e| e.col != t && !e.passed() && matches_margin(&reference, e))
            .collect();
        let Some(first) = moved.first() else { continue };
        let shift = (first.col + r.c - t) % r.c;
        *shifts.entry(shift).or_default() += 1;
        explains.extend(
            els.iter()
                .filter(|e| !e.passed() && (e.col == t || e.col == first.col))
                .map(|e| key(e, r.c)),
        );
    }
    let (&shift, &rows) = shifts.iter().max_by_key(|(_, &n)| n)?;
    let shift_text = if shift == 1 {
        "label + 1".to_string()
    } else if shift + 1 == r.c {
        "label - 1".to_string()
    } else {
        format!("label + {shift}")
    };
    Some(Deviation {
        kind: Kind::WrongTargetColumn,
        detail: format!(
            "in {rows} row(s) the labelled column is passed through and the margin sits at column {shift_text} (mod C = {})",
            r.c
        ),
        explains,
    })
}

fn non_target_altered(case: &LayerCase, r: &CaseReport, taken: &HashSet<Key>) -> Option<Deviation> {
    let hits: Vec<&Element> = r
        .failing()
        .filter(|e| e.role == Role::PassThrough && !taken.contains(&key(e, r.c)))
        .collect();
    if hits.is_empty() {
        return None;
    }
    // Classify each alteration, to say what happened.
    let mut round_trip_profile = Profile::preset("analytic").expect("preset");
    round_trip_profile.shortcut = false;
    let unit = Params::new(1.0, 0.0, 0.0).with_scale(r.params.s);
    let round_trip = Reference::new(&round_trip_profile, &unit, r.dtype);
    let clamp = match r.profile.domain {
        InputDomain::Clamp { eps, .. } => {
            Some((r.dtype.round(-1.0 + eps), r.dtype.round(1.0 - eps)))
        }
        InputDomain::Raw => None,
    };
    let mut classes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for e in &hits {
        let target_nonfinite = r.targets[e.row].is_some_and(|t| {
            r.elements
                .iter()
                .any(|o| o.row == e.row && o.col == t && o.side == e.side && !o.actual.is_finite())
        });
        let class = if !e.actual.is_finite() && e.input.abs() > 1.0 {
            "NaN for |x| > 1"
        } else if !e.actual.is_finite() && target_nonfinite {
            "non-finite spread from the row's target"
        } else if e.side == Side::Forward && {
            let t = round_trip.target(e.input, e.top_diff);
            tolerance::within(e.actual, t.forward, t.budget.forward)
        } {
            "round trip cos(acos x)"
        } else if e.side == Side::Forward
            && clamp.is_some_and(|(lo, hi)| {
                let want = r.params.s * e.input.clamp(lo, hi);
                tolerance::within(e.actual, want, e.budget + r.dtype.ulp(want))
            })
        {
            "clamped to the input domain"
        } else {
            "other"
        };
        *classes.entry(class).or_default() += 1;
    }
    let total = r
        .elements
        .iter()
        .filter(|e| e.role == Role::PassThrough)
        .count();
    let worst = hits
        .iter()
        .max_by(|a, b| a.fraction.total_cmp(&b.fraction))
        .expect("non-empty");
    let _ = case;
    Some(Deviation {
        kind: Kind::NonTargetAltered,
        detail: format!(
            "{} of {} pass-through entries altered ({}); worst: {}",
            hits.len(),
            total,
            classes
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            example(r, worst)
        ),
        explains: hits.iter().map(|e| key(e, r.c)).collect(),
    })
}

/// A candidate explanation of the target failures: a variant of the profile or parameters.
struct Variant {
    kind: Kind,
    what: String,
    profile: Profile,
    params: Params,
    /// Affects only the backward (then the forward must already pass).
    backward_only: bool,
}

/// The deviation kind that names a difference on `axis` (for a case that claims easy_margin,
/// an angle policy without it is the claim ignored).
fn axis_kind(axis: Axis, case: &LayerCase, variant: &Profile) -> Kind {
    match axis {
        Axis::Domain => Kind::InputClampDiffers,
        Axis::Theta => Kind::ThetaPrecisionDiffers,
        Axis::Angle => {
            let easy = match variant.angle {
                AnglePolicy::EasyMargin => true,
                AnglePolicy::Raw
                | AnglePolicy::Clamp { .. }
                | AnglePolicy::Threshold { .. }
                | AnglePolicy::Monotone => false,
            };
            if case.easy_margin == Some(true) && !easy {
                Kind::EasyMarginIgnored
            } else {
                Kind::AnglePolicyDiffers
            }
        }
        Axis::Gradient => match variant.gradient {
            GradientMode::Detached => Kind::GradientDetached,
            GradientMode::Exact { .. } | GradientMode::FormulaAtClamped { .. } => {
                Kind::GradientModeDiffers
            }
        },
        Axis::FactorClip => Kind::FactorClipDiffers,
        Axis::Shortcut => Kind::IdentityShortcutDiffers,
        Axis::RoundTrip => Kind::RoundTripDiffers,
        Axis::Params => Kind::ParamPrecisionDiffers,
        Axis::OpMath => Kind::ReducedPrecision,
        Axis::Labels => Kind::LabelPolicyDiffers,
    }
}

/// Whether a difference on `axis` can change only the backward.
fn backward_only(axis: Axis) -> bool {
    match axis {
        Axis::Gradient | Axis::FactorClip => true,
        Axis::Domain
        | Axis::Theta
        | Axis::Angle
        | Axis::Shortcut
        | Axis::RoundTrip
        | Axis::Params
        | Axis::OpMath
        | Axis::Labels => false,
    }
}

/// The candidate explanations: parameter variants (terms dropped, m2 in degrees) and every
/// one-axis neighbour of the profile in the policy space ([`crate::space`]).
fn variants(case: &LayerCase, r: &CaseReport) -> Vec<Variant> {
    let prof = &r.profile;
    let p = r.params;
    let mut v = Vec::new();
    // Parameters dropped: single terms, then pairs.
    let subsets: [(&str, bool, bool, bool); 6] = [
        ("m2", false, true, false),
        ("m1", true, false, false),
        ("m3", false, false, true),
        ("m1 and m2", true, true, false),
        ("m1 and m3", true, false, true),
        ("m2 and m3", false, true, true),
    ];
    for (names, d1, d2, d3) in subsets {
        let q = Params {
            m1: if d1 { 1.0 } else { p.m1 },
            m2: if d2 { 0.0 } else { p.m2 },
            m3: if d3 { 0.0 } else { p.m3 },
            s: p.s,
        };
        // Every dropped term must really change: otherwise a smaller subset says the same.
        let changes = (!d1 || p.m1 != 1.0) && (!d2 || p.m2 != 0.0) && (!d3 || p.m3 != 0.0);
        if changes {
            v.push(Variant {
                kind: Kind::MarginTermIgnored,
                what: format!("matches the reference with {names} dropped ({q}): the implementation ignores {names}"),
                profile: prof.clone(),
                params: q,
                backward_only: false,
            });
        }
    }
    if p.m2 != 0.0 {
        for (q_m2, what) in [
            (
                p.m2.to_radians(),
                "m2 was read in degrees and converted: radians(m2)",
            ),
            (
                p.m2.to_degrees(),
                "m2 was read in radians and converted to degrees",
            ),
        ] {
            if q_m2 < std::f64::consts::PI {
                v.push(Variant {
                    kind: Kind::MarginUnits,
                    what: format!(
                        "matches the reference with m2 = {} ({what})",
                        compare::num(q_m2)
                    ),
                    profile: prof.clone(),
                    params: Params { m2: q_m2, ..p },
                    backward_only: false,
                });
            }
        }
    }
    for axis in Axis::ALL {
        if axis == Axis::Shortcut && !p.is_angle_identity() {
            continue;
        }
        if axis == Axis::OpMath && matches!(r.dtype, Dtype::F32 | Dtype::F64) {
            continue;
        }
        for q in axis.values(prof).into_iter().skip(1) {
            v.push(Variant {
                kind: axis_kind(axis, case, &q),
                what: format!(
                    "behaves like {} with {} (profile: {})",
                    prof.name,
                    axis.describe(&q),
                    axis.describe(prof)
                ),
                profile: q,
                params: p,
                backward_only: backward_only(axis),
            });
        }
    }
    v
}

/// |a − b|, 0 for equal non-finite values, +inf for a finite/non-finite pair.
fn distance(a: f64, b: f64) -> f64 {
    if a.is_finite() && b.is_finite() {
        (a - b).abs()
    } else if (a.is_nan() && b.is_nan()) || a == b {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Whether every target element not in `taken` passes in `report`.
fn targets_pass(report: &CaseReport, taken: &HashSet<Key>) -> bool {
    report
        .elements
        .iter()
        .filter(|e| e.role == Role::Target && !taken.contains(&key(e, report.c)))
        .all(Element::passed)
}

fn target_variant(
    case: &LayerCase,
    r: &CaseReport,
    taken: &HashSet<Key>,
) -> Result<Option<Deviation>> {
    let remaining: HashSet<Key> = r
        .failing()
        .filter(|e| e.role == Role::Target && !taken.contains(&key(e, r.c)))
        .map(|e| key(e, r.c))
        .collect();
    if remaining.is_empty() {
        return Ok(None);
    }
    let forward_ok = !remaining.iter().any(|k| k.0 == Side::Forward);
    let mut cands = variants(case, r);
    // Where only the backward is off, ask the backward-only causes first.
    cands.sort_by_key(|v| {
        if forward_ok {
            !v.backward_only
        } else {
            v.backward_only
        }
    });
    // The sign flip is not a profile: test it on the report itself.
    let sign_flip = forward_ok
        && r.elements
            .iter()
            .filter(|e| {
                e.role == Role::Target && e.side == Side::Backward && !taken.contains(&key(e, r.c))
            })
            .all(|e| tolerance::within(e.actual, -e.reference, e.budget));
    if sign_flip {
        return Ok(Some(Deviation {
            kind: Kind::GradientSignFlipped,
            detail: format!(
                "{} backward targets match the negated reference",
                remaining.len()
            ),
            explains: remaining,
        }));
    }
    for v in cands {
        if v.backward_only && !forward_ok {
            continue;
        }
        // A variant whose label policy refuses a label of the case explains nothing.
        let Ok(vr) = compare::compare_with_params(case, &v.profile, &v.params, r.dtype) else {
            continue;
        };
        // Where the variant predicts a different value, the output must sit at least as close
        // to it as to the profile's: a variant with a looser budget (θ in f32 for an f64
        // implementation) must not absorb an unrelated small error. Where it predicts the
        // same value, only its budget differs (the acos/cos round trip), and that is the claim.
        let closer = r
            .elements
            .iter()
            .zip(&vr.elements)
            .filter(|(b, _)| remaining.contains(&key(b, r.c)))
            .all(|(b, v)| {
                // "Different" beyond the f64 noise of the references themselves: the round
                // trip cos(acos 0) is 6e-17, not 0, which no implementation can resolve.
                let d = distance(v.reference, b.reference);
                let distinct = d > b.budget && d > 1e-3 * v.budget;
                !distinct || distance(v.actual, v.reference) <= distance(b.actual, b.reference)
            });
        if closer && targets_pass(&vr, taken) {
            return Ok(Some(Deviation {
                kind: v.kind,
                detail: format!("{} ({} out-of-budget targets fit)", v.what, remaining.len()),
                explains: remaining,
            }));
        }
    }
    Ok(None)
}

/// A case that claims easy_margin = true under a profile without it: the claim is honoured
/// only if the targets follow the easy-margin variant.
fn easy_margin_claim(
    case: &LayerCase,
    r: &CaseReport,
    found: &[Deviation],
) -> Result<Option<Deviation>> {
    if case.easy_margin != Some(true)
        || r.profile.angle == AnglePolicy::EasyMargin
        || found.iter().any(|d| d.kind == Kind::EasyMarginIgnored)
    {
        return Ok(None);
    }
    let mut q = r.profile.clone();
    q.angle = AnglePolicy::EasyMargin;
    let vr = compare::compare_with_params(case, &q, &r.params, r.dtype)?;
    let contradicted: Vec<&Element> = vr
        .elements
        .iter()
        .zip(&r.elements)
        .filter(|(v, b)| v.role == Role::Target && !v.passed() && b.passed())
        .map(|(v, _)| v)
        .collect();
    if contradicted.is_empty() {
        return Ok(None);
    }
    Ok(Some(Deviation {
        kind: Kind::EasyMarginIgnored,
        detail: format!(
            "the case claims easy_margin = true, but {} target outputs contradict it and follow {} (e.g. with easy margin: {})",
            contradicted.len(),
            r.profile.name,
            vr.describe(contradicted[0])
        ),
        explains: HashSet::new(),
    }))
}

/// In f64, θ rounded to f32 moves a result by up to ½ f32 ulp of θ, which the budget must
/// allow (one implementation's acos may round to the other f32 neighbour). Per element that is
/// invisible; across a case it is not: a faithful implementation agrees to f64 rounding.
fn theta_closer_fit(case: &LayerCase, r: &CaseReport) -> Result<Option<Deviation>> {
    // Only a case that is within budget at every target can be told apart this way.
    let targets_within = r
        .elements
        .iter()
        .filter(|e| e.role == Role::Target)
        .all(Element::passed);
    if r.dtype != Dtype::F64 || !targets_within {
        return Ok(None);
    }
    let mut q = r.profile.clone();
    q.theta = match q.theta {
        ThetaPrecision::Native => ThetaPrecision::F32,
        ThetaPrecision::F32 => ThetaPrecision::Native,
    };
    let vr = compare::compare_with_params(case, &q, &r.params, r.dtype)?;
    if !targets_pass(&vr, &HashSet::new()) {
        return Ok(None);
    }
    let fr = |rep: &CaseReport| -> Vec<f64> {
        rep.elements
            .iter()
            .filter(|e| {
                e.role == Role::Target
                    && e.side == Side::Forward
                    && e.fraction.is_finite()
                    && e.reference.is_finite()
            })
            .map(|e| e.fraction)
            .collect()
    };
    let (b, v) = (fr(r), fr(&vr));
    if b.len() < 8 {
        return Ok(None);
    }
    let (mb, mv) = (median(b).unwrap_or(0.0), median(v).unwrap_or(0.0));
    if mb >= 1e-2 && mv <= mb * 1e-3 {
        return Ok(Some(Deviation {
            kind: Kind::ThetaPrecisionDiffers,
            detail: format!(
                "within budget, but theta behaves as {:?} precision: median forward error {:.3} of budget under {} vs {:.1e} with theta {:?}",
                q.theta, mb, r.profile.name, mv, q.theta
            ),
            explains: HashSet::new(),
        }));
    }
    Ok(None)
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
        .map(|(i, raw)| {
            let profile = profiles.and_then(|ps| ps.get(i));
            let case = dump.layer_view(raw)?;
            let declared = Declared {
                forward_rows_not_executed: raw.indices_opt("forward_rows_not_executed", case.n)?,
            };
            let prof = match profile {
                Some(p) => p.clone(),
                None => crate::profile::mapped_profile(&dump.implementation, case.easy_margin).ok_or_else(|| {
                    FixtureError::new(
                        &dump.file,
                        format!(
                            "no profile is mapped to implementation {:?} (SPEC.md §6); pass --profile NAME",
                            dump.implementation
                        ),
                    )
                    .in_field("implementation")
                })?,
            };
            // A case may declare that it computed in a narrower dtype than its file
            // (`compute_dtype`: SpeechBrain's `outputs.float()`); then its inputs were rounded
            // to that dtype on the way in, and it is checked as an implementation in it.
            let (case, dtype) = match raw.dtype_opt("compute_dtype")? {
                Some(d) if d.unit_roundoff() > dump.dtype.unit_roundoff() => {
                    (case.rounded_inputs(d), d)
                }
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
        })
        .collect()
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
