// The combined margin of one target entry under a numerics profile, for float and double,
// as __host__ __device__ inline functions: the CUDA kernels (combined_margin.cu) and the host
// build that CI checks against the f64 reference (host_shim.cpp) compile this one text.
//
// It mirrors src/margin.rs (`eval_with`, `Constants`, `inv_sin_theta`) operation by operation,
// in the kernel's dtype T instead of f64:
//
//   c~  = clamp(c, c_lo, c_hi)              comparisons: NaN passes through
//   th  = acos(c~)                          rounded to float if theta == CM_THETA_F32
//   phi = m1*th + m2                        a multiply and an add (the kernels build with
//                                           --fmad=false, so no FMA contraction here)
//   out = cos(phi) - m3                     or the th/mm fallback, or the (1, 0) shortcut
//   g   = m1*sin(phi) * (1 - c~^2)^(-1/2)   under the gradient mode, then the factor clip
//
// The comparison constants (clamp bounds, th/mm threshold) are NOT computed here: the host
// computes them once with `margin::Constants::new` (dtype-rounded) and passes them in the
// cm_profile struct, so every branch decision agrees with the reference bit for bit.
//
// NVRTC defines __CUDACC__ and has no libc headers: on the device side only the CUDA math
// builtins are used (acos, cos, sin, sqrt, pow and their f-variants need no include there).
#ifndef COMBINED_MARGIN_CUH
#define COMBINED_MARGIN_CUH

#ifndef __CUDACC__
#include <cmath>
#include <cstring>
#define __host__
#define __device__
#endif

#define CM_HD __host__ __device__ inline

// The ABI (struct cm_profile and every CM_* policy code) is declared once, in cm_abi.h;
// build.rs generates the Rust mirror from it.
#include "cm_abi.h"

// The math library, by dtype. Unqualified names: libm's on the host, the CUDA Math API's on
// the device.
CM_HD float cm_acos(float x) { return acosf(x); }
CM_HD double cm_acos(double x) { return acos(x); }
CM_HD float cm_cos(float x) { return cosf(x); }
CM_HD double cm_cos(double x) { return cos(x); }
CM_HD float cm_sin(float x) { return sinf(x); }
CM_HD double cm_sin(double x) { return sin(x); }
CM_HD float cm_sqrt(float x) { return sqrtf(x); }
CM_HD double cm_sqrt(double x) { return sqrt(x); }
CM_HD float cm_fabs(float x) { return fabsf(x); }
CM_HD double cm_fabs(double x) { return fabs(x); }

// +inf without libc on the device (NVRTC has no HUGE_VAL), from <cmath> on the host.
template <typename T> CM_HD T cm_inf();
#if defined(__CUDA_ARCH__)
template <> CM_HD float cm_inf<float>() { return __int_as_float(0x7f800000); }
template <> CM_HD double cm_inf<double>() { return __longlong_as_double(0x7ff0000000000000LL); }
#else
template <> CM_HD float cm_inf<float>() { return HUGE_VALF; }
template <> CM_HD double cm_inf<double>() { return HUGE_VAL; }
#endif

template <typename T> CM_HD bool cm_isnan(T x) { return x != x; }
template <typename T> CM_HD bool cm_isinf(T x) { return x == cm_inf<T>() || x == -cm_inf<T>(); }

// Rust's f64::signum: ±1 by the sign bit (also for ±0 and ±inf), NaN for NaN.
template <typename T> CM_HD T cm_signum(T x) {
    if (cm_isnan(x)) return x;
    if (x > T(0)) return T(1);
    if (x < T(0)) return T(-1);
    return (T(1) / x > T(0)) ? T(1) : T(-1);
}

// f64::max / f64::min as Rust defines them: a NaN operand yields the other operand.
template <typename T> CM_HD T cm_max(T a, T b) {
    if (cm_isnan(a)) return b;
    if (cm_isnan(b)) return a;
    return a > b ? a : b;
}
template <typename T> CM_HD T cm_min(T a, T b) {
    if (cm_isnan(a)) return b;
    if (cm_isnan(b)) return a;
    return a < b ? a : b;
}

