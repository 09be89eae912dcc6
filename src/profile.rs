//! A numerics profile: how one implementation patches the singularities of the combined margin.
//!
//! A profile is data: one value per orthogonal policy axis. The formula exists once, in
//! [`crate::margin`]; a named preset is one row of [`PRESETS`], and SPEC.md §3 cites the source
//! each row is taken from. [`crate::space`] enumerates the axes (every value real code uses) to
//! generate the `--profile auto` candidates and the deviation detector's variants.
//!
//! Every `match` on a policy in this crate is exhaustive, so adding a variant makes the compiler
//! point at every site that must decide what it means (formula, kinks, tolerance, kernel ABI).

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Which entries the input clamp applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClampScope {
    /// Only the target entry (insightface, Caffe GPU): non-targets pass through unchanged.
    Target,
    /// Every entry, non-targets and label-less rows too (SpeechBrain clamps `cosine` before
    /// `targets * phi + (1 - targets) * cosine`): non-targets become `clamp(c)`, gradient 0 outside.
    AllEntries,
}

/// The gradient of the input clamp exactly at its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoundGradient {
    /// c = bound is inside the clamp: the gradient passes (`where(lo <= c <= hi)`).
    Pass,
    /// c = bound is treated as clamped: gradient 0 (torch 2.x `clamp`, SpeechBrain README quirk 2).
    Zero,
    /// c = bound gets half the gradient: JAX's `jnp.clip(x, lo, hi)` is
    /// `minimum(maximum(x, lo), hi)`, and the derivative of `maximum`/`minimum` at a tie is ½.
    Half,
}

impl BoundGradient {
    /// The gradient multiplier of an entry exactly at a bound of the clamp.
    pub fn at_bound(self) -> f64 {
        match self {
            BoundGradient::Pass => 1.0,
            BoundGradient::Zero => 0.0,
            BoundGradient::Half => 0.5,
        }
    }
}

/// What happens to the input cos before `acos`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum InputDomain {
    /// No clamp: `acos` of |c| > 1 is NaN, and the derivative has poles at c = ±1.
    Raw,
    /// Clamp c to [−1 + eps, 1 − eps] (bounds rounded to the implementation's dtype).
    /// eps = 0 keeps in-range values bit-identical and only pulls |c| > 1 back.
    Clamp {
        eps: f64,
        scope: ClampScope,
        at_bound: BoundGradient,
    },
}

/// Precision of θ = acos(c).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThetaPrecision {
    /// θ kept in the working precision.
    Native,
    /// θ rounded to f32 after acos, whatever the dtype: the Caffe layer's `float theta = acos(x)`.
    F32,
}

/// How the th/mm threshold is tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThresholdTest {
    /// Margin branch iff c̃ > th with th = cos((π − m2)/m1) rounded to the dtype
    /// (insightface `torch.where(cos > th, …)`, SpeechBrain, MXNet's relu form).
    OnCos,
    /// Margin branch iff m1·θ + m2 ≤ π, evaluated on the dtype's θ and φ (`theta + m <= pi`
    /// forms). Rounds differently from [`ThresholdTest::OnCos`] within an ulp of the threshold.
    OnAngle,
}

/// What the target becomes past the threshold (θ > (π − m2)/m1), where φ would pass π.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Fallback {
    /// insightface's `mm`: `c̃ − m2·sin(m2) − m3` (`mm = sin(π − m)·m`).
    MSinM,
    /// `c̃ − κ` with a constant κ (radians-free, in cos units) the implementation chose:
    /// WeSpeaker and ESPnet use `1 + cos(π − m) = 1 − cos m`. κ is fitted, not listed.
    Offset { kappa: f64 },
    /// `c̃`: no margin past the threshold (catalyst's ArcFace: `cos(where(mask, θ + m, θ))`).
    Plain,
}

