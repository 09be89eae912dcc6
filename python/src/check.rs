//! `check_cases`: an implementation's outputs against the reference, through the crate's
//! `deviation::check` (comparison, named deviations) and `--profile auto` ranking, with the
//! CLI's report text (`combined_margin::report`). Also `disagree`, two implementations'
//! outputs against each other in the reference's budget.

use crate::arrays::{self, f64_array, field_error, value_error, Widened};
use crate::family::{self, Family, Misplaced};
use crate::profile::{Profile, ProfileArg, Resolved};
use combined_margin::compare::{Element, Role, Side};
use combined_margin::deviation::{self, CaseCheck, Declared, Kind, Verdict};
use combined_margin::fixture::{FixtureError, LayerCase};
use combined_margin::{report, tolerance, Dtype, Params};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The worst element of a check: where, what came out, what the reference wants, and how
/// far off as a fraction of its budget (|got − want| / budget; ≤ 1 passes; SPEC.md §5).
#[pyclass(module = "combined_margin._core", frozen, get_all)]
#[derive(Clone)]
pub struct Worst {
    pub case: String,
    /// "forward" or "backward".
    pub side: String,
    /// "target" or "pass-through".
    pub role: String,
    pub row: usize,
    pub col: usize,
    /// The input cos θ of the element.
    pub input: f64,
    pub label: i64,
    pub top_diff: f64,
    pub got: f64,
    pub want: f64,
    /// Absolute budget, in the units of the output.
    pub budget: f64,
    pub fraction: f64,
    /// "interior", "near <kink> (dc = …)", "at <kink>", "outside [-1, 1]", "non-target", "ignored row".
    pub region: String,
    /// The report's one-line description of the element.
    pub text: String,
}

#[pymethods]
impl Worst {
    fn __repr__(&self) -> String {
        format!("Worst({})", self.text)
    }
}

/// A named deviation (SPEC.md §6.2) and its evidence.
#[pyclass(module = "combined_margin._core", frozen, get_all)]
#[derive(Clone)]
pub struct Deviation {
    pub case: String,
    pub name: String,
    pub evidence: String,
    /// How many out-of-budget elements it accounts for.
    pub elements: usize,
    /// A note (SPEC.md §6.5): it moves no element out of budget, is listed, and never fails
    /// the case.
    pub note: bool,
}

#[pymethods]
impl Deviation {
    fn __repr__(&self) -> String {
        let what = if self.note { "note " } else { "" };
        format!("Deviation({what}{}: {})", self.name, self.evidence)
    }
}

/// One case of a report. Fractions are |got − want| / budget per element, shape [N, C], f64
/// (0 where bit-equal, inf for a non-finite mismatch); `None` for a side not given.
#[pyclass(module = "combined_margin._core", frozen, get_all)]
pub struct CaseResult {
    pub name: String,
    pub verdict: String,
    /// Within budget, and every deviation allowed.
    pub passed: bool,
    pub within: usize,
    pub count: usize,
    pub max_fraction: f64,
    pub worst: Option<Worst>,
    pub deviations: Vec<Deviation>,
    /// Out-of-budget elements no deviation accounts for.
    pub unexplained: usize,
    pub forward_fraction: Option<Py<PyAny>>,
    pub backward_fraction: Option<Py<PyAny>>,
    /// The absolute budgets (output units) the fractions divide by.
    pub forward_budget: Option<Py<PyAny>>,
    pub backward_budget: Option<Py<PyAny>>,
}