// One evaluated target entry (the part of margin::Entry the kernels and checks need).
template <typename T> struct cm_entry {
    T out;     // margin-adjusted, unscaled logit
    T factor;  // d out / d c after the factor clip
    int branch;  // CM_BRANCH_*
    int domain_clamped;
    int angle_clamped;
};

// margin::inv_sin_theta: (1 - c^2)^(-1/2). The f32 form is Caffe's
// powf(1 - powf(c, 2), -0.5): c rounded to float, its square rounded to float (a float product
// is the exact product rounded once, as the reference's f64 product then f32 cast), 1 - sq,
// then powf. The native form uses (1 - c)(1 + c), free of cancellation near ±1.
template <typename T> CM_HD T cm_inv_sin_theta(T c, int rsqrt_f32) {
    if (rsqrt_f32) {
        float c32 = (float)c;
        float sq = c32 * c32;
        return (T)powf(1.0f - sq, -0.5f);
    }
    T one_minus = (T(1) - c) * (T(1) + c);
    return T(1) / cm_sqrt(one_minus);
}

// margin::pole_factor: m1*sin(phi)/sqrt(1 - c^2) at c = ±1 under the pole rule. The limit test
// uses the reference's constant 4*f64::EPSILON whatever T is, so both decide alike.
template <typename T> CM_HD T cm_pole_factor(T theta, T phi, T m1, int rule) {
    T s = cm_sin(phi);
    if (rule == CM_POLE_IEEE) return m1 * s * cm_inf<T>();
    const T four_eps = (T)(4.0 * 2.220446049250313080847e-16);
    if (cm_fabs(s) <= four_eps * cm_max(cm_fabs(phi), T(1))) {
        return m1 * m1 * cm_cos(phi) / cm_cos(theta);
    }
    return cm_signum(s) * cm_inf<T>();
}

template <typename T> CM_HD T cm_clip(T g, const cm_profile& pr) {
    if (!pr.has_clip) return g;
    // Comparisons, as Caffe's `d > 2 ? 2 : d; d < 0 ? 0 : d`: NaN stays NaN.
    const T lo = (T)pr.clip_lo, hi = (T)pr.clip_hi;
    if (g > hi) return hi;
    if (g < lo) return lo;
    return g;
}

template <typename T>
CM_HD cm_entry<T> cm_finish(T out, T g, int branch, int domain_clamped, int angle_clamped,
                            const cm_profile& pr) {
    cm_entry<T> e;
    // The output clip [-b, b] (b = +inf: none), flat outside; as clamp's backward, a NaN
    // logit stays NaN with gradient 0.
    const T b = (T)pr.out_clip;
    if (out > b) {
        out = b;
        g = T(0);
    } else if (out < -b) {
        out = -b;
        g = T(0);
    } else if (!cm_isinf(b) && cm_isnan(out)) {
        g = T(0);
    }
    e.out = out;
    e.factor = cm_clip(g, pr);
    e.branch = branch;
    e.domain_clamped = domain_clamped;
    e.angle_clamped = angle_clamped;
    return e;
}

// margin::Constants::clamp_input: (c~, gradient multiplier: 0 outside, the bound rule's
// 1, 1/2 or 0 exactly at a bound, 1 inside). NaN passes through as NaN.
template <typename T> CM_HD T cm_clamp_input(T c, const cm_profile& pr, T* mul) {
    *mul = T(1);
    if (pr.domain != CM_DOMAIN_CLAMP) return c;
    const T c_lo = (T)pr.c_lo, c_hi = (T)pr.c_hi;
    if (c < c_lo) {
        *mul = T(0);
        return c_lo;
    }
    if (c > c_hi) {
        *mul = T(0);
        return c_hi;
    }
    if (c == c_lo || c == c_hi) {
        *mul = pr.bound_gradient == CM_BOUND_ZERO   ? T(0)
               : pr.bound_gradient == CM_BOUND_HALF ? T(0.5)
                                                    : T(1);
    }
    return c;
}

