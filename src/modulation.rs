//! Non-target modulation (SPEC.md §11.3): heads that change a row's non-target logits as a
//! function of that row's target.
//!
//! With c̃_j the non-target entry after the profile's own non-target treatment (clamp, round
//! trip; [`crate::margin::non_target`]), and the row's target evaluated as usual:
//!
//! ```text
//! CurricularFace   hard_j = c̃_j > τ,   τ = cos(m1·θ_y + m2) − m3   (the margin branch, before
//!                                                                   any th/mm fallback)
//!                  out_j  = c̃_j·(t + c̃_j)            where hard_j, else c̃_j
//!                  d out_j / d c̃_j = t + 2·c̃_j        (t and the mask detached)
//! inter-top-k      top_j  = j among the k largest c̃ of the row's non-targets
//!                  out_j  = cos(θ_j − m′) = c̃_j·cos m′ + sqrt(1 − c̃_j²)·sin m′   where top_j
//!                  d out_j / d c̃_j = cos m′ − sin m′·c̃_j / sqrt(1 − c̃_j²)
//!                  inactive (ESPnet before `update()`): m′ = 0, so out_j = c̃_j
//! ```
//!
//! t is the value the forward used (`t_used`, else `t_after_forward`: both known sources
//! update the running statistic before using it). A mask decision within
//! [`MASK_BAND_ULP`] ulp of its boundary (the implementation computes τ, or the k-th largest,
//! with its own roundings) is [`Treatment::Either`]: both values are accepted.

use crate::dtype::Dtype;
use crate::margin::Entry;
use crate::params::Params;
use crate::tolerance::Budget;

/// Which non-target modulation a case records.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Modulation {
    /// None: non-targets get the profile's treatment only.
    #[default]
    None,
    Curricular(Curricular),
    InterTopK(InterTopK),
}

/// CurricularFace's modulation of hard negatives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Curricular {
    /// The running statistic the forward used.
    pub t: f64,
    /// Another recorded value of it (`t_before_forward` where `t` is `t_after_forward`):
    /// only the `modulation-differs` detector uses it.
    pub t_other: Option<f64>,
    pub mask: CurricularMask,
    pub gradient: CurricularGradient,
}

/// The gradient of a hard negative c·(t + c).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurricularGradient {
    /// `t + 2c` (both sources: autograd through both factors; t detached).
    Full,
    /// `t + c`: one factor detached (a variant the detector tries).
    OneFactor,
}

/// What a non-target is compared with to be "hard".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurricularMask {
    /// The target's margin branch `cos(m1·θ + m2) − m3`, before the th/mm fallback (both
    /// sources: `mask = cos_theta > cos_theta_m`).
    MarginBranch,
    /// The target logit after the fallback (a variant the detector tries).
    AfterFallback,
}

/// The inter-top-k penalty (WeSpeaker, ESPnet).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterTopK {
    /// How many of the hardest non-targets are penalized.
    pub k: usize,
    /// The angular penalty m′ (radians).
    pub m: f64,
    /// Whether it was active in the call (ESPnet's is not until `update()`: then m′ = 0).
    pub active: bool,
}

/// How a modulation treats one non-target entry of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treatment {
    Unchanged,
    Modulated,
    /// Within the mask's rounding band: either value is accepted.
    Either,
}

/// Half-width of the undecidable band around a mask boundary, in ulp_T(1): τ (or the k-th
/// largest value) as the implementation holds it carries a few roundings of O(1) terms
/// (the product form `c·cos m − sqrt(1 − c²)·sin m`: a square, a subtraction, a sqrt, two
/// products and a difference, ½ ulp each, and the 2-ulp library cos of the reference).
pub const MASK_BAND_ULP: f64 = 4.0;

impl InterTopK {
    /// The penalty in force: m′ when active, 0 otherwise.
    pub fn m_used(&self) -> f64 {
        if self.active {
            self.m
        } else {
            0.0
        }
    }
}

impl Modulation {
    /// Whether the modulation can change any entry.
    pub fn is_active(&self) -> bool {
        match self {
            Modulation::None => false,
            Modulation::Curricular(_) => true,
            Modulation::InterTopK(x) => x.k > 0,
        }
    }

    /// The treatment of every column of a row with a target (`target`'s own slot is
    /// [`Treatment::Unchanged`]): `c_nt` holds c̃ of each column, `e` the target's evaluated
    /// entry, `p` the row's parameters.
    pub fn plan(
        &self,
        c_nt: &[f64],
        target: usize,
        e: &Entry,
        p: &Params,
        dtype: Dtype,
    ) -> Vec<Treatment> {
        let band = MASK_BAND_ULP * dtype.ulp(1.0);
        let mut out = vec![Treatment::Unchanged; c_nt.len()];
        match self {
            Modulation::None => {}
            Modulation::Curricular(cv) => {
                let tau = match cv.mask {
                    CurricularMask::MarginBranch => e.phi_raw.cos() - p.m3,
                    CurricularMask::AfterFallback => e.out,
                };
                for (j, (slot, &c)) in out.iter_mut().zip(c_nt).enumerate() {
                    if j == target || c.is_nan() {
                        continue;
                    }
                    *slot = if (c - tau).abs() <= band {
                        Treatment::Either
                    } else if c > tau {
                        Treatment::Modulated
                    } else {
                        Treatment::Unchanged
                    };
                }
            }
            Modulation::InterTopK(x) => {
                let mut order: Vec<usize> = (0..c_nt.len()).filter(|&j| j != target).collect();
                if x.k == 0 || order.is_empty() {
                    return out;
                }
                order.sort_by(|&a, &b| c_nt[b].total_cmp(&c_nt[a]));
                if x.k >= order.len() {
                    for &j in &order {
                        out[j] = Treatment::Modulated;
                    }
                    return out;
                }
                // The boundary lies between the k-th and (k+1)-th largest: entries within the
                // band of it may be in or out (torch.topk does not order ties).
                let lo = c_nt[order[x.k]];
                let hi = c_nt[order[x.k - 1]];
                for (rank, &j) in order.iter().enumerate() {
                    let c = c_nt[j];
                    let near = (c - lo).abs() <= band || (c - hi).abs() <= band;
                    out[j] = if near && (hi - lo).abs() <= band {
                        Treatment::Either
                    } else if rank < x.k {
                        Treatment::Modulated
                    } else {
                        Treatment::Unchanged
                    };
                }
            }
        }
        out
    }

