//! A numerics profile: how one implementation patches the singularities of the combined margin.
//!
//! A profile is data, composed of orthogonal policies. The formula exists once, in
//! [`crate::margin`]; every named preset below is only a choice of policies, and
//! SPEC.md §3 cites the source each preset is taken from.

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// What happens to the input cos before `acos`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum InputDomain {
    /// No clamp: `acos` of |c| > 1 is NaN, and the derivative has poles at c = ±1.
    Raw,
    /// Clamp c to [−1 + eps, 1 − eps] (bounds rounded to the implementation's dtype).
    /// eps = 0 keeps in-range values bit-identical and only pulls |c| > 1 back.
    Clamp { eps: f64 },
}

/// Precision of θ = acos(c).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThetaPrecision {
    /// θ kept in the working precision.
    Native,
    /// θ rounded to f32 after acos, whatever the dtype: the Caffe layer's `float theta = acos(x)`.
    F32,
}

/// How the angle φ = m1·θ + m2 is handled where it leaves [0, π].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum AnglePolicy {
    /// φ as is: past π the target logit turns back up and the gradient changes sign.
    Raw,
    /// φ clamped to [lo, hi] (bounds rounded to the dtype); flat outside.
    Clamp { lo: f64, hi: f64 },
    /// insightface's `th`/`mm` fallback: where c ≤ th = cos((π − m2)/m1) the target is
    /// `c − m2·sin(m2) − m3` instead. With `easy_margin` the threshold is 0 and the
    /// fallback is `c` (the margin only applies where c > 0).
    ThresholdFallback { easy_margin: bool },
}

/// Where the gradient is infinite (c = ±1 with no domain clamp), what the exact mode returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoleRule {
    /// IEEE evaluation of the formula: ±inf, or NaN where sin φ = 0 (0·inf).
    Ieee,
    /// The limit where it exists (m1² at c = 1 with m2 = 0), else ±inf; a factor clip then bounds it.
    Limit,
}

/// What backward returns for d out / d c at a target entry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum GradientMode {
    /// The derivative of the forward as computed: 0 where a clamp makes it flat,
    /// `m1·sin φ / sqrt(1 − c²)` on the margin branch, 1 on a linear fallback branch.
    Exact { pole: PoleRule },
    /// The Caffe GPU backward: `m1·sin φ̃ · (1 − c̃²)^(−1/2)` evaluated at the clamped c̃ and φ̃,
    /// even where the clamp made the forward flat. With `rsqrt_f32` the
    /// `(1 − c²)^(−1/2)` part is computed in f32 (`powf`) whatever the dtype.
    FormulaAtClamped { rsqrt_f32: bool },
    /// Straight-through: d out / d c = 1 (the margin is detached from autograd).
    Detached,
}

/// Label handling: which label value means "ignore this row".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelPolicy {
    pub ignore: i64,
}

/// One numerics profile. Every field is an independent policy.
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
    /// OneFlow do. Then (1, 0, 0) is exactly the identity and CosFace is exactly `c − m3`.
    pub shortcut: bool,
    pub labels: LabelPolicy,
}

/// The ignore label every preset uses.
pub const IGNORE_LABEL: i64 = -1;

/// Upper bound of the `recommended` profile's backward factor (SPEC.md §3.6 argues the value).
pub const RECOMMENDED_FACTOR_MAX: f64 = 16.0;

/// The names of the presets, in the order reports list them.
pub const PRESET_NAMES: [&str; 7] = [
    "analytic",
    "caffe-cpu",
    "caffe-gpu",
    "detached",
    "arcface-thmm",
    "arcface-thmm-easy",
    "recommended",
];

impl Profile {
    /// Pure formula, no patches (the MXNet `margin_softmax` block): raw domain, native θ,
    /// raw angle, exact IEEE gradient, and the (1, 0) shortcut MXNet takes.
    pub fn analytic() -> Profile {
        Profile {
            name: "analytic".into(),
            domain: InputDomain::Raw,
            theta: ThetaPrecision::Native,
            angle: AnglePolicy::Raw,
            gradient: GradientMode::Exact {
                pole: PoleRule::Ieee,
            },
            factor_clip: None,
            shortcut: true,
            labels: LabelPolicy {
                ignore: IGNORE_LABEL,
            },
        }
    }