// margin::guarded_sine: sin(theta) of the trig-identity form under its guard, its derivative
// d sin(theta)/dc, and whether a zero upstream gradient still gives NaN (0*inf) here.
template <typename T> CM_HD T cm_guarded_sine(T c, const cm_profile& pr, T* ds, int* singular) {
    T x = (T(1) - c) * (T(1) + c);
    if (pr.sine_guard == CM_GUARD_CLAMP && x < T(0)) {
        *ds = T(0);
        *singular = 0;
        return T(0);
    }
    if (pr.sine_guard == CM_GUARD_SAFE && !(x > T(0))) {
        *ds = T(0);
        *singular = 0;
        return T(0);
    }
    if (pr.sine_guard == CM_GUARD_EPSILON) x = x + (T)pr.sine_eps;
    const T s = cm_sqrt(x);
    *ds = -c / s;
    *singular = !(x > T(0));
    return s;
}

// margin::round_trip_factor: d cos(acos c)/dc = sin(theta)/sqrt(1 - c^2), 1 inside (-1, 1);
// at +-1 sin(acos c)/0 under IEEE evaluation (NaN at +1, +-inf at -1), the limit 1 under
// CM_POLE_LIMIT; NaN beyond.
template <typename T> CM_HD T cm_round_trip_factor(T c_eff, const cm_profile& pr) {
    // Outside [-1, 1] (unclamped) sin(acos c) is NaN.
    if (pr.gradient == CM_GRAD_EXACT && cm_fabs(c_eff) > T(1)) return cm_inf<T>() - cm_inf<T>();
    if (pr.gradient == CM_GRAD_EXACT && cm_fabs(c_eff) == T(1)) {
        // sin(theta)/0 written as sin(theta)*inf (the same IEEE result, no division by zero).
        return pr.pole == CM_POLE_IEEE ? cm_sin(cm_acos(c_eff)) * cm_inf<T>() : T(1);
    }
    return T(1);
}

// The profile of row i under per-row parameters: a copy of pr with every quantity of `rows`
// that has a pointer replaced by row i's value (ptr[i * stride]; stride 0: the one value).
// With no pointer set this is pr itself, so the scalar path is unchanged bit for bit.
CM_HD double cm_row_value(const cm_row_param& p, long long i, double scalar) {
    return p.ptr ? p.ptr[i * p.stride] : scalar;
}
CM_HD cm_profile cm_row_profile(const cm_profile& pr, const cm_rows& rows, long long i) {
    cm_profile q = pr;
    q.m1 = cm_row_value(rows.m1, i, pr.m1);
    q.m2 = cm_row_value(rows.m2, i, pr.m2);
    q.m3 = cm_row_value(rows.m3, i, pr.m3);
    q.threshold = cm_row_value(rows.threshold, i, pr.threshold);
    q.fallback_mm = cm_row_value(rows.fallback_mm, i, pr.fallback_mm);
    q.cos_m = cm_row_value(rows.cos_m, i, pr.cos_m);
    q.sin_m = cm_row_value(rows.sin_m, i, pr.sin_m);
    q.has_threshold = cm_row_value(rows.has_threshold, i, (double)pr.has_threshold) != 0.0;
    return q;
}

