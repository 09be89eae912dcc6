//! `generate`: the fixture `cmargin generate` makes from the same arguments (the crate's
//! `fixture::generate`), as arrays, and written as `.json`/`.npz` with the same bytes.

use crate::arrays::{field_error, out_array};
use crate::profile::ProfileArg;
use combined_margin::fixture::generate::{self as g, Inputs, Spec, TopDiff};
use combined_margin::fixture::write_atomic;
use combined_margin::{catalogue, Dtype, Params};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::Path;

/// A generated layer fixture: inputs `cos`, `labels`, `top_diff`, the reference `forward`
/// and `backward` (arrays of the fixture's dtype), its `name`, `provenance` (JSON text), and
/// `write(path)`, which writes the bytes `cmargin generate -o path` writes.
#[pyclass(module = "combined_margin._core", frozen)]
pub struct Fixture {
    g: g::Generated,
}

#[pymethods]
impl Fixture {
    #[getter]
    fn name(&self) -> String {
        self.g.case.name.clone()
    }
    #[getter]
    fn profile(&self) -> String {
        self.g.spec.profile.name.clone()
    }
    #[getter]
    fn dtype(&self) -> String {
        self.g.spec.dtype.name().into()
    }
    /// (m1, m2, m3): m2 in radians, m3 in cosine units.
    #[getter]
    fn params(&self) -> (f64, f64, f64) {
        let p = self.g.spec.params;
        (p.m1, p.m2, p.m3)
    }
    /// The scale the reference outputs carry, or None (unscaled).
    #[getter]
    fn s(&self) -> Option<f64> {
        self.g.spec.scaled.then_some(self.g.spec.params.s)
    }
    #[getter]
    fn shape(&self) -> (usize, usize) {
        (self.g.case.n, self.g.case.c)
    }
    #[getter]
    fn inputs(&self) -> String {
        self.g.spec.inputs.name().into()
    }
    #[getter]
    fn seed(&self) -> u64 {
        self.g.spec.seed
    }
    /// The `cmargin generate` arguments that reproduce this fixture.
    #[getter]
    fn command(&self) -> String {
        self.g.spec.command_line()
    }
    #[getter]
    fn provenance(&self) -> String {
        self.g.provenance.to_string()
    }
    /// (catalogue values, how many got a row) for inputs="edges"; (0, 0) otherwise.
    #[getter]
    fn catalogue(&self) -> (usize, usize) {
        (self.g.catalogue_len, self.g.catalogue_placed)
    }
    #[getter]
    fn cos<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.arr(py, self.g.case.cos.clone())
    }
    /// int64 [N]; −1 = ignored row.
    #[getter]
    fn labels<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        use numpy::IntoPyArray;
        Ok(self.g.case.labels.clone().into_pyarray(py).into_any())
    }
    #[getter]
    fn top_diff<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.arr(py, self.g.case.top_diff.clone().unwrap_or_default())
    }
    #[getter]
    fn forward<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.arr(py, self.g.case.forward.clone().unwrap_or_default())
    }
    #[getter]
    fn backward<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.arr(py, self.g.case.backward.clone().unwrap_or_default())
    }
    /// The golden-dump JSON text (SPEC.md §7.1).
    fn to_json(&self) -> String {
        self.g.to_json()
    }
    /// The `.npz` bytes (SPEC.md §7.2).
    fn to_npz<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let b = self
            .g
            .to_npz()
            .map_err(|e| PyOSError::new_err(format!("cannot encode: {e}")))?;
        Ok(PyBytes::new(py, &b))
    }
    /// Writes the fixture to `path` (.json or .npz, by extension), atomically (temporary file,
    /// fsync, rename); an existing file is replaced only with `force=True`. Returns the size.
    #[pyo3(signature = (path, force=false))]
    fn write(&self, path: std::path::PathBuf, force: bool) -> PyResult<usize> {
        crate::guard(|| {
            let bytes = match path.extension().and_then(|e| e.to_str()) {
                Some("json") => self.g.to_json().into_bytes(),
                Some("npz") => self.g.to_npz().map_err(|e| {
                    PyOSError::new_err(format!("{}: cannot encode: {e}", path.display()))
                })?,
                _ => {
                    return Err(PyValueError::new_err(format!(
                        "{}: the extension must be .json or .npz",
                        path.display()
                    )))
                }
            };
            write(&path, &bytes, force)?;
            Ok(bytes.len())
        })
    }
    fn __repr__(&self) -> String {
        format!(
            "<Fixture {} {}x{}>",
            self.g.case.name, self.g.case.n, self.g.case.c
        )
    }
}