/// How cos(m1·θ + m2) is evaluated on the margin branch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum EvalForm {
    /// `cos(m1·acos(c̃) + m2)`: through the angle.
    #[default]
    AcosCos,
    /// The angle-addition identity `c̃·cos m2 − sinθ·sin m2` (m1 = 1 only; with m1 ≠ 1 the
    /// identity does not apply and the form is `AcosCos`'s), `sinθ` from the [`SineGuard`].
    /// With `whole_matrix` the identity is evaluated over every entry and the target selected
    /// by `where`/one-hot: non-target forwards are `c`, but their gradient is `1 + 0·φ'`,
    /// NaN wherever the guard's derivative is not finite (|c| ≥ 1 unguarded).
    TrigIdentity {
        guard: SineGuard,
        whole_matrix: bool,
    },
}

/// How `sin θ = sqrt(1 − c²)` is guarded in the trig-identity form.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SineGuard {
    /// `sqrt(1 − c²)`: NaN for |c| > 1; derivative −c/sqrt(1 − c²), infinite at |c| = 1.
    Unguarded,
    /// `sqrt(clamp(1 − c², 0, 1))`: 0 beyond |c| = 1 with gradient 0 there; at |c| = 1 the
    /// clamp passes the infinite sqrt derivative.
    Clamp,
    /// `sqrt(1 − c² + ε)` (PaddleClas: ε = 1e-6): the target is off by about ε·sin m2 / (2 sinθ)
    /// everywhere, most at c = ±1. ε is fitted.
    Epsilon { eps: f64 },
    /// A guarded helper: `sqrt(max((1 − c)(1 + c), 0))` with derivative 0 where the argument
    /// is ≤ 0 (no 0·inf), and no cancellation near |c| = 1.
    Safe,
}

/// How the angle φ = m1·θ + m2 is handled where it leaves [0, π].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum AnglePolicy {
    /// φ as is: past π the target logit turns back up and the gradient changes sign.
    Raw,
    /// φ clamped to [lo, hi] (radians; bounds rounded to the dtype); flat outside.
    Clamp { lo: f64, hi: f64 },
    /// A fallback past the threshold: where φ would pass π the target is the [`Fallback`]
    /// form of c̃ instead (gradient 1): insightface's `th`/`mm` is `c̃ − m2·sin(m2) − m3`.
    Threshold {
        test: ThresholdTest,
        fallback: Fallback,
    },
    /// `easy_margin`: the margin applies only where c̃ > 0; elsewhere the target is `c̃`.
    EasyMargin,
    /// SphereFace's monotone extension: with k = ⌊φ/π⌋, the target is `(−1)^k·cos φ − 2k − m3`
    /// (continuous, non-increasing in θ for every m1 ≥ 1; SphereFace paper eq. 6).
    Monotone,
}

impl AnglePolicy {
    /// Whether the fallback is `easy_margin`'s (the margin only where c̃ > 0; else c̃).
    pub fn is_easy_margin(self) -> bool {
        match self {
            AnglePolicy::EasyMargin => true,
            AnglePolicy::Raw
            | AnglePolicy::Clamp { .. }
            | AnglePolicy::Threshold { .. }
            | AnglePolicy::Monotone => false,
        }
    }
}

/// Where the gradient is infinite (c = ±1 with no domain clamp), what the exact mode returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoleRule {
    /// IEEE evaluation of the formula: ±inf, or NaN where sin φ = 0 (0·inf).
    Ieee,
    /// The limit where it exists (m1² at c = 1 with m2 = 0), else ±inf; a factor clip then bounds it.
    Limit,
}

/// How an exact derivative is evaluated (same value in exact arithmetic, different roundings
/// and different values at the poles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExactForm {
    /// One expression `m1·sin φ / sqrt(1 − c̃²)` (hand-written kernels, MXNet).
    Fused,
    /// The autograd chain `(−sin φ)·m1·(−1/sqrt(1 − c̃²))`, each factor rounded (PyTorch autograd
    /// through `cos`, `acos`); the budget counts the extra roundings.
    Chain,
    /// Divided by `sin θ` of the saved θ (OneFlow's CPU grad kernel:
    /// `dy·sin(m1θ + m2)·m1 / sin θ`). θ is the dtype's value, so at c = −1 in f32
    /// `acosf(−1) > π` makes sin θ < 0 (OneFlow README quirk 5).
    SinTheta,
}