// margin::eval_with in T.
template <typename T> CM_HD cm_entry<T> cm_eval(T c, const cm_profile& pr) {
    const T m1 = (T)pr.m1, m2 = (T)pr.m2, m3 = (T)pr.m3;
    const double pi = 3.141592653589793115997963468544185161590576171875;

    T bound_mul;
    const T c_eff = cm_clamp_input(c, pr, &bound_mul);
    const int domain_clamped = bound_mul == T(0);
    const int exact = pr.gradient == CM_GRAD_EXACT;
    // The gradient of a linear branch (shortcut, fallback): 1, 0 where the clamp is flat, 1/2
    // at a bound under JAX's clip.
    const T linear = exact ? bound_mul : T(1);

    if (pr.shortcut && m1 == T(1) && m2 == T(0)) {
        return cm_finish(c_eff - m3, linear, CM_BRANCH_SHORTCUT, domain_clamped, 0, pr);
    }

    T theta = cm_acos(c_eff);
    if (pr.theta == CM_THETA_F32) theta = (T)(float)theta;
    T phi_raw = m1 * theta + m2;

    int falls_back = 0;
    if (pr.has_threshold) {
        if (pr.angle == CM_ANGLE_THRESHOLD_ANGLE) {
            // Margin branch iff theta <= (pi - m2)/m1 as the dtype holds both.
            falls_back = theta > (T)pr.threshold;
        } else {
            // Margin branch iff c~ > th (strict, as torch.where(cos > th, ...)).
            falls_back = !(c_eff > (T)pr.threshold) && !cm_isnan(c_eff);
        }
    }
    if (falls_back) {
        T base = c_eff, g = linear;
        if (pr.round_trip_fallback) {
            base = cm_cos(cm_acos(c_eff));
            if (g != T(0)) g = cm_round_trip_factor(c_eff, pr) * (exact ? bound_mul : T(1));
        }
        // The line c~ - offset (- m3) in double with the host's offset (m2*sin(m2), a fitted
        // kappa, or 0 for a plain fallback): the reference's operations exactly, then one
        // rounding to T. (In T with the device's sin, the error reaches 1.2 ulp against a
        // budget of 1; see SPEC.md §9.)
        const double m3_fb = pr.fallback_m3 ? pr.m3 : 0.0;
        const T out =
            pr.angle == CM_ANGLE_EASY ? base : (T)(((double)base - pr.fallback_mm) - m3_fb);
        return cm_finish(out, g, CM_BRANCH_FALLBACK, domain_clamped, 0, pr);
    }

    // The angle-addition identity c~ cos(m2) - sin(theta) sin(m2) - m3 (m1 = 1 only).
    if (pr.eval_form == CM_EVAL_TRIG && m1 == T(1)) {
        T ds;
        int singular;
        const T st = cm_guarded_sine(c_eff, pr, &ds, &singular);
        const T cos_m = (T)pr.cos_m, sin_m = (T)pr.sin_m;
        const T out = c_eff * cos_m - st * sin_m - m3;
        const T formula = cos_m - sin_m * ds;
        T g;
        if (pr.gradient == CM_GRAD_DETACHED) {
            g = T(1);
        } else if (exact) {
            g = domain_clamped ? T(0) : formula * bound_mul;
        } else {
            g = formula;
        }
        return cm_finish(out, g, CM_BRANCH_MARGIN, domain_clamped, 0, pr);
    }

    T phi = phi_raw;
    if (pr.angle == CM_ANGLE_CLAMP) {
        phi = cm_min(cm_max(phi_raw, (T)pr.phi_lo), (T)pr.phi_hi);
        if (cm_isnan(phi_raw)) phi = phi_raw;
    }
    const int angle_clamped = (phi != phi_raw && !cm_isnan(phi_raw)) ? 1 : 0;
    // The monotone extension: on [k pi, (k+1) pi), (-1)^k cos(phi) - 2k, derivative sign (-1)^k.
    T sign = T(1), shift = T(0);
    if (pr.angle == CM_ANGLE_MONOTONE && (double)phi > pi) {
        const double k = floor((double)phi / pi);
        sign = fmod(k, 2.0) == 0.0 ? T(1) : T(-1);
        shift = (T)(2.0 * k);
    }
    const T out = sign * cm_cos(phi) - shift - m3;

    T g;
    if (pr.gradient == CM_GRAD_DETACHED) {
        g = T(1);
    } else if (pr.gradient == CM_GRAD_EXACT && (domain_clamped || angle_clamped)) {
        g = T(0);
    } else {
        const int rsqrt_f32 = pr.gradient == CM_GRAD_FORMULA_AT_CLAMPED && pr.rsqrt_f32;
        const int rule = pr.gradient == CM_GRAD_EXACT ? pr.pole : CM_POLE_IEEE;
        const int sin_theta = pr.gradient == CM_GRAD_EXACT && pr.exact_form == CM_FORM_SIN_THETA;
        // 1/sin(theta) of the saved theta, or (1 - c^2)^(-1/2).
        const T r = sin_theta ? T(1) / cm_sin(theta) : cm_inv_sin_theta(c_eff, rsqrt_f32);
        g = cm_isinf(r) ? sign * cm_pole_factor(theta, phi, m1, rule)
                        : sign * m1 * cm_sin(phi) * r;
        if (exact && bound_mul == T(0.5)) g = T(0.5) * g;
    }
    return cm_finish(out, g, CM_BRANCH_MARGIN, domain_clamped, angle_clamped, pr);
}

