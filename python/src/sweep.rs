//! `sweep`: a user's callable swept over every float of a dtype in [−1, 1] (plus the band
//! beyond ±1), in chunks of a few million numpy values, by the crate's sweep engine
//! (`combined_margin::sweep`): the same comparison, regions, histogram and worst inputs as
//! `cmargin sweep`, with the callable in place of a built-in implementation.

use crate::profile::ProfileArg;
use combined_margin::sweep::{self, grid, impls::SweepImpl, report, Options, Spec};
use combined_margin::{Dtype, Params};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A Python callable `f(c) -> (forward, factor)` on a float64 array (the Python side converts
/// to the dtype and back).
struct Callable {
    f: Py<PyAny>,
}

impl SweepImpl for Callable {
    fn name(&self) -> String {
        "python callable".into()
    }
    fn eval_chunk(&self, c: &[f64], out: &mut [f64], factor: &mut [f64]) -> Result<(), String> {
        Python::with_gil(|py| {
            let arr = PyArray1::from_slice(py, c);
            let r = self
                .f
                .call1(py, (arr,))
                .map_err(|e| format!("the callable raised: {e}"))?;
            let (o, g): (PyReadonlyArray1<f64>, PyReadonlyArray1<f64>) = r
                .extract(py)
                .map_err(|e| format!("the callable must return (forward, factor) arrays: {e}"))?;
            let (o, g) = (o.as_array(), g.as_array());
            if o.len() != c.len() || g.len() != c.len() {
                return Err(format!(
                    "the callable returned {} forward and {} factor values for {} inputs",
                    o.len(),
                    g.len(),
                    c.len()
                ));
            }
            for (d, s) in out.iter_mut().zip(o.iter()) {
                *d = *s;
            }
            for (d, s) in factor.iter_mut().zip(g.iter()) {
                *d = *s;
            }
            Ok(())
        })
    }
    fn preferred_chunk(&self) -> usize {
        1 << 21
    }
}

/// Sweeps `f` (see the Python wrapper `combined_margin.sweep`). Returns (table text, JSON).
#[pyfunction]
#[pyo3(signature = (f, profile, params, dtype, stride=1, range=None, kink_ulps=64))]
#[allow(clippy::too_many_arguments)]
pub fn sweep_callable(
    py: Python<'_>,
    f: Py<PyAny>,
    profile: ProfileArg,
    params: (f64, f64, f64),
    dtype: &str,
    stride: u64,
    range: Option<(f64, f64)>,
    kink_ulps: u64,
) -> PyResult<(String, String)> {
    crate::guard(|| {
        let label = "sweep";
        let profile = profile.fixed(label)?;
        let dtype = Dtype::parse(dtype).ok_or_else(|| {
            PyValueError::new_err(format!(
                "{label}: field \"dtype\": {dtype:?}: expected f64, f32, f16 or bf16"
            ))
        })?;
        let p = Params::new(params.0, params.1, params.2);
        p.validate()
            .map_err(|e| PyValueError::new_err(format!("{label}: field \"params\": {e}")))?;
        if stride == 0 {
            return Err(PyValueError::new_err(format!(
                "{label}: field \"stride\": must be at least 1"
            )));
        }
        let g = grid::grid_of(dtype);
        let inputs = grid::InputSet::new(g, range, stride, grid::DEFAULT_BAND)
            .map_err(|e| PyValueError::new_err(format!("{label}: {e}")))?;
        let mut spec = Spec {
            profile,
            params: p,
            grid: g,
            inputs,
            kink_ulps,
        };
        spec.densify_kinks();
        let imp = Callable { f };
        let result = py
            .allow_threads(|| sweep::run(&spec, &imp, &Options::default()))
            .map_err(|e| PyValueError::new_err(format!("{label}: {e}")))?;
        let text = report::table(&result, None);
        let json = report::to_json(&result, serde_json::json!({ "impl": "python callable" }));
        Ok((text, json.to_string()))
    })
}