/// What backward returns for d out / d c at a target entry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum GradientMode {
    /// The derivative of the forward as computed: 0 where a clamp makes it flat,
    /// `m1·sin φ / sqrt(1 − c²)` on the margin branch, 1 on a linear fallback branch.
    Exact { pole: PoleRule, form: ExactForm },
    /// The Caffe GPU backward: `m1·sin φ̃ · (1 − c̃²)^(−1/2)` evaluated at the clamped c̃ and φ̃,
    /// even where the clamp made the forward flat. With `rsqrt_f32` the
    /// `(1 − c²)^(−1/2)` part is computed in f32 (`powf`) whatever the dtype.
    FormulaAtClamped { rsqrt_f32: bool },
    /// Straight-through: d out / d c = 1 (the margin is detached from autograd).
    Detached,
}

/// Where the acos/cos round trip `cos(acos c̃)` is evaluated besides the margin branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoundTrip {
    /// The fallback branch is `cos(acos c̃) − mm` instead of `c̃ − mm` (its derivative
    /// `sin θ / sqrt(1 − c̃²)`: a few ulp from 1, NaN at ±1 under IEEE).
    pub fallback: bool,
    /// Non-target entries (and label-less rows) are `cos(acos c)`: insightface@9097cd7's
    /// `logits.arccos_()` … `logits.cos_()` over the whole matrix (NaN for |c| > 1).
    pub non_targets: bool,
}

/// Precision the margin parameters m1, m2, m3 are held in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamPrecision {
    /// Rounded to the dtype where they meet a tensor (a Python float in a T expression).
    #[default]
    Dtype,
    /// Held as f32 whatever the dtype (OneFlow's `float` op attributes, README quirk 7).
    F32,
}

/// Precision of the arithmetic of half-precision code (f16/bf16 storage); no effect in f32/f64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpMath {
    /// Every op computed in f32 and its result rounded to the storage type (PyTorch's CPU and
    /// CUDA half kernels, "opmath"); f32 scalars stay f32 inside a multiply.
    F32Storage,
    /// Every op rounded in the storage type (`__half` arithmetic in a hand-written kernel).
    Storage,
}

/// Label handling: which labels mean "no target in this row", and what such a row gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelPolicy {
    /// −1 leaves the row untouched (pure pass-through); any other label outside [0, C) is an error.
    IgnoreMinusOne,
    /// Every label outside [0, C) leaves the row untouched (OneFlow's kernels: README quirk 1).
    IgnoreOutOfRange,
    /// A −1 row is a row without a target (one-hot of zeros): every entry gets the non-target
    /// treatment (the clamp or round trip that non-targets get); other labels outside [0, C)
    /// are errors (SpeechBrain, insightface@9097cd7's whole-matrix `arccos_`).
    MinusOneNoTarget,
    /// Every label must be in [0, C): −1 is an error too.
    NoIgnore,
}

/// The ignore label of the policies that have one.
pub const IGNORE_LABEL: i64 = -1;

