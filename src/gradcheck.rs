//! Finite-difference gradient checks that know where the kinks are.
//!
//! Central differences (error O(h²)) or Richardson extrapolation of them (O(h⁴)), with
//! **asymmetric** exclusion windows around each kink: a stencil must not straddle a corner
//! or a jump, and on the side of a pole (c = ±1, where f''' grows like (1 − |c|)^(−5/2)) the
//! window reaches much further than on the flat or undefined side. Caffe's GradientChecker
//! has one symmetric `|x − kink| < kink_range` test and cannot say this.
//!
//! The comparison allows `rel·max(|analytic|, |numeric|) + abs + noise(x)/h`, where `noise`
//! bounds the forward's own evaluation error (a staircase of height δ makes a difference
//! quotient wrong by up to δ/h); callers pass the tolerance model's forward budget.

use crate::kinks::{Kink, KinkKind, Smoothness};

/// The difference scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// (f(x+h) − f(x−h)) / 2h.
    Central,
    /// (4·D(h/2) − D(h)) / 3 with D the central difference: cancels the h² term.
    Richardson,
}

impl Scheme {
    /// How far the stencil reaches from x, in units of h.
    pub fn reach(self) -> f64 {
        1.0
    }

    /// Bound on |D(f + δ) − D(f)| / (δ/h) for an evaluation error |δ| at each stencil point:
    /// central 2δ/2h; Richardson (8·2δ + 2δ)/6h.
    pub fn noise_gain(self) -> f64 {
        match self {
            Scheme::Central => 1.0,
            Scheme::Richardson => 3.0,
        }
    }

    /// Distance from a pole, in units of h, beyond which the truncation error is below
    /// ~1e-6 relative: central ≈ 0.3·(h/d)² needs d ≳ 550h; Richardson ≈ (h/d)⁴ needs d ≳ 32h.
    pub fn pole_reach(self) -> f64 {
        match self {
            Scheme::Central => 1000.0,
            Scheme::Richardson => 64.0,
        }
    }
}

/// Options of a check.
#[derive(Clone, Copy, Debug)]
pub struct FdOptions {
    /// Step h, in the units of x.
    pub step: f64,
    pub scheme: Scheme,
    pub rel_tol: f64,
    pub abs_tol: f64,
    /// Shrink the step near a pole so that h ≤ d / pole_reach (d the distance to the pole)
    /// instead of excluding the whole pole window; points where the step would fall below
    /// `step · MIN_STEP_FRACTION` are still excluded (there the noise term dominates).
    pub adaptive_near_poles: bool,
}

/// The smallest adaptive step, as a fraction of [`FdOptions::step`].
pub const MIN_STEP_FRACTION: f64 = 1e-3;

/// The step to use at x: `opts.step`, or less near a pole when adaptive.
/// `None` when x is too close to a pole for any admissible step.
pub fn step_at(x: f64, kinks: &[Kink], opts: &FdOptions) -> Option<f64> {
    if !opts.adaptive_near_poles {
        return Some(opts.step);
    }
    let d = kinks
        .iter()
        .filter(|k| k.smoothness() == Smoothness::Pole)
        .map(|k| (x - k.c).abs())
        .fold(f64::INFINITY, f64::min);
    let h = opts.step.min(d / opts.scheme.pole_reach());
    (h >= opts.step * MIN_STEP_FRACTION).then_some(h)
}

impl Default for FdOptions {
    fn default() -> Self {
        FdOptions {
            step: 1e-5,
            scheme: Scheme::Richardson,
            rel_tol: 1e-6,
            abs_tol: 1e-9,
            adaptive_near_poles: false,
        }
    }
}

/// The numerical derivative of `f` at `x`.
pub fn derivative(f: impl Fn(f64) -> f64, x: f64, h: f64, scheme: Scheme) -> f64 {
    let d = |h: f64| (f(x + h) - f(x - h)) / (2.0 * h);
    match scheme {
        Scheme::Central => d(h),
        Scheme::Richardson => (4.0 * d(h / 2.0) - d(h)) / 3.0,
    }
}

/// An exclusion window around a kink: x is excluded if `k.c − below < x < k.c + above`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub below: f64,
    pub above: f64,
}

/// The window a kink needs for step `h` and `scheme`.
pub fn window(kink: &Kink, h: f64, scheme: Scheme) -> Window {
    // A stencil centred within reach of a corner straddles it; a factor of 2 keeps the
    // evaluation points clear of the ulp-level fuzz of the kink position itself.
    let reach = 2.0 * scheme.reach() * h;
    let pole = scheme.pole_reach() * h;
    let inf = f64::INFINITY;
    match (kink.smoothness(), kink.kind) {
        (Smoothness::Smooth, _) => Window {
            below: 0.0,
            above: 0.0,
        },
        // Beyond a pole the function is undefined (raw) or clamped; inside, f''' explodes.
        (_, KinkKind::PoleHigh) => Window {
            below: pole,
            above: inf,
        },
        (_, KinkKind::PoleLow) => Window {
            below: inf,
            above: pole,
        },
        // A domain clamp at 1 − ε is flat above and curved by the nearby pole below.
        (_, KinkKind::DomainClampHigh) => Window {
            below: reach.max(pole - (1.0 - kink.c)),
            above: reach,
        },
        (_, KinkKind::DomainClampLow) => Window {
            below: reach,
            above: reach.max(pole - (kink.c + 1.0)),
        },
        _ => Window {
            below: reach,
            above: reach,
        },
    }
}

