//! The policy space: every axis of [`Profile`] with every value real code uses, enumerable.
//!
//! One list per axis, here and nowhere else. The `--profile auto` search
//! ([`crate::verdict::search`]), the deviation detector's variants ([`crate::deviation`]) and the
//! space test (`tests/space.rs`) are all generated from [`Axis::values`].

use crate::profile::{
    AnglePolicy, BoundGradient, ClampScope, EvalForm, ExactForm, Fallback, GradientMode,
    InputDomain, LabelPolicy, OpMath, ParamPrecision, PoleRule, Profile, RoundTrip, SineGuard,
    ThetaPrecision, ThresholdTest, SPEECHBRAIN_EPS,
};
use std::f64::consts::PI;

/// One policy axis of a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Axis {
    Domain,
    Theta,
    Angle,
    Gradient,
    FactorClip,
    Shortcut,
    RoundTrip,
    Params,
    OpMath,
    Labels,
    Eval,
    OutputClip,
    Constants,
}

/// Input-clamp widths real code uses: exact [−1, 1], SpeechBrain's 1e-7, and the common
/// 1e-5 / 1e-4 (Caffe GPU) / 1e-3.
pub const CLAMP_EPS: [f64; 5] = [0.0, SPEECHBRAIN_EPS, 1e-5, 1e-4, 1e-3];

/// The seed of the sine guard's ε (PaddleClas's 1e-6): the search refines it by a fit
/// ([`crate::verdict::form_fit`]), so the value found is the implementation's, not this one.
pub const SINE_GUARD_EPS_SEED: f64 = 1e-6;

/// The seed of the fallback offset κ (`c̃ − κ`), refined by a fit ([`crate::verdict::form_fit`]).
pub const FALLBACK_KAPPA_SEED: f64 = 0.0;

/// The seed of the output clip bound b, refined by a fit ([`crate::verdict::form_fit`]).
pub const OUTPUT_CLIP_SEED: f64 = 1.0;

/// Factor clips real code uses: none, [0, 1], Caffe GPU's [0, 2], `recommended`'s [0, 16].
pub const FACTOR_CLIPS: [Option<(f64, f64)>; 4] =
    [None, Some((0.0, 1.0)), Some((0.0, 2.0)), Some((0.0, 16.0))];