/// The result of a check: `passed`, `verdict`, `profile`, `deviations`, `worst`, per-case
/// results with per-element budget fractions, and `str(report)` = `cmargin check`'s text.
#[pyclass(module = "combined_margin._core", get_all)]
pub struct Report {
    pub label: String,
    pub implementation: String,
    /// "f32" or "f64": the precision the implementation ran in (from `cos`).
    pub dtype: String,
    /// Every case within budget and every detected deviation in `allow`.
    pub passed: bool,
    /// "PASS", "DEVIATES" (within budget, deviations named) or "FAIL" (worst case first).
    pub verdict: String,
    /// The profile checked against: the one given, or the fingerprint's best.
    pub profile: Profile,
    /// With profile="auto": every candidate as (name, share within budget, worst fraction), best first.
    pub fingerprint: Option<Vec<(String, f64, f64)>>,
    pub cases: Vec<Py<CaseResult>>,
    pub deviations: Vec<Deviation>,
    pub worst: Option<Worst>,
    /// The report text, exactly as `cmargin check` prints it.
    pub text: String,
    /// Notes the driver adds (an in-place write, a copy from a device); printed after the text.
    #[pyo3(set)]
    pub notes: Vec<String>,
}

#[pymethods]
impl Report {
    /// 0 if passed, 1 otherwise: the exit code `cmargin check` gives for the same check.
    #[getter]
    fn exit_code(&self) -> i32 {
        if self.passed {
            0
        } else {
            1
        }
    }

    /// The single case's forward fractions ([N, C]); a ValueError for a multi-case report.
    #[getter]
    fn forward_fraction(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .single()?
            .forward_fraction
            .as_ref()
            .map(|a| a.clone_ref(py)))
    }

    #[getter]
    fn backward_fraction(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .single()?
            .backward_fraction
            .as_ref()
            .map(|a| a.clone_ref(py)))
    }

    /// The detected deviation names, sorted, without repeats.
    #[getter]
    fn deviation_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.deviations.iter().map(|d| d.name.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    fn __str__(&self) -> String {
        let mut s = self.text.clone();
        for n in &self.notes {
            s.push_str(&format!("  note: {n}\n"));
        }
        s
    }

    fn __repr__(&self) -> String {
        format!(
            "<Report {} {} ({} case(s), profile {})>",
            self.label,
            self.verdict,
            self.cases.len(),
            self.profile.inner.name
        )
    }
}

impl Report {
    fn single(&self) -> PyResult<&CaseResult> {
        match self.cases.as_slice() {
            [one] => Ok(one.get()),
            many => Err(PyValueError::new_err(format!(
                "this report has {} cases; use report.cases[i].forward_fraction",
                many.len()
            ))),
        }
    }
}

fn worst_of(ck: &CaseCheck, e: &Element) -> Worst {
    let r = &ck.report;
    Worst {
        case: r.name.clone(),
        side: e.side.name().into(),
        role: match e.role {
            Role::Target => "target".into(),
            Role::PassThrough => "pass-through".into(),
        },
        row: e.row,
        col: e.col,
        input: e.input,
        label: e.label,
        top_diff: e.top_diff,
        got: e.actual,
        want: e.reference,
        budget: e.budget,
        fraction: e.fraction,
        region: r.region(e),
        text: r.describe(e),
    }
}

/// What one case's check leaves for Python, without the per-element records.
struct Digest {
    name: String,
    verdict: Verdict,
    passed: bool,
    within: usize,
    count: usize,
    max_fraction: f64,
    worst: Option<Worst>,
    deviations: Vec<Deviation>,
    unexplained: usize,
    /// (fractions, budgets) per side, row-major [N·C].
    sides: [Option<(Vec<f64>, Vec<f64>)>; 2],
}

fn digest(ck: &mut CaseCheck, allowed: &[Kind]) -> Digest {
    // A bounded check keeps every element's fraction and budget as arrays, not as records.
    let kept = ck.report.arrays.take();
    let r = &ck.report;
    let nc = r.n * r.c;
    let sides: [Option<(Vec<f64>, Vec<f64>)>; 2] = match kept {
        Some(a) => [a.forward, a.backward],
        None => {
            let mut sides: [Option<(Vec<f64>, Vec<f64>)>; 2] = [None, None];
            for e in &r.elements {
                let k = match e.side {
                    Side::Forward => 0,
                    Side::Backward => 1,
                };
                let (f, b) =
                    sides[k].get_or_insert_with(|| (vec![f64::NAN; nc], vec![f64::NAN; nc]));
                let i = e.index(r.c);
                f[i] = e.fraction;
                b[i] = e.budget;
            }
            sides
        }
    };
    let v = ck.verdict();
    Digest {
        name: r.name.clone(),
        verdict: v,
        passed: v == Verdict::Pass || ck.accepted_with(allowed),
        within: r.within(),
        count: r.count(),
        max_fraction: r.max_fraction(),
        worst: r.worst().map(|e| worst_of(ck, e)),
        deviations: ck
            .deviations
            .iter()
            .map(|d| Deviation {
                case: r.name.clone(),
                name: d.kind.name().into(),
                evidence: d.detail.clone(),
                elements: d.explains.len(),
                note: ck.is_note(d),
            })
            .collect(),
        unexplained: ck.unexplained.len(),
        sides,
    }
}

