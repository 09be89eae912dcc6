//! The reference as arrays: `reference` (the layer's forward and backward, as a fixture
//! holds them), `kinks` (where a profile is not smooth) and `loss_reference` (the f64 loss
//! pipeline with every intermediate and the gradients).

use crate::arrays::{self, f64_array, field_error, out_array, value_error, Widened};
use crate::family::{self, Family};
use crate::profile::ProfileArg;
use combined_margin::compare::Side;
use combined_margin::fixture::validate;
use combined_margin::fixture::LayerCase;
use combined_margin::modulation::Modulation;
use combined_margin::pipeline::{reference as pref, LossConfig};
use combined_margin::{kinks as cmkinks, layer, Dtype, Params};
use ndarray::ArrayView2;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn dtype_arg(label: &str, dtype: Option<&str>, default: Dtype) -> PyResult<Dtype> {
    match dtype {
        None => Ok(default),
        Some(d) => Dtype::parse(d).ok_or_else(|| {
            field_error(
                label,
                "dtype",
                format!("{d:?}: expected \"f64\", \"f32\", \"f16\" or \"bf16\""),
            )
        }),
    }
}

fn params(label: &str, m1: f64, m2: f64, m3: f64, s: Option<f64>) -> PyResult<Params> {
    let p = Params {
        m1,
        m2,
        m3,
        s: s.unwrap_or(1.0),
    };
    validate::params_valid(label, &p).map_err(value_error)?;
    Ok(p)
}

/// Forward and backward of the layer, as `cmargin generate` writes them: f64 on the
/// dtype-exact inputs, times s if `s` is given, rounded once to the dtype of `cos`, NaN as
/// the positive quiet NaN. top_diff None: ones (the backward is then the factor d out / d c).
#[pyfunction]
#[pyo3(signature = (cos, labels, m1, m2, m3, s, profile, top_diff=None, dtype=None, family=None))]
#[allow(clippy::too_many_arguments)]
pub fn reference<'py>(
    py: Python<'py>,
    cos: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    m1: f64,
    m2: f64,
    m3: f64,
    s: Option<f64>,
    profile: ProfileArg,
    top_diff: Option<&Bound<'py, PyAny>>,
    dtype: Option<&str>,
    family: Option<Bound<'py, PyDict>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    crate::guard(|| {
        let label = "reference";
        let p = params(label, m1, m2, m3, s)?;
        let prof = profile.fixed(label)?;
        let fam = Family::from_dict(label, family.as_ref())?;
        let family::CosIn {
            n,
            c,
            cos:
                Widened {
                    values,
                    dtype: cos_dt,
                    ..
                },
            sub,
        } = family::cos_input(label, cos, |_| crate::memory::RECORDS)?;
        let dtype = dtype_arg(label, dtype, cos_dt)?;
        match &sub {
            Some((_, v, _)) => arrays::on_grid(label, "cos", v, dtype)?,
            None => arrays::on_grid(label, "cos", &values, dtype)?,
        }
        let labels = arrays::labels_input(label, labels, n, c)?;
        let top = match top_diff {
            Some(t) => {
                let v = arrays::nc_floats(label, "top_diff", t, n, c)?;
                validate::no_nan(label, "top_diff", &v, c).map_err(value_error)?;
                v
            }
            None => vec![1.0; n * c],
        };
        let bad = |e: combined_margin::Error| PyValueError::new_err(format!("{label}: {e}"));
        let plain = sub.is_none()
            && !fam.has_rows()
            && fam.lam.is_none()
            && fam.modulation() == Modulation::None;
        if !plain {
            // The family's reference is the one the checker compares with (compare::compare
            // on a case whose outputs are placeholders): per-row margins, modulation, λ.
            let mut case = LayerCase {
                name: label.into(),
                params: p,
                params_effective: p,
                scaled: s.is_some(),
                easy_margin: None,
                n,
                c,
                cos: values,
                labels,
                top_diff: Some(top),
                forward: Some(vec![0.0; n * c]),
                backward: Some(vec![0.0; n * c]),
                row_params: None,
                modulation: Modulation::None,
                lambda: None,
                subcenters: None,
            };
            fam.apply(label, &mut case)?;
            let (fwd, bwd) = py
                .allow_threads(|| -> Result<_, combined_margin::Error> {
                    let r = combined_margin::compare::compare_with_detail(
                        &case,
                        &prof,
                        &combined_margin::compare::output_params(&case),
                        dtype,
                        combined_margin::compare::Detail::Every,
                    )?;
                    let canon = |x: f64| if x.is_nan() { f64::NAN } else { dtype.round(x) };
                    let (mut f, mut b) = (vec![0.0; n * c], vec![0.0; n * c]);
                    for e in &r.elements {
                        let slot = match e.side {
                            Side::Forward => &mut f,
                            Side::Backward => &mut b,
                        };
                        slot[e.index(c)] = e.reference;
                    }
                    let f: Vec<f64> = f.into_iter().map(canon).collect();
                    let b: Vec<f64> = b.into_iter().map(canon).collect();
                    Ok((f, b))
                })
                .map_err(bad)?;
            let bwd_out = match &sub {
                Some((k, _, arg)) => out_array(
                    py,
                    layer::subcenter_backward(&bwd, arg, *k).map_err(bad)?,
                    &[n, c, *k],
                    dtype,
                )?,
                None => out_array(py, bwd, &[n, c], dtype)?,
            };
            return Ok((out_array(py, fwd, &[n, c], dtype)?, bwd_out));
        }
        let (fwd, bwd) = py
            .allow_threads(|| -> Result<_, combined_margin::Error> {
                let view = ArrayView2::from_shape((n, c), &values)
                    .map_err(|e| combined_margin::Error::Invalid(e.to_string()))?;
                let tv = ArrayView2::from_shape((n, c), &top)
                    .map_err(|e| combined_margin::Error::Invalid(e.to_string()))?;
                let mut f = layer::forward(view, &labels, &p, &prof, dtype)?;
                let mut b = layer::backward(view, &labels, tv, &p, &prof, dtype)?;
                if s.is_some() {
                    f = layer::scale(f, p.s);
                    b = layer::scale(b, p.s);
                }
                // The same canonical form as the fixture generator (SPEC.md §7.4).
                let canon = |x: f64| if x.is_nan() { f64::NAN } else { dtype.round(x) };
                Ok((
                    f.into_iter().map(canon).collect::<Vec<_>>(),
                    b.into_iter().map(canon).collect::<Vec<_>>(),
                ))
            })
            .map_err(bad)?;
        Ok((
            out_array(py, fwd, &[n, c], dtype)?,
            out_array(py, bwd, &[n, c], dtype)?,
        ))
    })
}

