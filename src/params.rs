//! The margin parameters (m1, m2, m3) and the logit scale s.

use serde::{Deserialize, Serialize};

/// Combined-margin parameters: target logit `cos(m1·θ + m2) − m3`, every logit scaled by `s`.
///
/// Units: m2 in radians; m1 dimensionless (SphereFace's angle multiplier);
/// m3 in cosine units (CosFace's additive margin); s dimensionless.
/// Domain the spec covers: m1 > 0, m2 > −π, any finite m3. A negative m2 (AdaFace's
/// norm-dependent angular term, SPEC.md §11) moves φ = m1·θ + m2 below 0 near θ = 0, where
/// cos φ is still defined: the kinks move to the other side (§11.1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub m1: f64,
    pub m2: f64,
    pub m3: f64,
    /// Scale applied to every logit after the margin. 1 for an unscaled layer.
    #[serde(default = "one")]
    pub s: f64,
}

fn one() -> f64 {
    1.0
}

impl Params {
    pub const fn new(m1: f64, m2: f64, m3: f64) -> Self {
        Params { m1, m2, m3, s: 1.0 }
    }

    pub const fn with_scale(self, s: f64) -> Self {
        Params { s, ..self }
    }

    /// (m1, m2) = (1, 0): the angle is untouched, so the margin is algebraically `c − m3`.
    pub fn is_angle_identity(&self) -> bool {
        self.m1 == 1.0 && self.m2 == 0.0
    }

    /// The parameters as a Caffe layer really ran them: its proto fields are `float`,
    /// widened to Dtype. The scale is kept: Caffe's Scale layer holds it in a Dtype blob.
    pub fn as_f32_proto(&self) -> Params {
        Params {
            m1: self.m1 as f32 as f64,
            m2: self.m2 as f32 as f64,
            m3: self.m3 as f32 as f64,
            s: self.s,
        }
    }

    /// Checks that every field is finite and that m1 > 0, m2 > −π, s > 0.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |field: &'static str, value: f64, why: &'static str| {
            Err(crate::Error::InvalidParam { field, value, why })
        };
        for (field, v) in [
            ("m1", self.m1),
            ("m2", self.m2),
            ("m3", self.m3),
            ("s", self.s),
        ] {
            if !v.is_finite() {
                return bad(field, v, "must be finite");
            }
        }
        if self.m1 <= 0.0 {
            return bad("m1", self.m1, "must be > 0");
        }
        if self.m2 <= -std::f64::consts::PI {
            return bad("m2", self.m2, "must be > -pi");
        }
        if self.s <= 0.0 {
            return bad("s", self.s, "must be > 0");
        }
        Ok(())
    }
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(m1, m2, m3) = ({}, {}, {})", self.m1, self.m2, self.m3)?;
        if self.s != 1.0 {
            write!(f, ", s = {}", self.s)?;
        }
        Ok(())
    }
}

/// The insightface paper configurations and the Caffe proto defaults, for tables and tests.
pub const PAPER_CONFIGS: [(f64, f64, f64); 8] = [
    (1.0, 0.5, 0.0),
    (1.0, 0.0, 0.35),
    (1.0, 0.3, 0.2),
    (0.9, 0.4, 0.15),
    (1.2, 0.4, 0.0),
    (1.1, 0.0, 0.35),
    (1.5, 0.0, 0.0),
    (4.0, 0.5, 0.35),
];
