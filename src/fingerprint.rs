//! `--profile auto`: which preset an implementation's outputs behave like, and how closely.
//!
//! Every candidate (each preset, the clamping presets with other input-clamp widths, and each
//! preset with θ in the other precision) is compared with the outputs under the tolerance
//! model; candidates are ranked by the share of elements within budget, then by the worst
//! error fraction. Among candidates that fit every element, a plain preset comes before its
//! variants: in f32 "θ rounded to f32" changes nothing, and the simpler description is the true one.

use crate::compare;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::fixture::LayerCase;
use crate::profile::{InputDomain, Profile, ThetaPrecision, PRESET_NAMES};

/// How well one candidate profile fits the outputs.
#[derive(Clone, Debug)]
pub struct Fit {
    /// Share of elements within budget, in [0, 1].
    pub share: f64,
    /// The largest error fraction over all elements (+inf for a non-finite mismatch).
    pub worst: f64,
    pub profile: Profile,
}

/// Input-clamp widths tried for presets that clamp their input.
pub const CLAMP_EPS: [f64; 4] = [0.0, 1e-5, 1e-4, 1e-3];

/// The candidate profiles, presets first in [`PRESET_NAMES`] order, each followed by its variants.
pub fn candidates() -> Vec<Profile> {
    let mut out = Vec::new();
    for base in Profile::presets() {
        out.push(base.clone());
        if let InputDomain::Clamp { eps } = base.domain {
            for e in CLAMP_EPS.into_iter().filter(|&e| e != eps) {
                let mut p = base.clone();
                p.domain = InputDomain::Clamp { eps: e };
                let eps_text = if e == 0.0 {
                    "0".to_string()
                } else {
                    format!("{e:e}")
                };
                p.name = format!("{} with eps = {eps_text}", base.name);
                out.push(p);
            }
        }
        let mut p = base.clone();
        p.theta = match base.theta {
            ThetaPrecision::Native => ThetaPrecision::F32,
            ThetaPrecision::F32 => ThetaPrecision::Native,
        };
        let theta_text = if p.theta == ThetaPrecision::F32 {
            "f32"
        } else {
            "native precision"
        };
        p.name = format!("{} with theta in {theta_text}", base.name);
        out.push(p);
    }
    out
}

/// Every candidate's fit to `cases` (outputs of an implementation in `dtype`), best first.
pub fn rank(cases: &[LayerCase], dtype: Dtype) -> Result<Vec<Fit>> {
    let mut ranked = Vec::new();
    for profile in candidates() {
        let (mut within, mut total, mut worst) = (0usize, 0usize, 0.0f64);
        for case in cases {
            let r = compare::compare(case, &profile, dtype)?;
            within += r.within();
            total += r.count();
            worst = worst.max(r.max_fraction());
        }
        ranked.push(Fit {
            share: within as f64 / total.max(1) as f64,
            worst,
            profile,
        });
    }
    let is_variant = |p: &Profile| !PRESET_NAMES.contains(&p.name.as_str());
    ranked.sort_by(|a, b| {
        b.share
            .total_cmp(&a.share)
            .then_with(|| {
                if a.share == 1.0 && b.share == 1.0 {
                    is_variant(&a.profile).cmp(&is_variant(&b.profile))
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .then(a.worst.total_cmp(&b.worst))
    });
    Ok(ranked)
}
