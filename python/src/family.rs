//! The margin families (SPEC.md §11) as Python hands them over: per-row margins (any of
//! m1, m2, m3 an array of N), sub-centres (`cos` [N, C, K], `backward` [N, C, K]),
//! CurricularFace's t, the inter-top-k (k, m′, active) and A-Softmax's λ. Every refusal is
//! one located line naming the field and the expected shape, never the values.

use crate::arrays::{self, field_error, value_error, Widened};
use combined_margin::fixture::validate::{self, shape_str};
use combined_margin::fixture::LayerCase;
use combined_margin::modulation::{
    Curricular, CurricularGradient, CurricularMask, InterTopK, Modulation,
};
use combined_margin::{layer, Params};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The family of a check: `None`/absent everywhere is the plain head.
#[derive(Default)]
pub struct Family<'py> {
    /// `params.m1`, `params.m2`, `params.m3` where given as an array (one value per row).
    pub rows: [Option<Bound<'py, PyAny>>; 3],
    pub curricular_t: Option<f64>,
    /// (k, m′, active).
    pub intertopk: Option<(i64, f64, bool)>,
    pub lam: Option<f64>,
}

const FIELDS: [&str; 3] = ["params.m1", "params.m2", "params.m3"];

impl<'py> Family<'py> {
    /// From the dict the Python side builds (`m1`, `m2`, `m3`, `curricular_t`, `intertopk`,
    /// `lam`; None or absent where not used). The Python side has converted the scalars.
    pub fn from_dict(label: &str, d: Option<&Bound<'py, PyDict>>) -> PyResult<Family<'py>> {
        let Some(d) = d else {
            return Ok(Family::default());
        };
        let get = |k: &str| -> PyResult<Option<Bound<'py, PyAny>>> {
            Ok(d.get_item(k)?.filter(|v| !v.is_none()))
        };
        let mut f = Family::default();
        for (slot, k) in f.rows.iter_mut().zip(["m1", "m2", "m3"]) {
            *slot = get(k)?;
        }
        f.curricular_t = get("curricular_t")?
            .map(|v| v.extract::<f64>())
            .transpose()
            .map_err(|_| field_error(label, "curricular_t", "expected a number"))?;
        f.intertopk = get("intertopk")?
            .map(|v| v.extract::<(i64, f64, bool)>())
            .transpose()
            .map_err(|_| {
                field_error(
                    label,
                    "intertopk",
                    "expected (k, m_prime) or (k, m_prime, active)",
                )
            })?;
        f.lam = get("lam")?
            .map(|v| v.extract::<f64>())
            .transpose()
            .map_err(|_| field_error(label, "lam", "expected a number"))?;
        if let Some(t) = f.curricular_t {
            if !t.is_finite() {
                return Err(field_error(
                    label,
                    "curricular_t",
                    format!("{t}: must be finite"),
                ));
            }
            if f.intertopk.is_some() {
                return Err(field_error(
                    label,
                    "intertopk",
                    "a head has either CurricularFace's t or the inter-top-k penalty, not both",
                ));
            }
        }
        if let Some((k, m, _)) = f.intertopk {
            if k < 0 {
                return Err(field_error(
                    label,
                    "intertopk",
                    format!("k = {k}: expected a non-negative integer"),
                ));
            }
            if !m.is_finite() {
                return Err(field_error(
                    label,
                    "intertopk",
                    format!("m_prime = {m}: must be finite"),
                ));
            }
        }
        if let Some(l) = f.lam {
            if !(l.is_finite() && l >= 0.0) {
                return Err(field_error(
                    label,
                    "lam",
                    format!("{l}: must be a finite number >= 0"),
                ));
            }
        }
        Ok(f)
    }

    pub fn has_rows(&self) -> bool {
        self.rows.iter().any(Option::is_some)
    }

    pub fn modulation(&self) -> Modulation {
        if let Some(t) = self.curricular_t {
            return Modulation::Curricular(Curricular {
                t,
                t_other: None,
                mask: CurricularMask::MarginBranch,
                gradient: CurricularGradient::Full,
            });
        }
        match self.intertopk {
            Some((k, m, active)) => Modulation::InterTopK(InterTopK {
                k: k as usize,
                m,
                active,
            }),
            None => Modulation::None,
        }
    }

    /// Each row's (m1, m2, m3) with the scale of `p`, for a batch of `n` rows, and whether
    /// every array holds one value (bit for bit); `None` where every margin is one number.
    pub fn row_params(
        &self,
        label: &str,
        n: usize,
        p: &Params,
    ) -> PyResult<Option<(Vec<Params>, bool)>> {
        if !self.has_rows() {
            return Ok(None);
        }
        let mut cols: [Option<Vec<f64>>; 3] = [None, None, None];
        for ((slot, obj), field) in cols.iter_mut().zip(&self.rows).zip(FIELDS) {
            let Some(obj) = obj else { continue };
            let a = arrays::floats(label, field, obj)?;
            let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
            if shape != [n as u64] {
                return Err(field_error(
                    label,
                    field,
                    format!(
                        "shape {}, expected (N,) = ({n},): a number or one value per row",
                        shape_str(&shape)
                    ),
                ));
            }
            *slot = Some(a.widen(label, field)?.values);
        }
        let at = |j: usize, i: usize, scalar: f64| cols[j].as_ref().map_or(scalar, |v| v[i]);
        let rows = (0..n)
            .map(|i| {
                let q = Params {
                    m1: at(0, i, p.m1),
                    m2: at(1, i, p.m2),
                    m3: at(2, i, p.m3),
                    s: p.s,
                };
                q.validate().map_err(|e| {
                    let field = match e {
                        combined_margin::Error::InvalidParam { field, .. } => {
                            format!("params.{field}")
                        }
                        _ => "params".into(),
                    };
                    field_error(label, &field, format!("row {i}: {e}"))
                })?;
                Ok(q)
            })
            .collect::<PyResult<Vec<Params>>>()?;
        let constant = cols
            .iter()
            .flatten()
            .all(|v| v.windows(2).all(|w| w[0].to_bits() == w[1].to_bits()));
        Ok(Some((rows, constant)))
    }