/// A case as Python hands it over: a dict with `cos`, `labels`, and optionally `name`,
/// `top_diff`, `forward`, `backward`.
#[allow(clippy::type_complexity)]
fn layer_case(
    label: &str,
    index: usize,
    d: &Bound<'_, PyDict>,
    params: Params,
    scaled: bool,
    dtype_given: Option<Dtype>,
    fam: &Family<'_>,
) -> PyResult<(LayerCase, Dtype, Vec<Misplaced>)> {
    let get = |k: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
        Ok(d.get_item(k)?.filter(|v| !v.is_none()))
    };
    let name: String = match get("name")? {
        Some(v) => v.extract()?,
        None => format!("case{index}"),
    };
    // What the implementation declares about its easy_margin flag (insightface's ArcFace
    // attribute), as a dump's params.easy_margin: lets the checker name easy-margin-ignored.
    let easy_margin: Option<bool> = match get("easy_margin")? {
        Some(v) => Some(
            v.extract()
                .map_err(|_| field_error(label, "easy_margin", "expected True, False or None"))?,
        ),
        None => None,
    };
    let cos_obj = get("cos")?.ok_or_else(|| field_error(label, "cos", "missing"))?;
    let family::CosIn {
        n,
        c,
        cos: Widened {
            values: cos, dtype, ..
        },
        sub,
    } = family::cos_input(label, &cos_obj, crate::memory::check_layer_figure)?;
    if let Some(d) = dtype_given {
        match &sub {
            Some((_, v, _)) => arrays::on_grid(label, "cos", v, d)?,
            None => arrays::on_grid(label, "cos", &cos, d)?,
        }
    }
    let dtype = dtype_given.unwrap_or(dtype);
    let labels_obj = get("labels")?.ok_or_else(|| field_error(label, "labels", "missing"))?;
    let labels = arrays::labels_input(label, &labels_obj, n, c)?;
    let opt = |field: &str| -> PyResult<Option<Vec<f64>>> {
        get(field)?
            .map(|o| arrays::nc_floats(label, field, &o, n, c))
            .transpose()
    };
    let top_diff = opt("top_diff")?;
    if let Some(t) = &top_diff {
        combined_margin::fixture::validate::no_nan(label, "top_diff", t, c).map_err(value_error)?;
        if let Some(d) = dtype_given {
            arrays::on_grid(label, "top_diff", t, d)?;
        }
    }
    let forward = opt("forward")?;
    let (backward, misplaced) = match (&sub, get("backward")?) {
        (Some((k, _, arg)), Some(o)) => {
            let (b, m) = family::backward_subcenters(label, &o, n, c, *k, arg)?;
            (Some(b), m)
        }
        _ => (opt("backward")?, Vec::new()),
    };
    if forward.is_none() && backward.is_none() {
        return Err(PyValueError::new_err(format!(
            "{label}: fields \"forward\", \"backward\": absent; pass the implementation's outputs"
        )));
    }
    if backward.is_some() && top_diff.is_none() {
        return Err(field_error(
            label,
            "top_diff",
            "missing: \"backward\" is given without the \"top_diff\" it was computed from",
        ));
    }
    let mut case = LayerCase {
        name,
        params,
        params_effective: params,
        scaled,
        easy_margin,
        n,
        c,
        cos,
        labels,
        top_diff,
        forward,
        backward,
        row_params: None,
        modulation: Default::default(),
        lambda: None,
        subcenters: sub.map(|(k, v, _)| (k, v)),
    };
    fam.apply(label, &mut case)?;
    Ok((case, dtype, misplaced))
}

