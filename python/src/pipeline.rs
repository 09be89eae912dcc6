//! `check_pipeline`: a loss head's outputs (loss, d features, d weights) against the f64
//! reference (`pipeline::reference`) in the pipeline budget (`pipeline::budget`, SPEC.md §8.3),
//! with the weight-gradient semantics named (`pipeline::deviation`, SPEC.md §8.4).

use crate::arrays::{self, f64_array, field_error};
use crate::profile::{Profile, ProfileArg};
use crate::reference::pipeline_inputs;
use combined_margin::compare::{fraction_text, num};
use combined_margin::pipeline::{budget, deviation as pdev, reference as pref};
use combined_margin::tolerance::error_fraction;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::fmt::Write;

/// The result of `check_pipeline`: `passed`, `verdict`, `profile`, `deviations` (names),
/// `worst` (per quantity), `fractions` (loss: float; d_features [N, D], d_weights [C, D]:
/// arrays of |got − want| / budget) and `str()`, one line per quantity.
#[pyclass(module = "combined_margin._core", get_all)]
pub struct PipelineReport {
    pub passed: bool,
    pub verdict: String,
    pub profile: Profile,
    pub deviations: Vec<String>,
    /// quantity → (flat index, got, want, budget, fraction) of its worst element.
    pub worst: Py<PyDict>,
    pub fractions: Py<PyDict>,
    pub text: String,
}

#[pymethods]
impl PipelineReport {
    fn __str__(&self) -> String {
        self.text.clone()
    }
    #[getter]
    fn exit_code(&self) -> i32 {
        if self.passed {
            0
        } else {
            1
        }
    }
}

#[pyfunction]
#[pyo3(signature = (label, features, weights, labels, loss, d_features, d_weights, m1, m2, m3, s, profile, norm_eps, dtype=None))]
#[allow(clippy::too_many_arguments)]
pub fn check_pipeline(
    py: Python<'_>,
    label: &str,
    features: &Bound<'_, PyAny>,
    weights: &Bound<'_, PyAny>,
    labels: &Bound<'_, PyAny>,
    loss: f64,
    d_features: Option<&Bound<'_, PyAny>>,
    d_weights: Option<&Bound<'_, PyAny>>,
    m1: f64,
    m2: f64,
    m3: f64,
    s: f64,
    profile: ProfileArg,
    norm_eps: f64,
    dtype: Option<&str>,
) -> PyResult<PipelineReport> {
    crate::guard(|| {
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
        let dx = d_features
            .map(|o| arrays::nc_floats(label, "d_features", o, x.nrows(), x.ncols()))
            .transpose()?;
        let dw = d_weights
            .map(|o| arrays::nc_floats(label, "d_weights", o, w.nrows(), w.ncols()))
            .transpose()?;
        if loss.is_nan() {
            return Err(field_error(label, "loss", "is NaN"));
        }
        let t = cfg.dtype;
        let (f, b, bud) = py
            .allow_threads(|| -> Result<_, combined_margin::Error> {
                let f = pref::forward(x.view(), w.view(), &labels, &cfg)?;
                let b = pref::backward(&f, &labels, &cfg)?;
                let bud = budget::pipeline(&f, &b, &cfg, t);
                Ok((f, b, bud))
            })
            .map_err(|e| PyValueError::new_err(format!("{label}: {e}")))?;
        let worst = PyDict::new(py);
        let fractions = PyDict::new(py);
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{label}  (pipeline, {t}, N = {}, C = {}, D = {}, profile {})",
            x.nrows(),
            w.nrows(),
            x.ncols(),
            cfg.profile.name
        );
        let mut passed = true;
        let mut line = |name: &str,
                        got: &[f64],
                        want: &[f64],
                        budget: &[f64],
                        shape: &[usize]|
         -> PyResult<()> {
            let fr: Vec<f64> = got
                .iter()
                .zip(want)
                .zip(budget)
                .map(|((&g, &r), &b)| error_fraction(g, r, b))
                .collect();
            let (i, m) = fr
                .iter()
                .copied()
                .enumerate()
                .fold(
                    (0, 0.0f64),
                    |(bi, bm), (i, v)| if v > bm { (i, v) } else { (bi, bm) },
                );
            let within = fr.iter().filter(|&&v| v <= 1.0).count();
            passed &= within == fr.len();
            let _ = writeln!(
                text,
                "  {:<8} {name:<10} {within:>8}/{:<8} within budget, max {}; worst [{i}]: got {}, want {} (budget {:.2e})",
                if within == fr.len() { "PASS" } else { "FAIL" },
                fr.len(),
                fraction_text(m),
                num(got[i]),
                num(want[i]),
                budget[i]
            );
            worst.set_item(name, (i, got[i], want[i], budget[i], m))?;
            if shape.is_empty() {
                fractions.set_item(name, fr[0])?;
            } else {
                fractions.set_item(name, f64_array(py, fr, shape)?)?;
            }
            Ok(())
        };
        line("loss", &[loss], &[f.head.loss], &[bud.head.loss], &[])?;
        if let Some(dx) = &dx {
            let want: Vec<f64> = b.d_features.iter().copied().collect();
            let bd: Vec<f64> = bud.d_features.iter().copied().collect();
            line("d_features", dx, &want, &bd, &[x.nrows(), x.ncols()])?;
        }
        let mut deviations = Vec::new();
        if let Some(dw) = &dw {
            let want: Vec<f64> = b.d_weights.iter().copied().collect();
            let bd: Vec<f64> = bud.d_weights.iter().copied().collect();
            line("d_weights", dw, &want, &bd, &[w.nrows(), w.ncols()])?;
            let view = ndarray::ArrayView2::from_shape((w.nrows(), w.ncols()), dw.as_slice())
                .map_err(|e| field_error(label, "d_weights", e.to_string()))?;
            let finding = pdev::classify_weight_gradient(view, &f, &b, &cfg, t);
            if let Some(d) = finding.deviation() {
                deviations.push(d.name().to_string());
            }
        }
        for d in &deviations {
            let _ = writeln!(text, "           deviation {d}");
        }
        let verdict = if passed { "PASS" } else { "FAIL" };
        let _ = writeln!(text, "  summary: {verdict}");
        Ok(PipelineReport {
            passed,
            verdict: verdict.into(),
            profile: Profile {
                inner: cfg.profile.clone(),
            },
            deviations,
            worst: worst.unbind(),
            fractions: fractions.unbind(),
            text,
        })
    })
}