    /// Value and derivative d out / d c̃ of a modulated entry at c̃ = `c`.
    pub fn value(&self, c: f64) -> (f64, f64) {
        match self {
            Modulation::None => (c, 1.0),
            Modulation::Curricular(cv) => (
                c * (cv.t + c),
                match cv.gradient {
                    CurricularGradient::Full => cv.t + 2.0 * c,
                    CurricularGradient::OneFactor => cv.t + c,
                },
            ),
            Modulation::InterTopK(x) => {
                let m = x.m_used();
                let sine = (1.0 - c * c).sqrt();
                let out = c * m.cos() + sine * m.sin();
                // 0·(−c/0) is NaN at |c| = 1, as autograd gives it (no guard on the sqrt).
                let d = m.cos() - m.sin() * c / sine;
                (out, d)
            }
        }
    }

    /// Budget (unscaled) of a modulated entry as an implementation in T computes it, at
    /// c̃ = `c` with upstream gradient `g` (top_diff times the non-target treatment's own
    /// factor). Each rounding is ½ ulp_T of its result; the budget takes one ulp per
    /// rounding, so that the f64 reference's own roundings are covered as well.
    pub fn budget(&self, c: f64, g: f64, dtype: Dtype) -> Budget {
        let u = |v: f64| dtype.ulp(v);
        match self {
            Modulation::None => Budget {
                forward: 0.0,
                backward: 0.0,
            },
            Modulation::Curricular(cv) => {
                // out = round(round(t + c)·c); grad = round(g·round(t + c)) + round(g·c).
                let tc = cv.t + c;
                Budget {
                    forward: c.abs() * u(tc) + u(c * tc),
                    backward: g.abs() * u(tc) + u(g * tc) + u(g * c) + u(g * (tc + c)),
                }
            }
            Modulation::InterTopK(x) => {
                // c·cos m′ + sqrt(1 − c²)·sin m′: the sqrt of 1 − c² (rounded twice), two
                // products and a sum; the derivative divides by the same sqrt.
                let m = x.m_used();
                let one_mc2 = 1.0 - c * c;
                let sine = one_mc2.max(0.0).sqrt();
                let d_sine = if sine > 0.0 {
                    (u(c * c) + u(one_mc2)) / (2.0 * sine)
                } else {
                    u(1.0).sqrt()
                };
                let (out, d) = self.value(c);
                let fwd = m.sin().abs() * (d_sine + u(sine)) + u(c) + u(out) + 2.0 * u(1.0);
                let rel = if sine > 0.0 { d_sine / sine } else { 0.0 };
                let t2 = (m.sin() * c / sine).abs();
                let bwd = g.abs() * (t2 * (rel + 4.0 * u(1.0)) + 2.0 * u(d)) + u(g * d);
                Budget {
                    forward: fwd,
                    backward: if bwd.is_finite() { bwd } else { f64::INFINITY },
                }
            }
        }
    }

    /// One line for reports: which modulation, with its constants.
    pub fn describe(&self) -> String {
        match self {
            Modulation::None => "no non-target modulation".into(),
            Modulation::Curricular(cv) => format!(
                "CurricularFace modulation (hard negatives c > {} become c·(t + c), t = {:?})",
                match cv.mask {
                    CurricularMask::MarginBranch => "cos(m1·θ_y + m2) − m3",
                    CurricularMask::AfterFallback => "the target logit after the fallback",
                },
                cv.t
            ),
            Modulation::InterTopK(x) => format!(
                "inter-top-k (the {} hardest non-targets get cos(θ − m′), m′ = {:?}{})",
                x.k,
                x.m,
                if x.active {
                    ""
                } else {
                    ", inactive: m′ = 0 used"
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curricular_value_and_derivative_are_the_published_formula() {
        let m = Modulation::Curricular(Curricular {
            t: 0.25,
            t_other: None,
            mask: CurricularMask::MarginBranch,
            gradient: CurricularGradient::Full,
        });
        // c(t + c) at c = 0.5: 0.5·0.75 = 0.375; derivative t + 2c = 1.25 (exact in binary).
        assert_eq!(m.value(0.5), (0.375, 1.25));
    }

    #[test]
    fn inter_top_k_inactive_is_the_identity_forward() {
        let m = Modulation::InterTopK(InterTopK {
            k: 2,
            m: 0.1,
            active: false,
        });
        assert_eq!(m.value(0.3).0, 0.3);
        // Active: cos(acos 0.3 − 0.1) from the closed form.
        let a = Modulation::InterTopK(InterTopK {
            k: 2,
            m: 0.1,
            active: true,
        });
        let want = (0.3f64.acos() - 0.1).cos();
        assert!((a.value(0.3).0 - want).abs() < 1e-15);
    }
}
