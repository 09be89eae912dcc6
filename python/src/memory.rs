//! The memory limit: every allocation whose size the input sets is checked here before it
//! happens, so that an oversized input is a `ValueError` naming the size and the limit, never
//! an allocation failure that aborts the interpreter.
//!
//! The estimate is [`BYTES_PER_ELEMENT`] bytes per element of the largest array a call works
//! on (N·C for the layer, N·C + N·D + C·D for the pipeline): the checker's peak, measured
//! (`check_layer` at the seed shape 128 × 180,855 f32: the process's peak RSS grew by 184
//! bytes per element over the inputs: the f64 widenings, the per-element records, the
//! fractions and budgets handed back). A `check_layer` case above 2^20 entries per side is
//! checked bounded and counts [`BOUNDED`] instead. This is the one place the figures live.
//!
//! The limit: `set_memory_limit(bytes)` if called, else `$CMARGIN_MEMORY_LIMIT` (bytes), else
//! the memory available when the call starts (`MemAvailable` in /proc/meminfo), else 8 GiB.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// Peak bytes per element of a check (see the module doc). The one place this figure lives.
pub const BYTES_PER_ELEMENT: u64 = 184;

/// A peak estimate: so many bytes per element, plus a part that does not grow with the size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figure {
    pub per_element: u64,
    pub fixed: u64,
}

impl Figure {
    /// The estimated peak of a call on `elements` elements.
    pub fn need(self, elements: u64) -> u64 {
        elements
            .saturating_mul(self.per_element)
            .saturating_add(self.fixed)
    }
    /// "184 bytes per element", "112 bytes per element, plus 64.0 MB".
    pub fn text(self) -> String {
        match self.fixed {
            0 => format!("{} bytes per element", self.per_element),
            f => format!(
                "{} bytes per element, plus {}",
                self.per_element,
                bytes_text(f)
            ),
        }
    }
}

/// Every call but a bounded `check_layer`: [`BYTES_PER_ELEMENT`], nothing fixed.
pub const RECORDS: Figure = Figure {
    per_element: BYTES_PER_ELEMENT,
    fixed: 0,
};

/// A `check_layer` whose case is above [`combined_margin::compare::EVERY_ELEMENT_MAX`]
/// entries per side: the check is bounded and keeps every element's fraction and budget as
/// arrays, not as records (SPEC.md §8.5). Measured (`scripts/python-check-memory.py`, the
/// process's peak RSS growth over the loaded inputs): 96.0 and 97.2 bytes per element at
/// 128 × 180,855 f32 (`profile="recommended"`, `"auto"`), 103.4–105.2 in an earlier run on
/// another fixture of that shape, 89.6 and 89.7 at 512 × 50,000, and 150.9 MB for the
/// 1,080,000 elements of 18 × 60,000 (139.7 per element: the diagnosed rows, up to 2^17
/// entries compared with a record per element, cost the same at every size). A line through
/// the 18 × 60,000 and seed-shape figures has 94 bytes per element and 50 MB fixed; 112 and
/// 64 MB are above every measurement: the f64 widenings (32 bytes), the fractions and budgets
/// handed back (32), the transient f32 copies and the search.
pub const BOUNDED: Figure = Figure {
    per_element: BOUNDED_BYTES_PER_ELEMENT,
    fixed: 64_000_000,
};

/// [`BOUNDED`]'s bytes per element.
pub const BOUNDED_BYTES_PER_ELEMENT: u64 = 112;

/// The figure of a `check_layer` case with `elements` entries per side (2-D `cos`).
pub fn check_layer_figure(elements: u64) -> Figure {
    if elements > combined_margin::compare::EVERY_ELEMENT_MAX as u64 {
        BOUNDED
    } else {
        RECORDS
    }
}

/// 0: not set (use the environment or the available memory).
static LIMIT: AtomicU64 = AtomicU64::new(0);

/// The limit in bytes and where it comes from: `set_memory_limit`, else the crate's
/// ([`combined_margin::memory::limit`]: $CMARGIN_MEMORY_LIMIT, the memory available, 8 GiB).
pub fn limit() -> (u64, &'static str) {
    let set = LIMIT.load(Ordering::Relaxed);
    if set > 0 {
        return (set, "set_memory_limit");
    }
    combined_margin::memory::limit()
}

pub use combined_margin::memory::bytes_text;

/// Refuses a call on `elements` elements (described by `what`, e.g. "cos [60000, 10000]")
/// whose estimated peak is above the limit.
pub fn check(label: &str, what: &str, elements: u64) -> PyResult<()> {
    check_at(label, what, elements, RECORDS)
}

/// [`check`] at `figure`.
pub fn check_at(label: &str, what: &str, elements: u64, figure: Figure) -> PyResult<()> {
    check_need(label, what, elements, figure.need(elements), &figure.text())
}

/// Refuses a call on `elements` elements whose estimated peak `need` (worked out as `how`
/// says) is above the limit.
pub fn check_need(label: &str, what: &str, elements: u64, need: u64, how: &str) -> PyResult<()> {
    let (lim, from) = limit();
    if need > lim {
        return Err(PyValueError::new_err(format!(
            "{label}: {what}: {elements} elements need about {} ({how}), above the memory \
             limit of {} ({from}); check fewer rows at a time, or raise the limit with \
             combined_margin.set_memory_limit(bytes)",
            bytes_text(need),
            bytes_text(lim)
        )));
    }
    Ok(())
}

/// A vector of `len` elements reserved fallibly: an allocation failure is a `ValueError`.
pub fn vec_with_capacity<T>(label: &str, field: &str, len: usize) -> PyResult<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        PyValueError::new_err(format!(
            "{label}: field \"{field}\": cannot allocate {} elements ({})",
            len,
            bytes_text((len as u64).saturating_mul(std::mem::size_of::<T>() as u64))
        ))
    })?;
    Ok(v)
}

/// Sets the memory limit in bytes (None or 0: back to the default). Returns the limit now in force.
#[pyfunction]
#[pyo3(signature = (limit=None))]
pub fn set_memory_limit(limit: Option<u64>) -> u64 {
    LIMIT.store(limit.unwrap_or(0), Ordering::Relaxed);
    self::limit().0
}

/// (limit in bytes, where it comes from, bytes per element).
#[pyfunction]
pub fn memory_limit() -> (u64, String, u64) {
    let (l, from) = limit();
    (l, from.to_string(), BYTES_PER_ELEMENT)
}

/// The peak bytes `check_layer` counts for a 2-D `cos` of `elements` entries: above 2^20
/// entries the bounded check's figure (112 bytes per element, plus 64 MB), up to it
/// [`memory_limit`]'s third value per element.
#[pyfunction]
pub fn check_layer_memory(elements: u64) -> u64 {
    check_layer_figure(elements).need(elements)
}