// margin::non_target in T: (out, factor) of a non-target entry, or of any entry of a row
// without a target (CM_ROW_NO_TARGET).
template <typename T> struct cm_plain {
    T out;
    T factor;
};
// Whether the profile touches non-targets at all (a clamp of every entry, the round trip, or
// the margin form evaluated over the whole matrix).
CM_HD int cm_transforms_non_targets(const cm_profile& pr) {
    return (pr.domain == CM_DOMAIN_CLAMP && pr.clamp_all_entries) || pr.round_trip_non_targets ||
           (pr.eval_form == CM_EVAL_TRIG && pr.whole_matrix);
}
template <typename T> CM_HD cm_plain<T> cm_non_target(T c, const cm_profile& pr) {
    cm_plain<T> r;
    r.out = c;
    r.factor = T(1);
    if (!cm_transforms_non_targets(pr)) return r;
    T mul = T(1);
    const T c_eff = pr.clamp_all_entries ? cm_clamp_input(c, pr, &mul) : c;
    const T g = pr.gradient == CM_GRAD_EXACT ? mul : T(1);
    if (pr.round_trip_non_targets) {
        r.out = cm_cos(cm_acos(c_eff));
        r.factor = g == T(0) ? g : cm_round_trip_factor(c_eff, pr) * (pr.gradient == CM_GRAD_EXACT ? mul : T(1));
    } else {
        r.out = c_eff;
        r.factor = g;
    }
    // The whole-matrix form's zero-weighted margin gradient: 0*(inf or NaN) = NaN at the
    // guard's singular points, unless the margin is detached.
    if (pr.eval_form == CM_EVAL_TRIG && pr.whole_matrix && pr.gradient != CM_GRAD_DETACHED) {
        T ds;
        int singular;
        cm_guarded_sine(c_eff, pr, &ds, &singular);
        if (singular) r.factor = cm_inf<T>() - cm_inf<T>();
    }
    return r;
}

// CurricularFace's modulation of hard negatives (src/modulation.rs, SPEC.md §11.3). A row's
// non-target c~ (after the profile's own non-target treatment, cm_non_target) is hard iff
// c~ > tau, tau = cos(m1*theta_y + m2) - m3 the target's margin branch BEFORE any th/mm
// fallback (both sources: mask = cos_theta > cos_theta_m). A hard negative becomes
// c~*(t + c~) with d/dc~ = t + 2c~, computed as autograd does: (t + c~) + c~; t (the running
// statistic the forward used) and the mask are detached. The reference decides the mask with
// a band of a few ulp around tau (modulation::MASK_BAND_ULP), so tau's own roundings here
// (acos, cos in T) may put a boundary entry on either side.
template <typename T> CM_HD T cm_curricular_tau(T c_target, const cm_profile& pr) {
    T mul;
    const T c_eff = cm_clamp_input(c_target, pr, &mul);
    T theta = cm_acos(c_eff);
    if (pr.theta == CM_THETA_F32) theta = (T)(float)theta;
    return cm_cos((T)pr.m1 * theta + (T)pr.m2) - (T)pr.m3;
}