    /// Sets the family's fields of `case` (its `n` rows known). Arrays that each hold one
    /// value are the scalar case: the case's parameters become that value, so the report is
    /// the scalar one (the fingerprint included).
    pub fn apply(&self, label: &str, case: &mut LayerCase) -> PyResult<()> {
        match self.row_params(label, case.n, &case.params)? {
            Some((rows, false)) => case.row_params = Some(rows),
            Some((rows, true)) => {
                if let Some(r0) = rows.first() {
                    case.params = *r0;
                    case.params_effective = *r0;
                }
            }
            None => {}
        }
        case.modulation = self.modulation();
        case.lambda = self.lam;
        Ok(())
    }
}

/// `cos` as given: [N, C], or [N, C, K] sub-centres reduced by the max (first index on
/// ties, SPEC.md §11.2).
pub struct CosIn {
    pub n: usize,
    pub c: usize,
    /// The [N, C] cos the margin applies to (the max over K for sub-centres).
    pub cos: Widened,
    /// (K, the [N, C, K] values, the arg-max of each (row, class)).
    pub sub: Option<(usize, Vec<f64>, Vec<usize>)>,
}

/// `figure`: the caller's peak estimate for a 2-D `cos` of so many elements
/// ([`crate::memory`]); a sub-centre `cos` is checked at [`crate::memory::RECORDS`].
pub fn cos_input(
    label: &str,
    obj: &Bound<'_, PyAny>,
    figure: impl Fn(u64) -> crate::memory::Figure,
) -> PyResult<CosIn> {
    let a = arrays::floats(label, "cos", obj)?;
    if a.shape().len() != 3 {
        let (n, c, w) = arrays::cos_input(label, obj, figure)?;
        return Ok(CosIn {
            n,
            c,
            cos: w,
            sub: None,
        });
    }
    let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
    crate::memory::check(
        label,
        &format!("cos {}", shape_str(&shape)),
        arrays::elements(&a.shape()),
    )?;
    let w = a.widen(label, "cos")?;
    let (n, c, k) = (w.shape[0], w.shape[1], w.shape[2]);
    if k == 0 {
        return Err(field_error(
            label,
            "cos",
            format!(
                "shape {}: K = 0 sub-centres, expected (N, C) or (N, C, K) with K >= 1",
                shape_str(&shape)
            ),
        ));
    }
    validate::no_nan(label, "cos", &w.values, c * k).map_err(value_error)?;
    let (max, arg) = layer::subcenter_max(&w.values, n, c, k)
        .map_err(|e| field_error(label, "cos", e.to_string()))?;
    Ok(CosIn {
        n,
        c,
        cos: Widened {
            shape: vec![n, c],
            values: max,
            dtype: w.dtype,
        },
        sub: Some((k, w.values, arg)),
    })
}

/// A (row, class) whose gradient reached a sub-centre other than the arg-max: (flat [N, C]
/// index, the first such sub-centre, its value, the value at the arg-max).
pub type Misplaced = (usize, usize, f64, f64);

/// `backward` [N, C, K] of a sub-centre case as the checker compares it, [N, C]: the
/// gradient of the arg-max sub-centre where every other one got exactly 0; elsewhere the
/// sum over K (the gradient of the cell, whichever sub-centres it reached, so that a head
/// that reduced otherwise is named by its reduction), those cells listed.
pub fn backward_subcenters(
    label: &str,
    obj: &Bound<'_, PyAny>,
    n: usize,
    c: usize,
    k: usize,
    argmax: &[usize],
) -> PyResult<(Vec<f64>, Vec<Misplaced>)> {
    let a = arrays::floats(label, "backward", obj)?;
    let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
    let want = [n as u64, c as u64, k as u64];
    if shape != want {
        return Err(field_error(
            label,
            "backward",
            format!(
                "shape {}, expected (N, C, K) = {}: the gradient of each sub-centre",
                shape_str(&shape),
                shape_str(&want)
            ),
        ));
    }
    let v = a.widen(label, "backward")?.values;
    let mut red = Vec::with_capacity(n * c);
    let mut off = Vec::new();
    for (i, (cell, &am)) in v.chunks_exact(k).zip(argmax).enumerate() {
        match cell.iter().enumerate().find(|&(j, &g)| j != am && g != 0.0) {
            None => red.push(cell[am]),
            Some((j, &g)) => {
                red.push(cell.iter().sum());
                off.push((i, j, g, cell[am]));
            }
        }
    }
    Ok((red, off))
}