/// The kink whose window contains `x`, if any.
pub fn excluded_by(x: f64, kinks: &[Kink], h: f64, scheme: Scheme) -> Option<Kink> {
    kinks.iter().copied().find(|k| {
        let w = window(k, h, scheme);
        x > k.c - w.below && x < k.c + w.above
    })
}

/// One disagreement between the analytic and the numerical derivative.
#[derive(Clone, Copy, Debug)]
pub struct GradFailure {
    /// Index of the checked point (or of the input coordinate, for [`check_gradient`]).
    pub index: usize,
    pub x: f64,
    pub analytic: f64,
    pub numeric: f64,
    pub allowed: f64,
    /// The nearest kink and the signed distance x − kink.c.
    pub nearest_kink: Option<(Kink, f64)>,
}

impl std::fmt::Display for GradFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "element {} at x = {:.17e}: analytic {:.10e}, numeric {:.10e}, |diff| {:.3e} > allowed {:.3e}",
            self.index,
            self.x,
            self.analytic,
            self.numeric,
            (self.analytic - self.numeric).abs(),
            self.allowed
        )?;
        match self.nearest_kink {
            Some((k, d)) => write!(
                f,
                "; nearest kink: {} at c = {:.17e} (dx = {:+.3e})",
                k.kind.name(),
                k.c,
                d
            ),
            None => write!(f, "; no kinks"),
        }
    }
}

/// Outcome of a check.
#[derive(Clone, Debug, Default)]
pub struct GradReport {
    pub checked: usize,
    pub excluded: usize,
    pub failures: Vec<GradFailure>,
}

impl GradReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn nearest(x: f64, kinks: &[Kink]) -> Option<(Kink, f64)> {
    crate::kinks::nearest(x, kinks).map(|(k, _)| (k, x - k.c))
}

fn allowed(a: f64, n: f64, noise: f64, opts: &FdOptions) -> f64 {
    opts.rel_tol * a.abs().max(n.abs())
        + opts.abs_tol
        + opts.scheme.noise_gain() * noise / opts.step
}

/// Checks `df` against differences of `f` at each of `xs` outside the kinks' windows.
/// `noise(x)` bounds the absolute evaluation error of `f` near x.
pub fn check_scalar(
    f: impl Fn(f64) -> f64,
    df: impl Fn(f64) -> f64,
    noise: impl Fn(f64) -> f64,
    xs: &[f64],
    kinks: &[Kink],
    opts: &FdOptions,
) -> GradReport {
    let mut report = GradReport::default();
    for (index, &x) in xs.iter().enumerate() {
        let Some(h) = step_at(x, kinks, opts) else {
            report.excluded += 1;
            continue;
        };
        // With an adapted step, the pole windows have done their job through h.
        let in_window = kinks.iter().any(|k| {
            if opts.adaptive_near_poles && k.smoothness() == Smoothness::Pole {
                return false;
            }
            let w = window(k, h, opts.scheme);
            x > k.c - w.below && x < k.c + w.above
        });
        if in_window {
            report.excluded += 1;
            continue;
        }
        report.checked += 1;
        let analytic = df(x);
        let numeric = derivative(&f, x, h, opts.scheme);
        let local = FdOptions { step: h, ..*opts };
        // The evaluation error that matters is at the stencil points, not at x alone (at a
        // turn φ = π the forward is flat at x but not one step away).
        let n = noise(x - h).max(noise(x)).max(noise(x + h));
        let tol = allowed(analytic, numeric, n, &local);
        // NaN on either side fails: `<=` is false for NaN.
        let agrees = (analytic - numeric).abs() <= tol;
        if !agrees {
            report.failures.push(GradFailure {
                index,
                x,
                analytic,
                numeric,
                allowed: tol,
                nearest_kink: nearest(x, kinks),
            });
        }
    }
    report
}

/// Checks a gradient of a scalar function of many inputs, one coordinate at a time.
/// `skip(i)` excludes coordinates (for example, inputs whose target cos sits in a window).
pub fn check_gradient(
    f: &dyn Fn(&[f64]) -> f64,
    x: &[f64],
    grad: &[f64],
    noise: f64,
    opts: &FdOptions,
    skip: &dyn Fn(usize) -> bool,
) -> GradReport {
    let mut report = GradReport::default();
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        if skip(i) {
            report.excluded += 1;
            continue;
        }
        report.checked += 1;
        let fi = |v: f64| {
            let mut y = xp.clone();
            y[i] = v;
            f(&y)
        };
        let numeric = derivative(fi, x[i], opts.step, opts.scheme);
        let analytic = grad[i];
        let tol = allowed(analytic, numeric, noise, opts);
        // NaN on either side fails: `<=` is false for NaN.
        let agrees = (analytic - numeric).abs() <= tol;
        if !agrees {
            report.failures.push(GradFailure {
                index: i,
                x: x[i],
                analytic,
                numeric,
                allowed: tol,
                nearest_kink: None,
            });
        }
        xp[i] = x[i];
    }
    report
}