impl Axis {
    pub const ALL: [Axis; 13] = [
        Axis::Domain,
        Axis::Theta,
        Axis::Angle,
        Axis::Gradient,
        Axis::FactorClip,
        Axis::Shortcut,
        Axis::RoundTrip,
        Axis::Params,
        Axis::OpMath,
        Axis::Labels,
        Axis::Eval,
        Axis::OutputClip,
        Axis::Constants,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Axis::Domain => "input domain",
            Axis::Theta => "theta precision",
            Axis::Angle => "angle policy",
            Axis::Gradient => "gradient",
            Axis::FactorClip => "factor clip",
            Axis::Shortcut => "(1, 0) shortcut",
            Axis::RoundTrip => "acos/cos round trip",
            Axis::Params => "parameter precision",
            Axis::OpMath => "op math",
            Axis::Labels => "label policy",
            Axis::Eval => "evaluation form",
            Axis::OutputClip => "output clip",
            Axis::Constants => "constants precision",
        }
    }

    /// Whether the axis changes target entries (the others change only non-targets, rows
    /// without a target, or half-precision rounding).
    pub fn touches_targets(self) -> bool {
        match self {
            Axis::Domain
            | Axis::Theta
            | Axis::Angle
            | Axis::Gradient
            | Axis::FactorClip
            | Axis::Shortcut
            | Axis::RoundTrip
            | Axis::Params
            | Axis::Eval
            | Axis::OutputClip
            | Axis::Constants => true,
            Axis::OpMath | Axis::Labels => false,
        }
    }

    /// `base` with this axis set to each value real code uses (base's own value included,
    /// first where it is one of them), named "`base` with <value>".
    pub fn values(self, base: &Profile) -> Vec<Profile> {
        let with = |f: &dyn Fn(&mut Profile)| {
            let mut p = base.clone();
            f(&mut p);
            p
        };
        let mut out: Vec<Profile> = match self {
            Axis::Domain => {
                let mut v = vec![with(&|p| p.domain = InputDomain::Raw)];
                for eps in CLAMP_EPS {
                    for scope in [ClampScope::Target, ClampScope::AllEntries] {
                        for at_bound in [
                            BoundGradient::Pass,
                            BoundGradient::Zero,
                            BoundGradient::Half,
                        ] {
                            v.push(with(&|p| {
                                p.domain = InputDomain::Clamp {
                                    eps,
                                    scope,
                                    at_bound,
                                }
                            }));
                        }
                    }
                }
                v
            }
            Axis::Theta => [ThetaPrecision::Native, ThetaPrecision::F32]
                .into_iter()
                .map(|t| with(&|p| p.theta = t))
                .collect(),
            Axis::Angle => [
                AnglePolicy::Raw,
                AnglePolicy::Clamp { lo: 0.0, hi: PI },
                AnglePolicy::Clamp {
                    lo: 0.0,
                    hi: PI - 1e-4,
                },
                AnglePolicy::Threshold {
                    test: ThresholdTest::OnCos,
                    fallback: Fallback::MSinM,
                },
                AnglePolicy::Threshold {
                    test: ThresholdTest::OnAngle,
                    fallback: Fallback::MSinM,
                },
                AnglePolicy::Threshold {
                    test: ThresholdTest::OnCos,
                    fallback: Fallback::Plain,
                },
                AnglePolicy::Threshold {
                    test: ThresholdTest::OnAngle,
                    fallback: Fallback::Plain,
                },
                AnglePolicy::Threshold {
                    test: ThresholdTest::OnCos,
                    fallback: Fallback::Offset {
                        kappa: FALLBACK_KAPPA_SEED,
                    },
                },
                AnglePolicy::Threshold {
                    test: ThresholdTest::OnAngle,
                    fallback: Fallback::Offset {
                        kappa: FALLBACK_KAPPA_SEED,
                    },
                },
                AnglePolicy::EasyMargin,
                AnglePolicy::Monotone,
            ]
            .into_iter()
            .map(|a| with(&|p| p.angle = a))
            .collect(),
            Axis::Gradient => {
                let mut v = Vec::new();
                for pole in [PoleRule::Ieee, PoleRule::Limit] {
                    for form in [ExactForm::Fused, ExactForm::Chain, ExactForm::SinTheta] {
                        v.push(with(&|p| p.gradient = GradientMode::Exact { pole, form }));
                    }
                }
                for rsqrt_f32 in [true, false] {
                    v.push(with(&|p| {
                        p.gradient = GradientMode::FormulaAtClamped { rsqrt_f32 }
                    }));
                }
                v.push(with(&|p| p.gradient = GradientMode::Detached));
                v
            }
            Axis::FactorClip => FACTOR_CLIPS
                .into_iter()
                .map(|c| with(&|p| p.factor_clip = c))
                .collect(),
            Axis::Shortcut => [true, false]
                .into_iter()
                .map(|s| with(&|p| p.shortcut = s))
                .collect(),
            Axis::RoundTrip => {
                let mut v = Vec::new();
                for fallback in [false, true] {
                    for non_targets in [false, true] {
                        v.push(with(&|p| {
                            p.round_trip = RoundTrip {
                                fallback,
                                non_targets,
                            }
                        }));
                    }
                }
                v
            }
            Axis::Params => [ParamPrecision::Dtype, ParamPrecision::F32]
                .into_iter()
                .map(|x| with(&|p| p.params = x))
                .collect(),
            Axis::OpMath => [OpMath::F32Storage, OpMath::Storage]
                .into_iter()
                .map(|x| with(&|p| p.op_math = x))
                .collect(),
            Axis::Labels => [
                LabelPolicy::IgnoreMinusOne,
                LabelPolicy::IgnoreOutOfRange,
                LabelPolicy::MinusOneNoTarget,
                LabelPolicy::NoIgnore,
            ]
            .into_iter()
            .map(|x| with(&|p| p.labels = x))
            .collect(),
            Axis::Eval => {
                let mut v = vec![with(&|p| p.eval = EvalForm::AcosCos)];
                for guard in [
                    SineGuard::Unguarded,
                    SineGuard::Clamp,
                    SineGuard::Epsilon {
                        eps: SINE_GUARD_EPS_SEED,
                    },
                    SineGuard::Safe,
                ] {
                    for whole_matrix in [false, true] {
                        v.push(with(&|p| {
                            p.eval = EvalForm::TrigIdentity {
                                guard,
                                whole_matrix,
                            }
                        }));
                    }
                }
                v
            }
            Axis::OutputClip => [None, Some(OUTPUT_CLIP_SEED)]
                .into_iter()
                .map(|x| with(&|p| p.output_clip = x))
                .collect(),
            Axis::Constants => [ParamPrecision::Dtype, ParamPrecision::F32]
                .into_iter()
                .map(|x| with(&|p| p.constants = x))
                .collect(),
        };
        // Base's own value first, then the others; names say what changed.
        out.sort_by_key(|p| !self.same(p, base));
        for p in &mut out {
            p.name = if self.same(p, base) {
                base.name.clone()
            } else {
                format!("{} with {}", base.name, self.describe(p))
            };
        }
        out
    }

    /// Whether `a` and `b` hold the same value on this axis.
    pub fn same(self, a: &Profile, b: &Profile) -> bool {
        match self {
            Axis::Domain => a.domain == b.domain,
            Axis::Theta => a.theta == b.theta,
            Axis::Angle => a.angle == b.angle,
            Axis::Gradient => a.gradient == b.gradient,
            Axis::FactorClip => a.factor_clip == b.factor_clip,
            Axis::Shortcut => a.shortcut == b.shortcut,
            Axis::RoundTrip => a.round_trip == b.round_trip,
            Axis::Params => a.params == b.params,
            Axis::OpMath => a.op_math == b.op_math,
            Axis::Labels => a.labels == b.labels,
            Axis::Eval => a.eval == b.eval,
            Axis::OutputClip => a.output_clip == b.output_clip,
            Axis::Constants => a.constants == b.constants,
        }
    }

    /// The value of this axis in `p`, for people.
    pub fn describe(self, p: &Profile) -> String {
        match self {
            Axis::Domain => describe_domain(p.domain),
            Axis::Theta => match p.theta {
                ThetaPrecision::Native => "theta in native precision".into(),
                ThetaPrecision::F32 => "theta rounded to f32".into(),
            },
            Axis::Angle => describe_angle(p.angle),
            Axis::Gradient => describe_gradient(p.gradient),
            Axis::FactorClip => match p.factor_clip {
                None => "no factor clip".into(),
                Some((lo, hi)) => format!("factor clip [{lo}, {hi}]"),
            },
            Axis::Shortcut => match p.shortcut {
                true => "the (1, 0) shortcut c - m3".into(),
                false => "acos/cos at (1, 0) (no shortcut)".into(),
            },
            Axis::RoundTrip => match (p.round_trip.fallback, p.round_trip.non_targets) {
                (false, false) => "acos/cos on the margin branch only".into(),
                (true, false) => "the fallback through cos(acos c)".into(),
                (false, true) => "non-targets through cos(acos c)".into(),
                (true, true) => "fallback and non-targets through cos(acos c)".into(),
            },
            Axis::Params => match p.params {
                ParamPrecision::Dtype => "parameters in the dtype".into(),
                ParamPrecision::F32 => "parameters held as f32".into(),
            },
            Axis::OpMath => match p.op_math {
                OpMath::F32Storage => "f32 op math, rounded to storage".into(),
                OpMath::Storage => "all-half arithmetic".into(),
            },
            Axis::Labels => match p.labels {
                LabelPolicy::IgnoreMinusOne => "label -1 ignored".into(),
                LabelPolicy::IgnoreOutOfRange => "every out-of-range label ignored".into(),
                LabelPolicy::MinusOneNoTarget => "label -1 rows without a target".into(),
                LabelPolicy::NoIgnore => "no ignore label".into(),
            },
            Axis::Eval => describe_eval(p.eval),
            Axis::OutputClip => match p.output_clip {
                None => "no output clip".into(),
                Some(b) => format!(
                    "target logit clipped to [-{0}, {0}]",
                    crate::compare::num(b)
                ),
            },
            Axis::Constants => match p.constants {
                ParamPrecision::Dtype => "constants in the dtype".into(),
                ParamPrecision::F32 => "constants (th, mm, cos m, sin m) computed in f32".into(),
            },
        }
    }
}

