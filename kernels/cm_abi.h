// The host<->kernel ABI, declared once. build.rs reads this file and generates the Rust side
// (src/cuda/abi.rs includes it): `KernelProfile` (#[repr(C)], field for field), its field
// list and offsets, and the `code` module. The C side expands the same lists below. Format,
// for the generator: one `F64(name)` / `I32(name)` per line inside CM_PROFILE_FIELDS, and
// `#define CM_<NAME> <integer>` lines between the @codes markers.
#ifndef CM_ABI_H
#define CM_ABI_H

// A `Profile` (src/profile.rs) with its `Constants` (src/margin.rs) and `Params`, as the host
// built it for one dtype (src/cuda/mod.rs `KernelProfile::new`). Every double is already
// rounded to the kernel's dtype, so the conversion to T is exact. Doubles first, then ints,
// an even number of them: no padding on either side.
#define CM_PROFILE_FIELDS(F64, I32) \
    F64(m1)                         \
    F64(m2)                         \
    F64(m3)                         \
    F64(s)                          \
    F64(c_lo)                       \
    F64(c_hi)                       \
    F64(phi_lo)                     \
    F64(phi_hi)                     \
    F64(threshold)                  \
    F64(fallback_mm)                \
    F64(clip_lo)                    \
    F64(clip_hi)                    \
    F64(out_clip)                   \
    F64(cos_m)                      \
    F64(sin_m)                      \
    F64(sine_eps)                   \
    I32(domain)                     \
    I32(clamp_all_entries)          \
    I32(bound_gradient)             \
    I32(theta)                      \
    I32(angle)                      \
    I32(has_threshold)              \
    I32(gradient)                   \
    I32(pole)                       \
    I32(exact_form)                 \
    I32(rsqrt_f32)                  \
    I32(has_clip)                   \
    I32(shortcut)                   \
    I32(round_trip_fallback)        \
    I32(round_trip_non_targets)     \
    I32(labels)                     \
    I32(fallback_m3)                \
    I32(eval_form)                  \
    I32(sine_guard)                 \
    I32(whole_matrix)               \
    I32(reserved)

// @codes begin
// InputDomain
#define CM_DOMAIN_RAW 0
#define CM_DOMAIN_CLAMP 1
// BoundGradient
#define CM_BOUND_PASS 0
#define CM_BOUND_ZERO 1
#define CM_BOUND_HALF 2
// EvalForm
#define CM_EVAL_ACOS_COS 0
#define CM_EVAL_TRIG 1
// SineGuard
#define CM_GUARD_UNGUARDED 0
#define CM_GUARD_CLAMP 1
#define CM_GUARD_EPSILON 2
#define CM_GUARD_SAFE 3
// ThetaPrecision
#define CM_THETA_NATIVE 0
#define CM_THETA_F32 1
// AnglePolicy
#define CM_ANGLE_RAW 0
#define CM_ANGLE_CLAMP 1
#define CM_ANGLE_THRESHOLD_COS 2
#define CM_ANGLE_THRESHOLD_ANGLE 3
#define CM_ANGLE_EASY 4
#define CM_ANGLE_MONOTONE 5
// GradientMode
#define CM_GRAD_EXACT 0
#define CM_GRAD_FORMULA_AT_CLAMPED 1
#define CM_GRAD_DETACHED 2
// PoleRule
#define CM_POLE_IEEE 0
#define CM_POLE_LIMIT 1
// ExactForm
#define CM_FORM_FUSED 0
#define CM_FORM_CHAIN 1
#define CM_FORM_SIN_THETA 2
// LabelPolicy
#define CM_LABELS_IGNORE_MINUS_ONE 0
#define CM_LABELS_IGNORE_OUT_OF_RANGE 1
#define CM_LABELS_MINUS_ONE_NO_TARGET 2
#define CM_LABELS_NO_IGNORE 3
// margin::Branch
#define CM_BRANCH_MARGIN 0
#define CM_BRANCH_FALLBACK 1
#define CM_BRANCH_SHORTCUT 2
// Row status written by every kernel, one int per row (layer::Row, or a refused label).
#define CM_ROW_TARGET 0
#define CM_ROW_IGNORED 1
#define CM_ROW_BAD_LABEL 2
#define CM_ROW_NO_TARGET 3
// @codes end

#define CM_DECLARE_F64(name) double name;
#define CM_DECLARE_I32(name) int name;
struct cm_profile {
    CM_PROFILE_FIELDS(CM_DECLARE_F64, CM_DECLARE_I32)
};
#undef CM_DECLARE_F64
#undef CM_DECLARE_I32

// Per-row parameters (AdaFace, ElasticFace, MagFace: SPEC.md §11.1). Each quantity that may
// vary by row is a pointer and a row stride, in elements: row i reads ptr[i * stride]; stride 0
// is one value for every row; a null pointer leaves the profile's scalar in force. m1, m2, m3
// are the parameters (already rounded to the dtype, as cm_profile's); the rest are the
// comparison constants that depend on them (threshold, fallback_mm, cos_m, sin_m and
// has_threshold as 0.0 / 1.0), computed by the host per row with margin::Constants exactly as
// for a scalar profile, so the kernels still never compute a threshold. Doubles, as the
// profile's. src/cuda/mod.rs mirrors it (`KernelRows`, checked against the C++ layout).
#define CM_ROW_FIELDS(X) \
    X(m1)                \
    X(m2)                \
    X(m3)                \
    X(threshold)         \
    X(fallback_mm)       \
    X(cos_m)             \
    X(sin_m)             \
    X(has_threshold)

struct cm_row_param {
    const double* ptr;
    long long stride;
};

#define CM_DECLARE_ROW(name) cm_row_param name;
struct cm_rows {
    CM_ROW_FIELDS(CM_DECLARE_ROW)
};
#undef CM_DECLARE_ROW

#endif  // CM_ABI_H
