//! The CUDA kernels of `kernels/` seen from Rust: the profile struct they take, their host
//! build (for CI without a GPU) and their device launch (cudarc, NVRTC at run time).
//!
//! A [`Profile`] is data on the Rust side; the kernels take it as [`KernelProfile`], a
//! `#[repr(C)]` mirror of `struct cm_profile` in `kernels/combined_margin.cuh`. The only way to
//! build one is [`KernelProfile::new`], which reads the policies from the `Profile`, rounds the
//! parameters to the kernel's dtype and takes the comparison constants from
//! [`margin::Constants`] — so the kernels never recompute a threshold or a clamp bound, and
//! their branch decisions agree with the reference exactly (SPEC.md §9).

pub mod device;
pub mod host;

use crate::dtype::Dtype;
use crate::margin::Constants;
use crate::params::Params;
use crate::profile::{AnglePolicy, GradientMode, InputDomain, PoleRule, Profile, ThetaPrecision};

/// Policy codes, the `CM_*` macros of `kernels/combined_margin.cuh`.
pub mod code {
    pub const DOMAIN_RAW: i32 = 0;
    pub const DOMAIN_CLAMP: i32 = 1;
    pub const THETA_NATIVE: i32 = 0;
    pub const THETA_F32: i32 = 1;
    pub const ANGLE_RAW: i32 = 0;
    pub const ANGLE_CLAMP: i32 = 1;
    pub const ANGLE_THRESHOLD: i32 = 2;
    pub const GRAD_EXACT: i32 = 0;
    pub const GRAD_FORMULA_AT_CLAMPED: i32 = 1;
    pub const GRAD_DETACHED: i32 = 2;
    pub const POLE_IEEE: i32 = 0;
    pub const POLE_LIMIT: i32 = 1;
    pub const BRANCH_MARGIN: i32 = 0;
    pub const BRANCH_FALLBACK: i32 = 1;
    pub const BRANCH_SHORTCUT: i32 = 2;
    /// Row status: the target was transformed.
    pub const ROW_TARGET: i32 = 0;
    /// Row status: the label is the ignore value; nothing was touched.
    pub const ROW_IGNORED: i32 = 1;
    /// Row status: the label is outside [0, C) and not the ignore value; nothing was indexed.
    pub const ROW_BAD_LABEL: i32 = 2;
}

/// `struct cm_profile` of `kernels/combined_margin.cuh`, field for field (144 bytes).
/// Every f64 is already rounded to the kernel's dtype.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelProfile {
    pub m1: f64,
    pub m2: f64,
    pub m3: f64,
    pub s: f64,
    pub c_lo: f64,
    pub c_hi: f64,
    pub phi_lo: f64,
    pub phi_hi: f64,
    pub threshold: f64,
    /// `m2·sin(m2)` in f64, the th/mm fallback's offset exactly as `margin::eval_with` forms it.
    pub fallback_mm: f64,
    pub clip_lo: f64,
    pub clip_hi: f64,
    pub ignore_label: i64,
    pub domain: i32,
    pub theta: i32,
    pub angle: i32,
    pub easy_margin: i32,
    pub has_threshold: i32,
    pub gradient: i32,
    pub pole: i32,
    pub rsqrt_f32: i32,
    pub has_clip: i32,
    pub shortcut: i32,
}

/// Size of `cm_profile`, asserted by `static_assert` in the header as well.
pub const KERNEL_PROFILE_SIZE: usize = 144;
const _: () = assert!(std::mem::size_of::<KernelProfile>() == KERNEL_PROFILE_SIZE);

// SAFETY: plain #[repr(C)] data of f64/i64/i32 with no padding-sensitive invariants; the
// kernels take it by value with the same layout (checked against the C++ compiler's offsets).
unsafe impl cudarc::driver::DeviceRepr for KernelProfile {}

/// The parameters as a kernel in `dtype` holds them: each field rounded to the dtype.
/// The reference must be evaluated at these, since they are what the kernel computes with.
pub fn params_as(p: &Params, dtype: Dtype) -> Params {
    Params {
        m1: dtype.round(p.m1),
        m2: dtype.round(p.m2),
        m3: dtype.round(p.m3),
        s: dtype.round(p.s),
    }
}