/// One numerics profile. Every field is an independent policy axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Preset name, or a description for a custom profile.
    pub name: String,
    pub domain: InputDomain,
    pub theta: ThetaPrecision,
    pub angle: AnglePolicy,
    pub gradient: GradientMode,
    /// Clamp of the backward factor to [lo, hi] after the gradient mode (Caffe GPU: [0, 2]).
    pub factor_clip: Option<(f64, f64)>,
    /// Where (m1, m2) = (1, 0), skip acos/cos and compute `c − m3` (gradient 1), as MXNet and
    /// OneFlow's CUDA kernel do. Then (1, 0, 0) is exactly the identity and CosFace is `c − m3`.
    pub shortcut: bool,
    pub round_trip: RoundTrip,
    pub params: ParamPrecision,
    pub op_math: OpMath,
    pub labels: LabelPolicy,
    /// How the margin branch evaluates cos(m1·θ + m2).
    #[serde(default)]
    pub eval: EvalForm,
    /// Clip of the target logit after the margin to [−b, b] (facelib); gradient 0 outside.
    #[serde(default)]
    pub output_clip: Option<f64>,
    /// Precision of the derived constants th, mm, cos m2, sin m2, ε (computed once from the
    /// parameters): the dtype, or f32 inside an f64 computation (mmpretrain's buffers).
    #[serde(default)]
    pub constants: ParamPrecision,
}

/// Upper bound of the `recommended` profile's backward factor (SPEC.md §3.6 argues the value).
pub const RECOMMENDED_FACTOR_MAX: f64 = 16.0;

/// SpeechBrain's clamp `torch.clamp(cosine, -1 + 1e-7, 1 - 1e-7)`.
pub const SPEECHBRAIN_EPS: f64 = 1e-7;

const EXACT: GradientMode = GradientMode::Exact {
    pole: PoleRule::Ieee,
    form: ExactForm::Fused,
};
const NO_ROUND_TRIP: RoundTrip = RoundTrip {
    fallback: false,
    non_targets: false,
};
const fn target_clamp(eps: f64) -> InputDomain {
    InputDomain::Clamp {
        eps,
        scope: ClampScope::Target,
        at_bound: BoundGradient::Pass,
    }
}

/// The analytic profile, the base the other rows of [`PRESETS`] modify.
const ANALYTIC: Profile = Profile {
    name: String::new(),
    domain: InputDomain::Raw,
    theta: ThetaPrecision::Native,
    angle: AnglePolicy::Raw,
    gradient: EXACT,
    factor_clip: None,
    shortcut: true,
    round_trip: NO_ROUND_TRIP,
    params: ParamPrecision::Dtype,
    op_math: OpMath::F32Storage,
    labels: LabelPolicy::IgnoreMinusOne,
    eval: EvalForm::AcosCos,
    output_clip: None,
    constants: ParamPrecision::Dtype,
};

/// One row of the preset table: a name, the source it is taken from, and the policies.
pub struct Preset {
    pub name: &'static str,
    /// The code this row reproduces (SPEC.md §3 cites it in full).
    pub source: &'static str,
    pub profile: fn() -> Profile,
}