/// Every kink of `profile` at (m1, m2, m3) in cos-space, sorted by c: a list of dicts
/// with `c`, `theta` (= acos c, radians), `kind` and `smoothness`.
#[pyfunction]
#[pyo3(signature = (m1, m2, m3, profile, dtype="f64"))]
pub fn kinks<'py>(
    py: Python<'py>,
    m1: f64,
    m2: f64,
    m3: f64,
    profile: ProfileArg,
    dtype: &str,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    crate::guard(|| {
        let label = "kinks";
        let p = params(label, m1, m2, m3, None)?;
        let prof = profile.fixed(label)?;
        let dt = dtype_arg(label, Some(dtype), Dtype::F64)?;
        cmkinks::kinks(&prof, &p, dt)
            .into_iter()
            .map(|k| {
                let d = PyDict::new(py);
                d.set_item("c", k.c)?;
                d.set_item("theta", k.c.acos())?;
                d.set_item("kind", k.kind.name())?;
                d.set_item("smoothness", format!("{:?}", k.smoothness()).to_lowercase())?;
                Ok(d)
            })
            .collect()
    })
}

/// The loss pipeline's f64 reference (SPEC.md §8): x̂ = x / sqrt(Σx² + eps), ŵ likewise,
/// cos = x̂·ŵᵀ, margin, z = s·m, loss = mean over labelled rows of logsumexp(z_i) − z_i,y
/// (nats). Returns a dict of every intermediate and the gradients d loss / d x, d loss / d w.
#[pyfunction]
#[pyo3(signature = (features, weights, labels, m1, m2, m3, s, profile, norm_eps, dtype=None))]
#[allow(clippy::too_many_arguments)]
pub fn loss_reference<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    weights: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    m1: f64,
    m2: f64,
    m3: f64,
    s: f64,
    profile: ProfileArg,
    norm_eps: f64,
    dtype: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    crate::guard(|| {
        let label = "loss_reference";
        let (x, w, labels, cfg) = pipeline_inputs(
            label,
            features,
            weights,
            labels,
            (m1, m2, m3, s),
            profile,
            norm_eps,
            dtype,
        )?;
        let (f, b) = py
            .allow_threads(|| -> Result<_, combined_margin::Error> {
                let f = pref::forward(x.view(), w.view(), &labels, &cfg)?;
                let b = pref::backward(&f, &labels, &cfg)?;
                Ok((f, b))
            })
            .map_err(|e| PyValueError::new_err(format!("{label}: {e}")))?;
        let d = PyDict::new(py);
        let put = |k: &str, a: &ndarray::Array2<f64>| -> PyResult<()> {
            d.set_item(
                k,
                f64_array(py, a.iter().copied().collect(), &[a.nrows(), a.ncols()])?,
            )
        };
        put("features_normalized", &f.features_normalized)?;
        put("weights_normalized", &f.weights_normalized)?;
        put("cos", &f.head.cos)?;
        put("margin_logits", &f.head.margin_logits)?;
        put("scaled_logits", &f.head.scaled_logits)?;
        put("probs", &f.head.probs)?;
        d.set_item(
            "lse",
            f64_array(py, f.head.lse.clone(), &[f.head.lse.len()])?,
        )?;
        let rl: Vec<f64> = f
            .head
            .row_loss
            .iter()
            .map(|r| r.unwrap_or(f64::NAN))
            .collect();
        d.set_item("row_loss", f64_array(py, rl.clone(), &[rl.len()])?)?;
        d.set_item("loss", f.head.loss)?;
        d.set_item("valid", f.head.valid)?;
        put("d_scaled_logits", &b.head.d_scaled_logits)?;
        put("d_margin_logits", &b.head.d_margin_logits)?;
        put("d_cos", &b.head.d_cos)?;
        put("d_features_normalized", &b.d_features_normalized)?;
        put("d_features", &b.d_features)?;
        put("d_weights", &b.d_weights)?;
        Ok(d)
    })
}

