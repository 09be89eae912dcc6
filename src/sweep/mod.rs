//! `cmargin sweep`: an implementation's worst error over every float input of a dtype, by
//! exhaustion, against the f64 reference under a profile and the tolerance model (SPEC.md §10).
//!
//! For fixed (profile, m1, m2, m3) the target entry is a function of one float c. The sweep
//! evaluates an implementation ([`impls::SweepImpl`]) on inputs enumerated from the dtype's
//! grid ([`grid`]): every float in [−1, 1] (both zeros) plus a band beyond ±1, or a range,
//! optionally strided. For each input it compares the forward output and the backward factor
//! (unscaled, top_diff = 1) with `margin::eval_with` at the dtype-rounded parameters:
//!
//! ```text
//! fraction = |got − ref| / budget          budget: tolerance::target_budget_pre (SPEC.md §5)
//! ulp      = |got − ref| / ulp_T(ref)      ulp_T: spacing of the grid at ref
//! ```
//!
//! and aggregates ([`summary`]) the maxima with their inputs, non-finite mismatches, the same
//! per region (within k ulp of each kink of `kinks::kinks`, outside [−1, 1], interior), an
//! ulp histogram and the 10 worst inputs. Inputs are cut into fixed chunks of input indices
//! and merged with exactly associative, commutative operations, so the result is the same for
//! any thread count and chunk size.

pub mod grid;
pub mod impls;
#[cfg(feature = "mpfr")]
pub mod mpfr;
pub mod report;
pub mod summary;

use crate::dtype::Dtype;
use crate::kinks::{self, KinkKind};
use crate::margin::{self, Constants};
use crate::params::Params;
use crate::profile::Profile;
use crate::tolerance::{error_fraction, target_budget_pre, BudgetPre};
use grid::{Grid, InputSet};
use impls::SweepImpl;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use summary::{Acc, Point};

/// Default half-width of a kink's region, in ulps of the grid.
pub const DEFAULT_KINK_ULPS: u64 = 64;

/// What to sweep.
#[derive(Clone, Debug)]
pub struct Spec {
    pub profile: Profile,
    /// (m1, m2, m3) as given (s is ignored: the sweep compares the unscaled entry).
    pub params: Params,
    pub grid: &'static dyn Grid,
    pub inputs: InputSet,
    /// An input within this many ulps (ordinals) of a kink belongs to that kink's region.
    pub kink_ulps: u64,
}

impl Spec {
    /// The standard sweep: every `stride`-th float in [−1, 1] plus the default band.
    pub fn standard(
        profile: &Profile,
        params: &Params,
        dtype: Dtype,
        stride: u64,
    ) -> crate::Result<Spec> {
        let g = grid::grid_of(dtype);
        let mut spec = Spec {
            profile: profile.clone(),
            params: *params,
            grid: g,
            inputs: InputSet::new(g, None, stride, grid::DEFAULT_BAND)?,
            kink_ulps: DEFAULT_KINK_ULPS,
        };
        spec.densify_kinks();
        Ok(spec)
    }

    /// With a stride, sweeps every float within `kink_ulps` of each kink as well (each input
    /// still once): a strided sweep then reports every kink's region in full.
    pub fn densify_kinks(&mut self) {
        let p = self.params_used();
        let w: Vec<(i64, i64)> = regions(&self.profile, &p, self.grid)
            .iter()
            .filter_map(|r| r.kink)
            .map(|(_, _, o)| {
                let k = self.kink_ulps as i64;
                (o.saturating_sub(k), o.saturating_add(k))
            })
            .collect();
        self.inputs.densify(&w);
    }

    /// The parameters the reference is evaluated at: rounded to the dtype (what an
    /// implementation in it holds), s = 1.
    pub fn params_used(&self) -> Params {
        crate::cuda::params_as(&self.params.with_scale(1.0), self.grid.dtype())
    }
}

/// How to run it.
#[derive(Default)]
pub struct Options<'a> {
    /// Inputs per chunk; `None`: the implementation's preference. Results never depend on it.
    pub chunk: Option<usize>,
    /// Checked between chunks: once set, the remaining chunks are skipped and the result
    /// covers the chunks that completed (`interrupted`).
    pub cancel: Option<&'a AtomicBool>,
    /// Called with the number of inputs of each finished chunk (from worker threads).
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

