//! The `Profile` class (a preset by name, or any profile as the crate's JSON) and the
//! resolution of `profile=` arguments: a `Profile`, a preset name, or "auto" (fingerprint).

use combined_margin::deviation::Kind;
use combined_margin::profile::{self as cmprofile};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A numerics profile: how an implementation patches the singularities of
/// `cos(m1·θ + m2) − m3` (input clamp, θ precision, angle policy, gradient mode, factor
/// clip). `Profile.preset(name)` gives a preset; `Profile.from_json(text)` any profile in
/// the crate's serialisation (as `to_json()` writes it).
#[pyclass(module = "combined_margin._core", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct Profile {
    pub inner: cmprofile::Profile,
}

#[pymethods]
impl Profile {
    /// A preset by name (`Profile.names()` lists them).
    #[staticmethod]
    fn preset(name: &str) -> PyResult<Profile> {
        cmprofile::Profile::preset(name)
            .map(|inner| Profile { inner })
            .map_err(|e| PyValueError::new_err(format!("field \"profile\": {e}")))
    }

    /// The profile the crate maps an implementation string to, as `cmargin check` maps a
    /// dump's `implementation` (e.g. "mk-minchul/AdaFace@c60eaa7" → the `adaface` profile,
    /// SPEC.md §11.1); `None` where it maps none. `easy_margin`: the dump's flag, if any.
    #[staticmethod]
    #[pyo3(signature = (implementation, easy_margin=None))]
    fn for_implementation(implementation: &str, easy_margin: Option<bool>) -> Option<Profile> {
        cmprofile::mapped_profile(implementation, easy_margin).map(|inner| Profile { inner })
    }

    /// The preset names, in the order reports list them.
    #[staticmethod]
    fn names() -> Vec<String> {
        preset_names()
    }

    /// A profile from the crate's JSON serialisation.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Profile> {
        serde_json::from_str(text)
            .map(|inner| Profile { inner })
            .map_err(|e| PyValueError::new_err(format!("field \"profile\": not a profile: {e}")))
    }

    /// The profile's policies as JSON.
    fn to_json(&self) -> String {
        serde_json::to_string(&self.inner).unwrap_or_default()
    }

    #[getter]
    fn name(&self) -> String {
        self.inner.name.clone()
    }

    fn __repr__(&self) -> String {
        format!("Profile({})", self.to_json())
    }

    fn __str__(&self) -> String {
        self.inner.name.clone()
    }
}

/// What a `profile=` argument holds.
#[derive(FromPyObject)]
pub enum ProfileArg {
    Obj(Profile),
    Name(String),
}

/// A resolved profile argument: a profile, or "auto" (fingerprint the outputs).
pub enum Resolved {
    Fixed(cmprofile::Profile),
    Auto,
}

impl ProfileArg {
    /// Resolves against the crate's presets; `label` locates the error as the CLI does
    /// (`label: field "profile": unknown profile ...`).
    pub fn resolve(&self, label: &str, allow_auto: bool) -> PyResult<Resolved> {
        match self {
            ProfileArg::Obj(p) => Ok(Resolved::Fixed(p.inner.clone())),
            ProfileArg::Name(n) if n == "auto" && allow_auto => Ok(Resolved::Auto),
            ProfileArg::Name(n) => cmprofile::Profile::preset(n)
                .map(Resolved::Fixed)
                .map_err(|e| PyValueError::new_err(format!("{label}: field \"profile\": {e}"))),
        }
    }

    /// A fixed profile ("auto" is then an unknown name).
    pub fn fixed(&self, label: &str) -> PyResult<cmprofile::Profile> {
        match self {
            ProfileArg::Obj(p) => Ok(p.inner.clone()),
            ProfileArg::Name(n) => cmprofile::Profile::preset(n)
                .map_err(|e| PyValueError::new_err(format!("{label}: field \"profile\": {e}"))),
        }
    }
}

/// The preset names, in the order reports list them.
#[pyfunction]
pub fn preset_names() -> Vec<String> {
    cmprofile::preset_names().map(|s| s.to_string()).collect()
}

/// The names of the deviation kinds the checker can detect (SPEC.md §6.2).
#[pyfunction]
pub fn deviation_names() -> Vec<String> {
    Kind::ALL.iter().map(|k| k.name().to_string()).collect()
}