// One non-target entry of a row under CurricularFace: (out, factor) and whether it was hard.
// A NaN c~ is never hard; where the treatment blocks the gradient (factor 0) it stays 0.
template <typename T>
CM_HD cm_plain<T> cm_curricular(T c, T t, T tau, const cm_profile& pr, int* hard) {
    cm_plain<T> r = cm_non_target<T>(c, pr);
    *hard = r.out > tau;
    if (!*hard) return r;
    const T ct = r.out, f = r.factor;
    const T tc = t + ct;
    r.out = ct * tc;
    r.factor = f == T(0) ? T(0) : f * (tc + ct);
    return r;
}

// Inter-top-k (WeSpeaker ArcMarginProduct_intertopk_subcenter and ESPnet's copy of it;
// src/modulation.rs, SPEC.md §11.3). In a row with a target y, the k non-targets with the
// largest c~ (after the profile's non-target treatment, cm_non_target) become
//
//   out = cos(theta - m') = c~*cos m' + sqrt(1 - c~^2)*sin m'
//   d out / d c~ = cos m' - (sin m' * c~) / sqrt(1 - c~^2)
//
// with no guard on the sqrt, as in both sources: NaN for |c~| > 1; at |c~| = 1 the derivative is
// -+inf for m' > 0 and 0*c/0 = NaN for m' = 0 (the sources' state before update(), which sets
// cos m' = 1, sin m' = 0). cos m' and sin m' come from the host: f64 cos and sin of m' rounded
// to T once, as the sources' Python floats meet a T tensor.
//
// Ranking rule, the reference's (modulation::Modulation::plan: a stable descending sort under
// f64::total_cmp): c~ ordered by the IEEE total order, -NaN < -inf < ... < -0 < +0 < ... <
// +inf < +NaN, and entries of identical bits by column, the LOWER index first. torch.topk
// leaves the order of ties unspecified; the reference accepts either side of a tie at the
// boundary (its mask band), and this rule is the one deterministic choice it names.
//
// The k-th largest key is found by a radix select over the key's bits (one counting pass over
// the row per bit: 32 for float, 64 for double), so a row needs no storage whatever k is.

// The total-order key of x: an unsigned integer ordered as f64::total_cmp orders x (a set sign
// bit flips every bit, a clear one flips the sign bit). float keys use the low 32 bits; a float
// converted exactly to double keeps its order, so the two agree wherever c~ is a float.
CM_HD unsigned long long cm_order_key(float x) {
    unsigned int b;
#if defined(__CUDA_ARCH__)
    b = (unsigned int)__float_as_int(x);
#else
    memcpy(&b, &x, sizeof b);
#endif
    return (b >> 31) ? (unsigned long long)(~b) : (unsigned long long)(b | 0x80000000u);
}
CM_HD unsigned long long cm_order_key(double x) {
    unsigned long long b;
#if defined(__CUDA_ARCH__)
    b = (unsigned long long)__double_as_longlong(x);
#else
    memcpy(&b, &x, sizeof b);
#endif
    return (b >> 63) ? ~b : (b | 0x8000000000000000ULL);
}

// The boundary of a row's top k: an entry is in iff its key exceeds `key`, or equals it and is
// among the first `ties` such entries in column order (cm_topk_take, called once per
// non-target column, in increasing column order).
struct cm_topk_cut {
    unsigned long long key;
    long long ties;
};

// Nothing in the top k (k = 0): no key exceeds the largest, and no tie is taken.
CM_HD cm_topk_cut cm_topk_none() {
    cm_topk_cut cut;
    cut.key = ~0ULL;
    cut.ties = 0;
    return cut;
}

CM_HD int cm_topk_take(unsigned long long key, cm_topk_cut* cut) {
    if (key > cut->key) return 1;
    if (key == cut->key && cut->ties > 0) {
        --cut->ties;
        return 1;
    }
    return 0;
}