pub fn describe_domain(d: InputDomain) -> String {
    match d {
        InputDomain::Raw => "no input clamp".into(),
        InputDomain::Clamp {
            eps,
            scope,
            at_bound,
        } => {
            let scope = match scope {
                ClampScope::Target => "target",
                ClampScope::AllEntries => "every entry",
            };
            let bound = match at_bound {
                BoundGradient::Pass => "",
                BoundGradient::Zero => ", gradient 0 at the bound",
                BoundGradient::Half => ", gradient 1/2 at the bound",
            };
            format!("input clamp eps = {eps:e} on {scope}{bound}")
        }
    }
}

pub fn describe_eval(e: EvalForm) -> String {
    match e {
        EvalForm::AcosCos => "cos(m1 acos c + m2)".into(),
        EvalForm::TrigIdentity {
            guard,
            whole_matrix,
        } => {
            let guard = match guard {
                SineGuard::Unguarded => "sqrt(1 - c^2)".into(),
                SineGuard::Clamp => "sqrt(clamp(1 - c^2, 0, 1))".into(),
                SineGuard::Epsilon { eps } => {
                    format!("sqrt(1 - c^2 + {})", crate::compare::num(eps))
                }
                SineGuard::Safe => "a guarded sqrt((1 - c)(1 + c)) (zero gradient at 0)".into(),
            };
            let scope = if whole_matrix {
                "over the whole matrix"
            } else {
                "on the target"
            };
            format!("trig identity c cos m - sin(theta) sin m with sin(theta) = {guard}, {scope}")
        }
    }
}