impl KernelProfile {
    /// The kernel argument for `profile` at `p` (rounded with [`params_as`]) in `dtype`.
    pub fn new(profile: &Profile, p: &Params, dtype: Dtype) -> KernelProfile {
        let p = params_as(p, dtype);
        let k = Constants::new(profile, &p, dtype);
        let (domain, c_lo, c_hi) = match profile.domain {
            InputDomain::Raw => (code::DOMAIN_RAW, k.c_lo, k.c_hi),
            InputDomain::Clamp { .. } => (code::DOMAIN_CLAMP, k.c_lo, k.c_hi),
        };
        let (angle, easy_margin) = match profile.angle {
            AnglePolicy::Raw => (code::ANGLE_RAW, false),
            AnglePolicy::Clamp { .. } => (code::ANGLE_CLAMP, false),
            AnglePolicy::ThresholdFallback { easy_margin } => (code::ANGLE_THRESHOLD, easy_margin),
        };
        let (gradient, pole, rsqrt_f32) = match profile.gradient {
            GradientMode::Exact { pole } => (
                code::GRAD_EXACT,
                match pole {
                    PoleRule::Ieee => code::POLE_IEEE,
                    PoleRule::Limit => code::POLE_LIMIT,
                },
                false,
            ),
            GradientMode::FormulaAtClamped { rsqrt_f32 } => {
                (code::GRAD_FORMULA_AT_CLAMPED, code::POLE_IEEE, rsqrt_f32)
            }
            GradientMode::Detached => (code::GRAD_DETACHED, code::POLE_IEEE, false),
        };
        // The clip bounds are compared in the kernel's dtype; Caffe's literal 2 and 0 (and 16)
        // are exact in both.
        let (has_clip, clip_lo, clip_hi) = match profile.factor_clip {
            Some((lo, hi)) => (true, lo, hi),
            None => (false, 0.0, 0.0),
        };
        KernelProfile {
            m1: p.m1,
            m2: p.m2,
            m3: p.m3,
            s: p.s,
            c_lo,
            c_hi,
            phi_lo: k.phi_lo,
            phi_hi: k.phi_hi,
            threshold: k.threshold.unwrap_or(0.0),
            fallback_mm: p.m2 * p.m2.sin(),
            clip_lo,
            clip_hi,
            ignore_label: profile.labels.ignore,
            domain,
            theta: match profile.theta {
                ThetaPrecision::Native => code::THETA_NATIVE,
                ThetaPrecision::F32 => code::THETA_F32,
            },
            angle,
            easy_margin: easy_margin as i32,
            has_threshold: k.threshold.is_some() as i32,
            gradient,
            pole,
            rsqrt_f32: rsqrt_f32 as i32,
            has_clip: has_clip as i32,
            shortcut: profile.shortcut as i32,
        }
    }

    /// The parameters the kernel computes with (rounded to its dtype).
    pub fn params(&self) -> Params {
        Params {
            m1: self.m1,
            m2: self.m2,
            m3: self.m3,
            s: self.s,
        }
    }

    /// Byte offsets of the fields in declaration order, as Rust lays them out.
    pub fn field_offsets() -> [usize; 23] {
        use std::mem::offset_of;
        [
            offset_of!(KernelProfile, m1),
            offset_of!(KernelProfile, m2),
            offset_of!(KernelProfile, m3),
            offset_of!(KernelProfile, s),
            offset_of!(KernelProfile, c_lo),
            offset_of!(KernelProfile, c_hi),
            offset_of!(KernelProfile, phi_lo),
            offset_of!(KernelProfile, phi_hi),
            offset_of!(KernelProfile, threshold),
            offset_of!(KernelProfile, fallback_mm),
            offset_of!(KernelProfile, clip_lo),
            offset_of!(KernelProfile, clip_hi),
            offset_of!(KernelProfile, ignore_label),
            offset_of!(KernelProfile, domain),
            offset_of!(KernelProfile, theta),
            offset_of!(KernelProfile, angle),
            offset_of!(KernelProfile, easy_margin),
            offset_of!(KernelProfile, has_threshold),
            offset_of!(KernelProfile, gradient),
            offset_of!(KernelProfile, pole),
            offset_of!(KernelProfile, rsqrt_f32),
            offset_of!(KernelProfile, has_clip),
            offset_of!(KernelProfile, shortcut),
        ]
    }
}

/// A float type the kernels are instantiated for.
pub trait KernelFloat:
    cudarc::driver::DeviceRepr
    + cudarc::driver::ValidAsZeroBits
    + Copy
    + Default
    + PartialEq
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const DTYPE: Dtype;
    /// Suffix of the kernels' names (`_f32`, `_f64`).
    const SUFFIX: &'static str;
    fn to_f64(self) -> f64;
    /// Rounds to this type (round-to-nearest-even).
    fn from_f64(x: f64) -> Self;
    /// A NaN with a payload no arithmetic produces, to poison buffers.
    fn poison() -> Self;
    fn is_poison(self) -> bool;
}

impl KernelFloat for f32 {
    const DTYPE: Dtype = Dtype::F32;
    const SUFFIX: &'static str = "_f32";
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    fn poison() -> f32 {
        f32::from_bits(0x7fa5_a5a5)
    }
    fn is_poison(self) -> bool {
        self.to_bits() == 0x7fa5_a5a5
    }
}

impl KernelFloat for f64 {
    const DTYPE: Dtype = Dtype::F64;
    const SUFFIX: &'static str = "_f64";
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(x: f64) -> f64 {
        x
    }
    fn poison() -> f64 {
        f64::from_bits(0x7ff4_a5a5_a5a5_a5a5)
    }
    fn is_poison(self) -> bool {
        self.to_bits() == 0x7ff4_a5a5_a5a5_a5a5
    }
}