/// A region of the input domain that the report breaks the maxima down by.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub name: String,
    /// The kink this region surrounds, with its position (grid-rounded) and ordinal.
    pub kink: Option<(KinkKind, f64, i64)>,
}

/// Index of the interior region in [`Sweep::regions`].
pub const INTERIOR: usize = 0;
/// Index of the region beyond ±1.
pub const OUTSIDE: usize = 1;

/// The result of a sweep.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub impl_name: String,
    pub profile: String,
    pub params: Params,
    pub params_used: Params,
    pub grid: &'static dyn Grid,
    pub inputs: InputSet,
    /// Inputs planned.
    pub planned: u64,
    pub kink_ulps: u64,
    pub regions: Vec<Region>,
    /// Totals, per-region stats (in `regions` order), histograms and the worst inputs.
    pub acc: Acc,
    /// Cancelled before every chunk ran.
    pub interrupted: bool,
}

/// The verdict of a sweep; its exit code is [`Verdict::exit_code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every input evaluated, every one within budget.
    Pass,
    /// At least one input over budget (or a non-finite mismatch); final even if interrupted.
    Fail,
    /// Cancelled with no failure among the inputs evaluated: no verdict on the rest.
    Interrupted,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Interrupted => "interrupted",
        }
    }
    /// 0 pass, 1 fail, 130 interrupted (128 + SIGINT, as a shell reports it).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Interrupted => 130,
        }
    }
}

impl Sweep {
    pub fn evaluated(&self) -> u64 {
        self.acc.all.count
    }
    /// Every float of the grid in [−1, 1] and the whole band, all evaluated.
    pub fn complete(&self) -> bool {
        self.inputs.complete && !self.interrupted && self.evaluated() == self.planned
    }
    pub fn verdict(&self) -> Verdict {
        if self.acc.all.fails > 0 {
            Verdict::Fail
        } else if self.interrupted || self.evaluated() != self.planned {
            Verdict::Interrupted
        } else {
            Verdict::Pass
        }
    }
}

/// The reference side of a sweep, built once.
struct Ctx<'a> {
    spec: &'a Spec,
    p: Params,
    k: Constants,
    /// The budget's per-parameter values, once per sweep.
    pre: BudgetPre,
    dtype: Dtype,
    regions: Vec<Region>,
}

impl Ctx<'_> {
    fn region_of(&self, ord: i64, c: f64) -> usize {
        if c.abs() > 1.0 {
            return OUTSIDE;
        }
        let mut best = INTERIOR;
        let mut best_d = u64::MAX;
        for (i, r) in self.regions.iter().enumerate() {
            if let Some((_, _, o)) = r.kink {
                let d = ord.abs_diff(o);
                if d <= self.spec.kink_ulps && d < best_d {
                    best = i;
                    best_d = d;
                }
            }
        }
        best
    }

    fn compare(&self, ord: i64, c: f64, got_out: f64, got_factor: f64) -> Point {
        let e = margin::eval_with(c, &self.p, &self.spec.profile, &self.k);
        let b = target_budget_pre(&e, 1.0, &self.p, &self.spec.profile, self.dtype, &self.pre);
        let g = self.spec.grid;
        let side = |got: f64, reference: f64, budget: f64| {
            let same = got.to_bits() == reference.to_bits() || (got.is_nan() && reference.is_nan());
            let nonfinite = !same && (!got.is_finite() || !reference.is_finite());
            let frac = error_fraction(got, reference, budget);
            let frac = if frac.is_nan() { f64::INFINITY } else { frac };
            let ulp = if same || got == reference {
                0.0
            } else if nonfinite {
                f64::INFINITY
            } else {
                (got - reference).abs() / g.ulp(reference)
            };
            (frac, ulp, nonfinite)
        };
        let (fwd_frac, fwd_ulp, fwd_nonfinite) = side(got_out, e.out, b.forward);
        let (bwd_frac, bwd_ulp, bwd_nonfinite) = side(got_factor, e.factor, b.backward);
        Point {
            ord,
            c,
            ref_out: e.out,
            got_out,
            ref_factor: e.factor,
            got_factor,
            fwd_frac,
            bwd_frac,
            fwd_ulp,
            bwd_ulp,
            fwd_nonfinite,
            bwd_nonfinite,
            region: self.region_of(ord, c),
        }
    }
}