// #{j != y : key(c~_j) >= v} over the row x[0, c).
template <typename T>
CM_HD long long cm_count_at_least(const T* x, long long c, long long y, const cm_profile& pr,
                                  unsigned long long v) {
    long long n = 0;
    for (long long j = 0; j < c; ++j) {
        if (j == y) continue;
        n += cm_order_key(cm_non_target<T>(x[j], pr).out) >= v ? 1 : 0;
    }
    return n;
}

// The cut of the k largest c~ among the non-targets of row x (target y in [0, c)).
template <typename T>
CM_HD cm_topk_cut cm_intertopk_cut(const T* x, long long c, long long y, long long k,
                                   const cm_profile& pr) {
    const long long others = c - 1;
    if (k <= 0 || others <= 0) return cm_topk_none();
    cm_topk_cut cut;
    if (k >= others) {
        // Every non-target: every key is >= 0, and there are `others` of them.
        cut.key = 0;
        cut.ties = others;
        return cut;
    }
    // The largest v with #{key >= v} >= k is the k-th largest key, built from the top bit down.
    unsigned long long v = 0;
    for (int b = 8 * (int)sizeof(T) - 1; b >= 0; --b) {
        const unsigned long long cand = v | (1ULL << b);
        if (cm_count_at_least<T>(x, c, y, pr, cand) >= k) v = cand;
    }
    cut.key = v;
    // Keys above v are all in (fewer than k of them); ties at v fill the rest in column order.
    const long long above = v == ~0ULL ? 0 : cm_count_at_least<T>(x, c, y, pr, v + 1);
    cut.ties = k - above;
    return cut;
}

// One non-target entry of a row under inter-top-k, taken in column order from `cut`:
// (out, factor) and whether it was among the top k. Where the treatment blocks the gradient
// (factor 0) it stays 0, as in the reference.
template <typename T>
CM_HD cm_plain<T> cm_intertopk(T c, T cos_mp, T sin_mp, cm_topk_cut* cut, const cm_profile& pr,
                               int* top) {
    cm_plain<T> r = cm_non_target<T>(c, pr);
    *top = cm_topk_take(cm_order_key(r.out), cut);
    if (!*top) return r;
    const T ct = r.out, f = r.factor;
    const T sine = cm_sqrt(T(1) - ct * ct);
    r.out = ct * cos_mp + sine * sin_mp;
    r.factor = f == T(0) ? T(0) : f * (cos_mp - sin_mp * ct / sine);
    return r;
}

// The non-target modulations a margin kernel applies (its template argument; the host picks
// the kernel by name).
#define CM_MOD_NONE 0
#define CM_MOD_CURRICULAR 1
#define CM_MOD_INTERTOPK 2

// The constants of a row's modulation: CurricularFace's t; inter-top-k's k, cos m', sin m'.
template <typename T> struct cm_mod_args {
    T t;
    long long k;
    T cos_mp;
    T sin_mp;
};

// No modulation: the constants are unused.
template <typename T> CM_HD cm_mod_args<T> cm_no_mod() {
    cm_mod_args<T> md;
    md.t = T(0);
    md.k = 0;
    md.cos_mp = T(1);
    md.sin_mp = T(0);
    return md;
}
template <typename T> CM_HD cm_mod_args<T> cm_curricular_mod(T t) {
    cm_mod_args<T> md = cm_no_mod<T>();
    md.t = t;
    return md;
}
template <typename T>
CM_HD cm_mod_args<T> cm_intertopk_mod(long long k, T cos_mp, T sin_mp) {
    cm_mod_args<T> md = cm_no_mod<T>();
    md.k = k;
    md.cos_mp = cos_mp;
    md.sin_mp = sin_mp;
    return md;
}

// A row's modulation state, set up from its input before anything is written: CurricularFace's
// tau (from the target's input), inter-top-k's cut.
template <typename T> struct cm_mod_row {
    T tau;
    cm_topk_cut cut;
};