pub fn describe_angle(a: AnglePolicy) -> String {
    match a {
        AnglePolicy::Raw => "raw angle (no clamp, no fallback)".into(),
        AnglePolicy::Clamp { lo, hi } => {
            format!("angle clamped to [{lo}, pi - {:.0e}]", PI - hi).replace("pi - 0e0", "pi")
        }
        AnglePolicy::Threshold { test, fallback } => {
            let test = match test {
                ThresholdTest::OnCos => "tested on cos",
                ThresholdTest::OnAngle => "tested on the angle",
            };
            match fallback {
                Fallback::MSinM => format!("th/mm fallback {test}"),
                Fallback::Offset { kappa } => {
                    format!("fallback c - {} {test}", crate::compare::num(kappa))
                }
                Fallback::Plain => format!("fallback to plain c (no margin) {test}"),
            }
        }
        AnglePolicy::EasyMargin => "easy margin (c > 0)".into(),
        AnglePolicy::Monotone => "SphereFace monotone extension".into(),
    }
}

pub fn describe_gradient(g: GradientMode) -> String {
    match g {
        GradientMode::Exact { pole, form } => {
            let form = match form {
                ExactForm::Fused => "fused",
                ExactForm::Chain => "autograd chain",
                ExactForm::SinTheta => "divided by sin(theta)",
            };
            let pole = match pole {
                PoleRule::Ieee => "IEEE poles",
                PoleRule::Limit => "limit at poles",
            };
            format!("exact gradient ({form}, {pole})")
        }
        GradientMode::FormulaAtClamped { rsqrt_f32 } => {
            format!("formula at the clamped values (f32 rsqrt: {rsqrt_f32})")
        }
        GradientMode::Detached => "detached gradient".into(),
    }
}

/// The number of profiles in the space (the product of the axes' value counts; name aside).
pub fn size() -> usize {
    let base = Profile::preset("analytic").expect("preset");
    Axis::ALL.iter().map(|a| a.values(&base).len()).product()
}

/// Every profile of the subspace spanned by `axes` around `base` (the other axes as in `base`).
pub fn enumerate(base: &Profile, axes: &[Axis]) -> Vec<Profile> {
    let mut out = vec![base.clone()];
    for &axis in axes {
        out = out
            .iter()
            .flat_map(|p| {
                axis.values(p).into_iter().map(|mut q| {
                    q.name = String::new();
                    q
                })
            })
            .collect();
    }
    for (i, p) in out.iter_mut().enumerate() {
        p.name = format!("space#{i}");
    }
    out
}

/// The axes on which `a` and `b` differ.
pub fn differences(a: &Profile, b: &Profile) -> Vec<Axis> {
    Axis::ALL.into_iter().filter(|ax| !ax.same(a, b)).collect()
}

/// "behaves like `base` except <axis value>, …" for a profile `p` of the space.
pub fn describe_as_neighbour(base: &Profile, p: &Profile) -> String {
    let diffs = differences(base, p);
    if diffs.is_empty() {
        return format!("behaves like {}", base.name);
    }
    let what: Vec<String> = diffs.iter().map(|a| a.describe(p)).collect();
    format!("behaves like {} except: {}", base.name, what.join("; "))
}