/// The regions of a sweep: interior, outside, then one per kink of the profile at the
/// dtype-rounded parameters, in kink order.
pub fn regions(profile: &Profile, p: &Params, grid: &dyn Grid) -> Vec<Region> {
    let mut v = vec![
        Region {
            name: "interior".into(),
            kink: None,
        },
        Region {
            name: "outside [-1, 1]".into(),
            kink: None,
        },
    ];
    let mut names: Vec<String> = Vec::new();
    for k in kinks::kinks(profile, p, grid.dtype()) {
        let c = grid.round(k.c);
        let o = grid.ordinal(c);
        // Kinks on the same float (a clamp at ±1 and the pole there) share one region.
        if let Some(last) = v.last_mut() {
            if last.kink.is_some_and(|(_, _, lo)| lo == o) {
                names
                    .last_mut()
                    .expect("one name per kink region")
                    .push_str(&format!(" + {}", k.kind.name()));
                last.name = format!("{} at {c:+.9}", names.last().expect("set above"));
                continue;
            }
        }
        names.push(k.kind.name().to_string());
        v.push(Region {
            name: format!("{} at {c:+.9}", k.kind.name()),
            kink: Some((k.kind, c, o)),
        });
    }
    v
}

/// Runs a sweep of `imp` over `spec` on the current rayon pool.
pub fn run(spec: &Spec, imp: &dyn SweepImpl, opt: &Options) -> crate::Result<Sweep> {
    let p = spec.params_used();
    p.validate()?;
    let dtype = spec.grid.dtype();
    let ctx = Ctx {
        spec,
        p,
        k: Constants::new(&spec.profile, &p, dtype),
        pre: BudgetPre::new(&p),
        dtype,
        regions: regions(&spec.profile, &p, spec.grid),
    };
    let nreg = ctx.regions.len();
    let planned = spec.inputs.len();
    let chunk = opt.chunk.unwrap_or_else(|| imp.preferred_chunk()).max(1) as u64;
    let nchunks = planned.div_ceil(chunk);
    let name = imp.name();
    let interrupted = AtomicBool::new(false);

    let acc = (0..nchunks)
        .into_par_iter()
        .map(|j| -> Result<Acc, String> {
            let mut acc = Acc::new(nreg);
            if opt.cancel.is_some_and(|f| f.load(Ordering::Relaxed)) {
                interrupted.store(true, Ordering::Relaxed);
                return Ok(acc);
            }
            let start = j * chunk;
            let n = chunk.min(planned - start);
            let mut ords = Vec::with_capacity(n as usize);
            spec.inputs.ordinals(start, n, &mut ords);
            let cs: Vec<f64> = ords.iter().map(|&o| spec.grid.value(o)).collect();
            let mut out = vec![f64::NAN; cs.len()];
            let mut factor = vec![f64::NAN; cs.len()];
            imp.eval_chunk(&cs, &mut out, &mut factor).map_err(|e| {
                format!(
                    "impl {name}: chunk of {} inputs from c = {:e} ({}): {e}",
                    cs.len(),
                    cs[0],
                    spec.grid.hex(cs[0])
                )
            })?;
            for i in 0..cs.len() {
                acc.add_in_region(ctx.compare(ords[i], cs[i], out[i], factor[i]));
            }
            acc.total_from_regions();
            if let Some(f) = opt.progress {
                f(n);
            }
            Ok(acc)
        })
        .try_reduce(|| Acc::new(nreg), |a, b| Ok(a.merge(b)))
        .map_err(crate::Error::Invalid)?;

    Ok(Sweep {
        impl_name: name,
        profile: spec.profile.name.clone(),
        params: spec.params,
        params_used: p,
        grid: spec.grid,
        inputs: spec.inputs.clone(),
        planned,
        kink_ulps: spec.kink_ulps,
        regions: ctx.regions,
        acc,
        interrupted: interrupted.load(Ordering::Relaxed),
    })
}