/// Features [N, D], weights [C, D] (float32/float64, the dtype of the check unless given),
/// labels [N], and the exact pipeline configuration.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn pipeline_inputs(
    label: &str,
    features: &Bound<'_, PyAny>,
    weights: &Bound<'_, PyAny>,
    labels: &Bound<'_, PyAny>,
    (m1, m2, m3, s): (f64, f64, f64, f64),
    profile: ProfileArg,
    norm_eps: f64,
    dtype: Option<&str>,
) -> PyResult<(
    ndarray::Array2<f64>,
    ndarray::Array2<f64>,
    Vec<i64>,
    LossConfig,
)> {
    let p = params(label, m1, m2, m3, Some(s))?;
    let prof = profile.fixed(label)?;
    let two_d = |field: &str, o: &Bound<'_, PyAny>| -> PyResult<(ndarray::Array2<f64>, Dtype)> {
        let a = arrays::floats(label, field, o)?.widen(label, field)?;
        let shape: Vec<u64> = a.shape.iter().map(|&d| d as u64).collect();
        if a.shape.len() != 2 {
            return Err(field_error(
                label,
                field,
                format!(
                    "shape {} has {} dimensions, expected 2",
                    validate::shape_str(&shape),
                    a.shape.len()
                ),
            ));
        }
        validate::no_nan(label, field, &a.values, a.shape[1]).map_err(value_error)?;
        let arr = ndarray::Array2::from_shape_vec((a.shape[0], a.shape[1]), a.values)
            .map_err(|e| field_error(label, field, e.to_string()))?;
        Ok((arr, a.dtype))
    };
    {
        // The memory the pipeline needs (N·D + C·D + N·C), before anything is copied.
        let fs = arrays::floats(label, "features", features)?.shape();
        let ws = arrays::floats(label, "weights", weights)?.shape();
        if let ([n, d], [c, _]) = (fs.as_slice(), ws.as_slice()) {
            let e = arrays::elements(&[*n, *d])
                .saturating_add(arrays::elements(&[*c, *d]))
                .saturating_add(arrays::elements(&[*n, *c]));
            crate::memory::check(
                label,
                &format!("features [{n}, {d}], weights [{c}, {d}]"),
                e,
            )?;
        }
    }
    let (x, xdt) = two_d("features", features)?;
    let (w, _) = two_d("weights", weights)?;
    if x.ncols() != w.ncols() {
        return Err(field_error(
            label,
            "weights",
            format!(
                "shape ({}, {}), expected ({}, {}): features are [{}, {}]",
                w.nrows(),
                w.ncols(),
                w.nrows(),
                x.ncols(),
                x.nrows(),
                x.ncols()
            ),
        ));
    }
    let labels = arrays::labels_input(label, labels, x.nrows(), w.nrows())?;
    let dt = dtype_arg(label, dtype, xdt)?;
    Ok((x, w, labels, LossConfig::exact(p, prof, dt, norm_eps)))
}