    /// gehaocool/CombinedMargin-caffe `Forward_cpu`/`Backward_cpu`: no clamps, `float theta`.
    pub fn caffe_cpu() -> Profile {
        Profile {
            name: "caffe-cpu".into(),
            theta: ThetaPrecision::F32,
            shortcut: false,
            ..Profile::analytic()
        }
    }

    /// The same repository's CUDA kernels: cos clamped to [−1+1e-4, 1−1e-4], φ to
    /// [0, π − 1e-4], backward formula at the clamped values with an f32 `powf`, factor in [0, 2].
    pub fn caffe_gpu() -> Profile {
        Profile {
            name: "caffe-gpu".into(),
            domain: InputDomain::Clamp { eps: 1e-4 },
            theta: ThetaPrecision::F32,
            angle: AnglePolicy::Clamp {
                lo: 0.0,
                hi: PI - 1e-4,
            },
            gradient: GradientMode::FormulaAtClamped { rsqrt_f32: true },
            factor_clip: Some((0.0, 2.0)),
            shortcut: false,
            labels: LabelPolicy {
                ignore: IGNORE_LABEL,
            },
        }
    }

    /// insightface arcface_torch `CombinedMarginLoss`/`ArcFace` at 9097cd7 and opensphere:
    /// the margin is computed under `no_grad`, so d out / d c = 1.
    pub fn detached() -> Profile {
        Profile {
            name: "detached".into(),
            gradient: GradientMode::Detached,
            ..Profile::analytic()
        }
    }

    /// insightface `ArcFace`@2e2e8c9 / `CombinedMarginLoss`@5ef9804: the `th`/`mm` fallback.
    pub fn arcface_thmm(easy_margin: bool) -> Profile {
        Profile {
            name: if easy_margin {
                "arcface-thmm-easy"
            } else {
                "arcface-thmm"
            }
            .into(),
            angle: AnglePolicy::ThresholdFallback { easy_margin },
            ..Profile::analytic()
        }
    }

    /// This crate's proposal (SPEC.md §3.6): finite for every finite input, monotone
    /// non-increasing in θ on [0, π], gradient in [0, 16].
    pub fn recommended() -> Profile {
        Profile {
            name: "recommended".into(),
            domain: InputDomain::Clamp { eps: 0.0 },
            theta: ThetaPrecision::Native,
            angle: AnglePolicy::Clamp { lo: 0.0, hi: PI },
            gradient: GradientMode::Exact {
                pole: PoleRule::Limit,
            },
            factor_clip: Some((0.0, RECOMMENDED_FACTOR_MAX)),
            shortcut: true,
            labels: LabelPolicy {
                ignore: IGNORE_LABEL,
            },
        }
    }

    /// A preset by name.
    pub fn preset(name: &str) -> Result<Profile, crate::Error> {
        Ok(match name {
            "analytic" => Profile::analytic(),
            "caffe-cpu" => Profile::caffe_cpu(),
            "caffe-gpu" => Profile::caffe_gpu(),
            "detached" => Profile::detached(),
            "arcface-thmm" => Profile::arcface_thmm(false),
            "arcface-thmm-easy" => Profile::arcface_thmm(true),
            "recommended" => Profile::recommended(),
            other => return Err(crate::Error::UnknownProfile(other.to_string())),
        })
    }

    /// Every preset, in [`PRESET_NAMES`] order.
    pub fn presets() -> Vec<Profile> {
        PRESET_NAMES
            .iter()
            .map(|n| Profile::preset(n).expect("preset names are known"))
            .collect()
    }

    /// Whether every finite input gives a finite forward and backward (for any valid params).
    /// True when the domain is clamped and the gradient is bounded by a clip, or detached.
    pub fn promises_finite(&self) -> bool {
        let domain_ok = matches!(self.domain, InputDomain::Clamp { .. });
        let grad_ok = match self.gradient {
            GradientMode::Detached => true,
            GradientMode::FormulaAtClamped { .. } | GradientMode::Exact { .. } => {
                self.factor_clip.is_some()
                    || matches!(self.domain, InputDomain::Clamp { eps } if eps > 0.0)
            }
        };
        domain_ok && grad_ok
    }

    /// Whether the forward is promised monotone non-increasing in θ over [0, π] for every valid
    /// (m1, m2, m3): the angle never passes π unclamped.
    pub fn promises_monotone(&self) -> bool {
        match self.angle {
            AnglePolicy::Clamp { hi, .. } => hi <= PI,
            AnglePolicy::ThresholdFallback { .. } => false,
            AnglePolicy::Raw => false,
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}