impl Fixture {
    fn arr<'py>(&self, py: Python<'py>, v: Vec<f64>) -> PyResult<Bound<'py, PyAny>> {
        out_array(py, v, &[self.g.case.n, self.g.case.c], self.g.spec.dtype)
    }
}

fn write(path: &Path, bytes: &[u8], force: bool) -> PyResult<()> {
    write_atomic(path, bytes, force).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PyOSError::new_err(format!(
                "{} exists; pass force=True to overwrite it",
                path.display()
            ))
        } else {
            PyOSError::new_err(format!("{}: cannot write: {e}", path.display()))
        }
    })
}

/// The arguments of `cmargin generate`, with its defaults applied by the Python wrapper.
#[pyfunction]
#[pyo3(signature = (profile, m1, m2, m3, s, shape, dtype, seed, inputs, dim, top_diff, ignore_every, input_grid=None))]
#[allow(clippy::too_many_arguments)]
pub fn generate(
    profile: ProfileArg,
    m1: f64,
    m2: f64,
    m3: f64,
    s: Option<f64>,
    shape: Option<(usize, usize)>,
    dtype: &str,
    seed: u64,
    inputs: &str,
    dim: u32,
    top_diff: &str,
    ignore_every: usize,
    input_grid: Option<&str>,
) -> PyResult<Fixture> {
    crate::guard(|| {
        let label = "generate";
        let profile = profile.fixed(label)?;
        let parse = |field: &str, d: &str| {
            Dtype::parse(d).ok_or_else(|| {
                field_error(
                    label,
                    field,
                    format!("{d:?}: expected \"f64\", \"f32\", \"f16\" or \"bf16\""),
                )
            })
        };
        let dtype = parse("dtype", dtype)?;
        let input_grid = input_grid.map(|g| parse("input_grid", g)).transpose()?;
        let mut params = Params::new(m1, m2, m3);
        if let Some(s) = s {
            params.s = s;
        }
        params
            .validate()
            .map_err(|e| field_error(label, "params", e.to_string()))?;
        let inputs = match inputs {
            "uniform" => Inputs::Uniform,
            "realistic" => Inputs::Realistic { dim },
            "edges" => Inputs::Edges,
            other => {
                return Err(field_error(
                    label,
                    "inputs",
                    format!("{other:?}: expected uniform, realistic or edges"),
                ))
            }
        };
        let top_diff = match top_diff {
            "uniform" => TopDiff::Uniform,
            "ones" => TopDiff::Ones,
            other => {
                return Err(field_error(
                    label,
                    "top_diff",
                    format!("{other:?}: expected uniform or ones"),
                ))
            }
        };
        // The CLI's default shape: 16×10, or with edges enough rows for the whole catalogue.
        let (n, c) = match (shape, inputs) {
            (Some(sh), _) => sh,
            (None, Inputs::Edges) => {
                let len = catalogue::edge_cases(&profile, &params, dtype).len();
                (
                    g::rows_for(len, ignore_every)
                        .map_err(|e| field_error(label, "shape", e.to_string()))?,
                    10,
                )
            }
            (None, _) => (16, 10),
        };
        crate::memory::check(
            label,
            &format!("shape ({n}, {c})"),
            crate::arrays::elements(&[n, c]),
        )?;
        let spec = Spec {
            profile,
            params,
            scaled: s.is_some(),
            n,
            c,
            dtype,
            seed,
            inputs,
            top_diff,
            ignore_every,
            input_grid,
        };
        let gen = g::generate(&spec).map_err(|e| PyValueError::new_err(format!("{label}: {e}")))?;
        Ok(Fixture { g: gen })
    })
}
