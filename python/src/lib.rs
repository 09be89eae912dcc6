//! `combined_margin._core`: the crate's reference, checker, fingerprint and fixture generator
//! as a CPython extension. Nothing is recomputed here: every number comes from the
//! `combined-margin` crate; this layer converts arrays, locates bad input in one-line messages
//! (the same words the CLI prints) and raises them as `ValueError`/`TypeError`.
//!
//! Files: [`arrays`] (numpy in, numpy out, input checks), [`profile`] (the `Profile` class and
//! profile arguments), [`check`] (`Report`, `check_cases`, `disagree`), [`reference`]
//! (`reference`, `kinks`, `loss_reference`), [`generate`] (`generate`, `write_fixture`),
//! [`pipeline`] (`check_pipeline`).

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

mod arrays;
mod check;
mod family;
mod generate;
mod memory;
mod pipeline;
mod profile;
mod reference;
mod sweep;

/// Runs `f`, turning a panic into a `RuntimeError`. PyO3 already stops a panic at the
/// boundary (as `PanicException`, a `BaseException` that `except Exception` misses); this is
/// the last line behind the input checks, so that even a bug surfaces as an ordinary error.
pub(crate) fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!(
                "combined_margin: internal error (a bug, please report it): {what}"
            )))
        }
    }
}

/// Panics inside the guard, so that the test suite can show a panic surfaces as a
/// `RuntimeError` and the interpreter lives on (python/tests/test_bad_input.py).
#[pyfunction]
fn _selftest_panic() -> PyResult<()> {
    guard(|| -> PyResult<()> { panic!("deliberate panic for the test suite") })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<profile::Profile>()?;
    m.add_class::<check::Report>()?;
    m.add_class::<check::CaseResult>()?;
    m.add_class::<check::Deviation>()?;
    m.add_class::<check::Worst>()?;
    m.add_class::<generate::Fixture>()?;
    m.add_class::<pipeline::PipelineReport>()?;
    m.add_function(wrap_pyfunction!(profile::preset_names, m)?)?;
    m.add_function(wrap_pyfunction!(profile::deviation_names, m)?)?;
    m.add_function(wrap_pyfunction!(check::check_cases, m)?)?;
    m.add_function(wrap_pyfunction!(check::disagree, m)?)?;
    m.add_function(wrap_pyfunction!(reference::reference, m)?)?;
    m.add_function(wrap_pyfunction!(reference::kinks, m)?)?;
    m.add_function(wrap_pyfunction!(reference::loss_reference, m)?)?;
    m.add_function(wrap_pyfunction!(generate::generate, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::check_pipeline, m)?)?;
    m.add_function(wrap_pyfunction!(sweep::sweep_callable, m)?)?;
    m.add_function(wrap_pyfunction!(memory::set_memory_limit, m)?)?;
    m.add_function(wrap_pyfunction!(memory::memory_limit, m)?)?;
    m.add_function(wrap_pyfunction!(memory::check_layer_memory, m)?)?;
    m.add_function(wrap_pyfunction!(_selftest_panic, m)?)?;
    Ok(())
}