/// The presets, in the order reports list them. Each is a full row of policies (struct update
/// from the analytic row), so what differs from the analytic formula is visible in one place.
pub const PRESETS: [Preset; 11] = [
    Preset {
        name: "analytic",
        source: "insightface MXNet margin_softmax@ce3600a (pure formula, (1, 0) shortcut)",
        profile: || ANALYTIC,
    },
    Preset {
        name: "textbook",
        source: "the hand-written form: theta = arccos(clip(c, -1, 1)), raw angle, exact gradient",
        profile: || Profile {
            domain: target_clamp(0.0),
            shortcut: false,
            ..ANALYTIC
        },
    },
    Preset {
        name: "caffe-cpu",
        source: "gehaocool/CombinedMargin-caffe Forward_cpu/Backward_cpu: no clamps, float theta",
        profile: || Profile {
            theta: ThetaPrecision::F32,
            shortcut: false,
            ..ANALYTIC
        },
    },
    Preset {
        name: "caffe-gpu",
        source: "gehaocool/CombinedMargin-caffe .cu kernels: clamps 1e-4, powf backward at the clamped values, clip [0, 2]",
        profile: || Profile {
            domain: target_clamp(1e-4),
            theta: ThetaPrecision::F32,
            angle: AnglePolicy::Clamp {
                lo: 0.0,
                hi: PI - 1e-4,
            },
            gradient: GradientMode::FormulaAtClamped { rsqrt_f32: true },
            factor_clip: Some((0.0, 2.0)),
            shortcut: false,
            ..ANALYTIC
        },
    },
    Preset {
        name: "detached",
        source: "insightface arcface_torch CombinedMarginLoss/ArcFace@9097cd7 and opensphere: the margin under no_grad",
        profile: || Profile {
            gradient: GradientMode::Detached,
            ..ANALYTIC
        },
    },
    Preset {
        name: "arcface-thmm",
        source: "insightface ArcFace@2e2e8c9 / CombinedMarginLoss@5ef9804: th/mm fallback on cos",
        profile: || Profile {
            angle: AnglePolicy::Threshold {
                test: ThresholdTest::OnCos,
                fallback: Fallback::MSinM,
            },
            ..ANALYTIC
        },
    },
    Preset {
        name: "arcface-thmm-easy",
        source: "the same with easy_margin = True",
        profile: || Profile {
            angle: AnglePolicy::EasyMargin,
            ..ANALYTIC
        },
    },
    Preset {
        name: "oneflow-cpu",
        source: "OneFlow 0.9.0 CombinedMarginLossCpuKernel/GradCpuKernel: no clamp, no shortcut, / sin(theta), float margins, out-of-range labels ignored",
        profile: || Profile {
            gradient: GradientMode::Exact {
                pole: PoleRule::Ieee,
                form: ExactForm::SinTheta,
            },
            shortcut: false,
            params: ParamPrecision::F32,
            labels: LabelPolicy::IgnoreOutOfRange,
            ..ANALYTIC
        },
    },
    Preset {
        name: "speechbrain-aam",
        source: "SpeechBrain 1.1.2 AdditiveAngularMargin: clamp of every entry to +-(1 - 1e-7), th/mm on cos, autograd",
        profile: || Profile {
            domain: InputDomain::Clamp {
                eps: SPEECHBRAIN_EPS,
                scope: ClampScope::AllEntries,
                at_bound: BoundGradient::Zero,
            },
            angle: AnglePolicy::Threshold {
                test: ThresholdTest::OnCos,
                fallback: Fallback::MSinM,
            },
            gradient: GradientMode::Exact {
                pole: PoleRule::Ieee,
                form: ExactForm::Chain,
            },
            shortcut: false,
            labels: LabelPolicy::MinusOneNoTarget,
            ..ANALYTIC
        },
    },
    Preset {
        name: "sphereface",
        source: "SphereFace (Liu et al. 2017, eq. 6): psi = (-1)^k cos(m1 theta) - 2k, monotone in theta",
        profile: || Profile {
            domain: target_clamp(0.0),
            angle: AnglePolicy::Monotone,
            ..ANALYTIC
        },
    },
    Preset {
        name: "recommended",
        source: "this crate (SPEC.md §3.6): finite everywhere, monotone on [0, pi], gradient in [0, 16]",
        profile: || Profile {
            domain: target_clamp(0.0),
            angle: AnglePolicy::Clamp { lo: 0.0, hi: PI },
            gradient: GradientMode::Exact {
                pole: PoleRule::Limit,
                form: ExactForm::Fused,
            },
            factor_clip: Some((0.0, RECOMMENDED_FACTOR_MAX)),
            ..ANALYTIC
        },
    },
];

/// The names of the presets, in [`PRESETS`] order.
pub fn preset_names() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|p| p.name)
}

/// Every clamp of the family heads below is torch's `clamp(-1, 1)` of every entry (or
/// AdaFace's ±(1 − 1e-3)): gradient 0 at and beyond a bound, as for SpeechBrain's.
const fn all_entries_clamp(eps: f64) -> InputDomain {
    InputDomain::Clamp {
        eps,
        scope: ClampScope::AllEntries,
        at_bound: BoundGradient::Zero,
    }
}

/// The autograd chain (PyTorch heads).
const CHAIN: GradientMode = GradientMode::Exact {
    pole: PoleRule::Ieee,
    form: ExactForm::Chain,
};

