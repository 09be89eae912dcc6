//! The implementations a sweep can test, behind one trait that evaluates a chunk of inputs.
//!
//! A chunk is a slice of grid values (widened to f64, exactly) in, and the target entry's
//! forward output and backward factor d out / d c (unscaled, s = 1) out, each widened to f64
//! from whatever the implementation computed in. The slice form is what a foreign callable
//! needs (a Python function on numpy arrays of a few million values): one call per chunk,
//! not per element.

use super::grid::Grid;
use crate::cuda::host::HostEval;
use crate::cuda::KernelProfile;
use crate::dtype::Dtype;
use crate::margin::{self, Constants};
use crate::params::Params;
use crate::pipeline::{fused, LossConfig};
use crate::profile::Profile;

/// An implementation of the target entry under test.
pub trait SweepImpl: Sync {
    /// Name for reports.
    fn name(&self) -> String;
    /// Evaluates `c[i]` into `out[i]` (forward, unscaled) and `factor[i]` (backward factor).
    /// The three slices have the same length. An error aborts the sweep and names the impl.
    fn eval_chunk(&self, c: &[f64], out: &mut [f64], factor: &mut [f64]) -> Result<(), String>;
    /// Inputs per chunk this implementation prefers (a foreign callable wants millions; the
    /// native ones want cache-sized chunks). Results never depend on it.
    fn preferred_chunk(&self) -> usize {
        1 << 16
    }
}

/// The names `--impl` accepts, in the order help lists them.
pub const IMPL_NAMES: [&str; 3] = ["host-kernel", "reference-rounded", "fused-target"];

/// The kernels' per-entry math (`kernels/combined_margin.cuh`, compiled for the host by
/// build.rs), in the grid's dtype, with the kernel argument the device kernels get.
pub struct HostKernel {
    kp: KernelProfile,
    dtype: Dtype,
}

impl HostKernel {
    pub fn new(profile: &Profile, p: &Params, dtype: Dtype) -> HostKernel {
        HostKernel {
            kp: KernelProfile::new(profile, p, dtype),
            dtype,
        }
    }
}

fn eval_host<T: HostEval>(kp: &KernelProfile, c: &[f64], out: &mut [f64], factor: &mut [f64]) {
    for ((&x, o), f) in c.iter().zip(out.iter_mut()).zip(factor.iter_mut()) {
        let e = T::host_eval(T::of(x), kp);
        *o = e.out.f64();
        *f = e.factor.f64();
    }
}

impl SweepImpl for HostKernel {
    fn name(&self) -> String {
        "host-kernel".into()
    }
    fn eval_chunk(&self, c: &[f64], out: &mut [f64], factor: &mut [f64]) -> Result<(), String> {
        match self.dtype {
            Dtype::F32 => eval_host::<f32>(&self.kp, c, out, factor),
            Dtype::F64 => eval_host::<f64>(&self.kp, c, out, factor),
            // The half kernels: the same math in f32 (opmath), each result rounded once to
            // the storage type (kernels/combined_margin.cu, cm_margin_*_half).
            Dtype::F16 | Dtype::BF16 => {
                eval_host::<f32>(&self.kp, c, out, factor);
                for v in out.iter_mut().chain(factor.iter_mut()) {
                    *v = self.dtype.round(*v);
                }
            }
        }
        Ok(())
    }
}

/// The f64 reference (`margin::eval_with`) at the dtype-rounded parameters, its output and
/// factor then rounded to the grid: the best a dtype implementation can do, up to the
/// reference's own error. Its sweep measures the budget's slack.
pub struct ReferenceRounded {
    profile: Profile,
    p: Params,
    k: Constants,
    grid: &'static dyn Grid,
}

impl ReferenceRounded {
    pub fn new(profile: &Profile, p: &Params, grid: &'static dyn Grid) -> ReferenceRounded {
        let p = crate::cuda::params_as(p, grid.dtype());
        ReferenceRounded {
            profile: profile.clone(),
            p,
            k: Constants::new(profile, &p, grid.dtype()),
            grid,
        }
    }
}

impl SweepImpl for ReferenceRounded {
    fn name(&self) -> String {
        "reference-rounded".into()
    }
    fn eval_chunk(&self, c: &[f64], out: &mut [f64], factor: &mut [f64]) -> Result<(), String> {
        for ((&x, o), f) in c.iter().zip(out.iter_mut()).zip(factor.iter_mut()) {
            let e = margin::eval_with(x, &self.p, &self.profile, &self.k);
            *o = self.grid.round(e.out);
            *f = self.grid.round(e.factor);
        }
        Ok(())
    }
}

/// The target-logit path of the fused CPU loss (`pipeline::fused::target_logit`) at s = 1:
/// the logit in the loss's dtype, the factor as the fused backward multiplies it (f64).
pub struct FusedTarget {
    cfg: LossConfig,
    k: Constants,
    dtype: Dtype,
}

impl FusedTarget {
    pub fn new(profile: &Profile, p: &Params, dtype: Dtype) -> FusedTarget {
        let p = crate::cuda::params_as(&p.with_scale(1.0), dtype);
        FusedTarget {
            cfg: LossConfig::exact(p, profile.clone(), dtype, 0.0),
            k: Constants::new(profile, &p, dtype),
            dtype,
        }
    }
}

fn eval_fused<T: fused::Real>(t: &FusedTarget, c: &[f64], out: &mut [f64], factor: &mut [f64]) {
    for ((&x, o), f) in c.iter().zip(out.iter_mut()).zip(factor.iter_mut()) {
        let e = fused::target_logit(T::of(x), 0, &t.cfg.params, &t.k, &t.cfg);
        *o = e.logit.f64();
        *f = e.factor;
    }
}

impl SweepImpl for FusedTarget {
    fn name(&self) -> String {
        "fused-target".into()
    }
    fn eval_chunk(&self, c: &[f64], out: &mut [f64], factor: &mut [f64]) -> Result<(), String> {
        match self.dtype {
            Dtype::F32 => eval_fused::<f32>(self, c, out, factor),
            Dtype::F64 => eval_fused::<f64>(self, c, out, factor),
            Dtype::F16 | Dtype::BF16 => {
                return Err(format!(
                    "fused-target: the fused CPU loss has no {} path (f32 and f64 only)",
                    self.dtype
                ))
            }
        }
        Ok(())
    }
}

/// The implementation named `name` (one of [`IMPL_NAMES`]) for `profile` at `p` on `grid`.
pub fn by_name(
    name: &str,
    profile: &Profile,
    p: &Params,
    grid: &'static dyn Grid,
) -> crate::Result<Box<dyn SweepImpl>> {
    Ok(match name {
        "host-kernel" => Box::new(HostKernel::new(profile, p, grid.dtype())),
        "reference-rounded" => Box::new(ReferenceRounded::new(profile, p, grid)),
        "fused-target" => Box::new(FusedTarget::new(profile, p, grid.dtype())),
        other => {
            return Err(crate::Error::Invalid(format!(
                "--impl {other:?}: unknown implementation (known: {})",
                IMPL_NAMES.join(", ")
            )))
        }
    })
}