/// Names the gradients a sub-centre case sent to a sub-centre other than the arg-max
/// (SPEC.md §11.2: the first index on ties, as torch.max returns it) as
/// `subcenter-reduction-differs`. The checker compared those cells' total gradient (so that
/// a head reducing otherwise is named by its reduction); here each is compared as the worse
/// of that and the arg-max sub-centre's own gradient, and those out of budget are this
/// deviation's.
fn misplaced_gradients(ck: &mut CaseCheck, k: usize, off: &[Misplaced]) {
    let Some(&(first, j, g, at_arg)) = off.first() else {
        return;
    };
    let c = ck.report.c.max(1);
    let own: std::collections::HashMap<usize, f64> =
        off.iter().map(|&(i, _, _, a)| (i, a)).collect();
    for e in &mut ck.report.elements {
        if e.side == Side::Backward {
            // The worse of the two readings: a gradient moved to another sub-centre (the arg-max
            // short) and one copied to it (the total over) both fail.
            if let Some(&a) = own.get(&e.index(c)) {
                if tolerance::error_fraction(a, e.reference, e.budget) > e.fraction {
                    e.actual = a;
                }
            }
        }
    }
    // A check of every element (Detail::Every above) can always be re-budgeted.
    if ck.report.rebudget(|e| e.budget).is_err() {
        return;
    }
    let key = |e: &Element| (e.side, e.index(c));
    let explains: std::collections::HashSet<deviation::Key> = ck
        .report
        .failing()
        .filter(|e| e.side == Side::Backward && own.contains_key(&e.index(c)))
        .map(key)
        .collect();
    ck.unexplained.retain(|e| !explains.contains(&key(e)));
    let (row, col) = (first / c, first % c);
    ck.deviations.push(deviation::Deviation {
        kind: Kind::SubcenterReductionDiffers,
        detail: format!(
            "the backward sends the gradient of {} (row, class) cells to a sub-centre other than the arg-max of the K = {k} (the first index on ties, as torch.max returns it), e.g. row {row} class {col}: sub-centre {j} got {g}, the arg-max {at_arg}",
            off.len()
        ),
        explains,
    });
}