/// MagFace's `MagLinear` (IrvingMeng/MagFace@99bae61 `models/magface.py`, and
/// `models/parallel_maglinear.py` with `useArcFace`): `cos_theta.clamp(-1, 1)` of every
/// entry, `sin_theta = sqrt(1 - cos_theta^2)` unguarded, `cos_theta_m = cos_theta·cos_m −
/// sin_theta·sin_m` over the whole matrix, the target selected by the one-hot mix
/// `one_hot·cos_theta_m + (1 − one_hot)·cos_theta` (so non-targets get `1 + 0·φ′`), both
/// scaled by s inside; `scatter_` of a label −1 raises (no ignore label). `easy` selects
/// `easy_margin` (the default of `MagLinear`, and how `SoftmaxBuilder` builds it), else the
/// th/mm fallback `cos_theta > cos(π − m)`, `cos_theta − sin(π − m)·m`.
fn magface(easy: bool) -> Profile {
    Profile {
        domain: all_entries_clamp(0.0),
        angle: if easy {
            AnglePolicy::EasyMargin
        } else {
            AnglePolicy::Threshold {
                test: ThresholdTest::OnCos,
                fallback: Fallback::MSinM,
            }
        },
        gradient: CHAIN,
        shortcut: false,
        labels: LabelPolicy::NoIgnore,
        eval: EvalForm::TrigIdentity {
            guard: SineGuard::Unguarded,
            whole_matrix: true,
        },
        ..ANALYTIC
    }
}

/// The heads of the margin families (SPEC.md §11.6) whose margins are per row: their
/// m1, m2, m3 come from the dump (`params` arrays), so these rows are not candidates of the
/// `--profile auto` search (it fits one (m1, m2, m3) per case) and not columns of the
/// conformance matrix; `--profile NAME` and the implementation mapping (§6.1) reach them.
pub const FAMILY_PRESETS: [Preset; 5] = [
    Preset {
        name: "adaface",
        source: "mk-minchul/AdaFace@c60eaa7 head.py AdaFace: clamp of every entry to +-(1 - 1e-3), theta + g_angular clipped to [1e-3, pi - 1e-3], every entry through cos(acos), autograd",
        profile: || Profile {
            domain: all_entries_clamp(ADAFACE_EPS),
            angle: AnglePolicy::Clamp {
                lo: ADAFACE_EPS,
                hi: PI - ADAFACE_EPS,
            },
            gradient: CHAIN,
            shortcut: false,
            round_trip: RoundTrip {
                fallback: false,
                non_targets: true,
            },
            labels: LabelPolicy::NoIgnore,
            ..ANALYTIC
        },
    },
    Preset {
        name: "elasticface-arc",
        source: "fdbtrs/ElasticFace@5496ec0 utils/losses.py ElasticArcFace (plus too): clamp(-1, 1) of every entry, acos_ of the whole matrix, + m_i on the target, cos_ of the whole matrix, autograd",
        profile: || Profile {
            domain: all_entries_clamp(0.0),
            gradient: CHAIN,
            shortcut: false,
            round_trip: RoundTrip {
                fallback: false,
                non_targets: true,
            },
            labels: LabelPolicy::MinusOneNoTarget,
            ..ANALYTIC
        },
    },
    Preset {
        name: "elasticface-cos",
        source: "fdbtrs/ElasticFace@5496ec0 utils/losses.py ElasticCosFace (plus too): clamp(-1, 1) of every entry, the target minus m_i, no acos",
        profile: || Profile {
            domain: all_entries_clamp(0.0),
            labels: LabelPolicy::MinusOneNoTarget,
            ..ANALYTIC
        },
    },
    Preset {
        name: "magface",
        source: "IrvingMeng/MagFace@99bae61 models/magface.py MagLinear (easy_margin=True, its default): clamp(-1, 1), c cos m - sqrt(1 - c^2) sin m over the whole matrix, one-hot mix",
        profile: || magface(true),
    },
    Preset {
        name: "magface-thmm",
        source: "IrvingMeng/MagFace@99bae61 models/magface.py MagLinear with easy_margin=False: the th/mm fallback on cos instead",
        profile: || magface(false),
    },
];