template <typename T>
CM_HD cm_mod_row<T> cm_mod_setup(int mod, const T* x, long long c, long long y,
                                 const cm_mod_args<T>& md, const cm_profile& pr) {
    cm_mod_row<T> r;
    r.tau = T(0);
    r.cut = cm_topk_none();
    switch (mod) {
        case CM_MOD_CURRICULAR:
            r.tau = cm_curricular_tau<T>(x[y], pr);
            break;
        case CM_MOD_INTERTOPK:
            r.cut = cm_intertopk_cut<T>(x, c, y, md.k, pr);
            break;
        default:  // CM_MOD_NONE
            break;
    }
    return r;
}

// Non-target j of a row with a target under modulation `mod` (in column order: inter-top-k's
// cut counts its ties): (out, factor), and whether the modulation changed it.
template <typename T>
CM_HD cm_plain<T> cm_mod_entry(int mod, T c, const cm_mod_args<T>& md, cm_mod_row<T>* row,
                               const cm_profile& pr, int* changed) {
    switch (mod) {
        case CM_MOD_CURRICULAR:
            return cm_curricular<T>(c, md.t, row->tau, pr, changed);
        case CM_MOD_INTERTOPK:
            return cm_intertopk<T>(c, md.cos_mp, md.sin_mp, &row->cut, pr, changed);
        default:  // CM_MOD_NONE
            *changed = 0;
            return cm_non_target<T>(c, pr);
    }
}

// Sub-centres (layer::subcenter_max, SPEC.md §11.2): cos of shape [N, C, K], row-major with k
// fastest, reduced to [N, C] by the max over K. Ties go to the FIRST index (torch.max(dim)); a
// NaN sub-centre wins, the first NaN on several (torch's max propagates NaN). Comparisons only,
// so the value is one of the inputs, bit for bit, and the reduction is exact in any dtype.
template <typename T> CM_HD long long cm_subcenter_argmax(const T* cell, long long k) {
    long long best = 0;
    for (long long j = 1; j < k; ++j) {
        const T v = cell[j], b = cell[best];
        if ((cm_isnan(v) && !cm_isnan(b)) || v > b) best = j;
    }
    return best;
}

// Cell `cell` (= i*C + j) of [N, C, K]: out[cell] = the max over its K sub-centres, arg[cell] its
// first index.
template <typename T>
CM_HD void cm_subcenter_max_cell(const T* cos, long long cell, long long k, T* out,
                                 long long* arg) {
    const T* x = cos + cell * k;
    const long long a = cm_subcenter_argmax(x, k);
    out[cell] = x[a];
    arg[cell] = a;
}

// layer::subcenter_backward of one cell: the gradient d_cos[cell] goes to the arg-max
// sub-centre, every other sub-centre of the cell gets exactly +0. An arg outside [0, K) (not
// written by cm_subcenter_max_cell) makes the whole cell NaN and indexes nothing outside it.
template <typename T>
CM_HD void cm_subcenter_backward_cell(const T* d_cos, const long long* arg, long long cell,
                                      long long k, T* grad) {
    T* g = grad + cell * k;
    const long long a = arg[cell];
    const int valid = a >= 0 && a < k;
    const T fill = valid ? T(0) : cm_inf<T>() - cm_inf<T>();
    for (long long j = 0; j < k; ++j) g[j] = fill;
    if (valid) g[a] = d_cos[cell];
}

// The label of a row, classified by the label policy (layer::LabelPolicy::row). Only a label
// in [0, C) may index the row.
CM_HD int cm_row_status(long long label, long long classes, int labels) {
    if (label >= 0 && label < classes) return CM_ROW_TARGET;
    switch (labels) {
        case CM_LABELS_IGNORE_MINUS_ONE:
            return label == -1 ? CM_ROW_IGNORED : CM_ROW_BAD_LABEL;
        case CM_LABELS_IGNORE_OUT_OF_RANGE:
            return CM_ROW_IGNORED;
        case CM_LABELS_MINUS_ONE_NO_TARGET:
            return label == -1 ? CM_ROW_NO_TARGET : CM_ROW_BAD_LABEL;
        default:
            return CM_ROW_BAD_LABEL;
    }
}

#endif  // COMBINED_MARGIN_CUH