/// Checks cases against the reference under `profile` (a `Profile`, a preset name, or "auto"
/// to fingerprint them); `m1, m2, m3` in radians and cosine units; `s` = the scale the
/// outputs carry (None: the layer does not scale); `dtype`: the precision the implementation
/// ran in (None: that of `cos`); `max_elements`: with `verbose`, the unexplained elements
/// listed per case. Returns a `Report`.
#[pyfunction]
#[pyo3(signature = (label, implementation, cases, m1, m2, m3, s, profile, allow, verbose, dtype=None, max_elements=5, family=None))]
#[allow(clippy::too_many_arguments)]
pub fn check_cases(
    py: Python<'_>,
    label: &str,
    implementation: &str,
    cases: Vec<Bound<'_, PyDict>>,
    m1: f64,
    m2: f64,
    m3: f64,
    s: Option<f64>,
    profile: ProfileArg,
    allow: Vec<String>,
    verbose: bool,
    dtype: Option<&str>,
    max_elements: usize,
    family: Option<Bound<'_, PyDict>>,
) -> PyResult<Report> {
    crate::guard(|| {
        let dtype_given = dtype
            .map(|d| {
                Dtype::parse(d).ok_or_else(|| {
                    field_error(
                        label,
                        "dtype",
                        format!("{d:?}: expected \"f64\", \"f32\", \"f16\" or \"bf16\""),
                    )
                })
            })
            .transpose()?;
        let allowed = allow
            .iter()
            .map(|n| {
                Kind::parse(n).ok_or_else(|| {
                    field_error(
                        label,
                        "allow",
                        format!(
                            "{n:?}: unknown deviation (known: {})",
                            Kind::ALL.map(|k| k.name()).join(", ")
                        ),
                    )
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let params = Params {
            m1,
            m2,
            m3,
            s: s.unwrap_or(1.0),
        };
        combined_margin::fixture::validate::params_valid(label, &params).map_err(value_error)?;
        let fam = Family::from_dict(label, family.as_ref())?;
        let resolved = profile.resolve(label, true)?;
        if cases.is_empty() {
            return Err(field_error(label, "cases", "no case to check"));
        }
        // The memory every case together needs, before any of them is copied: a bounded
        // case (2-D, above 2^20 entries) at its own figure, any other at the records' figure.
        let mut total = 0u64;
        let mut bytes = 0u64;
        let mut how = String::new();
        let mut what = String::new();
        for d in &cases {
            if let Some(cos) = d.get_item("cos")?.filter(|v| !v.is_none()) {
                if let Ok(a) = cos.extract::<arrays::Floats>() {
                    let shape: Vec<u64> = a.shape().iter().map(|&x| x as u64).collect();
                    let e = arrays::elements(&a.shape());
                    let figure = match shape.len() {
                        2 => crate::memory::check_layer_figure(e),
                        _ => crate::memory::RECORDS,
                    };
                    total = total.saturating_add(e);
                    bytes = bytes.saturating_add(figure.need(e));
                    how = figure.text();
                    what = format!(
                        "cos {}",
                        combined_margin::fixture::validate::shape_str(&shape)
                    );
                }
            }
        }
        if cases.len() > 1 {
            what = format!("{} cases", cases.len());
            how = "each case at its own figure".into();
        }
        crate::memory::check_need(label, &what, total, bytes, &how)?;
        let mut layer = Vec::with_capacity(cases.len());
        let mut misplaced = Vec::with_capacity(cases.len());
        let mut dtype = None;
        for (i, d) in cases.iter().enumerate() {
            let (case, dt, off) = layer_case(label, i, d, params, s.is_some(), dtype_given, &fam)?;
            if case.row_params.is_some() && matches!(resolved, Resolved::Auto) {
                return Err(field_error(
                    label,
                    "profile",
                    "\"auto\" with per-row margins: the fingerprint fits one (m1, m2, m3) per case; pass profile=NAME",
                ));
            }
            misplaced.push(case.subcenters.as_ref().map(|(k, _)| (*k, off)));
            match dtype {
                None => dtype = Some(dt),
                Some(first) if first != dt => {
                    return Err(value_error(
                        FixtureError::new(
                            label,
                            format!("dtype {dt} differs from the first case's {first}"),
                        )
                        .in_case(&case.name)
                        .in_field("cos"),
                    ))
                }
                Some(_) => {}
            }
            layer.push(case);
        }
        let dtype = dtype.unwrap_or(Dtype::F64);
        let label_s = label.to_string();
        let implementation_s = implementation.to_string();
        // The heavy part runs without the GIL: other Python threads keep going.
        let outcome = py.allow_threads(move || -> Result<_, String> {
            let (mut text, prof, ranking) = match resolved {
                Resolved::Fixed(p) => (String::new(), p, None),
                Resolved::Auto => {
                    let (t, p, r) = report::fingerprint_report(&label_s, &layer, dtype)?;
                    (t, p, Some(r))
                }
            };
            let mut checks = Vec::with_capacity(layer.len());
            for (case, off) in layer.iter().zip(&misplaced) {
                // The per-element fractions and budgets go back to Python: every element's
                // record up to 2^20 entries per side, and where sub-centres may need their
                // gradients re-read (misplaced_gradients re-budgets the records); above it,
                // a bounded check that keeps them as arrays (SPEC.md §8.5).
                let mut ck = if off.is_some() {
                    deviation::check_with(
                        case,
                        &prof,
                        dtype,
                        &Declared::default(),
                        combined_margin::compare::Detail::Every,
                    )
                } else {
                    deviation::check_keeping_arrays(case, &prof, dtype, &Declared::default())
                }
                .map_err(|e| format!("{label_s}: case {:?}: {e}", case.name))?;
                if let Some((k, off)) = off {
                    misplaced_gradients(&mut ck, *k, off);
                }
                checks.push(ck);
            }
            let opts = report::ReportOptions {
                allowed: allowed.clone(),
                verbose,
                max_elements,
                more_hint: "max_elements=N",
                ..report::ReportOptions::default()
            };
            let (body, passed) =
                report::file_report(&label_s, &implementation_s, dtype, &checks, &opts);
            text.push_str(&body);
            let digests: Vec<Digest> = checks.iter_mut().map(|ck| digest(ck, &allowed)).collect();
            let shape = layer.iter().map(|c| (c.n, c.c)).collect::<Vec<_>>();
            Ok((text, prof, ranking, digests, passed, shape))
        });
        let (text, prof, ranking, digests, passed, shapes) =
            outcome.map_err(PyValueError::new_err)?;
        let verdict = if digests.iter().any(|d| d.verdict == Verdict::Fail) {
            Verdict::Fail
        } else if digests.iter().any(|d| d.verdict == Verdict::Deviates) {
            Verdict::Deviates
        } else {
            Verdict::Pass
        };
        let worst = digests.iter().filter_map(|d| d.worst.clone()).fold(
            None,
            |w: Option<Worst>, e| match w {
                Some(w) if w.fraction >= e.fraction => Some(w),
                _ => Some(e),
            },
        );
        let deviations = digests
            .iter()
            .flat_map(|d| d.deviations.iter().cloned())
            .collect();
        let mut results = Vec::with_capacity(digests.len());
        for (d, (n, c)) in digests.into_iter().zip(shapes) {
            let [fw, bw] = d.sides;
            let arr = |v: Option<Vec<f64>>| -> PyResult<Option<Py<PyAny>>> {
                v.map(|v| f64_array(py, v, &[n, c]).map(|a| a.unbind()))
                    .transpose()
            };
            let (ff, fb) = fw.map_or((None, None), |(f, b)| (Some(f), Some(b)));
            let (bf, bb) = bw.map_or((None, None), |(f, b)| (Some(f), Some(b)));
            let r = CaseResult {
                name: d.name,
                verdict: d.verdict.name().into(),
                passed: d.passed,
                within: d.within,
                count: d.count,
                max_fraction: d.max_fraction,
                worst: d.worst,
                deviations: d.deviations,
                unexplained: d.unexplained,
                forward_fraction: arr(ff)?,
                backward_fraction: arr(bf)?,
                forward_budget: arr(fb)?,
                backward_budget: arr(bb)?,
            };
            results.push(Py::new(py, r)?);
        }
        Ok(Report {
            label: label.into(),
            implementation: implementation.into(),
            dtype: dtype.name().into(),
            passed,
            verdict: verdict.name().into(),
            profile: Profile { inner: prof },
            fingerprint: ranking.map(|r| {
                r.into_iter()
                    .map(|f| (f.profile.name, f.share, f.worst))
                    .collect()
            }),
            cases: results,
            deviations,
            worst,
            text,
            notes: Vec::new(),
        })
    })
}

/// Two implementations' outputs against each other: |a − b| / budget per element, with the
/// reference's budget of that element (`CaseResult.forward_budget`); > 1 means they disagree
/// by more than either may differ from the reference. NaN = NaN and equal infinities agree.
#[pyfunction]
pub fn disagree<'py>(
    py: Python<'py>,
    label: &str,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
    budget: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    crate::guard(|| {
        let bud = arrays::floats(label, "budget", budget)?.widen(label, "budget")?;
        let (n, c) = match bud.shape.as_slice() {
            [n, c] => (*n, *c),
            _ => return Err(field_error(label, "budget", "expected 2 dimensions (N, C)")),
        };
        let av = arrays::nc_floats(label, "a", a, n, c)?;
        let bv = arrays::nc_floats(label, "b", b, n, c)?;
        let f: Vec<f64> = av
            .iter()
            .zip(&bv)
            .zip(&bud.values)
            .map(|((&x, &y), &w)| tolerance::error_fraction(x, y, w))
            .collect();
        f64_array(py, f, &[n, c])
    })
}