impl Profile {
    /// A preset by name ([`PRESETS`], then the family heads of [`FAMILY_PRESETS`]).
    pub fn preset(name: &str) -> Result<Profile, crate::Error> {
        PRESETS
            .iter()
            .chain(&FAMILY_PRESETS)
            .find(|p| p.name == name)
            .map(|p| Profile {
                name: p.name.into(),
                ..(p.profile)()
            })
            .ok_or_else(|| crate::Error::UnknownProfile(name.to_string()))
    }

    /// Every preset, in [`PRESETS`] order.
    pub fn presets() -> Vec<Profile> {
        preset_names()
            .map(|n| Profile::preset(n).expect("preset names are known"))
            .collect()
    }

    /// Whether this profile's policies equal a preset's (whatever its name).
    pub fn same_policies(&self, other: &Profile) -> bool {
        Profile {
            name: String::new(),
            ..self.clone()
        } == Profile {
            name: String::new(),
            ..other.clone()
        }
    }

    /// Whether every finite input gives a finite forward and backward (for any valid params).
    /// True when the domain is clamped and the gradient is bounded by a clip, or detached.
    pub fn promises_finite(&self) -> bool {
        let domain_ok = match self.domain {
            InputDomain::Clamp { .. } => true,
            InputDomain::Raw => false,
        };
        let eps_positive = matches!(self.domain, InputDomain::Clamp { eps, .. } if eps > 0.0);
        let grad_ok = match self.gradient {
            GradientMode::Detached => true,
            GradientMode::FormulaAtClamped { .. } | GradientMode::Exact { .. } => {
                self.factor_clip.is_some() || eps_positive
            }
        };
        // A round trip of unclamped non-targets is NaN for |c| > 1.
        let non_targets_ok = !self.round_trip.non_targets
            || matches!(
                self.domain,
                InputDomain::Clamp {
                    scope: ClampScope::AllEntries,
                    ..
                }
            );
        domain_ok && grad_ok && non_targets_ok
    }

    /// Whether non-target entries are changed at all: a clamp of every entry, or the
    /// round trip of non-targets (otherwise they pass through bit-identical).
    pub fn transforms_non_targets(&self) -> bool {
        let all_entries = match self.domain {
            InputDomain::Raw => false,
            InputDomain::Clamp { scope, .. } => match scope {
                ClampScope::Target => false,
                ClampScope::AllEntries => true,
            },
        };
        all_entries || self.round_trip.non_targets || self.eval_whole_matrix()
    }

    /// Whether the margin form is evaluated over the whole matrix (its gradient reaches
    /// non-target entries as `0·φ'`).
    pub fn eval_whole_matrix(&self) -> bool {
        match self.eval {
            EvalForm::AcosCos => false,
            EvalForm::TrigIdentity { whole_matrix, .. } => whole_matrix,
        }
    }

    /// Whether the forward is promised monotone non-increasing in θ over [0, π] for every valid
    /// (m1, m2, m3): the angle never passes π unclamped.
    pub fn promises_monotone(&self) -> bool {
        match self.angle {
            AnglePolicy::Clamp { hi, .. } => hi <= PI,
            AnglePolicy::Monotone => true,
            AnglePolicy::Threshold { .. } | AnglePolicy::EasyMargin | AnglePolicy::Raw => false,
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// AdaFace's eps (mk-minchul/AdaFace@c60eaa7 `head.py`: `self.eps = 1e-3`).
pub const ADAFACE_EPS: f64 = 1e-3;

/// The profile of mk-minchul/AdaFace@c60eaa7 `head.py:AdaFace` (SPEC.md §11.1), the
/// `adaface` row of [`FAMILY_PRESETS`], with its per-row margins m1 = 1, m2 = g_angular (may
/// be negative), m3 = g_add read from the dump: every entry clamped to [−1+1e-3, 1−1e-3]
/// (torch's clamp: gradient 0 at and beyond a bound), θ = acos of it, θ + m2 clipped to
/// [1e-3, π − 1e-3] (the non-targets' clip never binds: their θ is at least acos(1 − 1e-3)
/// ≈ 0.0447), every entry through `cos(·)` of that angle (so non-targets are `cos(acos c̃)`),
/// autograd through the chain; no th/mm; a label −1 raises inside the head (`scatter_`), so
/// no ignore label.
pub fn adaface() -> Profile {
    Profile::preset("adaface").expect("a family preset")
}

/// The profile SPEC.md §6 assigns to a dump's `implementation` string, for a case that claims
/// `easy_margin` (or not). `None` where the implementation is not one of the mapped systems.
/// A dump this crate wrote names its profile (`reference/<preset>` or the bare preset name).
pub fn mapped_profile(implementation: &str, easy_margin: Option<bool>) -> Option<Profile> {
    let easy = easy_margin == Some(true);
    let thmm = if easy {
        "arcface-thmm-easy"
    } else {
        "arcface-thmm"
    };
    let name = if implementation == "caffe-cpu" {
        "caffe-cpu"
    } else if implementation == "caffe-gpu-kernel-on-host" || implementation == "caffe-gpu" {
        "caffe-gpu"
    } else if implementation.contains("CombinedMarginLoss@9097cd7")
        || implementation.contains("ArcFace@9097cd7")
    {
        "detached"
    } else if implementation.contains("CombinedMarginLoss@5ef9804")
        || implementation.contains("ArcFace@2e2e8c9")
        || implementation.contains("loss_type4@")
    {
        thmm
    } else if implementation.contains("CosFace@")
        || implementation.contains("margin_softmax@")
        // s·(x − m·onehot), s·x and x: the (1, 0) shortcut, exact (SPEC.md §6.1).
        || [
            "fastreid.layers.any_softmax.CosSoftmax@",
            "catalyst.contrib.layers.AdaCos@",
            "catalyst.contrib.layers.ArcMarginProduct@",
        ]
        .iter()
        .any(|p| implementation.starts_with(p))
    {
        "analytic"
    } else if implementation.starts_with("oneflow.nn.CombinedMarginLoss") {
        "oneflow-cpu"
    } else if implementation.starts_with("speechbrain.nnet.losses.AdditiveAngularMargin") {
        if easy {
            return Some(Profile {
                name: "speechbrain-aam with easy margin".into(),
                angle: AnglePolicy::EasyMargin,
                ..Profile::preset("speechbrain-aam").expect("preset")
            });
        }
        "speechbrain-aam"
    } else if implementation.starts_with("mk-minchul/AdaFace@") {
        return Some(adaface());
    } else if implementation.starts_with("fdbtrs/ElasticFace@") {
        // `…:utils/losses.py:ElasticArcFace` or `ElasticCosFace` (their `plus` forms too).
        return if implementation.contains("ElasticCosFace") {
            Profile::preset("elasticface-cos").ok()
        } else if implementation.contains("ElasticArcFace") {
            Profile::preset("elasticface-arc").ok()
        } else {
            None
        };
    } else if implementation.starts_with("IrvingMeng/MagFace@") {
        // MagLinear's default is easy_margin = True; a case that says false has th/mm.
        return Profile::preset(if easy_margin == Some(false) {
            "magface-thmm"
        } else {
            "magface"
        })
        .ok();
    } else if implementation.starts_with("speechbrain.nnet.losses.AngularMargin") {
        // s·(x − m·onehot): the CosFace formula with no clamp and no acos (the (1, 0) shortcut).
        "analytic"
    } else {
        let bare = implementation
            .strip_prefix("reference/")
            .unwrap_or(implementation);
        return Profile::preset(bare).ok();
    };
    Some(Profile::preset(name).expect("mapped names are presets"))
}
